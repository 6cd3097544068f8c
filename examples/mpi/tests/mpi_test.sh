#!/usr/bin/env bash
# The MPI tests of data-parallel training (ctest label "mpi"), each run with mpirun on this machine:
#
#   mpi_test.sh CASE MPIEXEC DIGITS_MPI DATA_DIR WORK_DIR
#
# CASE is one of
#   matches_single_process  2 ranks x batch 16 end with the parameters of 1 process x batch 32
#                           (same seed, 3 epochs over 1000 rows), max abs diff <= 1e-5
#   rank_dies               rank 1 exits mid-training: the job ends (no hang) with a non-zero status and
#                           a message that says a process exited
#   rank_stalls             rank 1 stops answering mid-training: rank 0's all-reduce times out after 3 s,
#                           says so, and aborts the job with a non-zero status
#   resume                  2 epochs + a resume from rank 0's checkpoint to 4 epochs == 4 epochs straight,
#                           bit for bit, on both ranks (rank 0 saves; every rank resumes from it)
#   digits                  the digits example on 2 ranks reaches >= 95% test accuracy
#
# Every mpirun is wrapped in `timeout`, so a hang fails the test instead of blocking it.
set -uo pipefail
case_name=$1 mpiexec=$2 bin=$3 data=$4 work=$5
mkdir -p "$work"
cd "$work" || exit 2

# Open MPI refuses to run as root without these, and needs --oversubscribe for 2 ranks on a machine
# that may show fewer free slots. Containers often forbid the CMA single-copy mechanism.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
extra=()
if "$mpiexec" --version 2>&1 | grep -q "Open MPI"; then
    extra=(--oversubscribe)
fi
run() { # run NP ARGS...: mpirun with a hard limit
    local np=$1
    shift
    timeout 300 "$mpiexec" "${extra[@]}" -np "$np" "$bin" --data "$data" --quiet "$@"
}
fail() {
    echo "FAILED: $*" >&2
    exit 1
}

case $case_name in
matches_single_process)
    rm -f one.bin two.bin
    run 2 --epochs 3 --batch 16 --rows 1000 --save-params two.bin || fail "the 2-rank run failed"
    run 1 --epochs 3 --batch 32 --rows 1000 --save-params one.bin || fail "the 1-process run failed"
    "$bin" --compare one.bin two.bin --tol 1e-5 || fail "2 ranks x 16 and 1 process x 32 differ"
    ;;
rank_dies)
    run 2 --epochs 3 --die-at-step 5 --timeout 20 >out.txt 2>&1
    status=$?
    cat out.txt
    [ "$status" -ne 124 ] || fail "the job hung (killed by timeout)"
    [ "$status" -ne 0 ] || fail "the job exited 0 although rank 1 died"
    grep -qiE "exit code|exited|non-zero|aborted" out.txt || fail "no message says that a process died"
    ;;
rank_stalls)
    run 2 --epochs 3 --stall-at-step 5 --timeout 3 >out.txt 2>&1
    status=$?
    cat out.txt
    [ "$status" -ne 124 ] || fail "the job hung (killed by timeout)"
    [ "$status" -ne 0 ] || fail "the job exited 0 although rank 1 stopped answering"
    grep -q "rank 0: all-reduce of .* timed out after 3.0 s" out.txt || fail "rank 0 did not report the timeout"
    grep -q "aborting the job" out.txt || fail "rank 0 did not abort the job"
    ;;
resume)
    rm -f straight.bin resumed.bin ckpt.bin
    run 2 --epochs 4 --batch 16 --save-params straight.bin || fail "the straight run failed"
    run 2 --epochs 2 --batch 16 --checkpoint ckpt.bin || fail "the first half failed"
    [ -f ckpt.bin ] || fail "rank 0 wrote no checkpoint"
    run 2 --epochs 4 --batch 16 --checkpoint ckpt.bin --resume --save-params resumed.bin || fail "the resumed run failed"
    "$bin" --compare straight.bin resumed.bin --tol 0 || fail "the resumed run differs from the straight one"
    ;;
digits)
    run 2 --epochs 10 --batch 32 --min-accuracy 0.95 || fail "the digits example failed"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
echo "mpi.$case_name: ok"
