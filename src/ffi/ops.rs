//! Every op of the engine, one exported function each. All follow one pattern: inputs are handles and
//! plain values, the result goes to `*out`, the graph owns the result (it stays valid until
//! `bp_tensor_free`, `bp_graph_reset` unless made persistent, or `bp_graph_free`). An op records a node
//! for autograd when gradient mode is on and an input requires grad.

use super::boundary::{dim_list_in, dims_in, error, op_out, slice_in};
use super::graph::bp_graph;
use super::{activation_of, bp_activation, bp_reduction, bp_status};
use crate::error::{ErrorKind, Result};
use crate::graph::Tensor;
use crate::ops::loss::{CrossEntropyOptions, Reduction};
use crate::shape::norm_dim;

fn index_of(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| error(ErrorKind::InvalidArgument, format!("{} must not be negative, got {}", what, v)))
}

/// Elementwise -x.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_neg(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.neg(x))
}

/// Elementwise e^x.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_exp(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.exp(x))
}

/// Elementwise the natural logarithm ln x.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_log(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.log(x))
}

/// Elementwise √x.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_sqrt(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.sqrt(x))
}

/// Elementwise |x|.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_abs(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.abs(x))
}

/// Elementwise max(x, 0).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_relu(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.relu(x))
}

/// Elementwise 1 / (1 + e^-x).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_sigmoid(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.sigmoid(x))
}

/// Elementwise tanh x.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_tanh(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.tanh(x))
}

/// Elementwise x·Φ(x), the exact (erf) GELU, PyTorch's default.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_gelu(graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.gelu(x))
}

/// Elementwise x for x > 0, `slope`·x otherwise.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_leaky_relu(graph: *mut bp_graph, x: Tensor, slope: f64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.leaky_relu(x, slope))
}

/// Elementwise x^`exponent` for a scalar exponent.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_pow(graph: *mut bp_graph, x: Tensor, exponent: f64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.pow(x, exponent))
}

/// Elementwise x + `c`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_add_scalar(graph: *mut bp_graph, x: Tensor, c: f64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.add_scalar(x, c))
}

/// Elementwise x · `c`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_mul_scalar(graph: *mut bp_graph, x: Tensor, c: f64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.mul_scalar(x, c))
}

/// Elementwise a + b with PyTorch's broadcasting; both operands must have the same element type.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_add(graph: *mut bp_graph, a: Tensor, b: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.add(a, b))
}

/// Elementwise a - b with PyTorch's broadcasting; both operands must have the same element type.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_sub(graph: *mut bp_graph, a: Tensor, b: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.sub(a, b))
}

/// Elementwise a · b with PyTorch's broadcasting; both operands must have the same element type.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_mul(graph: *mut bp_graph, a: Tensor, b: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.mul(a, b))
}

/// Elementwise a / b with PyTorch's broadcasting; both operands must have the same element type.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_div(graph: *mut bp_graph, a: Tensor, b: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.div(a, b))
}

/// The sum over the dimensions `dims[0..ndims]` (negative ones count from the end; `ndims` 0 reduces
/// over every dimension), keeping them as size 1 when `keepdim`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_sum(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndims: usize, keepdim: bool, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dim_list_in(dims, ndims)?;
        g.sum(x, d, keepdim)
    })
}

/// The mean over the dimensions `dims[0..ndims]` (negative ones count from the end; `ndims` 0 reduces
/// over every dimension), keeping them as size 1 when `keepdim`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_mean(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndims: usize, keepdim: bool, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dim_list_in(dims, ndims)?;
        g.mean(x, d, keepdim)
    })
}

/// The maximum (the gradient is split evenly among ties, as `torch.amax`) over the dimensions `dims[0..ndims]` (negative ones count from the end; `ndims` 0 reduces
/// over every dimension), keeping them as size 1 when `keepdim`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_max(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndims: usize, keepdim: bool, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dim_list_in(dims, ndims)?;
        g.max(x, d, keepdim)
    })
}

/// Softmax over dimension `dim` (negative counts from the end).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_softmax(graph: *mut bp_graph, x: Tensor, dim: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.softmax(x, dim))
}

/// Log-softmax (computed stably, not as log of softmax) over dimension `dim` (negative counts from the end).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_log_softmax(graph: *mut bp_graph, x: Tensor, dim: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.log_softmax(x, dim))
}

/// The same elements in the shape `dims[0..ndim]`; one dimension may be -1 and is then inferred
/// (PyTorch's `reshape`/`view`). Copies the data.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_reshape(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndim: usize, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dim_list_in(dims, ndim)?;
        g.view(x, d)
    })
}

/// Reorders dimensions: output dimension i is input dimension `perm[i]`; `nperm` must equal the rank.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_permute(graph: *mut bp_graph, x: Tensor, perm: *const i64, nperm: usize, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let p = dim_list_in(perm, nperm)?;
        g.permute(x, p)
    })
}

/// Swaps dimensions `dim0` and `dim1`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_transpose(graph: *mut bp_graph, x: Tensor, dim0: i64, dim1: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.transpose(x, dim0, dim1))
}

/// Broadcasts `x` to the shape `dims[0..ndim]` (`torch.broadcast_to`). When the shape already fits,
/// `*out` is `x` itself.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_expand(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndim: usize, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dims_in(dims, ndim)?;
        g.expand(x, &d)
    })
}

/// Sums `x` down to the shape `dims[0..ndim]` it could have been broadcast from (the adjoint of
/// `bp_expand`). When the shape already fits, `*out` is `x` itself.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_sum_to(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndim: usize, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dims_in(dims, ndim)?;
        g.sum_to(x, &d)
    })
}

/// Joins `xs[0..n]` along `dim`; every other dimension must agree.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header). `xs` is only read.
#[no_mangle]
pub extern "C" fn bp_concat(graph: *mut bp_graph, xs: *const Tensor, n: usize, dim: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let ts = slice_in(xs, n, "xs")?;
        g.concat(ts, dim)
    })
}

/// Elements `start, start + step, …` below `end` along `dim`, as Python's `x[..., start:end:step]`:
/// negative bounds count from the end and bounds are clamped; `step` must be positive. Copies the data.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_slice(graph: *mut bp_graph, x: Tensor, dim: i64, start: i64, end: i64, step: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.slice(x, dim, start, end, step))
}

/// Zeros of shape `dims[0..ndim]` with `x` written at `start, start + step, …` along `dim`: the
/// adjoint of `bp_slice`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn bp_slice_scatter(graph: *mut bp_graph, x: Tensor, dims: *const i64, ndim: usize, dim: i64, start: i64, step: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dims_in(dims, ndim)?;
        let dim = norm_dim(dim, d.len())?;
        if d.is_empty() {
            return Err(error(ErrorKind::ShapeMismatch, "slice_scatter: the target shape must have at least one dimension"));
        }
        if step <= 0 {
            return Err(error(ErrorKind::InvalidArgument, format!("slice_scatter: step must be positive, got {}", step)));
        }
        g.slice_scatter(x, &d, dim, index_of(start, "start")?, step as usize)
    })
}

/// Picks the slices `index[k]` of `x` along `dim`; `index` is a 1-D int64 tensor.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_index_select(graph: *mut bp_graph, x: Tensor, dim: i64, index: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.index_select(x, dim, index))
}

/// Zeros with `size` entries along `dim` (other dimensions as `x`), then `out[index[k]] += x[k]`
/// along `dim`: the adjoint of `bp_index_select`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_index_add(graph: *mut bp_graph, x: Tensor, dim: i64, index: Tensor, size: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let rank = g.shape(x)?.rank();
        if rank == 0 {
            return Err(error(ErrorKind::ShapeMismatch, "index_add: the source must have at least one dimension"));
        }
        let dim = norm_dim(dim, rank)?;
        g.index_add_into(x, dim, index, index_of(size, "size")?)
    })
}

/// `torch.gather`: `out[i][j][k] = x[i][index[i][j][k]][k]` for `dim` 1, and likewise for any dim.
/// `index` is an int64 tensor of the same rank as `x`.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_gather(graph: *mut bp_graph, x: Tensor, dim: i64, index: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.gather(x, dim, index))
}

/// Zeros of shape `dims[0..ndim]`, then `out[..index..] += x` along `dim`: the adjoint of `bp_gather`
/// (`x` and `index` have the same shape).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_scatter_add(graph: *mut bp_graph, x: Tensor, dim: i64, index: Tensor, dims: *const i64, ndim: usize, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let d = dims_in(dims, ndim)?;
        let dim = norm_dim(dim, d.len())?;
        g.scatter_add_into(x, dim, index, &d)
    })
}

/// The matrix product, batched over leading dimensions (which must match or be absent on one side).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_matmul(graph: *mut bp_graph, a: Tensor, b: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.matmul(a, b))
}

/// op(a)·op(b), where op transposes the last two dimensions when its flag is set (no copy is made).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_matmul_t(graph: *mut bp_graph, a: Tensor, b: Tensor, transpose_a: bool, transpose_b: bool, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.matmul_t(a, b, transpose_a, transpose_b))
}

/// x·Wᵀ + b for x of shape `[.., in]`, `weight` `[out, in]` and `bias` `[out]` (PyTorch's layout); `bias`
/// may be NULL for none.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header). `bias` is only read.
#[no_mangle]
pub extern "C" fn bp_linear(graph: *mut bp_graph, x: Tensor, weight: Tensor, bias: *const Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let b = slice_in(bias, usize::from(!bias.is_null()), "bias")?.first().copied();
        g.linear(x, weight, b)
    })
}

/// act(x·Wᵀ + b): a linear layer and the activation after it (`activation`, a `BP_ACTIVATION_*`) as
/// one op, with the values and gradients of `bp_linear` followed by `bp_relu`, `bp_sigmoid` or
/// `bp_tanh`, faster (the pre-activation tensor is never made; its grad_fn is `linear_relu`,
/// `linear_sigmoid` or `linear_tanh`). `bias` may be NULL for none. A model built with
/// `bp_model_add_linear` and `bp_model_add_layer` uses it for every Linear layer followed by one of
/// these activations.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header). `bias` is only read.
#[no_mangle]
pub extern "C" fn bp_linear_act(graph: *mut bp_graph, x: Tensor, weight: Tensor, bias: *const Tensor, activation: bp_activation, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let b = slice_in(bias, usize::from(!bias.is_null()), "bias")?.first().copied();
        g.linear_act(x, weight, b, activation_of(activation)?)
    })
}

/// Mean squared error between `a` and `b` (same shape), reduced by `reduction` (a `BP_REDUCTION_*`).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_mse_loss(graph: *mut bp_graph, a: Tensor, b: Tensor, reduction: bp_reduction, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let r = Reduction::from_i32(reduction)?;
        g.mse_loss(a, b, r)
    })
}

/// Cross-entropy of `logits` `[N, C]` against int64 class indices `target` `[N]`, mean over samples, with
/// the log-softmax fused in (`torch.nn.functional.cross_entropy` with its defaults).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_cross_entropy(graph: *mut bp_graph, logits: Tensor, target: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.cross_entropy(logits, target))
}

/// Cross-entropy with PyTorch's options: `reduction` (a `BP_REDUCTION_*`), `label_smoothing` in
/// [0, 1], and `ignore_index` (samples with that target count for nothing; PyTorch's default is -100).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_cross_entropy_ex(graph: *mut bp_graph, logits: Tensor, target: Tensor, reduction: bp_reduction, label_smoothing: f64, ignore_index: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let opt = CrossEntropyOptions { reduction: Reduction::from_i32(reduction)?, label_smoothing, ignore_index };
        g.cross_entropy_with(logits, target, opt)
    })
}

/// Binary cross-entropy of logits `x` against probabilities `target` (same shape), computed stably,
/// reduced by `reduction` (a `BP_REDUCTION_*`).
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_binary_cross_entropy_with_logits(graph: *mut bp_graph, x: Tensor, target: Tensor, reduction: bp_reduction, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| {
        let r = Reduction::from_i32(reduction)?;
        g.binary_cross_entropy_with_logits(x, target, r)
    })
}

/// Dropout: when `training`, zeroes each element with probability `p` (drawn from the graph's seeded
/// generator) and scales the rest by 1/(1−p). When `training` is false or `p` is 0, `*out` is `x`
/// itself.
///
/// Ownership: the graph owns `*out` (see "Ownership" at the top of this header).
#[no_mangle]
pub extern "C" fn bp_dropout(graph: *mut bp_graph, x: Tensor, p: f64, training: bool, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| g.dropout(x, p, training))
}
