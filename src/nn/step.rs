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
use crate::kernels::denormals::{FlushGuard, FLUSH_MIN_ELEMENTS};
use crate::kernels::gemm::{k_step, linear_backward_fits, sgemm_act_grad, sgemm_linear_backward, SgemmPath, PARALLEL_MIN_MACS};
use crate::kernels::threads::{self, kernel_threads, Shared};
use crate::kernels::math::Activation;
use crate::kernels::simd::vectorised;
use crate::ops::elementwise::{activation_grad, input_activation_grad, unary_into};
use crate::ops::loss::{checked_targets, cross_entropy_backward_rows, cross_entropy_rows_general, mse_total, rows_total, CrossEntropyOptions};
use crate::ops::reduce::sum_into;
use crate::ops::{Reduction, Unary};
use crate::optim::Optimizer;
use crate::shape::Shape;
use crate::Float;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Whether the step computes the weight's gradient (a Linear whose weight requires grad), and
    /// where it lies among the trained weights' gradients of one k block in a split step's
    /// `partials` (the floats of the trained weights before it).
    trains_w: bool,
    wprefix: usize,
    /// The buffer of [`StepState::grads`] that holds the gradient of the stage's output.
    gout: usize,
    /// Whether the backward takes the weight's and the input's gradients of this Linear in one
    /// pass over each k block of rows (`sgemm_linear_backward`, for narrow layers), the weight's
    /// into `partials` as a split step does.
    fused: bool,
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
    /// The gradients flowing back: the last (index stages.len()) the loss's, with respect to the
    /// output; buffer i that of the input of Linear stage i (see `Stage::gout`). Each is kept to the
    /// end of the step, when the parameters' gradients are taken from them.
    grads: Vec<Block<f32>>,
    /// The loss of each row, in float32 and (for the general cross-entropy) float64, and each row's
    /// gradient from the forward.
    rows: Block<f32>,
    losses: Block<f64>,
    unit: Block<f32>,
    /// The general cross-entropy's softmax and row statistics; a bias gradient to add into a flat
    /// `.grad`.
    scratch: Block<f32>,
    /// The weight gradients of each k block, for a split step (see [`split_parts`]) or a stage
    /// whose backward is fused.
    partials: Block<f32>,
    /// The operands of each stage and the gradient buffers as raw views, for the parts of a split
    /// step (refilled every step; only their capacity is kept).
    views: Vec<StageViews>,
    gviews: Vec<Shared<f32>>,
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

/// The first `len` elements of `b`, which is grown (its contents dropped) if shorter.
fn at_least<T: Copy + Default>(b: &mut Block<T>, len: usize) -> Result<&mut [T]> {
    if b.len() < len {
        *b = Block::try_filled(len, T::default()).map_err(|_| err!(OutOfMemory, "train_step: cannot allocate {} elements", len))?;
    }
    Ok(&mut b[..len])
}

/// A stage's weight and bias (read) and output buffer (written by rows).
#[derive(Clone, Copy)]
struct StageViews {
    w: Shared<f32>,
    b: Shared<f32>,
    out: Shared<f32>,
}

/// Below this many multiply-adds in the forward's products a step is not split: the hand-over to
/// the other threads, the weight gradients of the blocks apart and reading the other threads' rows
/// afterwards cost more than they save. Measured with the seed network at two threads (medians of
/// three, µs, one thread against split): 260 rows (101 k multiply-adds) 8.7 against 10.1, 400 rows
/// (155 k) 12.4 against 12.5, 500 rows (194 k) 15.0 against 13.9.
const SPLIT_MIN_MACS: usize = 1 << 17;

/// How many parts a step over n rows on up to `threads` threads is split into, each a run of whole
/// k blocks of the rows (the blocks [`k_step`] cuts the batch into, which every matrix product sums
/// one after the other).
///
/// The forward and backward of a row do not depend on other rows, and a weight's gradient is a
/// sum over the rows that every product adds up block by block: so each part runs the whole
/// forward and backward on its rows on a thread of its own, computes each block's weight gradients
/// apart, and the blocks' gradients are then added in order, as one product over the batch adds
/// them. The results are those of the unsplit step, bit for bit. A step is split only when its
/// products are each too small to be split themselves ([`PARALLEL_MIN_MACS`]: then they use the
/// threads), the batch has two blocks or more, and the products run on our kernels (which share
/// the k blocks; `matrixmultiply`, the portable path, blocks k its own way).
fn split_parts(stages: &[Stage], n: usize, threads: usize) -> usize {
    if threads < 2 || SgemmPath::best() == SgemmPath::Portable {
        return 1;
    }
    let blocks = n.div_ceil(k_step(n));
    let linear = stages.iter().filter(|s| matches!(s.op, StageOp::Linear { .. }));
    let (macs, biggest) = linear.fold((0, 0), |(sum, max), s| {
        let p = n * s.nin * s.nout;
        (sum + p, max.max(p))
    });
    if blocks < 2 || biggest >= PARALLEL_MIN_MACS || macs < SPLIT_MIN_MACS {
        1
    } else {
        threads.min(blocks)
    }
}

/// What the parts of a step read and where they write: the forward, the loss's gradient and the
/// backward's chain over a run of rows ([`Pass::rows`]).
struct Pass<'a> {
    stages: &'a [Stage],
    views: &'a [StageViews],
    grads: &'a [Shared<f32>],
    x: Shared<f32>,
    n: usize,
    classes: usize,
    loss: Checked,
    /// The classes (cross-entropy) or the targets' values (MSE).
    tv: &'a [i64],
    y: Shared<f32>,
    rows: Shared<f32>,
    losses: Shared<f64>,
    unit: Shared<f32>,
    /// The general cross-entropy's softmax (n·c) and its rows' maxima, sums and log-sum-exps (3 per
    /// row).
    softmax: Shared<f32>,
    stats: Shared<f32>,
    /// With a split or a fused stage: the k blocks' weight gradients, and how many floats one
    /// block's take.
    partials: Option<(Shared<f32>, usize)>,
    /// Whether the step is split over threads (every trained weight's gradient then goes to
    /// `partials`, not only a fused stage's).
    split: bool,
    /// Whether a part took the general cross-entropy (the vectorised kernel does not apply).
    general: AtomicBool,
}

impl Pass<'_> {
    /// The k blocks of the batch in rows r (whole blocks, see [`split_parts`]): each block's index
    /// and its rows, counted from r's first.
    fn blocks(&self, r: &Range<usize>) -> impl Iterator<Item = (usize, (usize, usize))> {
        let (step, r) = (k_step(self.n), r.clone());
        (r.start / step..r.end.div_ceil(step)).map(move |b| (b, (b * step - r.start, ((b + 1) * step).min(r.end) - r.start)))
    }

    /// The input of stage i over rows r: x, or the output of the stage before.
    ///
    /// # Safety
    /// As [`Pass::rows`].
    unsafe fn input(&self, i: usize, r: &Range<usize>) -> &[f32] {
        let nin = self.stages[i].nin;
        if i == 0 { self.x.rows_ref(r, nin) } else { self.views[i - 1].out.rows_ref(r, nin) }
    }

    /// The forward, the loss's gradient and the backward's chain over rows r (each row's loss and
    /// each stage's output and output gradient into the buffers), and in a split step the weight
    /// gradients of the k blocks in r.
    ///
    /// # Safety
    /// Every view is alive and holds the whole batch; no other thread touches rows r (or the k
    /// blocks in r) meanwhile.
    unsafe fn rows(&self, r: Range<usize>) {
        let (n, m, classes) = (self.n, r.len(), self.classes);
        // An elementwise pass flushes subnormals if it would over the whole batch (see
        // kernels::denormals), so that a part computes what the unsplit step computes.
        let flush = |len: usize| (len >= FLUSH_MIN_ELEMENTS).then(FlushGuard::new);
        for (i, (s, v)) in self.stages.iter().zip(self.views).enumerate() {
            let (a, out) = (self.input(i, &r), v.out.rows(&r, s.nout));
            let _flush = flush(n * s.nout);
            match s.op {
                StageOp::Linear { act, .. } => {
                    let w = v.w.all().unwrap_or_default();
                    f32::gemm_layer(m, s.nin, s.nout, a, s.nin as isize, 1, w, 1, s.nin as isize, v.b.all(), act, out);
                }
                StageOp::Map(u) => unary_into(a, out, u),
            }
        }

        // The loss's gradient with respect to the output (from the backward's seed of 1), as the
        // loss op and its backward compute it.
        let last = self.stages.len();
        let (z, gz) = (self.views[last - 1].out.rows_ref(&r, classes), self.grads[last].rows(&r, classes));
        match self.loss {
            Checked::CrossEntropy(ce, count) => {
                let tv = &self.tv[r.clone()];
                let (rows, unit) = (self.rows.rows(&r, 1), self.unit.rows(&r, classes));
                let eps = ce.label_smoothing;
                if !f32::cross_entropy_rows(z, classes, tv, ce.ignore_index, f32::from_f64(eps), rows, Some(&mut *unit)) {
                    self.general.store(true, Ordering::Relaxed);
                    let (e, stats) = (self.softmax.rows(&r, classes), self.stats.rows(&r, 3));
                    cross_entropy_rows_general(z, classes, tv, ce.ignore_index, eps, rows, Some(&mut *unit), e, stats, Some(self.losses.rows(&r, 1)));
                }
                cross_entropy_backward_rows(unit, classes, tv, ce.ignore_index, ce.reduction, &[1.0f32], count, gz);
            }
            Checked::Mse(reduction) => {
                let y = self.y.rows_ref(&r, classes);
                // mse_backward's ops: (z − y)·2, times the seed expanded and scaled by 1/n for the mean.
                let scale = if reduction == Reduction::Mean { f32::from_f64(1.0 / (n * classes).max(1) as f64) } else { 1.0 };
                let s = 1.0f32 * scale;
                vectorised(|| gz.iter_mut().zip(z.iter().zip(y)).for_each(|(o, (&p, &q))| *o = ((p - q) * 2.0) * s));
            }
        }

        // Backward, down to the first stage that trains a parameter, the gradient of each stage's
        // output in its buffer and of its input written to the next; `scaled` when the product that
        // wrote a gradient already applied the stage's activation's backward.
        let mut scaled = false;
        for (i, (s, v)) in self.stages.iter().zip(self.views).enumerate().rev() {
            if !s.upstream {
                break;
            }
            let (nin, nout) = (s.nin, s.nout);
            let gout = self.grads[s.gout].rows(&r, nout);
            if let StageOp::Map(u @ (Unary::LeakyRelu(_) | Unary::Gelu)) = s.op {
                // From the activation's input, the output of the stage before (a stage that needs
                // a gradient is never the first).
                let _flush = flush(n * nout);
                input_activation_grad(u, gout, self.views[i - 1].out.rows_ref(&r, nin));
            }
            // The backward of an activation taken from its output, unless the product that made
            // gout applied it.
            if let Some(act) = s.activation().filter(|_| !scaled) {
                let _flush = flush(n * nout);
                activation_grad(act, gout, v.out.rows_ref(&r, nout), None);
            }
            scaled = false;
            let StageOp::Linear { .. } = s.op else { continue }; // an activation alone: its input's gradient is gout
            let (gout, a) = (&*gout, self.input(i, &r));
            if let Some((partials, per_block)) = self.partials.filter(|_| s.fused) {
                // Block by block, the weight's gradient and the input's, times the derivative of
                // the activation before this layer (whose output is a), in one pass.
                let (w, gin, act) = (v.w.all().unwrap_or_default(), self.grads[i].rows(&r, nin), self.stages[i - 1].activation());
                for (b, (lo, hi)) in self.blocks(&r) {
                    let c = &mut partials.rows(&(b..b + 1), per_block)[s.wprefix..s.wprefix + nout * nin];
                    let done = sgemm_linear_backward(hi - lo, nin, nout, &gout[lo * nout..hi * nout], &a[lo * nin..hi * nin], w, act, c, &mut gin[lo * nin..hi * nin]);
                    debug_assert!(done, "plan() fuses only layers the kernel takes");
                }
                scaled = act.is_some();
                continue;
            }
            if let Some((partials, per_block)) = self.partials.filter(|_| s.trains_w && self.split) {
                // Each k block's weight gradient (one block of k, so summed from zero).
                for (b, (lo, hi)) in self.blocks(&r) {
                    let c = &mut partials.rows(&(b..b + 1), per_block)[s.wprefix..s.wprefix + nout * nin];
                    f32::gemm(nout, hi - lo, nin, 1.0, &gout[lo * nout..hi * nout], 1, nout as isize, &a[lo * nin..hi * nin], nin as isize, 1, 0.0, c, nin as isize, 1);
                }
            }
            if i > 0 && self.stages[i - 1].upstream {
                // The input's gradient, times the derivative of the activation before this layer
                // as the product stores it where the kernel can (the activation's output is this
                // layer's input).
                let (w, gin) = (v.w.all().unwrap_or_default(), self.grads[i].rows(&r, nin));
                scaled = self.stages[i - 1].activation().is_some_and(|act| sgemm_act_grad(m, nout, nin, gout, nout as isize, 1, w, nin as isize, 1, a, act, gin));
                if !scaled {
                    f32::gemm(m, nout, nin, 1.0, gout, nout as isize, 1, w, nin as isize, 1, 0.0, gin, nin as isize, 1);
                }
            }
        }
    }
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
            let trains_w = match op {
                StageOp::Linear { w, .. } => g.requires_grad(w)?,
                StageOp::Map(_) => false,
            };
            stages.push(Stage { op, nin: width, nout, upstream, trains_w, wprefix: 0, gout: 0, fused: false });
            width = nout;
        }
        if !upstream {
            bail!(Unsupported, "train_step: the model has no parameter that requires grad");
        }
        // The gradient buffers, as the backward walks down: the loss's gradient first, then the
        // input gradient of each Linear stage that passes one down (an activation alone changes
        // its gradient in place).
        let mut cur = stages.len();
        for i in (0..stages.len()).rev() {
            stages[i].gout = cur;
            if matches!(stages[i].op, StageOp::Linear { .. }) && i > 0 && stages[i - 1].upstream {
                cur = i;
                stages[i].fused = stages[i].trains_w && linear_backward_fits(stages[i].nin, stages[i].nout);
            }
        }
        let mut prefix = 0;
        for s in stages.iter_mut().filter(|s| s.trains_w) {
            s.wprefix = prefix;
            prefix += s.nin * s.nout;
        }
        Ok(width)
    }

    /// The forward, the loss and the backward of a planned step, each parameter's gradient left in
    /// its `.grad`; returns the loss. The rows are split over the library's threads when
    /// [`split_parts`] says so.
    fn run_step(&mut self, g: &mut Graph, x: Tensor, target: Tensor, n: usize, classes: usize, loss: Checked) -> Result<f64> {
        let StepState { stages, outs, grads, rows, losses, unit, scratch, partials, views, gviews } = &mut self.step;
        let last = stages.len();
        outs.resize_with(outs.len().max(last), Block::new);
        grads.resize_with(grads.len().max(last + 1), Block::new);
        let parts = split_parts(stages, n, kernel_threads());
        let step = k_step(n);
        let blocks = n.div_ceil(step);
        let per_block = stages.iter().filter(|s| s.trains_w).map(|s| s.nin * s.nout).sum::<usize>();
        let is_ce = matches!(loss, Checked::CrossEntropy(..));
        let fused = stages.iter().any(|s| s.fused);

        // The buffers, grown to this batch, and their views.
        views.clear();
        for (s, out) in stages.iter().zip(outs.iter_mut()) {
            let (w, b) = match s.op {
                StageOp::Linear { w, b, .. } => (Shared::read(g.data::<f32>(w)?), b.map(|b| g.data::<f32>(b)).transpose()?.map_or(Shared::NONE, Shared::read)),
                StageOp::Map(_) => (Shared::NONE, Shared::NONE),
            };
            views.push(StageViews { w, b, out: Shared::new(at_least(out, n * s.nout)?) });
        }
        gviews.clear();
        for (j, buf) in grads.iter_mut().enumerate().take(last + 1) {
            // Buffer j < last is the input gradient of stage j, if the backward writes one.
            let len = if j == last { n * classes } else if stages.iter().any(|s| s.gout == j) { n * stages[j].nin } else { 0 };
            gviews.push(Shared::new(at_least(buf, len)?));
        }
        let (softmax, stats) = at_least(scratch, if is_ce { n * classes + 3 * n } else { 0 })?.split_at_mut(if is_ce { n * classes } else { 0 });
        let pass = Pass {
            stages,
            views,
            grads: gviews,
            x: Shared::read(g.data::<f32>(x)?),
            n,
            classes,
            loss,
            tv: if is_ce { g.data_i64(target)? } else { &[] },
            y: if is_ce { Shared::NONE } else { Shared::read(g.data::<f32>(target)?) },
            rows: Shared::new(at_least(rows, if is_ce { n } else { 0 })?),
            losses: Shared::new(at_least(losses, if is_ce { n } else { 0 })?),
            unit: Shared::new(at_least(unit, if is_ce { n * classes } else { 0 })?),
            softmax: Shared::new(softmax),
            stats: Shared::new(stats),
            partials: if parts > 1 || fused { Some((Shared::new(at_least(partials, blocks * per_block)?), per_block)) } else { None },
            split: parts > 1,
            general: AtomicBool::new(false),
        };
        if parts > 1 {
            // Part p takes a run of whole blocks.
            let bounds = |p: usize| (blocks * p / parts * step).min(n);
            // SAFETY: every view was just made from a buffer of the whole batch (or a tensor's
            // data, only read), all alive until `run` returns; the parts' rows (and k blocks) are
            // disjoint.
            threads::run(parts, parts, &|p| unsafe { pass.rows(bounds(p)..bounds(p + 1)) });
        } else {
            // SAFETY: as above, on this thread alone.
            unsafe { pass.rows(0..n) };
        }
        let general = pass.general.load(Ordering::Relaxed);

        // The loss, from the rows' losses in the order the loss op adds them.
        let z = &outs[last - 1][..n * classes];
        let value = match loss {
            Checked::CrossEntropy(ce, count) => {
                let total = if general { losses[..n].iter().fold(0.0, |t, &l| t + l) } else { rows_total(&rows[..n]) };
                if ce.reduction == Reduction::Sum { total } else { total / count as f64 }
            }
            Checked::Mse(reduction) => {
                let total = mse_total(z, g.data::<f32>(target)?);
                if reduction == Reduction::Sum { total } else { total / z.len() as f64 }
            }
        };
        let value = f32::from_f64(value).to_f64();
        if g.anomaly && !value.is_finite() {
            bail!(Anomaly, "anomaly: train_step's loss is {}", value);
        }

        // The parameters' gradients, from the gradients of the stages' outputs and their inputs:
        // in one product over the batch, or from a split step's blocks, added in order.
        for (i, s) in stages.iter().enumerate().rev() {
            if !s.upstream {
                break;
            }
            let StageOp::Linear { w, b, .. } = s.op else { continue };
            let (nin, nout) = (s.nin, s.nout);
            let gout = &grads[s.gout][..n * nout];
            if s.trains_w {
                write_grad(g, w, |g, c, beta| {
                    if parts > 1 || s.fused {
                        // As a product's store adds each block into C (beta 0 then 1); a product
                        // over no rows stores zeros.
                        if blocks == 0 && beta == 0.0 {
                            c.fill(0.0);
                        }
                        for (blk, p) in partials.chunks_exact(per_block).take(blocks).enumerate() {
                            let p = &p[s.wprefix..s.wprefix + nout * nin];
                            if blk == 0 && beta == 0.0 {
                                c.copy_from_slice(p);
                            } else {
                                vectorised(|| c.iter_mut().zip(p).for_each(|(c, &p)| *c += p));
                            }
                        }
                    } else {
                        let a = input(g, x, outs, i, n * nin)?;
                        f32::gemm(nout, n, nin, 1.0, gout, 1, nout as isize, a, nin as isize, 1, beta, c, nin as isize, 1);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(nin: usize, nout: usize) -> Stage {
        let w = Tensor { graph: 1, index: 0, generation: 0 };
        Stage { op: StageOp::Linear { w, b: None, act: None }, nin, nout, upstream: true, trains_w: true, wprefix: 0, gout: 0, fused: false }
    }

    #[test]
    fn a_step_is_split_only_over_whole_k_blocks_of_small_products_on_several_threads() {
        if SgemmPath::best() == SgemmPath::Portable {
            return;
        }
        let seed = [linear(20, 13), linear(13, 8), linear(8, 3)];
        assert_eq!(split_parts(&seed, 500, 2), 2, "the seed network over 500 rows (two blocks)");
        assert_eq!(split_parts(&seed, 500, 1), 1, "one thread");
        assert_eq!(split_parts(&seed, 256, 2), 1, "one k block");
        assert_eq!(split_parts(&seed, 1000, 2), 2, "no more parts than threads");
        assert_eq!(split_parts(&seed, 1000, 3), 3, "four blocks over three threads");
        assert_eq!(split_parts(&seed, 500, 3), 2, "no more parts than blocks");
        assert_eq!(split_parts(&[linear(4, 4), linear(4, 2)], 500, 2), 1, "too little work to hand over");
        assert_eq!(split_parts(&[linear(784, 512), linear(512, 10)], 512, 2), 1, "a product the threads split themselves");
    }
}
