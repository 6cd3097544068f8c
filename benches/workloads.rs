//! Our side of the benchmark workloads of WORKLOADS.md (W1–W6 and a workload-D step), measured the way
//! `torch_baseline.py` measures PyTorch's (see `harness.rs`). Prints one line per measurement and writes
//! a JSON file with the same keys as PyTorch's, so that `benches/compare.py` can divide one by the other.
//!
//! Run: `cargo bench --bench workloads -- --threads 1 --out ours_t1.json [--budget 3] [--only W2,W5]`

mod harness;

use bp::nn::{Layer, Loss, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use bp::{CrossEntropyOptions, DType, Graph, Tensor};
use harness::{bench, Stats};
use std::fmt::Write as _;

/// Exact matmul FLOPs of one training step through a chain of Linear layers (as torch_baseline.py).
fn linear_matmul_flops(batch: usize, dims: &[usize]) -> f64 {
    let mut fl = 0.0;
    for (k, w) in dims.windows(2).enumerate() {
        let f = 2.0 * (batch * w[0] * w[1]) as f64;
        fl += 2.0 * f; // forward and dW
        if k > 0 {
            fl += f; // dX
        }
    }
    fl
}

/// A model with its optimizer: the toolkit's `Sequential` and `torch.optim`-exact optimizers.
struct Model {
    net: Sequential,
    opt: Box<dyn Optimizer>,
}

impl Model {
    fn sgd(g: &Graph, net: Sequential, lr: f64, momentum: f64) -> Model {
        let opt = Sgd::new(g, net.named_parameters(), SgdConfig { lr, momentum, ..Default::default() }).unwrap();
        Model { net, opt: Box::new(opt) }
    }
    fn adam(g: &Graph, net: Sequential, lr: f64) -> Model {
        let opt = Adam::new(g, net.named_parameters(), AdamConfig::adam(lr)).unwrap();
        Model { net, opt: Box::new(opt) }
    }
    /// One training step as PyTorch's: zero_grad, forward, loss, backward, optimizer step; then the
    /// graph drops the step's intermediates. Returns the loss.
    fn step(&mut self, g: &mut Graph, x: Tensor, y: Tensor, loss: fn(&mut Graph, Tensor, Tensor) -> Tensor) -> f64 {
        self.opt.zero_grad(g).unwrap();
        let z = self.net.forward(g, x).unwrap();
        let l = loss(g, z, y);
        let value = g.item(l).unwrap();
        g.backward(l, None, false).unwrap();
        self.opt.step(g).unwrap();
        g.reset();
        value
    }
    /// The same step through `Sequential::train_step`: no graph recorded.
    fn train_step(&mut self, g: &mut Graph, x: Tensor, y: Tensor, loss: Loss) -> f64 {
        self.net.train_step(g, self.opt.as_mut(), x, y, loss).unwrap()
    }
}

/// Cross-entropy with PyTorch's defaults, for `Model::train_step`.
const CE: Loss = Loss::CrossEntropy(CrossEntropyOptions { reduction: bp::Reduction::Mean, label_smoothing: 0.0, ignore_index: -100 });

fn cross_entropy(g: &mut Graph, z: Tensor, y: Tensor) -> Tensor {
    g.cross_entropy(z, y).unwrap()
}

fn mse(g: &mut Graph, z: Tensor, t: Tensor) -> Tensor {
    g.mse_loss(z, t, bp::Reduction::Mean).unwrap()
}

fn keep(g: &mut Graph, ts: &[Tensor]) {
    for &t in ts {
        g.set_persistent(t, true).unwrap();
    }
}

/// W1: the seed network, full batch 500, cross-entropy, SGD lr 0.01.
fn make_w1(g: &mut Graph) -> (Model, Tensor, Tensor) {
    g.manual_seed(212);
    let x = g.rand(&[500, 20], 0.0, 100.0, DType::F32).unwrap();
    let y = g.randint(0, 3, &[500]).unwrap();
    let mut net = Sequential::new();
    net.push(Layer::linear(g, 20, 13, false).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(g, 13, 8, false).unwrap()).push(Layer::Sigmoid);
    net.push(Layer::linear(g, 8, 3, true).unwrap());
    keep(g, &[x, y]);
    (Model::sgd(g, net, 0.01, 0.0), x, y)
}

/// W2: an MNIST-sized MLP, batch 128, cross-entropy, SGD lr 0.01 momentum 0.9.
fn make_w2(g: &mut Graph) -> (Model, Tensor, Tensor) {
    g.manual_seed(0);
    let x = g.randn(&[128, 784], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, 10, &[128]).unwrap();
    let mut net = Sequential::new();
    net.push(Layer::linear(g, 784, 512, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(g, 512, 512, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(g, 512, 10, true).unwrap());
    keep(g, &[x, y]);
    (Model::sgd(g, net, 0.01, 0.9), x, y)
}

/// W3: wide layers, batch 256, MSE, SGD lr 0.01.
fn make_w3(g: &mut Graph) -> (Model, Tensor, Tensor) {
    g.manual_seed(0);
    let x = g.randn(&[256, 1024], 0.0, 1.0, DType::F32).unwrap();
    let t = g.randn(&[256, 1024], 0.0, 1.0, DType::F32).unwrap();
    let mut net = Sequential::new();
    net.push(Layer::linear(g, 1024, 4096, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(g, 4096, 1024, true).unwrap());
    keep(g, &[x, t]);
    (Model::sgd(g, net, 0.01, 0.0), x, t)
}

/// A workload-D step: batch 32 of 64 features, 64→128 ReLU→10, cross-entropy, Adam lr 1e-3.
fn make_d(g: &mut Graph) -> (Model, Tensor, Tensor) {
    g.manual_seed(0);
    let x = g.randn(&[32, 64], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, 10, &[32]).unwrap();
    let mut net = Sequential::new();
    net.push(Layer::linear(g, 64, 128, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(g, 128, 10, true).unwrap());
    keep(g, &[x, y]);
    (Model::adam(g, net, 1e-3), x, y)
}

/// W4: 100 ops cycling x·1.0001, x + 0.001, tanh x on a 16-element leaf.
fn w4_chain(g: &mut Graph, mut x: Tensor) -> Tensor {
    for i in 0..100 {
        x = match i % 3 {
            0 => g.mul_scalar(x, 1.0001),
            1 => g.add_scalar(x, 0.001),
            _ => g.tanh(x),
        }
        .unwrap();
    }
    g.sum(x, &[], false).unwrap()
}

struct Report {
    threads: usize,
    json: String,
    only: Option<Vec<String>>,
}

impl Report {
    fn wants(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|p| name.starts_with(p.as_str())))
    }
    fn add(&mut self, name: &str, r: &Stats, flops: Option<f64>, extra: &[(&str, f64)]) {
        let gf = flops.map(|f| f / (r.median_us * 1e-6) / 1e9);
        println!(
            "[t={}] {:40} median {:12.2} us  p10 {:10.2}  p90 {:10.2}{}  foreign {:.3} try {}",
            self.threads, name, r.median_us, r.p10_us, r.p90_us,
            gf.map(|g| format!("  {g:.2} GFLOP/s")).unwrap_or_default(), r.foreign_cpu_frac, r.attempt
        );
        let _ = write!(
            self.json,
            ",\n \"{name}\": {{\"median_us\": {}, \"p10_us\": {}, \"p90_us\": {}, \"min_us\": {}, \"samples\": {}, \"inner\": {}, \"foreign_cpu_frac\": {:.4}, \"self_cpu_per_wall\": {:.3}, \"attempt\": {}, \"waited_for_quiet_s\": {:.1}",
            r.median_us, r.p10_us, r.p90_us, r.min_us, r.samples, r.inner, r.foreign_cpu_frac, r.self_cpu_per_wall, r.attempt, r.waited_for_quiet_s
        );
        if let (Some(f), Some(g)) = (flops, gf) {
            let _ = write!(self.json, ", \"gflops\": {g}, \"flops_per_call\": {f}");
        }
        for (k, v) in extra {
            let _ = write!(self.json, ", \"{k}\": {v}");
        }
        self.json.push('}');
    }
}

/// The process's peak resident memory (VmHWM), in KiB; -1 where /proc is missing.
fn peak_rss_kib() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(-1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let threads: usize = arg("--threads").and_then(|v| v.parse().ok()).unwrap_or(1);
    let budget: f64 = arg("--budget").and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let out = arg("--out").unwrap_or_else(|| format!("ours_t{threads}.json"));
    let only = arg("--only").map(|s| s.split(',').map(str::to_string).collect());
    bp::set_num_threads(threads);
    if let Some(w) = arg("--profile") {
        // `--profile W1|W2|W3|D [--graph]` runs 200 steps untimed, for a profiler (callgrind counts instructions,
        // which a noisy machine does not disturb).
        let mut g = Graph::new();
        if w == "W4" {
            let x0 = g.randn(&[16], 0.0, 1.0, DType::F32).unwrap();
            g.set_requires_grad(x0, true).unwrap();
            g.set_persistent(x0, true).unwrap();
            for _ in 0..2000 {
                g.zero_grad(x0).unwrap();
                let s = w4_chain(&mut g, x0);
                g.backward(s, None, false).unwrap();
                g.reset();
            }
            return;
        }
        let (mut model, x, y) = match w.as_str() { "W1" => make_w1(&mut g), "W2" => make_w2(&mut g), "W3" => make_w3(&mut g), _ => make_d(&mut g) };
        let loss: fn(&mut Graph, Tensor, Tensor) -> Tensor = if w == "W3" { mse } else { cross_entropy };
        let steps = arg("--steps").and_then(|v| v.parse().ok()).unwrap_or(200);
        // `--graph` profiles the step built from graph ops; by default, the compiled train_step.
        let graph = args.iter().any(|a| a == "--graph");
        let compiled = if w == "W3" { Loss::Mse(bp::Reduction::Mean) } else { CE };
        for _ in 0..steps {
            if graph {
                model.step(&mut g, x, y, loss);
            } else {
                model.train_step(&mut g, x, y, compiled);
            }
        }
        return;
    }
    if let Some(steps) = arg("--train-w2").and_then(|v| v.parse::<usize>().ok()) {
        // Peak memory of a process that trains W2 (compared with PyTorch's by compare.py).
        let mut g = Graph::new();
        let (mut model, x, y) = make_w2(&mut g);
        let mut loss = 0.0;
        for _ in 0..steps {
            loss = model.step(&mut g, x, y, cross_entropy);
        }
        println!("{{\"steps\": {steps}, \"loss\": {loss}, \"peak_rss_kib\": {}}}", peak_rss_kib());
        return;
    }
    let mut rep = Report {
        threads,
        json: format!("{{\n \"threads\": {}, \"backprop\": \"{}\", \"gemm_kernel\": \"{}\"", bp::num_threads(), env!("CARGO_PKG_VERSION"), bp::kernels::gemm::kernel_name()),
        only,
    };
    let b = budget;

    if rep.wants("W1") {
        let mut g = Graph::new();
        let (mut model, x, y) = make_w1(&mut g);
        let fl = Some(linear_matmul_flops(500, &[20, 13, 8, 3]));
        let r = bench(|| { model.train_step(&mut g, x, y, CE); }, b, 30);
        rep.add("W1_seed_step", &r, fl, &[]);
        let r = bench(|| { model.step(&mut g, x, y, cross_entropy); }, b, 30);
        rep.add("W1_seed_step_graph", &r, fl, &[]);
    }
    if rep.wants("W2") {
        let mut g = Graph::new();
        let (mut model, x, y) = make_w2(&mut g);
        let fl = Some(linear_matmul_flops(128, &[784, 512, 512, 10]));
        let r = bench(|| { model.train_step(&mut g, x, y, CE); }, b, 30);
        rep.add("W2_mlp_step", &r, fl, &[]);
        let r = bench(|| { model.step(&mut g, x, y, cross_entropy); }, b, 30);
        rep.add("W2_mlp_step_graph", &r, fl, &[]);
    }
    if rep.wants("W3") {
        let mut g = Graph::new();
        let (mut model, x, t) = make_w3(&mut g);
        let fl = Some(linear_matmul_flops(256, &[1024, 4096, 1024]));
        let r = bench(|| { model.train_step(&mut g, x, t, Loss::Mse(bp::Reduction::Mean)); }, b, 20);
        rep.add("W3_wide_step", &r, fl, &[]);
        let r = bench(|| { model.step(&mut g, x, t, mse); }, b, 20);
        rep.add("W3_wide_step_graph", &r, fl, &[]);
    }
    if rep.wants("W4") {
        let mut g = Graph::new();
        g.manual_seed(0);
        let x0 = g.randn(&[16], 0.0, 1.0, DType::F32).unwrap();
        g.set_requires_grad(x0, true).unwrap();
        g.set_persistent(x0, true).unwrap();
        let r = bench(
            || {
                g.zero_grad(x0).unwrap();
                let s = w4_chain(&mut g, x0);
                g.backward(s, None, false).unwrap();
                g.reset();
            },
            b,
            30,
        );
        rep.add("W4_overhead_chain_fwd_bwd", &r, None, &[("per_op_us", r.median_us / 100.0)]);
        let r = bench(
            || {
                w4_chain(&mut g, x0);
                g.reset();
            },
            b,
            30,
        );
        rep.add("W4_overhead_chain_fwd_only", &r, None, &[("per_op_us", r.median_us / 100.0)]);
        let r = bench(
            || {
                g.no_grad(|g| w4_chain(g, x0));
                g.reset();
            },
            b,
            30,
        );
        rep.add("W4_overhead_chain_no_grad", &r, None, &[("per_op_us", r.median_us / 100.0)]);
    }
    if rep.wants("W5") {
        // Square shapes and the MLP shapes (m, k, n), then the backward shapes with a transposed operand.
        let mut shapes: Vec<(usize, usize, usize)> = [64, 128, 256, 512, 1024, 2048].iter().map(|&n| (n, n, n)).collect();
        shapes.extend([(128, 784, 512), (256, 1024, 4096)]);
        let mut g = Graph::new();
        g.manual_seed(0);
        for &(m, k, n) in &shapes {
            let a = g.randn(&[m, k], 0.0, 1.0, DType::F32).unwrap();
            let bm = g.randn(&[k, n], 0.0, 1.0, DType::F32).unwrap();
            let fl = 2.0 * (m * k * n) as f64;
            let bud = if m * k * n <= 1 << 30 { b } else { b.max(4.0) };
            let r = bench(|| { let c = g.matmul(a, bm).unwrap(); g.free(c).unwrap(); }, bud, 10);
            rep.add(&format!("W5_mm_{m}x{k}x{n}"), &r, Some(fl), &[]);
            let (av, bv) = (g.to_vec_f32(a).unwrap(), g.to_vec_f32(bm).unwrap());
            let mut c = vec![0.0f32; m * n];
            let r = bench(|| bp::kernels::gemm::sgemm(m, k, n, 1.0, &av, k as isize, 1, &bv, n as isize, 1, 0.0, &mut c, n as isize, 1), bud, 10);
            rep.add(&format!("W5_mm_out_{m}x{k}x{n}"), &r, Some(fl), &[]);
            g.reset();
        }
        // Aᵀ·B with A 128×784, B 128×512 (a weight gradient) and A·Bᵀ with A 128×512, B 784×512 (linear's
        // forward against a stored weight).
        for (name, m, k, n, ta, tb) in [("tn", 784, 128, 512, true, false), ("nt", 128, 512, 784, false, true)] {
            let a = if ta { g.randn(&[k, m], 0.0, 1.0, DType::F32) } else { g.randn(&[m, k], 0.0, 1.0, DType::F32) }.unwrap();
            let bm = if tb { g.randn(&[n, k], 0.0, 1.0, DType::F32) } else { g.randn(&[k, n], 0.0, 1.0, DType::F32) }.unwrap();
            let fl = 2.0 * (m * k * n) as f64;
            let r = bench(|| { let c = g.matmul_t(a, bm, ta, tb).unwrap(); g.free(c).unwrap(); }, b, 10);
            rep.add(&format!("W5_mm_{name}_{m}x{k}x{n}"), &r, Some(fl), &[]);
            g.reset();
        }
    }
    if rep.wants("W6") {
        let mut g = Graph::new();
        let x = g.full(&[], 1.0, DType::F32).unwrap();
        g.set_requires_grad(x, true).unwrap();
        g.set_persistent(x, true).unwrap();
        let first = |g: &mut Graph| {
            let y = g.pow(x, 3.0).unwrap();
            let d = g.grad_of(&[y], &[x], &[], false, false).unwrap()[0];
            let v = g.item(d).unwrap();
            g.reset();
            v
        };
        let second = |g: &mut Graph| {
            let y = g.pow(x, 3.0).unwrap();
            let d = g.grad_of(&[y], &[x], &[], false, true).unwrap()[0];
            let d2 = g.grad_of(&[d], &[x], &[], false, false).unwrap()[0];
            let v = (g.item(d).unwrap(), g.item(d2).unwrap());
            g.reset();
            v
        };
        assert_eq!(first(&mut g), 3.0);
        assert_eq!(second(&mut g), (3.0, 6.0));
        let r = bench(|| { first(&mut g); }, b, 30);
        rep.add("W6_autograd_grad_first", &r, None, &[("value", 3.0)]);
        let r = bench(|| { second(&mut g); }, b, 30);
        rep.add("W6_autograd_grad_create_graph_second", &r, None, &[("value_first", 3.0), ("value_second", 6.0)]);
    }
    if rep.wants("D") {
        let mut g = Graph::new();
        let (mut model, x, y) = make_d(&mut g);
        let fl = Some(linear_matmul_flops(32, &[64, 128, 10]));
        let r = bench(|| { model.train_step(&mut g, x, y, CE); }, b, 30);
        rep.add("D_digits_step", &r, fl, &[]);
        let r = bench(|| { model.step(&mut g, x, y, cross_entropy); }, b, 30);
        rep.add("D_digits_step_graph", &r, fl, &[]);
    }
    if rep.wants("bitid") {
        // The loss after 100 W2 steps, to compare across thread counts (must be bit-identical).
        let mut g = Graph::new();
        let (mut model, x, y) = make_w2(&mut g);
        let mut loss = 0.0;
        for _ in 0..100 {
            loss = model.step(&mut g, x, y, cross_entropy);
        }
        println!("[t={threads}] W2 loss after 100 steps: {loss:.9} (bits {:#010x})", (loss as f32).to_bits());
        let _ = write!(rep.json, ",\n \"W2_loss_after_100_steps\": {{\"value\": {loss}, \"f32_bits\": {}}}", (loss as f32).to_bits());
    }
    rep.json.push_str("\n}\n");
    std::fs::write(&out, &rep.json).expect("write the JSON results");
    println!("wrote {out}");
}
