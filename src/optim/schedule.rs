//! Learning-rate schedules with PyTorch's recursive ("chainable") formulas, so that the learning rates
//! match `torch.optim.lr_scheduler` to the last bit: each step derives the new rate from the current one.

use super::Optimizer;
use crate::error::{bail, Result};

/// Which schedule, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `StepLR`: multiply by `gamma` every `step_size` steps.
    Step {
        /// Steps between decays.
        step_size: u64,
        /// The decay factor.
        gamma: f64,
    },
    /// `ExponentialLR`: multiply by `gamma` every step.
    Exponential {
        /// The decay factor.
        gamma: f64,
    },
    /// `CosineAnnealingLR`: from the base rate to `eta_min` along a half cosine over `t_max` steps.
    Cosine {
        /// Steps of a half period.
        t_max: u64,
        /// The lowest rate.
        eta_min: f64,
    },
    /// `LinearLR`, the usual linear warm-up: the factor goes from `start_factor` to `end_factor` over
    /// `total_iters` steps, then stays.
    Linear {
        /// The factor at step 0 (PyTorch's default 1/3).
        start_factor: f64,
        /// The factor from `total_iters` on (PyTorch's default 1).
        end_factor: f64,
        /// The length of the ramp (PyTorch's default 5).
        total_iters: u64,
    },
}

/// A schedule attached to an optimizer's learning rate. As in PyTorch, creating it is step 0 (which
/// already applies `start_factor` for a linear warm-up); call [`LrSchedule::step`] after each
/// optimizer step or epoch, as your recipe says.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    /// The schedule.
    pub schedule: Schedule,
    /// The optimizer's learning rate when the schedule was made.
    pub base_lr: f64,
    /// Steps taken (PyTorch's `last_epoch`).
    pub last_epoch: u64,
    /// The learning rate set by the last step (`get_last_lr()`).
    pub last_lr: f64,
}

impl LrSchedule {
    /// Attaches a schedule to the optimizer and takes step 0.
    pub fn new(schedule: Schedule, opt: &mut dyn Optimizer) -> Result<LrSchedule> {
        match schedule {
            Schedule::Step { step_size: 0, .. } => bail!(InvalidArgument, "StepLR needs step_size >= 1"),
            Schedule::Cosine { t_max: 0, .. } => bail!(InvalidArgument, "CosineAnnealingLR needs t_max >= 1"),
            Schedule::Linear { start_factor, end_factor, total_iters }
                if !(start_factor > 0.0 && start_factor <= 1.0 && (0.0..=1.0).contains(&end_factor) && total_iters > 0) =>
            {
                bail!(InvalidArgument, "LinearLR needs 0 < start_factor <= 1, 0 <= end_factor <= 1 and total_iters >= 1")
            }
            _ => {}
        }
        let base_lr = opt.lr();
        let mut s = LrSchedule { schedule, base_lr, last_epoch: 0, last_lr: base_lr };
        let lr = s.rate(base_lr);
        opt.set_lr(lr);
        s.last_lr = lr;
        Ok(s)
    }

    /// Advances one step and sets the optimizer's learning rate.
    pub fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let lr = self.rate(opt.lr());
        opt.set_lr(lr);
        self.last_lr = lr;
    }

    /// The rate at `last_epoch` given the current one (`get_lr()`).
    fn rate(&self, lr: f64) -> f64 {
        let e = self.last_epoch;
        match self.schedule {
            Schedule::Step { step_size, gamma } => {
                if e == 0 || !e.is_multiple_of(step_size) { lr } else { lr * gamma }
            }
            Schedule::Exponential { gamma } => {
                if e == 0 { lr } else { lr * gamma }
            }
            Schedule::Cosine { t_max, eta_min } => {
                let (t, ef) = (t_max as f64, e as f64);
                let pi = std::f64::consts::PI;
                if e == 0 {
                    lr
                } else if (e as i64 - 1 - t_max as i64).rem_euclid(2 * t_max as i64) == 0 {
                    lr + (self.base_lr - eta_min) * (1.0 - (pi / t).cos()) / 2.0
                } else {
                    (1.0 + (pi * ef / t).cos()) / (1.0 + (pi * (ef - 1.0) / t).cos()) * (lr - eta_min) + eta_min
                }
            }
            Schedule::Linear { start_factor, end_factor, total_iters } => {
                if e == 0 {
                    lr * start_factor
                } else if e > total_iters {
                    lr
                } else {
                    let (n, d) = (total_iters as f64, end_factor - start_factor);
                    lr * (1.0 + d / (n * start_factor + (e as f64 - 1.0) * d))
                }
            }
        }
    }
}
