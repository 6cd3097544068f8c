//! Gradient clipping, as `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.

use super::with_grad_mut;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// Scales the gradients of `params` so that their joint `norm_type`-norm (2 for Euclidean,
/// `f64::INFINITY` for the max) is at most `max_norm`; returns the norm before clipping. As PyTorch, the
/// coefficient is max_norm / (norm + 1e-6) clamped to 1, and is applied even when it is 1. Parameters
/// without a `.grad` are skipped.
pub fn clip_grad_norm(g: &mut Graph, params: &[Tensor], max_norm: f64, norm_type: f64) -> Result<f64> {
    if norm_type.is_nan() || norm_type <= 0.0 {
        bail!(InvalidArgument, "clip_grad_norm: norm_type must be positive, got {}", norm_type);
    }
    // Per-tensor norms (rounded to float32, as PyTorch's per-tensor results are), then the norm of those.
    let mut norms: Vec<f32> = Vec::with_capacity(params.len());
    for &p in params {
        if let Some(gt) = g.grad(p)? {
            let v = g.data::<f32>(gt)?;
            let n = if norm_type.is_infinite() {
                v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()))
            } else if norm_type == 2.0 {
                v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
            } else {
                v.iter().map(|&x| (x as f64).abs().powf(norm_type)).sum::<f64>().powf(1.0 / norm_type)
            };
            norms.push(n as f32);
        }
    }
    if norms.is_empty() {
        return Ok(0.0);
    }
    let total = if norm_type.is_infinite() {
        norms.iter().fold(0.0f64, |m, &x| m.max(x as f64))
    } else {
        norms.iter().map(|&x| (x as f64).powf(norm_type)).sum::<f64>().powf(1.0 / norm_type)
    } as f32;
    let coef = (max_norm as f32 / (total + 1e-6)).min(1.0);
    for &p in params {
        with_grad_mut(g, p, |d| d.iter_mut().for_each(|x| *x *= coef))?;
    }
    Ok(total as f64)
}

/// Clamps every gradient element of `params` to [−clip, clip].
pub fn clip_grad_value(g: &mut Graph, params: &[Tensor], clip: f64) -> Result<()> {
    if !super::non_negative(clip) {
        bail!(InvalidArgument, "clip_grad_value: the clip value must be non-negative, got {}", clip);
    }
    let c = clip as f32;
    for &p in params {
        with_grad_mut(g, p, |d| d.iter_mut().for_each(|x| *x = x.clamp(-c, c)))?;
    }
    Ok(())
}
