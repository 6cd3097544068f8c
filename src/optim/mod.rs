//! Optimizers with PyTorch's exact update rules (the single-tensor `for` implementations of
//! `torch.optim`), learning-rate schedules and gradient clipping.
//!
//! An optimizer is built from named parameters (`model.named_parameters()`), so that its state carries
//! the same names in a checkpoint (`optim.0.weight.exp_avg`). It updates the parameters in place (their
//! version counters move, as PyTorch's do), skips parameters that have no `.grad`, and allocates its
//! state buffers once, at the first step that needs them: the steady state allocates nothing.

mod adam;
mod clip;
mod rmsprop;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use schedule::{LrSchedule, Schedule};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// The accessors every optimizer shares: the learning rate lives in `self.config.lr`, the
/// per-parameter state in `self.state`. Expands inside an `impl Optimizer for …` block.
macro_rules! optimizer_accessors {
    () => {
        fn lr(&self) -> f64 {
            self.config.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.config.lr = lr;
        }
        fn state(&self) -> &ParamStates {
            &self.state
        }
        fn state_mut(&mut self) -> &mut ParamStates {
            &mut self.state
        }
    };
}
pub(crate) use optimizer_accessors;

/// What every optimizer does.
pub trait Optimizer {
    /// One update of every parameter that has a `.grad`.
    fn step(&mut self, g: &mut Graph) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (what a schedule does).
    fn set_lr(&mut self, lr: f64);
    /// A short name: "sgd", "adam", "adamw", "rmsprop" (recorded in checkpoints).
    fn kind(&self) -> &'static str;
    /// The per-parameter state (step counts and buffers).
    fn state(&self) -> &ParamStates;
    /// Mutable per-parameter state, for restoring a checkpoint.
    fn state_mut(&mut self) -> &mut ParamStates;
    /// The hyperparameters other than the learning rate, as text (`"momentum=0.9 dampening=0 …"`):
    /// recorded in checkpoints, and a checkpoint made with other values is refused.
    fn config_text(&self) -> String;
    /// Whether a parameter that has taken a step always has its buffers (Adam, RMSprop); SGD's
    /// momentum buffer may be absent, as PyTorch's `momentum_buffer` may be None.
    fn stepped_state_has_buffers(&self) -> bool {
        true
    }
    /// Drops the `.grad` of every parameter (`zero_grad(set_to_none=True)`, PyTorch's default).
    fn zero_grad(&self, g: &mut Graph) -> Result<()> {
        for s in &self.state().slots {
            g.zero_grad(s.param)?;
        }
        Ok(())
    }
}

/// The state an optimizer keeps for one parameter.
#[derive(Clone, Debug)]
pub struct ParamState {
    /// The parameter's name (its state_dict name).
    pub name: String,
    /// The parameter.
    pub param: Tensor,
    /// Its dimensions.
    pub dims: Vec<usize>,
    /// Updates applied so far (PyTorch's `state['step']`).
    pub step: u64,
    /// The optimizer's buffers for it, in the order of [`ParamStates::buffer_names`]; empty until the
    /// first step that needs them.
    pub buffers: Vec<Vec<f32>>,
}

/// The per-parameter state of an optimizer.
#[derive(Clone, Debug)]
pub struct ParamStates {
    /// The names of the buffers each parameter gets ("exp_avg", "momentum_buffer", …), as PyTorch's.
    pub buffer_names: &'static [&'static str],
    /// One entry per parameter, in the order given.
    pub slots: Vec<ParamState>,
}

impl ParamStates {
    pub(crate) fn new(g: &Graph, params: Vec<(String, Tensor)>, buffer_names: &'static [&'static str]) -> Result<ParamStates> {
        let mut slots: Vec<ParamState> = Vec::with_capacity(params.len());
        for (name, param) in params {
            if g.dtype(param)? != crate::DType::F32 {
                bail!(DType, "optimizers update float32 parameters; {:?} is {}", name, g.dtype(param)?.name());
            }
            if !g.requires_grad(param)? || !g.is_leaf(param)? {
                bail!(InvalidArgument, "the parameter {:?} must be a leaf that requires grad", name);
            }
            if slots.iter().any(|s| s.name == name) {
                bail!(InvalidArgument, "the parameter name {:?} is given twice", name);
            }
            if slots.iter().any(|s| s.param == param) {
                bail!(InvalidArgument, "the parameter {:?} is given twice", name);
            }
            slots.push(ParamState { name, param, dims: g.dims(param)?, step: 0, buffers: Vec::new() });
        }
        Ok(ParamStates { buffer_names, slots })
    }

    /// The state of the parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamState> {
        self.slots.iter().find(|s| s.name == name)
    }
}

/// `x >= 0`, false for NaN: hyperparameter validation.
pub(crate) fn non_negative(x: f64) -> bool {
    x >= 0.0
}

/// Names parameters by position ("0", "1", …) for optimizers built from bare tensors.
pub fn by_position(params: &[Tensor]) -> Vec<(String, Tensor)> {
    params.iter().enumerate().map(|(i, &t)| (i.to_string(), t)).collect()
}

/// Runs `f(param, grad)` on the parameter's data and its gradient's, when it has one; returns whether
/// it did. The gradient's buffer is moved out for the call and back (no copy, no allocation), whether
/// it is the gradient's own or the flat buffer of a flattened group.
pub(crate) fn with_grad(g: &mut Graph, p: Tensor, f: impl FnOnce(&mut [f32], &[f32])) -> Result<bool> {
    let Some(gt) = g.grad(p)? else { return Ok(false) };
    g.with_mut_and_ref::<f32, _>(p, gt, f)?;
    Ok(true)
}

/// Runs `f(grad)` on the parameter's gradient in place, when it has one.
pub(crate) fn with_grad_mut(g: &mut Graph, p: Tensor, f: impl FnOnce(&mut [f32])) -> Result<bool> {
    let Some(gt) = g.grad(p)? else { return Ok(false) };
    f(g.data_mut::<f32>(gt)?);
    Ok(true)
}
