//! A whole training step of a [`Sequential`], compiled: zero-grad, forward, loss, backward and the
//! optimizer's update, with the same kernels as the graph's ops and no graph recorded.
//!
//! A step built from graph ops records a node per layer, allocates every activation and gradient
//! from the pool, and sweeps the nodes back; for a small network that bookkeeping is a sixth of
//! the step (the seed network over a batch of 500) and most of it at a batch of one. A
//! Sequential's structure is known before the step starts, so [`Sequential::train_step`] runs the
//! layers' kernels directly, in order, on buffers it keeps from one step to the next. Each kernel
//! is called with the operands, strides and alpha/beta the graph's op would pass it, in the same
//! order, so the loss, the gradients and the updated parameters are bit-identical to those of the
//! step built from ops (`tests/train_step.rs` checks this for every layer and loss option it
//! takes).

use super::{Layer, Sequential};
use crate::dtype::{Block, Buf, DType};
use crate::error::{bail, err, Result};
use crate::graph::{Graph, Tensor};
use crate::kernels::gemm::sgemm_act_grad;
use crate::kernels::math::Activation;
use crate::kernels::simd::vectorised;
use crate::ops::elementwise::{activation_grad, input_activation_grad, unary_into};
use crate::ops::loss::{checked_targets, cross_entropy_backward_rows, cross_entropy_rows_fast, cross_entropy_rows_general, mse_total, CrossEntropyOptions};
use crate::ops::reduce::sum_into;
use crate::ops::{Reduction, Unary};
use crate::optim::Optimizer;
use crate::shape::Shape;
use crate::Float;

/// The loss a compiled training step ([`Sequential::train_step`]) minimises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// `cross_entropy` of the model's output `[N, C]` against int64 classes `[N]`, with PyTorch's
    /// options (reduction mean or sum: a step needs a scalar loss).
    CrossEntropy(CrossEntropyOptions),
    /// `mse_loss` of the model's output against float32 targets of its shape, reduced by the mean
    /// or the sum.
    Mse(Reduction),
}

impl Loss {
    fn reduction(&self) -> Reduction {
        match self {
            Loss::CrossEntropy(ce) => ce.reduction,
            Loss::Mse(r) => *r,
        }
    }
}

/// A loss whose targets were checked against the model's output: for cross-entropy, how many
/// targets count.
#[derive(Clone, Copy)]
enum Checked {
    CrossEntropy(CrossEntropyOptions, usize),
    Mse(Reduction),
}

/// One stage of the compiled forward: a Linear layer, with the relu, sigmoid or tanh layer after
/// it fused in (as [`Graph::linear_act`]), or an activation alone; `nin` features in,
/// `nout` out, and whether a gradient must reach the stage (a stage up to it trains a parameter).
#[derive(Clone, Copy, Debug)]
struct Stage {
    op: StageOp,
    nin: usize,
    nout: usize,
    upstream: bool,
}

#[derive(Clone, Copy, Debug)]
enum StageOp {
    Linear { w: Tensor, b: Option<Tensor>, act: Option<Activation> },
    /// An activation alone: relu, sigmoid, tanh, leaky relu or GELU.
    Map(Unary),
}

impl Stage {
    /// The activation that makes the stage's output, if it is one whose derivative is taken from
    /// that output (relu, sigmoid, tanh).
    fn activation(&self) -> Option<Activation> {
        match self.op {
            StageOp::Linear { act, .. } => act,
            StageOp::Map(u) => u.activation(),
        }
    }
}

/// What a Sequential keeps between compiled steps: the plan of its last step and its buffers,
/// grown to the largest batch seen and never shrunk (so a steady loop allocates nothing).
#[derive(Default)]
pub(crate) struct StepState {
    stages: Vec<Stage>,
    /// The output of each stage, n × its width.
    outs: Vec<Block<f32>>,
    /// The gradient flowing back, in two buffers used in turn.
    grads: [Block<f32>; 2],
    /// The loss of each row, each row's gradient from the forward, and scratch (the general
    /// cross-entropy's softmax, a bias gradient to add into a flat `.grad`).
    rows: Block<f32>,
    unit: Block<f32>,
    scratch: Block<f32>,
}

/// A copy of a Sequential starts without buffers (they are a cache).
impl Clone for StepState {
    fn clone(&self) -> StepState {
        StepState::default()
    }
}

impl std::fmt::Debug for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StepState {{ stages: {} }}", self.stages.len())
    }
}

/// The first `len` floats of `b`, which is grown (its contents dropped) if shorter.
fn at_least(b: &mut Block<f32>, len: usize) -> Result<&mut [f32]> {
    if b.len() < len {
        *b = Block::try_filled(len, 0.0).map_err(|_| err!(OutOfMemory, "train_step: cannot allocate {} floats", len))?;
    }
    Ok(&mut b[..len])
}

impl Sequential {
    /// One training step: PyTorch's `opt.zero_grad(); loss_fn(model(x), target).backward();
    /// opt.step()` in one call, returning the loss.
    ///
    /// The loss, the parameters' `.grad` and the updated parameters are bit-identical to those of
    /// the same step built from graph ops ([`Sequential::forward`], the loss op, [`Graph::backward`],
    /// [`Optimizer::step`]), but nothing is recorded in the graph, no tensor is made, and the
    /// activations and gradients live in buffers the model keeps from one step to the next (outside
    /// the graph's memory limit, as an optimizer's state). It is made for small networks trained
    /// online or in tight loops, where recording the graph costs as much as the arithmetic.
    ///
    /// Takes float32 models made of Linear, Relu, LeakyRelu, Sigmoid, Tanh, Gelu and Flatten
    /// layers (and Dropout in eval mode, where it does nothing), each parameter used once, an input `x` of shape
    /// `[N, in_features]` that does not require grad, and a [`Loss`] reduced by its mean or sum
    /// (cross-entropy against int64 classes `[N]`, or MSE against float32 targets of the output's
    /// shape). Anything else is an `Unsupported` (or shape, dtype, argument) error, with the
    /// graph and the parameters untouched: build that step from graph ops.
    ///
    /// Unlike a step from ops, it writes each parameter's gradient into the `.grad` tensor the
    /// parameter already has (making one the first time), rather than into a new tensor after
    /// `zero_grad` dropped the old one; and with anomaly detection on it checks the loss (before any
    /// gradient is written), not every intermediate value.
    pub fn train_step(&mut self, g: &mut Graph, opt: &mut dyn Optimizer, x: Tensor, target: Tensor, loss: Loss) -> Result<f64> {
        if !g.is_grad_enabled() {
            bail!(Autograd, "train_step: gradients are disabled (inside no_grad); the loss would not require grad");
        }
        if loss.reduction() == Reduction::None {
            bail!(InvalidArgument, "train_step: the loss must be a scalar (reduction mean or sum, not none)");
        }
        if let Loss::CrossEntropy(ce) = loss {
            if !(0.0..=1.0).contains(&ce.label_smoothing) {
                bail!(InvalidArgument, "cross_entropy: label_smoothing must lie in [0, 1], got {}", ce.label_smoothing);
            }
        }
        let sx = g.shape(x)?;
        if g.dtype(x)? != DType::F32 {
            bail!(DType, "train_step: the input must be float32, not {}", g.dtype(x)?.name());
        }
        if sx.rank() != 2 {
            bail!(ShapeMismatch, "train_step: the input must be [N, in_features], got {:?}", sx);
        }
        if g.requires_grad(x)? {
            bail!(Unsupported, "train_step: the input requires grad; a step built from graph ops computes its .grad");
        }
        let (n, width) = (sx.dim(0), sx.dim(1));
        let classes = self.plan(g, width)?;
        // The step writes the parameters' gradients while it reads x and the target: neither may
        // be one of them, nor a view into the same flat gradient buffer.
        for s in &self.step.stages {
            let StageOp::Linear { w, b, .. } = s.op else { continue };
            for p in std::iter::once(w).chain(b) {
                let Some(gp) = g.entry(p)?.grad.filter(|&gp| g.entry(gp).is_ok()) else { continue };
                for t in [x, target] {
                    let region = g.region_of(t)?;
                    if t == gp || region.is_some() && region == g.region_of(gp)? {
                        bail!(InvalidArgument, "train_step: the input or the target is (or shares storage with) a parameter's .grad, which the step writes");
                    }
                }
            }
        }
        let (st, dt) = (g.shape(target)?, g.dtype(target)?);
        let loss = match loss {
            Loss::CrossEntropy(ce) => {
                if st.dims() != [n] || dt != DType::I64 {
                    bail!(ShapeMismatch, "train_step: cross_entropy needs int64 targets of shape [{}], got {} {:?}", n, dt.name(), st);
                }
                Checked::CrossEntropy(ce, checked_targets(g.data_i64(target)?, classes, ce.ignore_index)?)
            }
            Loss::Mse(r) => {
                if st.dims() != [n, classes] || dt != DType::F32 {
                    bail!(ShapeMismatch, "train_step: mse_loss needs float32 targets of the output's shape [{}, {}], got {} {:?}", n, classes, dt.name(), st);
                }
                Checked::Mse(r)
            }
        };
        let value = self.run_step(g, x, target, n, classes, loss)?;
        opt.step(g)?;
        Ok(value)
    }

    /// Checks the layers against an input of `width` features and fills the step's stages;
    /// returns the width of the output.
    fn plan(&mut self, g: &Graph, mut width: usize) -> Result<usize> {
        let stages = &mut self.step.stages;
        stages.clear();
        let mut upstream = false;
        let mut layers = self.layers.iter().map(|(_, layer)| layer).peekable();
        while let Some(layer) = layers.next() {
            let op = match layer {
                Layer::Linear { weight, bias } => {
                    let sw = g.shape(*weight)?;
                    if sw.rank() != 2 || sw.dim(1) != width {
                        bail!(ShapeMismatch, "linear: input [N, {}] does not fit weight {:?}", width, sw);
                    }
                    for p in std::iter::once(*weight).chain(*bias) {
                        if g.dtype(p)? != DType::F32 {
                            bail!(DType, "train_step: parameters must be float32, not {}", g.dtype(p)?.name());
                        }
                        // Each parameter once: a shared one's gradients would be summed, in an
                        // order of additions the graph's sweep fixes.
                        let seen = |s: &Stage| matches!(s.op, StageOp::Linear { w, b, .. } if w == p || b == Some(p));
                        if stages.iter().any(seen) {
                            bail!(Unsupported, "train_step: a parameter is used by two layers; build this step from graph ops");
                        }
                        upstream |= g.requires_grad(p)?;
                    }
                    if let Some(b) = bias {
                        if g.shape(*b)?.dims() != [sw.dim(0)] {
                            bail!(ShapeMismatch, "linear: bias shape {:?} should be [{}]", g.shape(*b)?, sw.dim(0));
                        }
                    }
                    let act = layers.peek().and_then(|next| next.activation());
                    if act.is_some() {
                        layers.next();
                    }
                    StageOp::Linear { w: *weight, b: *bias, act }
                }
                Layer::Relu | Layer::LeakyRelu(_) | Layer::Sigmoid | Layer::Tanh | Layer::Gelu => {
                    StageOp::Map(layer.unary().expect("an activation layer"))
                }
                // [N, width] is already flat; Dropout in eval mode is the identity.
                Layer::Flatten => continue,
                Layer::Dropout(_) if !self.training => continue,
                other => bail!(Unsupported, "train_step takes Linear, activation (Relu, LeakyRelu, Sigmoid, Tanh, Gelu) and Flatten layers (and Dropout in eval mode), not {:?}; build this step from graph ops", other),
            };
            let nout = match op {
                StageOp::Linear { w, .. } => g.shape(w)?.dim(0),
                StageOp::Map(_) => width,
            };
            stages.push(Stage { op, nin: width, nout, upstream });
            width = nout;
        }
        if !upstream {
            bail!(Unsupported, "train_step: the model has no parameter that requires grad");
        }
        Ok(width)
    }

    /// The forward, the loss and the backward of a planned step, each parameter's gradient left in
    /// its `.grad`; returns the loss.
    fn run_step(&mut self, g: &mut Graph, x: Tensor, target: Tensor, n: usize, classes: usize, loss: Checked) -> Result<f64> {
        let StepState { stages, outs, grads, rows, unit, scratch } = &mut self.step;
        if outs.len() < stages.len() {
            outs.resize_with(stages.len(), Block::new);
        }
        // Forward: each stage from the one before (the first from x).
        for (i, s) in stages.iter().enumerate() {
            let (done, rest) = outs.split_at_mut(i);
            let a = input(g, x, done, i, n * s.nin)?;
            let out = at_least(&mut rest[0], n * s.nout)?;
            match s.op {
                StageOp::Linear { w, b, act } => {
                    let bias = b.map(|b| g.data::<f32>(b)).transpose()?;
                    f32::gemm_layer(n, s.nin, s.nout, a, s.nin as isize, 1, g.data::<f32>(w)?, 1, s.nin as isize, bias, act, out);
                }
                StageOp::Map(u) => unary_into(a, out, u),
            }
        }

        // The loss, and its gradient with respect to the output (from the backward's seed of 1),
        // as the loss op and its backward compute them.
        let widest = stages.iter().map(|s| s.nout).max().unwrap_or(0);
        let [ga, gb] = grads;
        let (mut cur, mut next) = (at_least(ga, n * widest)?, at_least(gb, n * widest)?);
        let z = &outs[stages.len() - 1][..n * classes];
        let value = match loss {
            Checked::CrossEntropy(ce, count) => {
                let (rows, unit) = (at_least(rows, n)?, at_least(unit, n * classes)?);
                let tv = g.data_i64(target)?;
                let eps = ce.label_smoothing;
                let total = match cross_entropy_rows_fast(z, classes, tv, ce.ignore_index, eps, rows, Some(unit)) {
                    Some(total) => total,
                    None => {
                        let (e, stats) = at_least(scratch, n * classes + 3 * n)?.split_at_mut(n * classes);
                        cross_entropy_rows_general(z, classes, tv, ce.ignore_index, eps, rows, Some(unit), e, stats)
                    }
                };
                cross_entropy_backward_rows(unit, classes, tv, ce.ignore_index, ce.reduction, &[1.0f32], &mut cur[..n * classes]);
                if ce.reduction == Reduction::Sum { total } else { total / count as f64 }
            }
            Checked::Mse(reduction) => {
                let y = g.data::<f32>(target)?;
                let total = mse_total(z, y);
                // mse_backward's ops: (z − y)·2, times the seed expanded and scaled by 1/n for the mean.
                let scale = if reduction == Reduction::Mean { f32::from_f64(1.0 / z.len().max(1) as f64) } else { 1.0 };
                let s = 1.0f32 * scale;
                vectorised(|| cur[..z.len()].iter_mut().zip(z.iter().zip(y)).for_each(|(o, (&p, &q))| *o = ((p - q) * 2.0) * s));
                if reduction == Reduction::Sum { total } else { total / z.len() as f64 }
            }
        };
        let value = f32::from_f64(value).to_f64();
        if g.anomaly && !value.is_finite() {
            bail!(Anomaly, "anomaly: train_step's loss is {}", value);
        }

        // Backward, down to the first stage that trains a parameter, the gradient of each stage's
        // output in `cur` and of its input written to `next`; `scaled` when the product that wrote
        // `cur` already applied the stage's activation's backward.
        let mut scaled = false;
        for (i, s) in stages.iter().enumerate().rev() {
            if !s.upstream {
                break;
            }
            let (nin, nout) = (s.nin, s.nout);
            let gout = &mut cur[..n * nout];
            let (w, b) = match s.op {
                StageOp::Map(u @ (Unary::LeakyRelu(_) | Unary::Gelu)) => {
                    // From the activation's input, the output of the stage before (a stage that
                    // needs a gradient is never the first).
                    input_activation_grad(u, gout, &outs[i - 1][..n * nin]);
                    (None, None)
                }
                StageOp::Map(_) => (None, None),
                StageOp::Linear { w, b, .. } => (Some(w), b),
            };
            // The backward of an activation taken from its output, unless the product that made
            // gout applied it.
            if let Some(act) = s.activation().filter(|_| !scaled) {
                activation_grad(act, gout, &outs[i][..n * nout], None);
            }
            scaled = false;
            let Some(w) = w else { continue }; // an activation alone: its input's gradient is gout
            let gout = &*gout;
            if g.requires_grad(w)? {
                write_grad(g, w, |g, c, beta| {
                    let a = input(g, x, outs, i, n * nin)?;
                    f32::gemm(nout, n, nin, 1.0, gout, 1, nout as isize, a, nin as isize, 1, beta, c, nin as isize, 1);
                    Ok(())
                })?;
            }
            if let Some(b) = b.filter(|&b| g.requires_grad(b).unwrap_or(false)) {
                let sum = at_least(scratch, nout)?;
                let shape = Shape::new(&[n, nout])?;
                write_grad(g, b, |_, c, beta| {
                    if beta == 0.0 {
                        sum_into(gout, &shape, 1, c);
                    } else {
                        // A flat .grad, zeroed: the graph adds the bias gradient into it.
                        sum_into(gout, &shape, 1, sum);
                        c.iter_mut().zip(sum.iter()).for_each(|(c, &s)| *c += s);
                    }
                    Ok(())
                })?;
            }
            if i > 0 && stages[i - 1].upstream {
                // The input's gradient, times the derivative of the activation before this layer
                // as the product stores it where the kernel can (the activation's output is this
                // layer's input).
                let (w, gin) = (g.data::<f32>(w)?, &mut next[..n * nin]);
                scaled = stages[i - 1].activation().is_some_and(|act| sgemm_act_grad(n, nout, nin, gout, nout as isize, 1, w, nin as isize, 1, &outs[i - 1][..n * nin], act, gin));
                if !scaled {
                    f32::gemm(n, nout, nin, 1.0, gout, nout as isize, 1, w, nin as isize, 1, 0.0, gin, nin as isize, 1);
                }
                std::mem::swap(&mut cur, &mut next);
            }
        }
        Ok(value)
    }
}

/// The input of stage i: x, or the output of the stage before it (len floats).
fn input<'a>(g: &'a Graph, x: Tensor, outs: &'a [Block<f32>], i: usize, len: usize) -> Result<&'a [f32]> {
    Ok(if i == 0 { g.data::<f32>(x)? } else { &outs[i - 1][..len] })
}

/// Runs `f(graph, grad, beta)` on the storage of the parameter's `.grad`, made (zeros, persistent
/// as the parameter) if it has none: beta is 0 (overwrite) for a `.grad` of its own, or 1 for a
/// view into a flat gradient buffer, which is zeroed first, as `zero_grad` and a backward that
/// accumulates into it would.
fn write_grad(g: &mut Graph, p: Tensor, f: impl FnOnce(&Graph, &mut [f32], f32) -> Result<()>) -> Result<()> {
    let e = g.entry(p)?;
    let (shape, persistent) = (e.shape, e.persistent);
    let own = e.grad.filter(|&t| g.entry(t).is_ok_and(|ge| ge.shape == shape && ge.buf.dtype() == DType::F32));
    let (t, beta) = match own {
        Some(t) if matches!(g.entry(t)?.buf, Buf::View(_)) => {
            g.data_mut::<f32>(t)?.fill(0.0);
            (t, 1.0)
        }
        Some(t) => (t, 0.0),
        None => {
            g.zero_grad(p)?;
            let t = g.zeros(shape.dims(), DType::F32)?;
            g.entry_mut(t)?.persistent = persistent;
            g.entry_mut(p)?.grad = Some(t);
            (t, 0.0)
        }
    };
    g.with_storage_taken::<f32, _>(t, |g, c| f(g, c, beta))?
}
