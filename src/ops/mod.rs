//! The op registry. `Op` names every differentiable operation with its inputs and typed parameters;
//! an op's forward and backward sit side by side in the file of its family. Every match over `Op` is
//! exhaustive (no catch-all arm), so a new op cannot be added without its inputs, its saved values, its
//! backward and its gradient check (see `tests/gradcheck.rs`, which iterates over [`OpKind::ALL`]).

pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod loss;
pub(crate) mod reduce;
pub(crate) mod shape_ops;

use crate::error::{bail, err, Result};
use crate::graph::{Graph, Node, Tensor};
use crate::kernels::math::Activation;

pub use elementwise::{Binary, Unary};
pub use loss::Reduction;
pub use reduce::ReduceKind;

/// A recorded operation with its inputs and parameters.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Unary(Unary, Tensor),
    Binary(Binary, Tensor, Tensor),
    Reduce { kind: ReduceKind, x: Tensor, mask: u8, keepdim: bool },
    Softmax { x: Tensor, dim: usize, log: bool },
    Reshape(Tensor),
    Permute { x: Tensor, perm: [u8; 8] },
    Expand(Tensor),
    SumTo(Tensor),
    Concat { xs: Vec<Tensor>, dim: usize },
    Slice { x: Tensor, dim: usize, start: usize, step: usize },
    SliceScatter { x: Tensor, dim: usize, start: usize, step: usize },
    IndexSelect { x: Tensor, dim: usize, index: Tensor },
    IndexAdd { x: Tensor, dim: usize, index: Tensor },
    Gather { x: Tensor, dim: usize, index: Tensor },
    ScatterAdd { x: Tensor, dim: usize, index: Tensor },
    Matmul { a: Tensor, b: Tensor, ta: bool, tb: bool },
    /// `act`: the activation applied to x·Wᵀ + b in the same op (see [`Graph::linear_act`]).
    Linear { x: Tensor, w: Tensor, b: Option<Tensor>, act: Option<Activation> },
    MseLoss { a: Tensor, b: Tensor, reduction: Reduction },
    /// `unit`: each row's loss gradient with respect to its logits, computed by the forward from the
    /// same exponentials (the backward scales it by the upstream gradient).
    CrossEntropy { logits: Tensor, target: Tensor, reduction: Reduction, label_smoothing: f64, ignore_index: i64, unit: Option<Tensor> },
    CrossEntropyBackward { grad: Tensor, logits: Tensor, target: Tensor, reduction: Reduction, label_smoothing: f64, ignore_index: i64 },
    BceWithLogits { x: Tensor, target: Tensor, reduction: Reduction },
    GeluBackward { grad: Tensor, x: Tensor },
}

macro_rules! op_kinds {
    ($($kind:ident => $name:literal,)*) => {
        /// Every kind of op, flat (each unary and binary function is its own kind), for gradient checks,
        /// error messages and DOT labels.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum OpKind { $(#[doc = $name] $kind,)* }
        impl OpKind {
            /// Every op kind.
            pub const ALL: &'static [OpKind] = &[$(OpKind::$kind,)*];
            /// The op's name, as in PyTorch where it has one.
            pub fn name(self) -> &'static str {
                match self { $(OpKind::$kind => $name,)* }
            }
        }
    };
}

op_kinds! {
    Neg => "neg", Exp => "exp", Log => "log", Sqrt => "sqrt", Abs => "abs", Relu => "relu",
    LeakyRelu => "leaky_relu", Sigmoid => "sigmoid", Tanh => "tanh", Gelu => "gelu", Pow => "pow",
    AddScalar => "add_scalar", MulScalar => "mul_scalar",
    Add => "add", Sub => "sub", Mul => "mul", Div => "div",
    Sum => "sum", Mean => "mean", Max => "max",
    Softmax => "softmax", LogSoftmax => "log_softmax",
    Reshape => "reshape", Permute => "permute", Expand => "expand", SumTo => "sum_to",
    Concat => "concat", Slice => "slice", SliceScatter => "slice_scatter",
    IndexSelect => "index_select", IndexAdd => "index_add", Gather => "gather", ScatterAdd => "scatter_add",
    Matmul => "matmul", Linear => "linear",
    LinearRelu => "linear_relu", LinearSigmoid => "linear_sigmoid", LinearTanh => "linear_tanh",
    MseLoss => "mse_loss", CrossEntropy => "cross_entropy", CrossEntropyBackward => "cross_entropy_backward",
    BceWithLogits => "binary_cross_entropy_with_logits", GeluBackward => "gelu_backward",
}

/// The gradients of an op's inputs in `inputs()` order (`None` where an input needs none), held
/// inline for ops of up to three inputs so that a backward step allocates nothing.
pub(crate) struct Grads {
    inline: [Option<Tensor>; 3],
    len: usize,
    /// Only for ops with more inputs (concat).
    heap: Vec<Option<Tensor>>,
}

impl Grads {
    pub(crate) fn inline(gs: &[Option<Tensor>]) -> Grads {
        let mut inline = [None; 3];
        inline[..gs.len()].copy_from_slice(gs);
        Grads { inline, len: gs.len(), heap: Vec::new() }
    }
}

impl From<Vec<Option<Tensor>>> for Grads {
    fn from(heap: Vec<Option<Tensor>>) -> Grads {
        Grads { inline: [None; 3], len: usize::MAX, heap }
    }
}

impl std::ops::Deref for Grads {
    type Target = [Option<Tensor>];
    fn deref(&self) -> &[Option<Tensor>] {
        if self.len == usize::MAX { &self.heap } else { &self.inline[..self.len] }
    }
}

impl std::ops::DerefMut for Grads {
    fn deref_mut(&mut self) -> &mut [Option<Tensor>] {
        if self.len == usize::MAX { &mut self.heap } else { &mut self.inline[..self.len] }
    }
}

/// `grads![a, b]`: the gradients of an op's inputs, without a heap allocation.
macro_rules! grads {
    ($($g:expr),* $(,)?) => { $crate::ops::Grads::inline(&[$($g),*]) };
}
pub(crate) use grads;

/// The inputs of an op, without allocating for the common case.
pub(crate) struct Inputs<'a> {
    inline: [Tensor; 3],
    n: usize,
    many: &'a [Tensor],
}

impl Inputs<'_> {
    pub(crate) fn as_slice(&self) -> &[Tensor] {
        if self.many.is_empty() { &self.inline[..self.n] } else { self.many }
    }
}

/// Which values backward reads: a bit per input (in `inputs()` order) and one for the output.
pub(crate) struct Saved {
    pub(crate) inputs: u8,
    pub(crate) output: bool,
}

impl Op {
    pub(crate) fn kind(&self) -> OpKind {
        match self {
            Op::Unary(u, _) => u.kind(),
            Op::Binary(b, _, _) => b.kind(),
            Op::Reduce { kind, .. } => kind.op_kind(),
            Op::Softmax { log: false, .. } => OpKind::Softmax,
            Op::Softmax { log: true, .. } => OpKind::LogSoftmax,
            Op::Reshape(_) => OpKind::Reshape,
            Op::Permute { .. } => OpKind::Permute,
            Op::Expand(_) => OpKind::Expand,
            Op::SumTo(_) => OpKind::SumTo,
            Op::Concat { .. } => OpKind::Concat,
            Op::Slice { .. } => OpKind::Slice,
            Op::SliceScatter { .. } => OpKind::SliceScatter,
            Op::IndexSelect { .. } => OpKind::IndexSelect,
            Op::IndexAdd { .. } => OpKind::IndexAdd,
            Op::Gather { .. } => OpKind::Gather,
            Op::ScatterAdd { .. } => OpKind::ScatterAdd,
            Op::Matmul { .. } => OpKind::Matmul,
            Op::Linear { act: None, .. } => OpKind::Linear,
            Op::Linear { act: Some(Activation::Relu), .. } => OpKind::LinearRelu,
            Op::Linear { act: Some(Activation::Sigmoid), .. } => OpKind::LinearSigmoid,
            Op::Linear { act: Some(Activation::Tanh), .. } => OpKind::LinearTanh,
            Op::MseLoss { .. } => OpKind::MseLoss,
            Op::CrossEntropy { .. } => OpKind::CrossEntropy,
            Op::CrossEntropyBackward { .. } => OpKind::CrossEntropyBackward,
            Op::BceWithLogits { .. } => OpKind::BceWithLogits,
            Op::GeluBackward { .. } => OpKind::GeluBackward,
        }
    }

    /// The op's tensor inputs: the one place they are listed.
    pub(crate) fn inputs(&self) -> Inputs<'_> {
        let one = |a| Inputs { inline: [a, a, a], n: 1, many: &[] };
        let two = |a, b| Inputs { inline: [a, b, b], n: 2, many: &[] };
        match self {
            Op::Unary(_, x)
            | Op::Reduce { x, .. }
            | Op::Softmax { x, .. }
            | Op::Reshape(x)
            | Op::Permute { x, .. }
            | Op::Expand(x)
            | Op::SumTo(x)
            | Op::Slice { x, .. }
            | Op::SliceScatter { x, .. } => one(*x),
            Op::Binary(_, a, b)
            | Op::Matmul { a, b, .. }
            | Op::MseLoss { a, b, .. }
            | Op::IndexSelect { x: a, index: b, .. }
            | Op::IndexAdd { x: a, index: b, .. }
            | Op::Gather { x: a, index: b, .. }
            | Op::ScatterAdd { x: a, index: b, .. }
            | Op::CrossEntropy { logits: a, target: b, .. }
            | Op::BceWithLogits { x: a, target: b, .. }
            | Op::GeluBackward { grad: a, x: b } => two(*a, *b),
            Op::Linear { x, w, b: Some(b), .. } => Inputs { inline: [*x, *w, *b], n: 3, many: &[] },
            Op::Linear { x, w, b: None, .. } => two(*x, *w),
            Op::CrossEntropyBackward { grad, logits, target, .. } => {
                Inputs { inline: [*grad, *logits, *target], n: 3, many: &[] }
            }
            Op::Concat { xs, .. } => Inputs { inline: [Tensor::default(); 3], n: 0, many: xs },
        }
    }

    /// What backward reads back; a second backward after those values were freed is an error.
    pub(crate) fn saved(&self) -> Saved {
        let none = Saved { inputs: 0, output: false };
        let ins = |m| Saved { inputs: m, output: false };
        let out = Saved { inputs: 0, output: true };
        match self {
            Op::Unary(u, _) => u.saved(),
            Op::Binary(b, _, _) => b.saved(),
            Op::Reduce { kind: ReduceKind::Max, .. } => Saved { inputs: 1, output: true },
            Op::Reduce { kind: ReduceKind::Sum | ReduceKind::Mean, .. } => none,
            Op::Softmax { .. } => out,
            Op::Reshape(_) | Op::Permute { .. } | Op::Expand(_) | Op::SumTo(_) | Op::Concat { .. } => none,
            Op::Slice { .. } | Op::SliceScatter { .. } => none,
            Op::IndexSelect { .. } | Op::IndexAdd { .. } | Op::Gather { .. } | Op::ScatterAdd { .. } => ins(0b10),
            Op::Matmul { .. } => ins(0b11),
            Op::Linear { act: None, .. } => ins(0b011),
            // The activation's gradient is computed from the output.
            Op::Linear { act: Some(_), .. } => Saved { inputs: 0b011, output: true },
            Op::MseLoss { .. } | Op::BceWithLogits { .. } | Op::CrossEntropy { .. } => ins(0b11),
            Op::CrossEntropyBackward { .. } => ins(0b111),
            Op::GeluBackward { .. } => ins(0b11),
        }
    }
}

impl Graph {
    /// Records the op that produced `buf` (when grad mode is on and an input requires grad) and returns
    /// the new tensor. Checks the output for NaN/inf first when anomaly detection is on.
    pub(crate) fn record(&mut self, op: Op, shape: crate::shape::Shape, buf: crate::dtype::Buf) -> Result<Tensor> {
        if self.anomaly {
            crate::autograd::check_finite(&buf, op.kind(), "forward")?;
        }
        let mut requires_grad = false;
        if self.grad_enabled {
            for &t in op.inputs().as_slice() {
                requires_grad |= self.entry(t)?.requires_grad;
            }
        }
        if !requires_grad {
            return Ok(self.insert(shape, buf, None, false));
        }
        let mut versions = [0u32; 4];
        for (i, &t) in op.inputs().as_slice().iter().take(3).enumerate() {
            versions[i] = self.entry(t)?.version;
        }
        let node = self.nodes.len() as u32;
        let out = self.insert(shape, buf, Some(node), true);
        self.nodes.push(Node { op, out, versions, released: false });
        Ok(out)
    }

    /// Gradients of the op's inputs given the gradient `g` of its output (`None` where an input needs
    /// none). Runs with grad mode equal to create_graph, so that with create_graph the result is itself
    /// differentiable: every backward is written with graph ops.
    pub(crate) fn op_backward(&mut self, op: &Op, out: Tensor, g: Tensor, needs: &[bool]) -> Result<Grads> {
        match op {
            Op::Unary(u, x) => Ok(grads![Some(self.unary_backward(*u, *x, out, g)?)]),
            Op::Binary(b, x, y) => self.binary_backward(*b, *x, *y, g, needs),
            Op::Reduce { kind, x, mask, keepdim } => Ok(grads![Some(self.reduce_backward(*kind, *x, out, *mask, *keepdim, g)?)]),
            Op::Softmax { dim, log, .. } => Ok(grads![Some(self.softmax_backward(out, *dim, *log, g)?)]),
            Op::Reshape(x) => {
                let dims = self.shape(*x)?;
                Ok(grads![Some(self.reshape(g, dims.dims())?)])
            }
            Op::Permute { perm, x } => {
                let r = self.shape(*x)?.rank();
                let mut inv = [0i64; 8];
                for i in 0..r {
                    inv[perm[i] as usize] = i as i64;
                }
                Ok(grads![Some(self.permute(g, &inv[..r])?)])
            }
            Op::Expand(x) => {
                let dims = self.shape(*x)?;
                Ok(grads![Some(self.sum_to(g, dims.dims())?)])
            }
            Op::SumTo(x) => {
                let dims = self.shape(*x)?;
                Ok(grads![Some(self.expand(g, dims.dims())?)])
            }
            Op::Concat { xs, dim } => self.concat_backward(xs, *dim, g, needs).map(Grads::from),
            Op::Slice { x, dim, start, step } => {
                let dims = self.shape(*x)?;
                Ok(grads![Some(self.slice_scatter(g, dims.dims(), *dim, *start, *step)?)])
            }
            Op::SliceScatter { dim, start, step, x } => {
                let len = self.shape(*x)?.dim(*dim);
                let end = if len == 0 { *start } else { *start + (len - 1) * *step + 1 };
                Ok(grads![Some(self.slice(g, *dim as i64, *start as i64, end as i64, *step as i64)?)])
            }
            Op::IndexSelect { x, dim, index } => {
                let size = self.shape(*x)?.dim(*dim);
                Ok(grads![Some(self.index_add_into(g, *dim, *index, size)?), None])
            }
            Op::IndexAdd { dim, index, .. } => Ok(grads![Some(self.index_select(g, *dim as i64, *index)?), None]),
            Op::Gather { x, dim, index } => {
                let dims = self.shape(*x)?;
                Ok(grads![Some(self.scatter_add_into(g, *dim, *index, dims.dims())?), None])
            }
            Op::ScatterAdd { dim, index, .. } => Ok(grads![Some(self.gather(g, *dim as i64, *index)?), None]),
            Op::Matmul { a, b, ta, tb } => self.matmul_backward(*a, *b, *ta, *tb, g, needs),
            Op::Linear { x, w, b, act } => {
                let g = match act {
                    Some(act) => self.activation_backward(*act, out, g)?,
                    None => g,
                };
                self.linear_backward(*x, *w, *b, g, needs)
            }
            Op::MseLoss { a, b, reduction } => self.mse_backward(*a, *b, *reduction, g, needs),
            Op::CrossEntropy { logits, target, reduction, label_smoothing, ignore_index, unit } => {
                // A recorded cross_entropy always kept its gradient (it records only when the
                // logits require grad).
                let unit = unit.ok_or_else(|| err!(Autograd, "cross_entropy: the forward kept no gradient to scale"))?;
                let gl = self.cross_entropy_backward(g, *logits, *target, *reduction, *label_smoothing, *ignore_index, unit)?;
                Ok(grads![Some(gl), None])
            }
            Op::BceWithLogits { x, target, reduction } => self.bce_backward(*x, *target, *reduction, g, needs),
            Op::GeluBackward { grad, x } => self.gelu_backward_backward(*grad, *x, g, needs),
            Op::CrossEntropyBackward { reduction, label_smoothing, ignore_index, .. } => {
                let _ = (reduction, label_smoothing, ignore_index); // its parameters, kept for DOT and debugging
                bail!(Autograd, "the op 'cross_entropy_backward' has no gradient: double backward through cross_entropy is not supported")
            }
        }
    }
}
