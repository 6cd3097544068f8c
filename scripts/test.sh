#!/usr/bin/env bash
# The single test command of backprop. Runs, in order, and stops at the first failure (non-zero exit):
#   1. cargo test                     (the Rust engine, the FFI module, the header drift check)
#   2. cmake configure + build        (cargo build --release through CMake, every C/C++/Go test program)
#   3. ctest                          (C, C++ and Go tests, examples, install test, and every C/C++
#                                      test again under valgrind memcheck; the MPI data-parallel
#                                      tests, label mpi, under mpirun -np 2)
#   4. tests/python/run.sh            (checkpoints against the reference safetensors implementation;
#                                      a PyTorch round trip where torch is installed, else SKIPPED)
# Needs cargo, cmake, a C and C++ compiler and Go >= 1.21; valgrind, pkg-config, GoogleTest and Open MPI
# are installed with apt-get if missing.
# Environment: BP_BUILD_DIR (default <repo>/build), BP_JOBS (default: number of CPUs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BP_BUILD_DIR:-$root/build}
jobs=${BP_JOBS:-$(nproc 2>/dev/null || echo 2)}

# valgrind runs the memcheck pass; pkg-config is used by the install test; GoogleTest by the C++ tests;
# Open MPI (mpicc, mpirun) by the data-parallel tests (label mpi).
missing=""
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
[ -f /usr/include/gtest/gtest.h ] || missing="$missing libgtest-dev"
{ command -v mpicc && command -v mpirun; } >/dev/null 2>&1 || missing="$missing libopenmpi-dev openmpi-bin"
if [ -n "$missing" ]; then
    echo "test.sh: installing$missing with apt-get" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
# The Go binding's tests need go; the official tarball installs it outside PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi

cd "$root"
echo "== cargo test"
cargo test

echo "== cmake configure and build ($build)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBP_MEMCHECK=ON -DBP_REQUIRE_MEMCHECK=ON -DBP_REQUIRE_BINDINGS=ON \
    -DBP_REQUIRE_MPI=ON
cmake --build "$build" --parallel "$jobs"

echo "== ctest (every label, memcheck included)"
cd "$build"
ctest --output-on-failure --parallel "$jobs"

echo "== checkpoint interop (safetensors reference implementation)"
bash "$root/tests/python/run.sh" "$build"

# The four stages (cargo test, build, ctest, checkpoint interop) each stop the script on a failure
# (set -e), so reaching this line means all passed.
echo "stages: 4 passed, 0 failed"
