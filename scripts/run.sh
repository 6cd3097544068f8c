#!/usr/bin/env bash
# The main job, from C: train an MLP on the UCI optical-digits data set (64 -> 128 ReLU -> 10, Adam,
# batch 32, 30 epochs; workload D), printing one line per epoch, the test accuracy (>= 97%) and the
# training time, and saving a checkpoint (digits.safetensors, which PyTorch can load).
# Builds the library and examples/c/digits.c through CMake first (cargo decides what is stale).
# The same recipe from Rust: cargo run --release --example digits
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BP_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" --target digits --parallel "$(nproc 2>/dev/null || echo 2)" > /dev/null
exec "$build/digits" "$root/data/digits" "${1:-$root/digits.safetensors}"
