//! Optimizer parity with PyTorch: 10 steps of each optimizer (and of schedules and clipping) on a small
//! tanh MLP with cross-entropy, against trajectories PyTorch computed (tests/data/toolkit/
//! gen_toolkit_ref.py wrote optim_ref.safetensors). Each case runs twice:
//! - end to end: our forward, backward, clipping and update; the gradients come from our kernels, so
//!   they differ from PyTorch's in the last bits and the difference carries on;
//! - replay: PyTorch's own gradients of each step are fed to our optimizer, which isolates the update
//!   rule (what remains is rounding: PyTorch's vectorised kernels fuse some multiply-adds).
//!
//! The criterion, after every step and for every parameter tensor: max |ours − torch| ≤ 1e-6 · max |torch|,
//! relative error measured against the tensor's scale (an element that an update brings near zero
//! loses its relative precision to cancellation in PyTorch and here alike).

use bp::io::SafeTensors;
use bp::nn::{Layer, Sequential};
use bp::optim::{self, Adam, AdamConfig, LrSchedule, Optimizer, RmsProp, RmsPropConfig, Schedule, Sgd, SgdConfig};
use bp::Graph;
use std::path::Path;

const STEPS: usize = 10;

fn reference() -> SafeTensors {
    SafeTensors::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit/optim_ref.safetensors")).unwrap()
}

fn model(g: &mut Graph, r: &SafeTensors) -> Sequential {
    let mut m = Sequential::new();
    m.push(Layer::linear(g, 5, 4, true).unwrap()).push(Layer::Tanh).push(Layer::linear(g, 4, 3, true).unwrap());
    for (name, t) in m.named_parameters() {
        g.write::<f32>(t, &r.get(&format!("init.{}", name)).unwrap().to_f32().unwrap()).unwrap();
    }
    m
}

enum Clip {
    None,
    Norm(f64),
    Value(f64),
}

/// Runs one case both ways.
fn run(case: &str, make: impl Fn(&Graph, &Sequential) -> Box<dyn Optimizer>, schedule: Option<Schedule>, clip: Clip) {
    run_mode(case, &make, schedule, &clip, false);
    run_mode(case, &make, schedule, &clip, true);
}

/// Runs one case and compares its trajectory, learning rates, losses and clipping norms.
fn run_mode(case: &str, make: &dyn Fn(&Graph, &Sequential) -> Box<dyn Optimizer>, schedule: Option<Schedule>, clip: &Clip, replay: bool) {
    let r = reference();
    let mut g = Graph::new();
    let m = model(&mut g, &r);
    let xr = r.get("X").unwrap();
    let (xv, yv) = (xr.to_f32().unwrap(), r.get("Y").unwrap().to_i64().unwrap());
    let mut opt = make(&g, &m);
    let mut sched = schedule.map(|s| LrSchedule::new(s, opt.as_mut()).unwrap());
    let want = r.get(&format!("{}.params", case)).unwrap().to_f32().unwrap();
    let want_lr = r.get(&format!("{}.lr", case)).unwrap().to_f64().unwrap();
    let want_loss = r.get(&format!("{}.loss", case)).unwrap().to_f32().unwrap();
    let want_norm = r.get(&format!("{}.norm", case)).map(|t| t.to_f32().unwrap());
    let torch_grads = r.get(&format!("{}.grads", case)).unwrap().to_f32().unwrap();
    let n = want.len() / STEPS;
    let mut worst = 0.0f64;
    for step in 0..STEPS {
        let x = g.from_slice(&xv, &xr.shape).unwrap();
        let y = g.from_i64(&yv, &[yv.len()]).unwrap();
        opt.zero_grad(&mut g).unwrap();
        let out = m.forward(&mut g, x).unwrap();
        let loss = g.cross_entropy(out, y).unwrap();
        let lv = g.item(loss).unwrap();
        assert!(replay || (lv - want_loss[step] as f64).abs() <= 1e-6 * (want_loss[step] as f64).abs() + 1e-7, "{} step {}: loss {} vs {}", case, step, lv, want_loss[step]);
        if replay {
            // d/dp Σ p·G = G exactly: PyTorch's gradient lands in .grad bit for bit.
            let mut at = step * (torch_grads.len() / STEPS);
            let mut total = None;
            for p in m.parameters() {
                let dims = g.dims(p).unwrap();
                let k: usize = dims.iter().product();
                let gt = g.from_slice(&torch_grads[at..at + k], &dims).unwrap();
                at += k;
                let prod = g.mul(p, gt).unwrap();
                let s = g.sum(prod, &[], false).unwrap();
                total = Some(match total { None => s, Some(t) => g.add(t, s).unwrap() });
            }
            g.backward(total.unwrap(), None, false).unwrap();
        } else {
            g.backward(loss, None, false).unwrap();
        }
        match if replay { &Clip::None } else { clip } {
            Clip::None => {}
            Clip::Norm(v) => {
                let norm = optim::clip_grad_norm(&mut g, &m.parameters(), *v, 2.0).unwrap();
                let w = want_norm.as_ref().unwrap()[step] as f64;
                assert!((norm - w).abs() <= 1e-6 * w, "{} step {}: norm {} vs {}", case, step, norm, w);
            }
            Clip::Value(v) => optim::clip_grad_value(&mut g, &m.parameters(), *v).unwrap(),
        }
        assert_eq!(opt.lr(), want_lr[step], "{} step {}: learning rate", case, step);
        opt.step(&mut g).unwrap();
        if let Some(s) = sched.as_mut() {
            s.step(opt.as_mut());
        }
        g.reset();
        let got: Vec<f32> = m.parameters().iter().flat_map(|&t| g.data::<f32>(t).unwrap().to_vec()).collect();
        assert_eq!(got.len(), n);
        let want_step = &want[step * n..(step + 1) * n];
        let mut at = 0;
        for p in m.parameters() {
            let k = g.numel(p).unwrap();
            let scale = want_step[at..at + k].iter().fold(0.0f64, |s, &v| s.max((v as f64).abs()));
            for i in at..at + k {
                let (a, b) = (got[i] as f64, want_step[i] as f64);
                let tol = 1e-6 * scale;
                assert!((a - b).abs() <= tol, "{} ({}) step {} element {}: {} vs PyTorch {}", case, if replay { "replay" } else { "end to end" }, step + 1, i, a, b);
            }
            at += k;
        }
        for (&a, &b) in got.iter().zip(want_step) {
            let err = (a as f64 - b as f64).abs();
            worst = worst.max(err);
        }
    }
    eprintln!("{} ({}): worst |ours - torch| over {} steps: {:e}", case, if replay { "replay" } else { "end to end" }, STEPS, worst);
}

fn sgd(c: SgdConfig) -> impl Fn(&Graph, &Sequential) -> Box<dyn Optimizer> {
    move |g, m| Box::new(Sgd::new(g, m.named_parameters(), c).unwrap())
}
fn adam(c: AdamConfig) -> impl Fn(&Graph, &Sequential) -> Box<dyn Optimizer> {
    move |g, m| Box::new(Adam::new(g, m.named_parameters(), c).unwrap())
}
fn rmsprop(c: RmsPropConfig) -> impl Fn(&Graph, &Sequential) -> Box<dyn Optimizer> {
    move |g, m| Box::new(RmsProp::new(g, m.named_parameters(), c).unwrap())
}

#[test]
fn sgd_matches_pytorch() {
    run("sgd", sgd(SgdConfig { lr: 0.1, ..Default::default() }), None, Clip::None);
}

#[test]
fn sgd_with_momentum_dampening_and_weight_decay_matches_pytorch() {
    run("sgd_momentum", sgd(SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 0.01, nesterov: false }), None, Clip::None);
}

#[test]
fn sgd_nesterov_matches_pytorch() {
    run("sgd_nesterov", sgd(SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.0, weight_decay: 0.01, nesterov: true }), None, Clip::None);
}

#[test]
fn adam_matches_pytorch() {
    run("adam", adam(AdamConfig::adam(0.01)), None, Clip::None);
}

#[test]
fn adam_with_l2_and_amsgrad_matches_pytorch() {
    run("adam_l2_amsgrad", adam(AdamConfig { weight_decay: 0.1, amsgrad: true, ..AdamConfig::adam(0.01) }), None, Clip::None);
}

#[test]
fn adamw_matches_pytorch() {
    run("adamw", adam(AdamConfig { weight_decay: 0.1, ..AdamConfig::adamw(0.01) }), None, Clip::None);
}

#[test]
fn adamw_with_amsgrad_and_custom_betas_matches_pytorch() {
    let c = AdamConfig { beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.05, amsgrad: true, ..AdamConfig::adamw(0.01) };
    run("adamw_amsgrad", adam(c), None, Clip::None);
}

#[test]
fn rmsprop_matches_pytorch() {
    run("rmsprop", rmsprop(RmsPropConfig { lr: 0.01, ..Default::default() }), None, Clip::None);
}

#[test]
fn rmsprop_centered_with_momentum_matches_pytorch() {
    let c = RmsPropConfig { lr: 0.01, alpha: 0.9, eps: 1e-8, weight_decay: 0.01, momentum: 0.9, centered: true };
    run("rmsprop_centered_momentum", rmsprop(c), None, Clip::None);
}

#[test]
fn step_schedule_matches_pytorch() {
    run("sgd_steplr", sgd(SgdConfig { lr: 0.1, momentum: 0.5, ..Default::default() }), Some(Schedule::Step { step_size: 3, gamma: 0.5 }), Clip::None);
}

#[test]
fn cosine_schedule_matches_pytorch() {
    run("adam_cosine", adam(AdamConfig::adam(0.01)), Some(Schedule::Cosine { t_max: 4, eta_min: 0.001 }), Clip::None);
}

#[test]
fn exponential_schedule_matches_pytorch() {
    run("rmsprop_exponential", rmsprop(RmsPropConfig { lr: 0.01, ..Default::default() }), Some(Schedule::Exponential { gamma: 0.8 }), Clip::None);
}

#[test]
fn linear_warmup_matches_pytorch() {
    let s = Schedule::Linear { start_factor: 0.25, end_factor: 1.0, total_iters: 4 };
    run("adamw_warmup", adam(AdamConfig::adamw(0.01)), Some(s), Clip::None);
}

#[test]
fn clip_grad_norm_matches_pytorch() {
    run("sgd_clip_norm", sgd(SgdConfig { lr: 0.5, ..Default::default() }), None, Clip::Norm(0.3));
}

#[test]
fn clip_grad_value_matches_pytorch() {
    run("adam_clip_value", adam(AdamConfig::adam(0.01)), None, Clip::Value(0.05));
}
