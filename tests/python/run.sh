#!/bin/sh
# Interoperability tests of the checkpoint format against the reference safetensors implementation
# (and, where PyTorch is installed, a PyTorch round trip). Creates a virtual environment under the build
# directory and pip-installs numpy and safetensors into it; never installs torch.
#
#   tests/python/run.sh [BUILD_DIR]      (BUILD_DIR defaults to target/)
#
# Environment: BP_PYTHON — use this interpreter (it needs numpy and safetensors) instead of making a venv;
# BP_TORCH_PYTHON — an interpreter with torch for the round trip (defaults to the same interpreter,
# where the round trip reports "SKIPPED: torch not installed" unless torch is there).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/target}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)

if [ -n "${BP_PYTHON:-}" ]; then
    PY=$BP_PYTHON
else
    VENV=$BUILD/interop-venv
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    PY=$VENV/bin/python
    if ! "$PY" -c "import numpy, safetensors" 2>/dev/null; then
        "$PY" -m pip install --quiet --disable-pip-version-check numpy safetensors
    fi
fi

cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --example safetensors_interop
BIN=$ROOT/target/debug/examples/safetensors_interop
WORK=$BUILD/interop-work
rm -rf "$WORK"

"$PY" "$ROOT/tests/python/test_safetensors_interop.py" "$BIN" "$WORK"
"${BP_TORCH_PYTHON:-$PY}" "$ROOT/tests/python/test_torch_roundtrip.py" "$BIN" "$WORK"
