//! Models (`bp_model`: a sequential stack of layers whose parameters carry PyTorch's state_dict
//! names), initialisers, the losses built on the engine's ops, and accuracy.

use super::boundary::{boundary, dims_in, error, op_out, slice_out, Out};
use super::graph::{bp_graph, with_graph};
use super::object::{free_object, impl_object, new_object, optional_str_in, with_object, Shell};
use super::{bp_reduction, bp_status};
use crate::error::{ErrorKind, Result};
use crate::graph::Tensor;
use crate::nn::{init, loss, Layer, Sequential};
use crate::ops::loss::Reduction;
use std::ffi::c_char;

/// A model: layers applied in order, as PyTorch's `nn.Sequential`. Its parameters live in the graph
/// given when each layer was added (they are persistent tensors of that graph). Opaque: made by
/// `bp_model_new`, released by `bp_model_free`. Use it from one thread at a time.
pub struct bp_model(Shell<Sequential>);
impl_object!(bp_model, Sequential, 0x6270_5f6d_6f64_656c);

/// A layer without parameters, passed as a plain integer: one of `BP_LAYER_*`.
pub type bp_layer = i32;
/// max(x, 0)
pub const BP_LAYER_RELU: bp_layer = 0;
/// Leaky ReLU; its parameter is the negative slope (PyTorch's default 0.01).
pub const BP_LAYER_LEAKY_RELU: bp_layer = 1;
/// The logistic sigmoid.
pub const BP_LAYER_SIGMOID: bp_layer = 2;
/// tanh
pub const BP_LAYER_TANH: bp_layer = 3;
/// GELU (exact form).
pub const BP_LAYER_GELU: bp_layer = 4;
/// Dropout; its parameter is the probability of zeroing an element (training mode only).
pub const BP_LAYER_DROPOUT: bp_layer = 5;
/// Flattens every dimension after the first.
pub const BP_LAYER_FLATTEN: bp_layer = 6;

/// A non-linearity for initialisation gains, passed as a plain integer: one of `BP_NONLINEARITY_*`.
pub type bp_nonlinearity = i32;
/// Linear / identity (gain 1).
pub const BP_NONLINEARITY_LINEAR: bp_nonlinearity = 0;
/// Sigmoid (gain 1).
pub const BP_NONLINEARITY_SIGMOID: bp_nonlinearity = 1;
/// tanh (gain 5/3).
pub const BP_NONLINEARITY_TANH: bp_nonlinearity = 2;
/// ReLU (gain √2).
pub const BP_NONLINEARITY_RELU: bp_nonlinearity = 3;
/// Leaky ReLU with the slope given beside it (gain √(2 / (1 + slope²))).
pub const BP_NONLINEARITY_LEAKY_RELU: bp_nonlinearity = 4;

fn add(model: *mut bp_model, name: *const c_char, make: impl FnOnce() -> Result<Layer>) -> bp_status {
    boundary(|| {
        let name = optional_str_in(name, "name")?;
        with_object(model, |m| {
            // Check the name before making the layer, so that a bad name creates no parameters.
            if let Some(n) = name {
                if n.is_empty() || n.contains('.') || m.layers().iter().any(|(x, _)| x == n) {
                    return Err(error(ErrorKind::InvalidArgument, format!("the layer name {:?} is empty, contains '.' or is already used", n)));
                }
            }
            let layer = make()?;
            match name {
                Some(n) => m.push_named(n, layer).map(|_| ()),
                None => {
                    m.push(layer);
                    Ok(())
                }
            }
        })
    })
}

/// Makes an empty model, in training mode.
///
/// Ownership: the caller owns `*model_out` and releases it with `bp_model_free` (before or after the
/// graph holding its parameters is freed; the parameters belong to the graph).
#[no_mangle]
pub extern "C" fn bp_model_new(model_out: *mut *mut bp_model) -> bp_status {
    boundary(|| {
        let out = Out::new(model_out, "model_out")?;
        out.write(new_object::<bp_model>(Sequential::new()));
        Ok(())
    })
}

/// Frees a model. `bp_model_free(NULL)` does nothing; freeing twice returns `BP_ERR_INVALID_HANDLE`.
/// The parameter tensors stay in their graph until it is reset (they are persistent) or freed.
///
/// Ownership: afterwards the pointer must not be used (a use is detected, as for graphs).
#[no_mangle]
pub extern "C" fn bp_model_free(model: *mut bp_model) -> bp_status {
    boundary(|| free_object(model))
}

/// Appends `nn.Linear(in_features, out_features, bias)`: weight `[out, in]` and bias `[out]` as
/// persistent float32 parameters of `graph` that require grad, initialised as PyTorch does from the
/// graph's generator (after `bp_graph_manual_seed(g, s)` they equal PyTorch's after
/// `torch.manual_seed(s)`). `name` names the layer in parameter names (`"encoder"` →
/// `encoder.weight`); NULL names it by its position (`0.weight`). A name must be unique and contain no
/// '.'.
///
/// Ownership: the graph owns the parameters; the model keeps their handles. `name` is copied.
#[no_mangle]
pub extern "C" fn bp_model_add_linear(model: *mut bp_model, graph: *mut bp_graph, name: *const c_char, in_features: usize, out_features: usize, bias: bool) -> bp_status {
    add(model, name, || with_graph(graph, |g| Layer::linear(g, in_features, out_features, bias)))
}

/// Appends `nn.Embedding(num_embeddings, embedding_dim)` (weights N(0, 1)); its input is an int64
/// tensor of indices of any shape, its output has one more dimension of size `embedding_dim`.
///
/// Ownership: as `bp_model_add_linear`.
#[no_mangle]
pub extern "C" fn bp_model_add_embedding(model: *mut bp_model, graph: *mut bp_graph, name: *const c_char, num_embeddings: usize, embedding_dim: usize) -> bp_status {
    add(model, name, || with_graph(graph, |g| Layer::embedding(g, num_embeddings, embedding_dim)))
}

/// Appends `nn.LayerNorm(normalized_shape[0..ndim], eps, elementwise_affine)`: normalises over the
/// last `ndim` dimensions (biased variance); with `affine`, a weight (ones) and a bias (zeros).
///
/// Ownership: as `bp_model_add_linear`.
#[no_mangle]
pub extern "C" fn bp_model_add_layer_norm(model: *mut bp_model, graph: *mut bp_graph, name: *const c_char, normalized_shape: *const i64, ndim: usize, eps: f64, affine: bool) -> bp_status {
    add(model, name, || {
        let dims = dims_in(normalized_shape, ndim)?;
        with_graph(graph, |g| Layer::layer_norm(g, &dims, eps, affine))
    })
}

/// Appends a layer without parameters, one of `BP_LAYER_*`; `param` is the negative slope of
/// `BP_LAYER_LEAKY_RELU` and the probability of `BP_LAYER_DROPOUT` (in [0, 1]), ignored otherwise.
///
/// Ownership: `name` is copied.
#[no_mangle]
pub extern "C" fn bp_model_add_layer(model: *mut bp_model, name: *const c_char, kind: bp_layer, param: f64) -> bp_status {
    add(model, name, || {
        Ok(match kind {
            BP_LAYER_RELU => Layer::Relu,
            BP_LAYER_LEAKY_RELU => Layer::LeakyRelu(param),
            BP_LAYER_SIGMOID => Layer::Sigmoid,
            BP_LAYER_TANH => Layer::Tanh,
            BP_LAYER_GELU => Layer::Gelu,
            BP_LAYER_DROPOUT if (0.0..=1.0).contains(&param) => Layer::Dropout(param),
            BP_LAYER_DROPOUT => return Err(error(ErrorKind::InvalidArgument, format!("a dropout probability must lie in [0, 1], got {}", param))),
            BP_LAYER_FLATTEN => Layer::Flatten,
            _ => return Err(error(ErrorKind::InvalidArgument, format!("{} is not a bp_layer", kind))),
        })
    })
}

/// Switches training mode (dropout active) on or off, as `model.train()` / `model.eval()`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_model_set_training(model: *mut bp_model, training: bool) -> bp_status {
    boundary(|| with_object(model, |m| {
        m.train(training);
        Ok(())
    }))
}

/// Writes whether the model is in training mode to `*training_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_model_is_training(model: *mut bp_model, training_out: *mut bool) -> bp_status {
    boundary(|| {
        let out = Out::new(training_out, "training_out")?;
        out.write(with_object(model, |m| Ok(m.is_training()))?);
        Ok(())
    })
}

/// The forward pass in the model's current mode, recording ops for autograd when gradient mode is on.
///
/// Ownership: the graph owns `*out` (a step-scoped tensor).
#[no_mangle]
pub extern "C" fn bp_model_forward(model: *mut bp_model, graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| with_object(model, |m| m.forward(g, x)))
}

/// Inference: the forward pass in eval mode (no dropout) with nothing recorded, whatever the model's
/// mode and the graph's gradient mode; the result does not require grad.
///
/// Ownership: the graph owns `*out` (a step-scoped tensor).
#[no_mangle]
pub extern "C" fn bp_model_predict(model: *mut bp_model, graph: *mut bp_graph, x: Tensor, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| with_object(model, |m| m.predict(g, x)))
}

/// Writes the model's parameter tensors, in PyTorch's `parameters()` order, into `buf` and their
/// number to `*count_out`. Two-call protocol: with `buf` NULL and `capacity` 0 only the count is
/// written; a non-NULL `buf` with `capacity` below the count fails with `BP_ERR_INVALID_ARGUMENT` and
/// writes nothing.
///
/// Ownership: the caller owns `buf`; the handles name tensors owned by the graph.
#[no_mangle]
pub extern "C" fn bp_model_parameters(model: *mut bp_model, buf: *mut Tensor, capacity: usize, count_out: *mut usize) -> bp_status {
    boundary(|| {
        let count = Out::new(count_out, "count_out")?;
        if buf.is_null() && capacity != 0 {
            return Err(error(ErrorKind::InvalidArgument, "buf is NULL but capacity is not 0"));
        }
        let params = with_object(model, |m| Ok(m.parameters()))?;
        if !buf.is_null() {
            if capacity < params.len() {
                return Err(error(ErrorKind::InvalidArgument, format!("the buffer holds {} handles; the model has {} parameters", capacity, params.len())));
            }
            slice_out(buf, params.len(), "buf")?.copy_from_slice(&params);
        }
        count.write(params.len());
        Ok(())
    })
}

/// Writes the state_dict name of parameter `index` (as in `bp_model_parameters`: `0.weight`, …) into
/// `buf`, NUL-terminated. Two-call protocol as `bp_graph_to_dot`: the size needed, NUL included, goes
/// to `*size_out`; with `buf` NULL and `capacity` 0 nothing else is written.
///
/// Ownership: the caller owns `buf`.
#[no_mangle]
pub extern "C" fn bp_model_parameter_name(model: *mut bp_model, index: usize, buf: *mut c_char, capacity: usize, size_out: *mut usize) -> bp_status {
    boundary(|| {
        let size = Out::new(size_out, "size_out")?;
        if buf.is_null() && capacity != 0 {
            return Err(error(ErrorKind::InvalidArgument, "buf is NULL but capacity is not 0"));
        }
        let name = with_object(model, |m| {
            let params = m.named_parameters();
            let n = params.len();
            params.into_iter().nth(index).map(|(name, _)| name).ok_or_else(|| error(ErrorKind::InvalidArgument, format!("parameter {} does not exist; the model has {}", index, n)))
        })?;
        let needed = name.len() + 1;
        if !buf.is_null() {
            if capacity < needed {
                return Err(error(ErrorKind::InvalidArgument, format!("the buffer holds {} bytes; the name needs {}", capacity, needed)));
            }
            let dst = slice_out(buf as *mut u8, needed, "buf")?;
            dst[..name.len()].copy_from_slice(name.as_bytes());
            dst[name.len()] = 0;
        }
        size.write(needed);
        Ok(())
    })
}

/// Drops the `.grad` of every parameter (`zero_grad(set_to_none=True)`).
///
/// Ownership: the gradient tensors are freed; their handles become stale.
#[no_mangle]
pub extern "C" fn bp_model_zero_grad(model: *mut bp_model, graph: *mut bp_graph) -> bp_status {
    boundary(|| with_graph(graph, |g| with_object(model, |m| m.zero_grad(g))))
}

fn reduction_of(r: bp_reduction) -> Result<Reduction> {
    Reduction::from_i32(r)
}

/// Negative log-likelihood of log-probabilities `[N, C]` against int64 classes `[N]`, as
/// `F.nll_loss`: samples whose target is `ignore_index` count for nothing (the mean is over the
/// others; PyTorch's default `ignore_index` is -100).
///
/// Ownership: the graph owns `*out`.
#[no_mangle]
pub extern "C" fn bp_nll_loss(graph: *mut bp_graph, log_probs: Tensor, target: Tensor, reduction: bp_reduction, ignore_index: i64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| loss::nll_loss(g, log_probs, target, reduction_of(reduction)?, ignore_index))
}

/// Mean absolute error between tensors of the same shape (`F.l1_loss`).
///
/// Ownership: the graph owns `*out`.
#[no_mangle]
pub extern "C" fn bp_l1_loss(graph: *mut bp_graph, input: Tensor, target: Tensor, reduction: bp_reduction, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| loss::l1_loss(g, input, target, reduction_of(reduction)?))
}

/// Smooth L1 (`F.smooth_l1_loss`): 0.5·d²/beta where |d| < beta, |d| − 0.5·beta elsewhere (beta ≥ 0;
/// 0 gives L1; PyTorch's default is 1).
///
/// Ownership: the graph owns `*out`.
#[no_mangle]
pub extern "C" fn bp_smooth_l1_loss(graph: *mut bp_graph, input: Tensor, target: Tensor, reduction: bp_reduction, beta: f64, out: *mut Tensor) -> bp_status {
    op_out(graph, out, |g| loss::smooth_l1_loss(g, input, target, reduction_of(reduction)?, beta))
}

/// Writes the fraction of rows of `logits` `[N, C]` whose largest entry is at the int64 target `[N]`
/// to `*accuracy_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_accuracy(graph: *mut bp_graph, logits: Tensor, target: Tensor, accuracy_out: *mut f64) -> bp_status {
    boundary(|| {
        let out = Out::new(accuracy_out, "accuracy_out")?;
        out.write(with_graph(graph, |g| loss::accuracy(g, logits, target))?);
        Ok(())
    })
}

/// Overwrites `t` with samples uniform on [low, high) from the graph's generator (`nn.init.uniform_`).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_init_uniform(graph: *mut bp_graph, t: Tensor, low: f64, high: f64) -> bp_status {
    boundary(|| with_graph(graph, |g| init::uniform_(g, t, low, high)))
}

/// Overwrites `t` with normal samples from the graph's generator (`nn.init.normal_`).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_init_normal(graph: *mut bp_graph, t: Tensor, mean: f64, std: f64) -> bp_status {
    boundary(|| with_graph(graph, |g| init::normal_(g, t, mean, std)))
}

fn nonlinearity_of(n: bp_nonlinearity, slope: f64) -> Result<init::Nonlinearity> {
    Ok(match n {
        BP_NONLINEARITY_LINEAR => init::Nonlinearity::Linear,
        BP_NONLINEARITY_SIGMOID => init::Nonlinearity::Sigmoid,
        BP_NONLINEARITY_TANH => init::Nonlinearity::Tanh,
        BP_NONLINEARITY_RELU => init::Nonlinearity::Relu,
        BP_NONLINEARITY_LEAKY_RELU => init::Nonlinearity::LeakyRelu(slope),
        _ => return Err(error(ErrorKind::InvalidArgument, format!("{} is not a bp_nonlinearity", n))),
    })
}

/// Xavier/Glorot initialisation of a tensor of rank 2 or more: uniform on ±gain·√(6 / (fan_in +
/// fan_out)), or normal with std gain·√(2 / (fan_in + fan_out)) when `normal`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_init_xavier(graph: *mut bp_graph, t: Tensor, gain: f64, normal: bool) -> bp_status {
    boundary(|| with_graph(graph, |g| if normal { init::xavier_normal_(g, t, gain) } else { init::xavier_uniform_(g, t, gain) }))
}

/// Kaiming/He initialisation of a tensor of rank 2 or more for the non-linearity `nonlinearity` (a
/// `BP_NONLINEARITY_*`; `slope` for leaky ReLU): uniform on ±gain·√(3 / fan), or normal with std
/// gain / √fan when `normal`; fan is fan_out when `fan_out`, else fan_in.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_init_kaiming(graph: *mut bp_graph, t: Tensor, nonlinearity: bp_nonlinearity, slope: f64, fan_out: bool, normal: bool) -> bp_status {
    boundary(|| {
        let nl = nonlinearity_of(nonlinearity, slope)?;
        let mode = if fan_out { init::FanMode::FanOut } else { init::FanMode::FanIn };
        with_graph(graph, |g| if normal { init::kaiming_normal_(g, t, mode, nl) } else { init::kaiming_uniform_(g, t, mode, nl) })
    })
}
