#!/usr/bin/env python3
"""Runs our workloads and PyTorch's side by side, in one sitting, and prints the table of ratios.

    python3 benches/compare.py [--threads 1,2] [--budget 3] [--passes 2] [--md table.md] [--quick]

For each thread count, and alternately `--passes` times (each side keeps its best median per workload,
as the PyTorch figures in WORKLOADS.md are the best of three passes), it runs PyTorch's baseline (../shared/bench/torch_baseline.py, or $BP_TORCH_BASELINE)
and benches/torch_extra.py with the PyTorch interpreter ($BP_TORCH_PYTHON, default
/work/torch-venv/bin/python), then ours (`cargo bench --bench workloads`). Each side waits for a quiet
machine before every measurement and records how much CPU other processes used meanwhile. Without
PyTorch it says so and prints ours alone. It also reports the peak memory of a process training W2
(ours against PyTorch's), the size of our stripped shared library, and whether our W2 loss after 100
steps is bit-identical across the thread counts.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BASELINE = os.environ.get("BP_TORCH_BASELINE", os.path.join(ROOT, "..", "shared", "bench", "torch_baseline.py"))
TORCH_PY = os.environ.get("BP_TORCH_PYTHON", "/work/torch-venv/bin/python")

# (key, label, kind, target): kind "time" compares times (ratio = torch / ours: > 1 means we are
# faster), "gflops" compares throughput (ratio = ours / torch); target is the goal for the ratio.
ROWS = [
    ("W1_seed_step", "W1 seed step (train_step)", "time", 20.0),
    ("W1_seed_step_graph", "W1 seed step, graph ops", "time", None),
    ("W2_mlp_step", "W2 MLP step (train_step)", "time", 1.0),
    ("W2_mlp_step_graph", "W2 MLP step, graph ops", "time", 1.0),
    ("W3_wide_step", "W3 wide step (train_step)", "time", 1.0),
    ("W3_wide_step_graph", "W3 wide step, graph ops", "time", 1.0),
    ("W4_overhead_chain_fwd_bwd", "W4 per op, fwd+bwd", "per_op", 30.0),
    ("W4_overhead_chain_fwd_only", "W4 per op, fwd only", "per_op", None),
    ("W4_overhead_chain_no_grad", "W4 per op, no-grad", "per_op", None),
    ("W6_autograd_grad_first", "W6 grad(x³)", "time", 50.0),
    ("W6_autograd_grad_create_graph_second", "W6 second derivative", "time", None),
    ("D_digits_step", "D step (Adam, batch 32, train_step)", "time", None),
    ("D_digits_step_graph", "D step, graph ops", "time", None),
] + [(f"W5_mm_{n}x{n}x{n}", f"W5 sgemm {n}³", "gflops", 0.95) for n in (64, 128, 256, 512, 1024, 2048)] + [
    ("W5_mm_128x784x512", "W5 sgemm 128×784×512", "gflops", 0.95),
    ("W5_mm_256x1024x4096", "W5 sgemm 256×1024×4096", "gflops", 0.95),
    ("W5_mm_tn_784x128x512", "W5 Aᵀ·B 784×128×512", "gflops", 0.95),
    ("W5_mm_nt_128x512x784", "W5 A·Bᵀ 128×512×784", "gflops", 0.95),
]


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def have_torch():
    if not (os.path.exists(TORCH_PY) and os.path.exists(BASELINE)):
        return False
    r = subprocess.run([TORCH_PY, "-c", "import torch"], capture_output=True)
    return r.returncode == 0


def fmt_time(us):
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.2f} µs"


def cell(kind, r):
    if r is None:
        return "—"
    if kind == "gflops":
        return f"{r['gflops']:.1f} GFLOP/s"
    if kind == "per_op":
        return fmt_time(r["median_us"] / 100)
    return fmt_time(r["median_us"])


def ratio(kind, ours, torch):
    if ours is None or torch is None:
        return None
    if kind == "gflops":
        return ours["gflops"] / torch["gflops"]
    return torch["median_us"] / ours["median_us"]


def best_of(a, b):
    """Per workload, the measurement with the lower median time of two passes of one side."""
    merged = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and "median_us" in v and isinstance(a.get(k), dict) and "median_us" in a[k]:
            merged[k] = v if v["median_us"] < a[k]["median_us"] else a[k]
        elif k not in merged:
            merged[k] = v
    return merged


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--budget", default="3")
    ap.add_argument("--md", default=None, help="also write the table (markdown) here")
    ap.add_argument("--skip-ours-build", action="store_true")
    ap.add_argument("--passes", type=int, default=2,
                    help="alternate PyTorch and ours this many times per thread count and keep each side's best "
                         "median per workload (other tenants of a shared machine come and go within minutes)")
    ap.add_argument("--quick", action="store_true",
                    help="on both sides, neither wait for a quiet machine nor retry noisy measurements (a busy machine)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch_ok = have_torch()
    if not torch_ok:
        print(f"PyTorch not found ({TORCH_PY} with torch, and {BASELINE}): printing ours alone.")
    out = tempfile.mkdtemp(prefix="bp-compare-")
    if not args.skip_ours_build:
        run(["cargo", "bench", "--bench", "workloads", "--no-run"], cwd=ROOT)
    results = {}
    for t in threads:
        for p in range(args.passes):
            ours_json = os.path.join(out, f"ours_t{t}_p{p}.json")
            if torch_ok:
                tj, ej = os.path.join(out, f"torch_t{t}_p{p}.json"), os.path.join(out, f"torch_extra_t{t}_p{p}.json")
                q = ["--quick"] if args.quick else []
                extra = [TORCH_PY, os.path.join(HERE, "torch_extra.py"), "--baseline", BASELINE, "--threads", str(t), "--budget", args.budget] + q
                run(extra + ["--run-baseline", "--out", tj])
                run(extra + ["--out", ej])
                torch = json.load(open(tj))
                torch.update({k: v for k, v in json.load(open(ej)).items() if isinstance(v, dict)})
            else:
                torch = {}
            env = dict(os.environ, BP_BENCH_QUICK="1" if args.quick else "0")
            run(["cargo", "bench", "--bench", "workloads", "--", "--threads", str(t), "--out", ours_json, "--budget", args.budget], cwd=ROOT, env=env)
            ours = json.load(open(ours_json))
            if t in results:
                ours, torch = best_of(results[t][0], ours), best_of(results[t][1], torch)
            results[t] = (ours, torch)

    # Peak memory of a process training W2 for 100 steps.
    mem = {}
    r = subprocess.run(["cargo", "bench", "--bench", "workloads", "--", "--train-w2", "100"], cwd=ROOT, capture_output=True, text=True, check=True)
    mem["ours"] = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
    if torch_ok:
        r = subprocess.run([TORCH_PY, os.path.join(HERE, "torch_extra.py"), "--baseline", BASELINE, "--train-w2", "100"], capture_output=True, text=True, check=True)
        mem["torch"] = json.loads(r.stdout.strip().splitlines()[-1])

    # The stripped shared library.
    run(["cargo", "build", "--release", "--lib"], cwd=ROOT)
    so = os.path.join(ROOT, "target", "release", "libbp.so")
    stripped = os.path.join(out, "libbp.so")
    shutil.copy(so, stripped)
    subprocess.run(["strip", stripped], check=True)
    so_size = os.path.getsize(stripped)

    lines = []
    ours0 = results[threads[0]][0]
    lines.append(f"gemm kernel: {ours0.get('gemm_kernel')}; PyTorch {results[threads[0]][1].get('torch', 'absent')}"
                 f" ({results[threads[0]][1].get('cpu_capability', '')})")
    lines.append("")
    head = "| workload | " + " | ".join(f"ours {t}T | PyTorch {t}T | ratio {t}T" for t in threads) + " | target |"
    lines.append(head)
    lines.append("|" + "---|" * (2 + 3 * len(threads)))
    for key, label, kind, target in ROWS:
        row = [label]
        for t in threads:
            # A "_graph" row is the same workload built from graph ops, against the same PyTorch step.
            o, p = results[t][0].get(key), results[t][1].get(key.removesuffix("_graph"))
            rt = ratio(kind, o, p)
            row += [cell(kind, o), cell(kind, p), f"**{rt:.2f}×**" if rt is not None else "—"]
        row.append("—" if target is None else (f"≥ {target:g}×" if kind != "gflops" else f"≥ {target:.2f}×"))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Ratios: time rows are PyTorch's time / ours (above 1 = we are faster); GFLOP/s rows are ours / PyTorch's.")
    lines.append("")
    om = mem["ours"]["peak_rss_kib"]
    if "torch" in mem:
        tm = mem["torch"]["peak_rss_kib"]
        lines.append(f"Peak resident memory training W2 (100 steps): ours {om / 1024:.1f} MiB, PyTorch {tm / 1024:.1f} MiB "
                     f"(ours is {om / tm:.3f} of PyTorch's; target ≤ 0.1).")
    else:
        lines.append(f"Peak resident memory training W2 (100 steps): ours {om / 1024:.1f} MiB.")
    lines.append(f"Stripped shared library (target/release/libbp.so): {so_size / 1e6:.2f} MB (target < 3 MB).")
    losses = {t: results[t][0].get("W2_loss_after_100_steps", {}).get("f32_bits") for t in threads}
    same = len(set(losses.values())) == 1
    lines.append(f"W2 loss after 100 steps, f32 bits per thread count: {losses} — {'bit-identical' if same else 'DIFFERENT'}.")
    foreign = max(r.get("foreign_cpu_frac", 0) for t in threads for side in results[t] for r in side.values() if isinstance(r, dict))
    lines.append(f"Largest share of the machine used by other processes during any measurement: {foreign:.3f}.")
    text = "\n".join(lines)
    print()
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")
    print(f"\nraw JSON in {out}")


if __name__ == "__main__":
    main()
