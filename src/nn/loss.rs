//! Losses built from the engine's ops (the fused ones — cross_entropy, mse, binary cross-entropy with
//! logits — are [`Graph`] methods and are re-exported here by name for one place to look).

use crate::dtype::DType;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::ops::elementwise::float_dispatch;
use crate::ops::Reduction;
use crate::dtype::Float;

pub use crate::ops::loss::CrossEntropyOptions;

/// Cross-entropy of logits `[N, C]` against int64 classes `[N]` with PyTorch's options.
pub fn cross_entropy(g: &mut Graph, logits: Tensor, target: Tensor, opt: CrossEntropyOptions) -> Result<Tensor> {
    g.cross_entropy_with(logits, target, opt)
}

/// Mean squared error.
pub fn mse_loss(g: &mut Graph, input: Tensor, target: Tensor, reduction: Reduction) -> Result<Tensor> {
    g.mse_loss(input, target, reduction)
}

/// Binary cross-entropy on logits (a stable sigmoid + BCE).
pub fn binary_cross_entropy_with_logits(g: &mut Graph, input: Tensor, target: Tensor, reduction: Reduction) -> Result<Tensor> {
    g.binary_cross_entropy_with_logits(input, target, reduction)
}

fn reduce(g: &mut Graph, per: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::None => Ok(per),
        Reduction::Sum => g.sum(per, &[], false),
        Reduction::Mean => g.mean(per, &[], false),
    }
}

fn same_shape(g: &Graph, a: Tensor, b: Tensor, what: &str) -> Result<()> {
    let (sa, sb) = (g.shape(a)?, g.shape(b)?);
    if sa != sb {
        bail!(ShapeMismatch, "{}: input {:?} and target {:?} differ (broadcast them explicitly)", what, sa, sb);
    }
    Ok(())
}

/// Negative log-likelihood of log-probabilities `[N, C]` against int64 classes `[N]`, as `F.nll_loss`:
/// the mean is over the samples whose target is not `ignore_index`.
pub fn nll_loss(g: &mut Graph, log_probs: Tensor, target: Tensor, reduction: Reduction, ignore_index: i64) -> Result<Tensor> {
    let (sl, st) = (g.shape(log_probs)?, g.shape(target)?);
    if sl.rank() != 2 || st.dims() != [sl.dim(0)] {
        bail!(ShapeMismatch, "nll_loss: input must be [N, C] and target [N], got {:?} and {:?}", sl, st);
    }
    let (n, c) = (sl.dim(0), sl.dim(1));
    let tv = g.data_i64(target)?;
    if let Some(&bad) = tv.iter().find(|&&t| t != ignore_index && (t < 0 || t as usize >= c)) {
        bail!(InvalidArgument, "nll_loss: target {} is out of range for {} classes", bad, c);
    }
    let safe: Vec<i64> = tv.iter().map(|&t| if t == ignore_index { 0 } else { t }).collect();
    let keep: Vec<f64> = tv.iter().map(|&t| if t == ignore_index { 0.0 } else { 1.0 }).collect();
    let count = keep.iter().sum::<f64>();
    let idx = g.from_i64(&safe, &[n, 1])?;
    let picked = g.gather(log_probs, 1, idx)?;
    let picked = g.reshape(picked, &[n])?;
    let dt = g.dtype(log_probs)?;
    let w = g.zeros(&[n], dt)?;
    g.write_f64(w, &keep)?;
    let kept = g.mul(picked, w)?;
    let per = g.neg(kept)?;
    match reduction {
        Reduction::None => Ok(per),
        Reduction::Sum => g.sum(per, &[], false),
        Reduction::Mean => {
            let s = g.sum(per, &[], false)?;
            // 0/0 = NaN when every target is ignored, as PyTorch.
            g.mul_scalar(s, 1.0 / count)
        }
    }
}

/// Mean absolute error (`F.l1_loss`).
pub fn l1_loss(g: &mut Graph, input: Tensor, target: Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape(g, input, target, "l1_loss")?;
    let d = g.sub(input, target)?;
    let a = g.abs(d)?;
    reduce(g, a, reduction)
}

/// Smooth L1 (`F.smooth_l1_loss`): 0.5·d²/β where |d| < β, |d| − 0.5·β elsewhere; β = 0 is L1.
pub fn smooth_l1_loss(g: &mut Graph, input: Tensor, target: Tensor, reduction: Reduction, beta: f64) -> Result<Tensor> {
    same_shape(g, input, target, "smooth_l1_loss")?;
    if beta.is_nan() || beta < 0.0 {
        bail!(InvalidArgument, "smooth_l1_loss: beta must be non-negative, got {}", beta);
    }
    if beta == 0.0 {
        return l1_loss(g, input, target, reduction);
    }
    let d = g.sub(input, target)?;
    // The branch mask is a constant: the gradient flows through whichever branch each element took.
    let dt = g.dtype(d)?;
    let quad = float_dispatch!(dt, T => {
        let b = T::from_f64(beta);
        g.map_const::<T>(d, |v| if v.abs() < b { T::ONE } else { T::ZERO })?
    });
    let lin = g.map_const_via(quad)?;
    let sq = g.pow(d, 2.0)?;
    let sq = g.mul_scalar(sq, 0.5 / beta)?;
    let sq = g.mul(sq, quad)?;
    let ab = g.abs(d)?;
    let ab = g.add_scalar(ab, -0.5 * beta)?;
    let ab = g.mul(ab, lin)?;
    let per = g.add(sq, ab)?;
    reduce(g, per, reduction)
}

/// The fraction of rows of `logits` `[N, C]` whose largest entry (the first, on ties) is at the target.
pub fn accuracy(g: &Graph, logits: Tensor, target: Tensor) -> Result<f64> {
    let s = g.shape(logits)?;
    if s.rank() != 2 || g.shape(target)?.dims() != [s.dim(0)] || g.dtype(target)? != DType::I64 {
        bail!(ShapeMismatch, "accuracy needs logits [N, C] and int64 targets [N]");
    }
    let (n, c) = (s.dim(0), s.dim(1));
    if n == 0 || c == 0 {
        return Ok(0.0);
    }
    let y = g.data_i64(target)?;
    let v = g.to_vec_f32(logits)?;
    let mut right = 0usize;
    for i in 0..n {
        let row = &v[i * c..(i + 1) * c];
        let mut best = 0;
        for (j, &x) in row.iter().enumerate() {
            if x > row[best] {
                best = j;
            }
        }
        right += (best as i64 == y[i]) as usize;
    }
    Ok(right as f64 / n as f64)
}

impl Graph {
    /// 1 − mask, as a constant (no grad).
    fn map_const_via(&mut self, mask: Tensor) -> Result<Tensor> {
        float_dispatch!(self.dtype(mask)?, T => self.map_const::<T>(mask, |v| T::ONE - v))
    }
}
