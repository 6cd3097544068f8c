//! Optimizers (`bp_optimizer`), learning-rate schedules (`bp_schedule`) and gradient clipping, with
//! PyTorch's exact update rules and formulas.

use super::boundary::{boundary, slice_in, Out};
use super::graph::{bp_graph, with_graph};
use super::nn::bp_model;
use super::object::{free_object, impl_object, new_object, with_object, Shell};
use super::{bp_reduction, bp_status};
use crate::error::Result;
use crate::graph::{Graph, Tensor};
use crate::nn::Loss;
use crate::ops::loss::{CrossEntropyOptions, Reduction};
use crate::optim::{self, Adam, AdamConfig, LrSchedule, Optimizer, RmsProp, RmsPropConfig, Schedule, Sgd, SgdConfig};

/// An optimizer over a model's parameters (SGD, Adam, AdamW or RMSprop). Opaque: made by a
/// `bp_optimizer_new_*` function, released by `bp_optimizer_free`. Use it from one thread at a time.
pub struct bp_optimizer(Shell<Box<dyn Optimizer + Send>>);
impl_object!(bp_optimizer, Box<dyn Optimizer + Send>, 0x6270_5f6f_7074_696d);

/// A learning-rate schedule attached to an optimizer. Opaque: made by a `bp_schedule_new_*`
/// function, released by `bp_schedule_free`.
pub struct bp_schedule(Shell<LrSchedule>);
impl_object!(bp_schedule, LrSchedule, 0x6270_5f73_6368_6564);

fn new_optimizer(graph: *mut bp_graph, model: *mut bp_model, out: *mut *mut bp_optimizer, make: impl FnOnce(&Graph, Vec<(String, Tensor)>) -> Result<Box<dyn Optimizer + Send>>) -> bp_status {
    boundary(|| {
        let out = Out::new(out, "optimizer_out")?;
        let opt = with_graph(graph, |g| with_object(model, |m| make(g, m.named_parameters())))?;
        out.write(new_object::<bp_optimizer>(opt));
        Ok(())
    })
}

/// Makes `torch.optim.SGD` over the model's parameters: momentum (0 = none), dampening, L2
/// `weight_decay`, Nesterov (needs momentum > 0 and dampening 0). Parameter state is keyed by the
/// parameters' state_dict names (checkpoints use them).
///
/// Ownership: the caller owns `*optimizer_out` and releases it with `bp_optimizer_free`.
#[no_mangle]
pub extern "C" fn bp_optimizer_new_sgd(graph: *mut bp_graph, model: *mut bp_model, lr: f64, momentum: f64, dampening: f64, weight_decay: f64, nesterov: bool, optimizer_out: *mut *mut bp_optimizer) -> bp_status {
    new_optimizer(graph, model, optimizer_out, |g, p| {
        Ok(Box::new(Sgd::new(g, p, SgdConfig { lr, momentum, dampening, weight_decay, nesterov })?))
    })
}

/// Makes `torch.optim.Adam` (L2 `weight_decay` added to the gradient; PyTorch's defaults are lr 1e-3,
/// betas 0.9 and 0.999, eps 1e-8, weight_decay 0), with AMSGrad when `amsgrad`.
///
/// Ownership: as `bp_optimizer_new_sgd`.
#[no_mangle]
pub extern "C" fn bp_optimizer_new_adam(graph: *mut bp_graph, model: *mut bp_model, lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, amsgrad: bool, optimizer_out: *mut *mut bp_optimizer) -> bp_status {
    new_optimizer(graph, model, optimizer_out, |g, p| {
        let c = AdamConfig { lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled: false };
        Ok(Box::new(Adam::new(g, p, c)?))
    })
}

/// Makes `torch.optim.AdamW`: Adam with decoupled weight decay (each step first shrinks the
/// parameters by lr·weight_decay; PyTorch's default weight_decay is 1e-2).
///
/// Ownership: as `bp_optimizer_new_sgd`.
#[no_mangle]
pub extern "C" fn bp_optimizer_new_adamw(graph: *mut bp_graph, model: *mut bp_model, lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, amsgrad: bool, optimizer_out: *mut *mut bp_optimizer) -> bp_status {
    new_optimizer(graph, model, optimizer_out, |g, p| {
        let c = AdamConfig { lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled: true };
        Ok(Box::new(Adam::new(g, p, c)?))
    })
}

/// Makes `torch.optim.RMSprop` (PyTorch's defaults: lr 1e-2, alpha 0.99, eps 1e-8, no weight decay,
/// no momentum, not centred).
///
/// Ownership: as `bp_optimizer_new_sgd`.
#[no_mangle]
pub extern "C" fn bp_optimizer_new_rmsprop(graph: *mut bp_graph, model: *mut bp_model, lr: f64, alpha: f64, eps: f64, weight_decay: f64, momentum: f64, centered: bool, optimizer_out: *mut *mut bp_optimizer) -> bp_status {
    new_optimizer(graph, model, optimizer_out, |g, p| {
        Ok(Box::new(RmsProp::new(g, p, RmsPropConfig { lr, alpha, eps, weight_decay, momentum, centered })?))
    })
}

/// Frees an optimizer. `bp_optimizer_free(NULL)` does nothing; freeing twice returns
/// `BP_ERR_INVALID_HANDLE`.
///
/// Ownership: afterwards the pointer must not be used (a use is detected).
#[no_mangle]
pub extern "C" fn bp_optimizer_free(optimizer: *mut bp_optimizer) -> bp_status {
    boundary(|| free_object(optimizer))
}

/// One update of every parameter that has a gradient (the others are skipped, as in PyTorch). The
/// first step allocates the optimizer's state; later steps allocate nothing.
///
/// Ownership: nothing to own; the parameters are updated in place (their versions move).
#[no_mangle]
pub extern "C" fn bp_optimizer_step(optimizer: *mut bp_optimizer, graph: *mut bp_graph) -> bp_status {
    boundary(|| with_graph(graph, |g| with_object(optimizer, |o| o.step(g))))
}

/// One whole training step of the model with cross-entropy (`reduction` a `BP_REDUCTION_*`, mean or
/// sum; `label_smoothing` in [0, 1]; `ignore_index`, PyTorch's default -100): zero_grad, forward,
/// loss, backward and the optimizer's step, in one call, without recording a graph; writes the
/// loss to `*loss_out`. The result (loss, `.grad`, updated parameters) is bit-identical to the same
/// step built from `bp_model_forward`, `bp_cross_entropy_ex`, `bp_backward` and
/// `bp_optimizer_step`, at a fraction of the cost for small networks.
///
/// Takes float32 models of Linear, ReLU, leaky ReLU, sigmoid, tanh, GELU and flatten layers
/// (dropout in eval mode), an input `x` of shape `[N, in_features]` that does not require grad, and
/// int64 targets `[N]`. Other layers (layer norm, embedding, dropout in training mode) fail with
/// `BP_ERR_UNSUPPORTED`; reduction none with `BP_ERR_INVALID_ARGUMENT`. A failed
/// call leaves the parameters and their gradients as they were.
///
/// Ownership: nothing to own. The model keeps its activations between steps (freed with the
/// model); each parameter's gradient is written into its `.grad` tensor (made, persistent, the
/// first time), which then holds this step's gradient, as after `bp_backward`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn bp_model_train_step_cross_entropy(model: *mut bp_model, graph: *mut bp_graph, optimizer: *mut bp_optimizer, x: Tensor, target: Tensor, reduction: bp_reduction, label_smoothing: f64, ignore_index: i64, loss_out: *mut f64) -> bp_status {
    train_step(model, graph, optimizer, x, target, loss_out, || {
        Ok(Loss::CrossEntropy(CrossEntropyOptions { reduction: Reduction::from_i32(reduction)?, label_smoothing, ignore_index }))
    })
}

/// `bp_model_train_step_cross_entropy` with the mean squared error against float32 targets of the
/// model output's shape `[N, out_features]` (`reduction` a `BP_REDUCTION_*`, mean or sum): bit-identical
/// to the step built from `bp_model_forward`, `bp_mse_loss`, `bp_backward` and `bp_optimizer_step`.
///
/// Ownership: as `bp_model_train_step_cross_entropy`.
#[no_mangle]
pub extern "C" fn bp_model_train_step_mse(model: *mut bp_model, graph: *mut bp_graph, optimizer: *mut bp_optimizer, x: Tensor, target: Tensor, reduction: bp_reduction, loss_out: *mut f64) -> bp_status {
    train_step(model, graph, optimizer, x, target, loss_out, || Ok(Loss::Mse(Reduction::from_i32(reduction)?)))
}

/// The compiled step behind both C functions, the loss made (and checked) inside the boundary.
fn train_step(model: *mut bp_model, graph: *mut bp_graph, optimizer: *mut bp_optimizer, x: Tensor, target: Tensor, loss_out: *mut f64, loss: impl FnOnce() -> Result<Loss>) -> bp_status {
    boundary(|| {
        let loss_out = Out::new(loss_out, "loss_out")?;
        let loss = loss()?;
        let value = with_graph(graph, |g| with_object(model, |m| with_object(optimizer, |o| m.train_step(g, o.as_mut(), x, target, loss))))?;
        loss_out.write(value);
        Ok(())
    })
}

/// Drops the gradient of every parameter (`zero_grad(set_to_none=True)`, PyTorch's default).
///
/// Ownership: the gradient tensors are freed; their handles become stale.
#[no_mangle]
pub extern "C" fn bp_optimizer_zero_grad(optimizer: *mut bp_optimizer, graph: *mut bp_graph) -> bp_status {
    boundary(|| with_graph(graph, |g| with_object(optimizer, |o| o.zero_grad(g))))
}

/// Writes the current learning rate to `*lr_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_optimizer_lr(optimizer: *mut bp_optimizer, lr_out: *mut f64) -> bp_status {
    boundary(|| {
        let out = Out::new(lr_out, "lr_out")?;
        out.write(with_object(optimizer, |o| Ok(o.lr()))?);
        Ok(())
    })
}

/// Sets the learning rate.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_optimizer_set_lr(optimizer: *mut bp_optimizer, lr: f64) -> bp_status {
    boundary(|| with_object(optimizer, |o| {
        if !optim::non_negative(lr) {
            return Err(super::boundary::error(crate::ErrorKind::InvalidArgument, format!("a learning rate must be non-negative, got {}", lr)));
        }
        o.set_lr(lr);
        Ok(())
    }))
}

fn new_schedule(optimizer: *mut bp_optimizer, out: *mut *mut bp_schedule, s: Schedule) -> bp_status {
    boundary(|| {
        let out = Out::new(out, "schedule_out")?;
        let sched = with_object(optimizer, |o| LrSchedule::new(s, o.as_mut()))?;
        out.write(new_object::<bp_schedule>(sched));
        Ok(())
    })
}

/// Attaches `StepLR(step_size, gamma)` to the optimizer: the learning rate is multiplied by `gamma`
/// every `step_size` calls of `bp_schedule_step`. Making a schedule is its step 0, as in PyTorch.
///
/// Ownership: the caller owns `*schedule_out` and releases it with `bp_schedule_free`.
#[no_mangle]
pub extern "C" fn bp_schedule_new_step(optimizer: *mut bp_optimizer, step_size: u64, gamma: f64, schedule_out: *mut *mut bp_schedule) -> bp_status {
    new_schedule(optimizer, schedule_out, Schedule::Step { step_size, gamma })
}

/// Attaches `ExponentialLR(gamma)`: the learning rate is multiplied by `gamma` every step.
///
/// Ownership: as `bp_schedule_new_step`.
#[no_mangle]
pub extern "C" fn bp_schedule_new_exponential(optimizer: *mut bp_optimizer, gamma: f64, schedule_out: *mut *mut bp_schedule) -> bp_status {
    new_schedule(optimizer, schedule_out, Schedule::Exponential { gamma })
}

/// Attaches `CosineAnnealingLR(t_max, eta_min)`: from the current rate down to `eta_min` along a half
/// cosine over `t_max` steps (and back up after, as PyTorch).
///
/// Ownership: as `bp_schedule_new_step`.
#[no_mangle]
pub extern "C" fn bp_schedule_new_cosine(optimizer: *mut bp_optimizer, t_max: u64, eta_min: f64, schedule_out: *mut *mut bp_schedule) -> bp_status {
    new_schedule(optimizer, schedule_out, Schedule::Cosine { t_max, eta_min })
}

/// Attaches `LinearLR(start_factor, end_factor, total_iters)`, the usual linear warm-up: the rate is
/// scaled by `start_factor` at once, then linearly to `end_factor` over `total_iters` steps.
///
/// Ownership: as `bp_schedule_new_step`.
#[no_mangle]
pub extern "C" fn bp_schedule_new_linear(optimizer: *mut bp_optimizer, start_factor: f64, end_factor: f64, total_iters: u64, schedule_out: *mut *mut bp_schedule) -> bp_status {
    new_schedule(optimizer, schedule_out, Schedule::Linear { start_factor, end_factor, total_iters })
}

/// Advances the schedule one step and sets the optimizer's learning rate.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_schedule_step(schedule: *mut bp_schedule, optimizer: *mut bp_optimizer) -> bp_status {
    boundary(|| with_object(schedule, |s| with_object(optimizer, |o| {
        s.step(o.as_mut());
        Ok(())
    })))
}

/// Frees a schedule (the optimizer keeps its current learning rate). NULL does nothing.
///
/// Ownership: afterwards the pointer must not be used (a use is detected).
#[no_mangle]
pub extern "C" fn bp_schedule_free(schedule: *mut bp_schedule) -> bp_status {
    boundary(|| free_object(schedule))
}

/// Scales the gradients of `params[0..n]` so that their joint `norm_type`-norm (2 for Euclidean,
/// `INFINITY` for the max) is at most `max_norm`, as `torch.nn.utils.clip_grad_norm_`; writes the norm
/// before clipping to `*total_norm_out` when it is not NULL. Parameters without a gradient are skipped.
///
/// Ownership: nothing to own; `params` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_clip_grad_norm(graph: *mut bp_graph, params: *const Tensor, n: usize, max_norm: f64, norm_type: f64, total_norm_out: *mut f64) -> bp_status {
    boundary(|| {
        let out = Out::optional(total_norm_out, "total_norm_out")?;
        let p = slice_in(params, n, "params")?;
        let total = with_graph(graph, |g| optim::clip_grad_norm(g, p, max_norm, norm_type))?;
        if let Some(o) = out {
            o.write(total);
        }
        Ok(())
    })
}

/// Clamps every gradient element of `params[0..n]` to [−clip, clip] (`clip_grad_value_`).
///
/// Ownership: nothing to own; `params` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_clip_grad_value(graph: *mut bp_graph, params: *const Tensor, n: usize, clip: f64) -> bp_status {
    boundary(|| {
        let p = slice_in(params, n, "params")?;
        with_graph(graph, |g| optim::clip_grad_value(g, p, clip))
    })
}
