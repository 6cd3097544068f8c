//! Adam and AdamW, as `torch.optim.Adam` / `torch.optim.AdamW` (`_single_tensor_adam`), with AMSGrad.

use super::{optimizer_accessors, non_negative, with_grad, Optimizer, ParamStates};
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
            let k = AdamStep { step_size, bc2_sqrt, w1, b2, w2, eps, l2, shrink };
            let (m, rest) = s.buffers.split_at_mut(1);
            let (v, vmax) = rest.split_at_mut(1);
            let (m, v) = (&mut m[0][..], &mut v[0][..]);
            let vmax = vmax.first_mut().map(|b| &mut b[..]);
            let done = with_grad(g, s.param, |w, grad| {
                // One loop per combination of options, each free of branches so that it vectorises.
                match (decoupled, l2 != 0.0, vmax) {
                    (false, false, None) => k.run::<false, false>(w, grad, m, v),
                    (false, true, None) => k.run::<false, true>(w, grad, m, v),
                    (true, false, None) => k.run::<true, false>(w, grad, m, v),
                    (true, true, None) => k.run::<true, true>(w, grad, m, v),
                    (false, false, Some(mx)) => k.run_amsgrad::<false, false>(w, grad, m, v, mx),
                    (false, true, Some(mx)) => k.run_amsgrad::<false, true>(w, grad, m, v, mx),
                    (true, false, Some(mx)) => k.run_amsgrad::<true, false>(w, grad, m, v, mx),
                    (true, true, Some(mx)) => k.run_amsgrad::<true, true>(w, grad, m, v, mx),
                }
            })?;
            if done {
                s.step = step;
            }
        }
        Ok(())
    }
    optimizer_accessors!();
    fn kind(&self) -> &'static str {
        if self.config.decoupled { "adamw" } else { "adam" }
    }
    fn config_text(&self) -> String {
        let c = &self.config;
        format!("beta1={:?} beta2={:?} eps={:?} weight_decay={:?} amsgrad={}", c.beta1, c.beta2, c.eps, c.weight_decay, c.amsgrad)
    }
}

/// The float32 constants of one Adam step for one parameter.
struct AdamStep {
    step_size: f32,
    bc2_sqrt: f32,
    w1: f32,
    b2: f32,
    w2: f32,
    eps: f32,
    l2: f32,
    shrink: f32,
}

impl AdamStep {
    /// The gradient after weight decay and the updated moments, for one element.
    #[inline(always)]
    fn moments<const DECOUPLED: bool, const L2: bool>(&self, w: &mut f32, grad: f32, m: &mut f32, v: &mut f32) {
        if DECOUPLED {
            *w *= self.shrink; // param.mul_(1 − lr·weight_decay)
        }
        let d = if L2 { grad + self.l2 * *w } else { grad }; // grad.add(param, alpha=weight_decay)
        *m += self.w1 * (d - *m); // exp_avg.lerp_(grad, 1 − β1)
        *v = *v * self.b2 + self.w2 * d * d; // exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 − β2)
    }

    /// param.addcdiv_(exp_avg, second.sqrt() / √bias_correction2 + eps, value=−step_size)
    #[inline(always)]
    fn update(&self, w: &mut f32, m: f32, second: f32) {
        let denom = second.sqrt() / self.bc2_sqrt + self.eps;
        *w += self.step_size * m / denom;
    }

    fn run<const DECOUPLED: bool, const L2: bool>(&self, w: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        crate::kernels::simd::vectorised(|| {
            for (((w, &grad), m), v) in w.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                self.moments::<DECOUPLED, L2>(w, grad, m, v);
                self.update(w, *m, *v);
            }
        })
    }

    fn run_amsgrad<const DECOUPLED: bool, const L2: bool>(&self, w: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], vmax: &mut [f32]) {
        crate::kernels::simd::vectorised(|| {
            for ((((w, &grad), m), v), mx) in w.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()).zip(vmax.iter_mut()) {
                self.moments::<DECOUPLED, L2>(w, grad, m, v);
                *mx = mx.max(*v); // torch.maximum(max_exp_avg_sq, exp_avg_sq)
                self.update(w, *m, *mx);
            }
        })
    }
}
