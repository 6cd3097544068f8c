#!/usr/bin/env python3
"""PyTorch's run of workload D on the shipped digits data (data/digits/), recorded for tests/digits.rs:
the mean training loss of every epoch and the final test accuracy. Same recipe as
shared/bench/torch_digits.py: 64->128 ReLU->10, Adam lr 1e-3, batch 32 reshuffled every epoch with
Generator().manual_seed(0), last partial batch kept, 30 epochs, float32, inputs standardised with the
training set's statistics (a zero-std column left unscaled).

Run: python3 tests/data/toolkit/gen_digits_ref.py   (needs torch, numpy, safetensors)"""
import os
import numpy as np
import torch
import torch.nn as nn
from safetensors.numpy import save_file

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "..", "..")
raw = np.loadtxt(os.path.join(root, "data", "digits", "digits.csv"), delimiter=",")
test_rows = np.loadtxt(os.path.join(root, "data", "digits", "digits_test_rows.txt"), dtype=np.int64)
is_test = np.zeros(len(raw), dtype=bool)
is_test[test_rows] = True
X, y = raw[:, :64], raw[:, 64].astype(np.int64)
mean, std = X[~is_test].mean(0), X[~is_test].std(0)
std[std == 0] = 1.0
X = (X - mean) / std
torch.set_num_threads(1)
Xtr = torch.tensor(X[~is_test], dtype=torch.float32); ytr = torch.tensor(y[~is_test])
Xte = torch.tensor(X[is_test], dtype=torch.float32); yte = torch.tensor(y[is_test])

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
g = torch.Generator().manual_seed(0)
n = len(ytr)
epoch_loss = []
for epoch in range(30):
    perm = torch.randperm(n, generator=g)
    total = 0.0
    for i in range(0, n, 32):
        bi = perm[i:i + 32]
        opt.zero_grad()
        loss = loss_fn(model(Xtr[bi]), ytr[bi])
        loss.backward()
        opt.step()
        total += loss.item() * len(bi)
    epoch_loss.append(total / n)
with torch.no_grad():
    acc = (model(Xte).argmax(1) == yte).double().mean().item()
save_file({"epoch_loss": np.array(epoch_loss, dtype=np.float64), "test_accuracy": np.array(acc, dtype=np.float64)},
          os.path.join(here, "digits_ref.safetensors"), metadata={"torch": torch.__version__})
print("epoch losses", [round(v, 5) for v in epoch_loss], "test accuracy", acc)
