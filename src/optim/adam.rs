//! Adam and AdamW, as `torch.optim.Adam` / `torch.optim.AdamW` (`_single_tensor_adam`), with AMSGrad.

use super::{non_negative, with_grad, Optimizer, ParamStates};
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// Adam's hyperparameters. [`AdamConfig::adam`] and [`AdamConfig::adamw`] give PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Adam: an L2 penalty added to the gradient; AdamW: the decoupled decay rate.
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Decoupled weight decay (AdamW): the parameter shrinks by lr·weight_decay before the update.
    pub decoupled: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam` defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f64) -> AdamConfig {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, amsgrad: false, decoupled: false }
    }
    /// `torch.optim.AdamW` defaults: as Adam with decoupled weight decay 1e-2.
    pub fn adamw(lr: f64) -> AdamConfig {
        AdamConfig { weight_decay: 1e-2, decoupled: true, ..AdamConfig::adam(lr) }
    }
}

/// Adam / AdamW (decided by [`AdamConfig::decoupled`]).
#[derive(Clone, Debug)]
pub struct Adam {
    /// The hyperparameters (the learning rate may be changed by a schedule).
    pub config: AdamConfig,
    state: ParamStates,
}

const BUFFERS: &[&str] = &["exp_avg", "exp_avg_sq"];
const BUFFERS_AMSGRAD: &[&str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

impl Adam {
    /// An optimizer over named parameters.
    pub fn new(g: &Graph, params: Vec<(String, Tensor)>, config: AdamConfig) -> Result<Adam> {
        let c = config;
        if ![c.lr, c.eps, c.weight_decay].into_iter().all(non_negative) {
            bail!(InvalidArgument, "Adam: lr, eps and weight_decay must be non-negative");
        }
        if !(0.0..1.0).contains(&c.beta1) || !(0.0..1.0).contains(&c.beta2) {
            bail!(InvalidArgument, "Adam: betas must lie in [0, 1), got ({}, {})", c.beta1, c.beta2);
        }
        let names = if c.amsgrad { BUFFERS_AMSGRAD } else { BUFFERS };
        Ok(Adam { config, state: ParamStates::new(g, params, names)? })
    }
}

impl Optimizer for Adam {
    fn step(&mut self, g: &mut Graph) -> Result<()> {
        let c = self.config;
        let nbuf = self.state.buffer_names.len();
        for s in &mut self.state.slots {
            if s.buffers.is_empty() {
                if g.grad(s.param)?.is_none() {
                    continue;
                }
                let n: usize = s.dims.iter().product();
                s.buffers = vec![vec![0.0f32; n]; nbuf];
            }
            let step = s.step + 1;
            // The scalar arithmetic is PyTorch's: Python floats (f64), rounded to float32 where they meet
            // a tensor.
            let bc1 = 1.0 - c.beta1.powf(step as f64);
            let bc2 = 1.0 - c.beta2.powf(step as f64);
            let step_size = (-(c.lr / bc1)) as f32;
            let bc2_sqrt = bc2.sqrt() as f32;
            let (w1, b2, w2, eps) = ((1.0 - c.beta1) as f32, c.beta2 as f32, (1.0 - c.beta2) as f32, c.eps as f32);
            let l2 = if c.decoupled { 0.0 } else { c.weight_decay as f32 };
            let shrink = (1.0 - c.lr * c.weight_decay) as f32;
            let decoupled = c.decoupled && c.weight_decay != 0.0;
            let (m, rest) = s.buffers.split_at_mut(1);
            let (v, vmax) = rest.split_at_mut(1);
            let (m, v) = (&mut m[0][..], &mut v[0][..]);
            let mut vmax = vmax.first_mut().map(|b| &mut b[..]);
            let done = with_grad(g, s.param, |w, grad| {
                for i in 0..w.len() {
                    if decoupled {
                        w[i] *= shrink;
                    }
                    let d = if l2 != 0.0 { grad[i] + l2 * w[i] } else { grad[i] };
                    m[i] += w1 * (d - m[i]); // lerp_(grad, 1 − β1)
                    v[i] = v[i] * b2 + w2 * d * d;
                    let second = match vmax.as_deref_mut() {
                        Some(mx) => {
                            mx[i] = mx[i].max(v[i]);
                            mx[i]
                        }
                        None => v[i],
                    };
                    let denom = second.sqrt() / bc2_sqrt + eps;
                    w[i] += step_size * m[i] / denom;
                }
            })?;
            if done {
                s.step = step;
            }
        }
        Ok(())
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn kind(&self) -> &'static str {
        if self.config.decoupled { "adamw" } else { "adam" }
    }
    fn config_text(&self) -> String {
        let c = &self.config;
        format!("beta1={:?} beta2={:?} eps={:?} weight_decay={:?} amsgrad={}", c.beta1, c.beta2, c.eps, c.weight_decay, c.amsgrad)
    }
    fn state(&self) -> &ParamStates {
        &self.state
    }
    fn state_mut(&mut self) -> &mut ParamStates {
        &mut self.state
    }
}
