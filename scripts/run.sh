#!/usr/bin/env bash
# The main job: train an MLP on the UCI optical-digits data set (64 -> 128 ReLU -> 10, Adam, 30 epochs),
# printing one line per epoch, the test accuracy and the training time, and saving a checkpoint.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
exec cargo run --release --quiet --example digits -- "$@"
