#!/usr/bin/env bash
# Data-parallel scaling from 1 to 2 processes on this machine (weak scaling: the batch per rank is
# fixed, so 2 ranks process twice the rows per step), with the all-reduce cost separated out:
#
#   benches/mpi_scaling.sh [BUILD_DIR]      (default build/; needs examples/mpi built: cmake with MPI)
#
# For each model size it runs examples/mpi/digits_mpi with -np 1 and -np 2 and prints: rows per second
# over all ranks, the speedup, the seconds inside the all-reduce callback (which includes waiting for
# the slower rank), the same as a share of training time, and the cost of the all-reduce alone
# (--allreduce-only: N all-reduces of the gradient buffer after a barrier, no compute). A third line,
# "2 alone", runs two independent 1-process trainings at the same time: their summed rows/s is the
# most 2 ranks could reach on this machine right now (no communication at all), the ceiling to judge
# the 2-rank line by. All runs of a size go back to back in one invocation: compare ratios, not
# absolute numbers, on a shared machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/examples/mpi/digits_mpi
[ -x "$bin" ] || { echo "build $bin first: cmake -S . -B build && cmake --build build" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
extra=()
mpirun --version 2>&1 | grep -q "Open MPI" && extra=(--oversubscribe)
data=$root/data/digits

field() { # field NAME LINE: the number after "NAME " in a result line
    sed -n "s|.*$1 \([0-9.]*\).*|\1|p" <<<"$2"
}

printf "%-34s %5s %11s %8s %13s %10s %12s %16s\n" "model (hidden, batch/rank)" ranks "rows/s" speedup "allreduce s" "share" "bytes/step" "allreduce alone"
for cfg in "128 32 30" "1024 128 30" "2048 256 20"; do
    read -r hidden batch epochs <<<"$cfg"
    base=""
    for np in 1 2; do
        out=$(timeout 600 mpirun "${extra[@]}" -np "$np" "$bin" --data "$data" --quiet --hidden "$hidden" --batch "$batch" --epochs "$epochs")
        alone=$(timeout 600 mpirun "${extra[@]}" -np "$np" "$bin" --data "$data" --quiet --hidden "$hidden" --allreduce-only 2000 --epochs 0)
        rate=$(field "samples/s" "$out")
        [ -z "$base" ] && base=$rate
        printf "%-34s %5d %11.0f %7.2fx %13s %9s%% %12s %13s us\n" "64-$hidden-10, $batch" "$np" "$rate" \
            "$(awk "BEGIN { print $rate / $base }")" "$(field "allreduce seconds" "$out")" \
            "$(sed -n 's/.*allreduce seconds [0-9.]* (\([0-9.]*\)%).*/\1/p' <<<"$out")" \
            "$(field "bytes per allreduce" "$out")" "$(sed -n 's/.* \([0-9.]*\) us per call.*/\1/p' <<<"$alone")"
    done
    # The ceiling: two trainings that never communicate, at the same time.
    a=$(mktemp) b=$(mktemp)
    timeout 600 mpirun "${extra[@]}" -np 1 "$bin" --data "$data" --quiet --hidden "$hidden" --batch "$batch" --epochs "$epochs" >"$a" &
    timeout 600 mpirun "${extra[@]}" -np 1 "$bin" --data "$data" --quiet --hidden "$hidden" --batch "$batch" --epochs "$epochs" >"$b"
    wait
    both=$(awk "BEGIN { print $(field "samples/s" "$(cat "$a")") + $(field "samples/s" "$(cat "$b")") }")
    rm -f "$a" "$b"
    printf "%-34s %5s %11.0f %7.2fx %13s %10s %12s %16s\n" "64-$hidden-10, $batch" "2 alone" "$both" \
        "$(awk "BEGIN { print $both / $base }")" - - - -
done
