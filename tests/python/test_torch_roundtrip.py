#!/usr/bin/env python3
"""PyTorch round trip: a state_dict saved by PyTorch trains on here, and what we save loads back into
the PyTorch module (strict) with the values PyTorch's own training reaches. Usage:
test_torch_roundtrip.py INTEROP_BINARY WORK_DIR. Prints "SKIPPED: torch not installed" and exits 0
where PyTorch is not installed."""
import os
import subprocess
import sys

try:
    import torch
    import torch.nn as nn
    from safetensors.torch import load_file, save_file
except ImportError:
    print("SKIPPED: torch not installed")
    sys.exit(0)

BIN, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)


def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


torch.manual_seed(0)
start = mlp()
src = os.path.join(WORK, "torch_start.safetensors")
out = os.path.join(WORK, "ours_trained.safetensors")
save_file(start.state_dict(), src)
p = subprocess.run([BIN, "train", src, out], capture_output=True, text=True)
if p.returncode != 0:
    sys.exit(f"FAIL: train exited {p.returncode}: {p.stderr}")

# The same recipe in PyTorch.
ref = mlp()
ref.load_state_dict(load_file(src))
opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
x = torch.tensor([[(i - j) / 4.0 for j in range(3)] for i in range(5)], dtype=torch.float32)
t = torch.sin(torch.tensor([[float(i + k) for k in range(2)] for i in range(5)], dtype=torch.float32))
for _ in range(5):
    opt.zero_grad()
    nn.functional.mse_loss(ref(x), t).backward()
    opt.step()

ours = mlp()
ours.load_state_dict(load_file(out))  # strict: exactly the state_dict names, shapes and dtypes
for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
    if not torch.allclose(a, b, rtol=1e-5, atol=1e-6):
        sys.exit(f"FAIL: {name} differs from PyTorch's training: {(a - b).abs().max().item()}")
    print(f"ok: {name} matches PyTorch's training (max diff {(a - b).abs().max().item():.1e})")

# A full checkpoint of ours loads into the module by state_dict name (ignoring the training state).
ckpt = os.path.join(WORK, "ours_checkpoint.safetensors")
subprocess.run([BIN, "write-checkpoint", ckpt], check=True)
full = load_file(ckpt)
m = mlp()
m.load_state_dict({k: v for k, v in full.items() if k in m.state_dict()})
print("ok: a full checkpoint's parameters load into the PyTorch module")
print("torch round trip: all checks passed")
