#!/usr/bin/env python3
"""Generates the PyTorch reference data for the toolkit's tests (tests/optim_parity.rs, tests/nn.rs).

Run with a Python that has torch, numpy and safetensors:
    python3 tests/data/toolkit/gen_toolkit_ref.py
It rewrites optim_ref.safetensors, nn_ref.safetensors and torch_mlp.safetensors (a state_dict saved by
safetensors.torch) beside this script. The Rust tests read only
those committed files; they never need PyTorch.
"""
import os
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

here = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)
STEPS = 10


def f32(t):
    return np.ascontiguousarray(t.detach().numpy().astype(np.float32))


# ---------------------------------------------------------------- optimizer trajectories
torch.manual_seed(0)
X = torch.randn(8, 5)
Y = torch.randint(0, 3, (8,))


def make_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


CASES = [
    # name, optimizer factory, schedule factory (or None), clipping ("norm", v) / ("value", v) / None
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1), None, None),
    ("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01), None, None),
    ("sgd_nesterov", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), None, None),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.01), None, None),
    ("adam_l2_amsgrad", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1, amsgrad=True), None, None),
    ("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1), None, None),
    ("adamw_amsgrad", lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True), None, None),
    ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=0.01), None, None),
    ("rmsprop_centered_momentum", lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.01), None, None),
    ("sgd_steplr", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), None),
    ("adam_cosine", lambda p: torch.optim.Adam(p, lr=0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.001), None),
    ("rmsprop_exponential", lambda p: torch.optim.RMSprop(p, lr=0.01), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8), None),
    ("adamw_warmup", lambda p: torch.optim.AdamW(p, lr=0.01), lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4), None),
    ("sgd_clip_norm", lambda p: torch.optim.SGD(p, lr=0.5), None, ("norm", 0.3)),
    ("adam_clip_value", lambda p: torch.optim.Adam(p, lr=0.01), None, ("value", 0.05)),
]

optim = {"X": f32(X), "Y": Y.numpy().astype(np.int64)}
m0 = make_model()
for k, v in m0.state_dict().items():
    optim["init." + k] = f32(v)
for name, make_opt, make_sched, clip in CASES:
    m = make_model()
    opt = make_opt(m.parameters())
    sched = make_sched(opt) if make_sched else None
    traj, lrs, losses, norms, grads = [], [], [], [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = F.cross_entropy(m(X), Y)
        loss.backward()
        losses.append(loss.item())
        if clip and clip[0] == "norm":
            norms.append(torch.nn.utils.clip_grad_norm_(m.parameters(), clip[1]).item())
        elif clip:
            torch.nn.utils.clip_grad_value_(m.parameters(), clip[1])
        lrs.append(opt.param_groups[0]["lr"])
        grads.append(np.concatenate([f32(p.grad).ravel() for p in m.parameters()]))
        opt.step()
        if sched:
            sched.step()
        traj.append(np.concatenate([f32(p).ravel() for p in m.parameters()]))
    optim[name + ".params"] = np.stack(traj)
    optim[name + ".grads"] = np.stack(grads)  # what the optimizer saw (after clipping)
    optim[name + ".lr"] = np.array(lrs, dtype=np.float64)
    optim[name + ".loss"] = np.array(losses, dtype=np.float32)
    if norms:
        optim[name + ".norm"] = np.array(norms, dtype=np.float32)
save_file(optim, os.path.join(here, "optim_ref.safetensors"), metadata={"torch": torch.__version__, "steps": str(STEPS)})

# ---------------------------------------------------------------- layers, losses, data order
ref = {}
torch.manual_seed(0)
a, b = nn.Linear(64, 128), nn.Linear(128, 10)
ref["linear_init.0.weight"], ref["linear_init.0.bias"] = f32(a.weight), f32(a.bias)
ref["linear_init.2.weight"], ref["linear_init.2.bias"] = f32(b.weight), f32(b.bias)
g = torch.Generator().manual_seed(0)
ref["randperm.10"] = np.stack([torch.randperm(10, generator=g).numpy() for _ in range(3)]).astype(np.int64)
ref["randperm.1437"] = torch.randperm(1437, generator=g).numpy().astype(np.int64)

torch.manual_seed(3)
logits = torch.randn(6, 5, requires_grad=True)
target = torch.tensor([0, 4, -100, 2, 1, 3])
logp = F.log_softmax(logits, 1)
ref["loss.logits"] = f32(logits)
ref["loss.target"] = target.numpy().astype(np.int64)
for red in ["mean", "sum", "none"]:
    v = F.nll_loss(logp, target, reduction=red, ignore_index=-100)
    (gr,) = torch.autograd.grad(v.sum(), logits, retain_graph=True)
    ref["nll." + red], ref["nll." + red + ".grad"] = f32(v).reshape(-1), f32(gr)
p = torch.randn(4, 3, requires_grad=True)
q = torch.randn(4, 3) * 2
ref["reg.input"], ref["reg.target"] = f32(p), f32(q)
for red in ["mean", "sum", "none"]:
    for name, fn in [("l1", lambda: F.l1_loss(p, q, reduction=red)),
                     ("smooth_l1", lambda: F.smooth_l1_loss(p, q, reduction=red, beta=0.7))]:
        v = fn()
        (gr,) = torch.autograd.grad(v.sum(), p)
        ref[f"{name}.{red}"], ref[f"{name}.{red}.grad"] = f32(v).reshape(-1), f32(gr)

torch.manual_seed(4)
ln = nn.LayerNorm([3, 4])
with torch.no_grad():
    ln.weight.copy_(torch.randn(3, 4))
    ln.bias.copy_(torch.randn(3, 4))
x = torch.randn(2, 3, 4, requires_grad=True)
y = ln(x)
w = torch.randn(2, 3, 4)
(y * w).sum().backward()
ref["layer_norm.weight"], ref["layer_norm.bias"], ref["layer_norm.x"], ref["layer_norm.w"] = f32(ln.weight), f32(ln.bias), f32(x), f32(w)
ref["layer_norm.y"], ref["layer_norm.x.grad"], ref["layer_norm.weight.grad"] = f32(y), f32(x.grad), f32(ln.weight.grad)

torch.manual_seed(5)
emb = nn.Embedding(7, 3)
ref["embedding.init"] = f32(emb.weight)
# A state_dict written by PyTorch itself, and what that model computes.
from safetensors.torch import save_file as torch_save_file
mt = make_model()
with torch.no_grad():
    mt[0].weight.mul_(2.0)  # differs from every other model here
torch_save_file(mt.state_dict(), os.path.join(here, "torch_mlp.safetensors"))
ref["torch_mlp.x"], ref["torch_mlp.out"] = f32(X), f32(mt(X))

save_file(ref, os.path.join(here, "nn_ref.safetensors"), metadata={"torch": torch.__version__})
print("wrote optim_ref.safetensors and nn_ref.safetensors")
