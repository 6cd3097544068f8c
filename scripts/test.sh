#!/usr/bin/env bash
# The single test command of backprop. Runs, in order, and stops at the first failure (non-zero exit):
#   1. cargo test                     (the Rust engine, the FFI module, the header drift check)
#   2. cmake configure + build        (cargo build --release through CMake, every C/C++/Go test program)
#   3. ctest                          (C, C++ and Go tests, examples, install test, and every C/C++
#                                      test again under valgrind memcheck)
# Needs cargo, cmake, a C and C++ compiler, pkg-config, Go >= 1.21, valgrind and GoogleTest (the last
# two installed with apt-get if missing).
# Environment: BP_BUILD_DIR (default <repo>/build), BP_JOBS (default: number of CPUs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BP_BUILD_DIR:-$root/build}
jobs=${BP_JOBS:-$(nproc 2>/dev/null || echo 2)}

missing=""
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
[ -f /usr/include/gtest/gtest.h ] || missing="$missing libgtest-dev"
if [ -n "$missing" ]; then
    echo "test.sh: installing$missing with apt-get" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    $sudo apt-get install -y -qq $missing
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi

cd "$root"
echo "== cargo test"
cargo test

echo "== cmake configure and build ($build)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBP_MEMCHECK=ON -DBP_REQUIRE_MEMCHECK=ON -DBP_REQUIRE_BINDINGS=ON
cmake --build "$build" --parallel "$jobs"

echo "== ctest (every label, memcheck included)"
cd "$build"
ctest --output-on-failure --parallel "$jobs"
