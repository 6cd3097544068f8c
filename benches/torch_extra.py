#!/usr/bin/env python3
"""PyTorch's side of the measurements that torch_baseline.py does not take, with its own `bench`
(imported from torch_baseline.py, so the method is identical):

- W5 with a transposed operand, the shapes of backward: Aᵀ·B (A 128×784, B 128×512) and A·Bᵀ
  (A 128×512, B 784×512);
- a workload-D step: batch 32, 64→128 ReLU →10, cross-entropy, Adam lr 1e-3;
- `--train-w2 STEPS`: trains W2 for STEPS steps and prints the process's peak resident memory.

Usage: python torch_extra.py --baseline ../shared/bench/torch_baseline.py --threads 1 --out torch_extra_t1.json
"""
import argparse
import importlib.util
import json
import os
import sys


def load_baseline(path):
    spec = importlib.util.spec_from_file_location("torch_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--budget", type=float, default=3.0)
    ap.add_argument("--train-w2", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="neither wait for a quiet machine nor retry (as BP_BENCH_QUICK=1 does on our side)")
    ap.add_argument("--run-baseline", action="store_true",
                    help="run torch_baseline.py's own main (with --quick applied to it) instead of the extras")
    args = ap.parse_args()
    tb = load_baseline(args.baseline)
    if args.quick:
        tb.wait_for_quiet = lambda *a, **k: (0.0, 0.0)
        full_bench = tb.bench
        tb.bench = lambda fn, **kw: full_bench(fn, **{**kw, "tries": 1})
    if args.run_baseline:
        sys.argv = [args.baseline, "--threads", str(args.threads), "--budget", str(args.budget)] + (["--out", args.out] if args.out else [])
        tb.main()
        return
    import torch
    import torch.nn as nn
    torch.set_num_threads(args.threads)

    if args.train_w2:
        step, _, (model, X, y, loss_fn, opt) = tb.make_w2()
        for _ in range(args.train_w2):
            step()
        loss = loss_fn(model(X), y).item()
        print(json.dumps({"steps": args.train_w2, "loss": loss, "peak_rss_kib": peak_rss_kib()}))
        return

    res = {"threads": torch.get_num_threads(), "torch": torch.__version__}

    def rep(name, r, flops=None):
        if flops:
            r["gflops"] = flops / (r["median_us"] * 1e-6) / 1e9
            r["flops_per_call"] = flops
        res[name] = r
        extra = f"  {r['gflops']:.2f} GFLOP/s" if flops else ""
        print(f"[t={args.threads}] {name:40s} median {r['median_us']:12.2f} us  p10 {r['p10_us']:10.2f}  "
              f"p90 {r['p90_us']:10.2f}{extra}  foreign {r['foreign_cpu_frac']:.3f} try {r['attempt']}", flush=True)

    torch.manual_seed(0)
    a = torch.randn(128, 784)
    b = torch.randn(128, 512)
    rep("W5_mm_tn_784x128x512", tb.bench(lambda: torch.mm(a.t(), b), budget_s=args.budget, min_samples=10), 2 * 784 * 128 * 512)
    a = torch.randn(128, 512)
    b = torch.randn(784, 512)
    rep("W5_mm_nt_128x512x784", tb.bench(lambda: torch.mm(a, b.t()), budget_s=args.budget, min_samples=10), 2 * 128 * 512 * 784)

    torch.manual_seed(0)
    X = torch.randn(32, 64)
    y = torch.randint(0, 10, (32,))
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def d_step():
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    rep("D_digits_step", tb.bench(d_step, budget_s=args.budget), tb.linear_matmul_flops(32, [64, 128, 10]))

    out = args.out or f"torch_extra_t{args.threads}.json"
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
