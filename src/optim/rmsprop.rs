//! RMSprop, as `torch.optim.RMSprop` (`_single_tensor_rmsprop`), with momentum and the centred variant.

use super::{optimizer_accessors, non_negative, with_grad, Optimizer, ParamStates};
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// RMSprop's hyperparameters; [`Default`] gives PyTorch's defaults (lr 1e-2, alpha 0.99, eps 1e-8).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor (0 = none).
    pub momentum: f64,
    /// Normalise by the estimated variance (subtract the squared mean gradient).
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
}

/// RMSprop.
#[derive(Clone, Debug)]
pub struct RmsProp {
    /// The hyperparameters (the learning rate may be changed by a schedule).
    pub config: RmsPropConfig,
    state: ParamStates,
}

impl RmsProp {
    /// An optimizer over named parameters.
    pub fn new(g: &Graph, params: Vec<(String, Tensor)>, config: RmsPropConfig) -> Result<RmsProp> {
        let c = config;
        if ![c.lr, c.eps, c.weight_decay, c.momentum, c.alpha].into_iter().all(non_negative) {
            bail!(InvalidArgument, "RMSprop: lr, alpha, eps, momentum and weight_decay must be non-negative");
        }
        Ok(RmsProp { config, state: ParamStates::new(g, params, &["square_avg", "momentum_buffer", "grad_avg"])? })
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, g: &mut Graph) -> Result<()> {
        let c = self.config;
        let (wd, a, wa, eps, mom, neg_lr) =
            (c.weight_decay as f32, c.alpha as f32, (1.0 - c.alpha) as f32, c.eps as f32, c.momentum as f32, (-c.lr) as f32);
        for s in &mut self.state.slots {
            if s.buffers.is_empty() {
                if g.grad(s.param)?.is_none() {
                    continue;
                }
                // All three are allocated at once (PyTorch creates the momentum and centred ones only
                // when used; unused ones stay zero here), so a checkpoint's layout never depends on config.
                let n: usize = s.dims.iter().product();
                s.buffers = vec![vec![0.0f32; n]; 3];
            }
            let [sq, buf, gavg] = &mut s.buffers[..] else { unreachable!("three buffers are allocated above") };
            let done = with_grad(g, s.param, |w, grad| {
                for i in 0..w.len() {
                    let d = if wd != 0.0 { grad[i] + wd * w[i] } else { grad[i] };
                    sq[i] = sq[i] * a + wa * d * d;
                    let avg = if c.centered {
                        gavg[i] += wa * (d - gavg[i]); // lerp_(grad, 1 − α)
                        (sq[i] - gavg[i] * gavg[i]).sqrt() // addcmul(grad_avg, grad_avg, value=-1)
                    } else {
                        sq[i].sqrt()
                    } + eps;
                    if c.momentum > 0.0 {
                        buf[i] = buf[i] * mom + d / avg;
                        w[i] += neg_lr * buf[i];
                    } else {
                        w[i] += neg_lr * d / avg;
                    }
                }
            })?;
            if done {
                s.step += 1;
            }
        }
        Ok(())
    }
    optimizer_accessors!();
    fn kind(&self) -> &'static str {
        "rmsprop"
    }
    fn config_text(&self) -> String {
        let c = &self.config;
        format!("alpha={:?} eps={:?} weight_decay={:?} momentum={:?} centered={}", c.alpha, c.eps, c.weight_decay, c.momentum, c.centered)
    }
}
