#!/usr/bin/env python3
"""Checks our safetensors files against the reference implementation (the safetensors package with
numpy), both ways. Usage: test_safetensors_interop.py INTEROP_BINARY WORK_DIR

INTEROP_BINARY is examples/safetensors_interop.rs built; see its documentation for what each
subcommand does. Exits non-zero on the first mismatch."""
import os
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

BIN, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)


def rust(*args, ok=True):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def pattern(shape):
    n = int(np.prod(shape))
    return ((np.arange(n) % 17) / 8.0 - 1.0).astype(np.float32).reshape(shape)


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


SHAPES = {"0.weight": (4, 3), "0.bias": (4,), "2.weight": (2, 4), "2.bias": (2,)}

# 1. A checkpoint written by us, read by the reference implementation.
ckpt = os.path.join(WORK, "ours.safetensors")
rust("write-checkpoint", ckpt)
t = load_file(ckpt)
for name, shape in SHAPES.items():
    check(t[name].dtype == np.float32 and t[name].shape == shape, f"{name} is float32 {shape}")
    check(np.array_equal(t[name], pattern(shape) - 0.5), f"{name} holds the values after one SGD step")
    buf = t[f"optim.{name}.momentum_buffer"]
    check(buf.dtype == np.float32 and buf.shape == shape and np.all(buf == 1.0), f"optim.{name}.momentum_buffer")
    step = t[f"optim.{name}.step"]
    check(step.dtype == np.int64 and step.shape == () and step == 1, f"optim.{name}.step == 1")
check(t["optim.lr"].dtype == np.float64 and t["optim.lr"] == 0.5, "optim.lr is float64 0.5")
check(t["rng.graph"].dtype == np.int64 and t["rng.graph"].shape == (630,), "rng.graph is 630 int64 words")
with safe_open(ckpt, framework="np") as f:
    meta = f.metadata()
want_meta = {"format": "backprop.checkpoint.v1", "optim.type": "sgd", "note": "interop",
             "optim.config": "momentum=0.9 dampening=0.0 weight_decay=0.0 nesterov=false"}
check(meta == want_meta, f"metadata {meta}")

# 2. A state_dict written by the reference implementation, loaded and run by us.
weights = {name: (pattern(shape) * 0.7).astype(np.float32) for name, shape in SHAPES.items()}
sd = os.path.join(WORK, "numpy_state_dict.safetensors")
save_file(weights, sd)
out = np.array([float(v) for v in rust("forward", sd).stdout.split()], dtype=np.float32).reshape(5, 2)
x = np.array([[(i - j) / 4.0 for j in range(3)] for i in range(5)], dtype=np.float32)
h = np.tanh(x @ weights["0.weight"].T + weights["0.bias"])
want = h @ weights["2.weight"].T + weights["2.bias"]
check(np.allclose(out, want, rtol=1e-6, atol=1e-6), "a numpy-written state_dict loads and computes the same forward pass")

# 3. Every dtype we read, shapes including scalars and empty tensors, unicode metadata.
mixed = {
    "f64": np.array([[1.5, -2.25], [1e300, 0.0]], dtype=np.float64),
    "i64": np.array([-(2**62), 7, 0], dtype=np.int64),
    "u32": np.array([4000000000, 1], dtype=np.uint32),
    "scalar": np.array(3.0, dtype=np.float32),
    "empty": np.zeros((0, 3), dtype=np.float32),
}
mp = os.path.join(WORK, "mixed.safetensors")
save_file(mixed, mp, metadata={"clé": "välue \"quoted\""})
lines = rust("dump", mp).stdout.splitlines()
by_name = {l.split(" ")[0]: l.split(" ") for l in lines if not l.startswith("meta ")}
check("meta clé välue \"quoted\"" in lines, "unicode metadata reads back")
check(by_name["f64"][1:3] == ["F64", "[2,2]"] and [float(v) for v in by_name["f64"][3:]] == [1.5, -2.25, 1e300, 0.0], "F64 values")
check(by_name["i64"][1:3] == ["I64", "[3]"] and [int(v) for v in by_name["i64"][3:]] == [-(2**62), 7, 0], "I64 values")
check(by_name["u32"][1:3] == ["U32", "[2]"] and [int(v) for v in by_name["u32"][3:]] == [4000000000, 1], "U32 values")
check(by_name["scalar"][1:] == ["F32", "[]", "3e0"], "a scalar tensor")
check(by_name["empty"][1:3] == ["F32", "[0,3]"], "an empty tensor")

# 4. A file the reference wrote, truncated, is refused with a clear message.
data = open(sd, "rb").read()
bad = os.path.join(WORK, "truncated.safetensors")
open(bad, "wb").write(data[:-1])
p = rust("forward", bad, ok=False)
check(p.returncode != 0 and "truncated" in p.stderr, f"a truncated file is refused: {p.stderr.strip()}")
print("safetensors interop: all checks passed")
