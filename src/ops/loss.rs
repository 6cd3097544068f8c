//! Fused losses: mse_loss, cross_entropy (class indices, label smoothing, ignore_index) and
//! binary_cross_entropy_with_logits.

use super::elementwise::float_dispatch;
use super::{grads, Grads, Op};
use crate::dtype::Float;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::kernels::simd::vectorised;
use crate::shape::Shape;

/// How a loss reduces its per-element values, as PyTorch's `reduction=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Reduction {
    /// One value per element (or per sample).
    None = 0,
    /// The mean (over non-ignored samples for cross-entropy).
    Mean = 1,
    /// The sum.
    Sum = 2,
}

impl Reduction {
    /// From the C ABI's integer.
    pub fn from_i32(v: i32) -> Result<Reduction> {
        Ok(match v {
            0 => Reduction::None,
            1 => Reduction::Mean,
            2 => Reduction::Sum,
            _ => bail!(InvalidArgument, "reduction must be 0 (none), 1 (mean) or 2 (sum), got {}", v),
        })
    }
}

/// Options of [`Graph::cross_entropy_with`], PyTorch's defaults by [`Default`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyOptions {
    /// How to reduce.
    pub reduction: Reduction,
    /// Mixes the one-hot target with the uniform distribution (0 = none).
    pub label_smoothing: f64,
    /// Samples with this target contribute nothing (PyTorch's default is -100).
    pub ignore_index: i64,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions { reduction: Reduction::Mean, label_smoothing: 0.0, ignore_index: -100 }
    }
}

fn reduced_shape(shape: &Shape, reduction: Reduction) -> Shape {
    match reduction {
        Reduction::None => *shape,
        Reduction::Mean | Reduction::Sum => Shape::scalar(),
    }
}

/// The sum of the squared differences, in float64.
pub(crate) fn mse_total<T: Float>(x: &[T], y: &[T]) -> f64 {
    let mut s = 0.0f64;
    for (&p, &q) in x.iter().zip(y) {
        let d = (p - q).to_f64();
        s += d * d;
    }
    s
}

/// How many of the targets count (are not `ignore`), after checking that each lies in 0..c.
pub(crate) fn checked_targets(targets: &[i64], c: usize, ignore: i64) -> Result<usize> {
    // One pass over the targets, without branches so that it vectorises: the rows that count,
    // and whether any target lies out of range (negative ones too, as u64). (Element by
    // element with branches, it took 0.2–0.3 µs of the seed network's step.)
    let out_of_range = |t: i64| (t != ignore) & (t as u64 >= c as u64);
    let (count, any_bad) = vectorised(|| {
        targets.iter().fold((0usize, false), |(count, bad), &t| (count + (t != ignore) as usize, bad | out_of_range(t)))
    });
    if any_bad {
        let bad = targets.iter().copied().find(|&t| out_of_range(t)).unwrap_or_default();
        bail!(InvalidArgument, "cross_entropy: target {} is out of range for {} classes", bad, c);
    }
    Ok(count)
}

/// Each row's cross-entropy loss of logits x (n×c) into `rows`, and with `unit` each row's
/// gradient with respect to its logits, by the vectorised kernel; returns the rows' sum in
/// float64, or None (having written nothing) where the kernel does not apply. Targets are checked.
pub(crate) fn cross_entropy_rows_fast<T: Float>(x: &[T], c: usize, tv: &[i64], ignore: i64, eps: f64, rows: &mut [T], unit: Option<&mut [T]>) -> Option<f64> {
    if !T::cross_entropy_rows(x, c, tv, ignore, T::from_f64(eps), rows, unit) {
        return None;
    }
    Some(rows_total(rows))
}

/// The sum in float64 of the rows' losses the vectorised kernel wrote, in a fixed order.
pub(crate) fn rows_total<T: Float>(rows: &[T]) -> f64 {
    // Sixteen partial sums (rows i, i + 16, …), added pairwise at the end: one running float64
    // sum is a chain of dependent adds, and four chains of 125 adds still took 0.15 µs of the
    // seed network's 500 rows.
    // Exact blocks of sixteen, so that the sums stay in registers (with blocks of any length up
    // to sixteen they went through memory on every block: 0.2 µs of the W1 step).
    let mut acc = [0.0f64; 16];
    let blocks = rows.chunks_exact(16);
    let rest = blocks.remainder();
    for block in blocks {
        let block: &[T; 16] = block.try_into().expect("chunks of 16");
        for (a, &l) in acc.iter_mut().zip(block) {
            *a += l.to_f64();
        }
    }
    for (a, &l) in acc.iter_mut().zip(rest) {
        *a += l.to_f64();
    }
    let mut width = 16;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

/// [`cross_entropy_rows_fast`] for any row width and float type, with scratch `e` (n·c) and
/// `stats` (3·n): the softmax's parts, then each row's loss in float64 (rounded into `rows`, and
/// into `losses` if given); returns their sum, added in row order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy_rows_general<T: Float>(x: &[T], c: usize, tv: &[i64], ignore: i64, eps: f64, rows: &mut [T], unit: Option<&mut [T]>, e: &mut [T], stats: &mut [T], mut losses: Option<&mut [f64]>) -> f64 {
    let n = rows.len();
    let (maxes, rest) = stats.split_at_mut(n);
    let (sums, lse) = rest.split_at_mut(n);
    T::softmax_rows(x, c, e, maxes, sums, lse);
    if let Some(u) = unit {
        // As the vectorised kernel: softmax − ε/c, less (1 − ε) at the target, 0 where ignored.
        let (off, at_t) = (T::from_f64(eps / c as f64), T::from_f64(1.0 - eps));
        for i in 0..n {
            let (ur, er) = (&mut u[i * c..(i + 1) * c], &e[i * c..(i + 1) * c]);
            if tv[i] == ignore {
                ur.iter_mut().for_each(|v| *v = T::ZERO);
                continue;
            }
            let inv = T::ONE / sums[i];
            for (v, &ej) in ur.iter_mut().zip(er) {
                *v = ej * inv - off;
            }
            let t = tv[i] as usize;
            ur[t] = ur[t] - at_t;
        }
    }
    let mut total = 0.0f64;
    for i in 0..n {
        let row = &x[i * c..(i + 1) * c];
        let t = tv[i];
        let loss = if t == ignore {
            0.0
        } else {
            let l_i = lse[i].to_f64();
            let mut l = (1.0 - eps) * (l_i - row[t as usize].to_f64());
            if eps > 0.0 {
                let mean_logp: f64 = row.iter().map(|&v| v.to_f64() - l_i).sum::<f64>() / c as f64;
                l -= eps * mean_logp;
            }
            l
        };
        rows[i] = T::from_f64(loss);
        if let Some(l) = losses.as_deref_mut() {
            l[i] = loss;
        }
        total += loss;
    }
    total
}

/// The cross-entropy's gradient with respect to its logits (n×c) into `out`: each row's `unit`
/// gradient `q` (from the forward) times the row's share of the upstream gradient `gv` (one value,
/// or one per row for reduction = none).
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy_backward_rows<T: Float>(q: &[T], c: usize, tv: &[i64], ignore: i64, reduction: Reduction, gv: &[T], count: usize, out: &mut [T]) {
    // The upstream gradient's share of each row that counts (`count` rows of the whole batch, of
    // which q, tv and out may be a run).
    let shared = T::from_f64(match reduction {
        Reduction::None => 0.0,
        Reduction::Sum => gv[0].to_f64(),
        Reduction::Mean => gv[0].to_f64() / count as f64,
    });
    if reduction == Reduction::None || !shared.is_finite() {
        // Row by row with each row's weight (0 for an ignored target), so that an ignored row
        // (zeros in q) stays zeros whatever g is.
        for (((o, q), &t), i) in out.chunks_exact_mut(c).zip(q.chunks_exact(c)).zip(tv).zip(0..) {
            let w = if t == ignore {
                T::ZERO
            } else if reduction == Reduction::None {
                gv[i]
            } else {
                shared
            };
            o.iter_mut().zip(q).for_each(|(o, &q)| *o = q * w);
        }
    } else {
        vectorised(|| out.iter_mut().zip(q).for_each(|(o, &q)| *o = q * shared));
    }
}

impl Graph {
    /// The upstream gradient spread over `dims` with the reduction's scale: what every per-element
    /// derivative gets multiplied by.
    fn loss_scale(&mut self, g: Tensor, dims: &[usize], reduction: Reduction) -> Result<Tensor> {
        match reduction {
            Reduction::None => Ok(g),
            Reduction::Sum => self.expand(g, dims),
            Reduction::Mean => {
                let e = self.expand(g, dims)?;
                let n: usize = dims.iter().product();
                self.mul_scalar(e, 1.0 / n.max(1) as f64)
            }
        }
    }

    /// Mean squared error between two tensors of the same shape.
    pub fn mse_loss(&mut self, a: Tensor, b: Tensor, reduction: Reduction) -> Result<Tensor> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        if sa != sb {
            bail!(ShapeMismatch, "mse_loss: input {:?} and target {:?} differ (broadcast them explicitly)", sa, sb);
        }
        if self.dtype(a)? != self.dtype(b)? {
            bail!(DType, "mse_loss: input and target dtypes differ");
        }
        let out_shape = reduced_shape(&sa, reduction);
        float_dispatch!(self.dtype(a)?, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let (x, y) = (self.data::<T>(a)?, self.data::<T>(b)?);
            match reduction {
                Reduction::None => out.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&p, &q))| *o = (p - q) * (p - q)),
                Reduction::Mean | Reduction::Sum => {
                    let mut s = mse_total(x, y);
                    if reduction == Reduction::Mean {
                        s /= x.len() as f64;
                    }
                    out[0] = T::from_f64(s);
                }
            }
            self.record(Op::MseLoss { a, b, reduction }, out_shape, T::wrap(out))
        })
    }

    pub(crate) fn mse_backward(&mut self, a: Tensor, b: Tensor, reduction: Reduction, g: Tensor, needs: &[bool]) -> Result<Grads> {
        let dims = self.shape(a)?;
        let s = self.loss_scale(g, dims.dims(), reduction)?;
        let d = self.sub(a, b)?;
        let d = self.mul_scalar(d, 2.0)?;
        let da = self.mul(d, s)?;
        let db = if needs[1] { Some(self.neg(da)?) } else { None };
        Ok(grads![if needs[0] { Some(da) } else { None }, db])
    }

    /// Cross-entropy of logits `[N, C]` against int64 class indices `[N]`, mean over samples.
    pub fn cross_entropy(&mut self, logits: Tensor, target: Tensor) -> Result<Tensor> {
        self.cross_entropy_with(logits, target, CrossEntropyOptions::default())
    }

    /// Cross-entropy with PyTorch's options: reduction, label smoothing and ignore_index. The
    /// log-softmax is fused in: logits never go through a separate softmax.
    pub fn cross_entropy_with(&mut self, logits: Tensor, target: Tensor, opt: CrossEntropyOptions) -> Result<Tensor> {
        let (sl, st) = (self.shape(logits)?, self.shape(target)?);
        if sl.rank() != 2 || st.dims() != [sl.dim(0)] {
            bail!(ShapeMismatch, "cross_entropy: logits must be [N, C] and targets [N], got {:?} and {:?}", sl, st);
        }
        if !(0.0..=1.0).contains(&opt.label_smoothing) {
            bail!(InvalidArgument, "cross_entropy: label_smoothing must lie in [0, 1], got {}", opt.label_smoothing);
        }
        let (n, c) = (sl.dim(0), sl.dim(1));
        let count = checked_targets(self.data_i64(target)?, c, opt.ignore_index)?;
        let out_shape = reduced_shape(&st, opt.reduction);
        let eps = opt.label_smoothing;
        // When the loss will be differentiated, the forward also computes each row's gradient from
        // the exponentials it has anyway; the backward then only scales it (instead of computing
        // every exponential again: two thirds of the seed network's cross-entropy time).
        let keep_unit = self.grad_enabled && self.entry(logits)?.requires_grad;
        float_dispatch!(self.dtype(logits)?, T => {
            // Per-row losses (the output itself for reduction = none), then their sum in float64.
            let mut rows = self.alloc::<T>(n)?;
            let mut unit = if keep_unit { Some(self.alloc::<T>(n * c)?) } else { None };
            let (x, tv) = (self.data::<T>(logits)?, self.data_i64(target)?);
            let total = match cross_entropy_rows_fast(x, c, tv, opt.ignore_index, eps, &mut rows, unit.as_deref_mut()) {
                Some(total) => total,
                None => {
                    let (mut e, mut stats) = (self.alloc::<T>(n * c)?, self.alloc::<T>(3 * n)?);
                    let (x, tv) = (self.data::<T>(logits)?, self.data_i64(target)?);
                    let total = cross_entropy_rows_general(x, c, tv, opt.ignore_index, eps, &mut rows, unit.as_deref_mut(), &mut e, &mut stats, None);
                    self.release_scratch(T::wrap(e));
                    self.release_scratch(T::wrap(stats));
                    total
                }
            };
            let out = match opt.reduction {
                Reduction::None => rows,
                Reduction::Sum | Reduction::Mean => {
                    let mut out = self.alloc::<T>(1)?;
                    out[0] = T::from_f64(if opt.reduction == Reduction::Sum { total } else { total / count as f64 });
                    self.release_scratch(T::wrap(rows));
                    out
                }
            };
            let unit = unit.map(|u| self.insert(sl, T::wrap(u), None, false));
            self.record(
                Op::CrossEntropy { logits, target, reduction: opt.reduction, label_smoothing: eps, ignore_index: opt.ignore_index, unit },
                out_shape,
                T::wrap(out),
            )
        })
    }

    /// d cross_entropy / d logits = w_i · (softmax − (1−ε)·onehot − ε/C), recorded as its own op:
    /// each row's weight w_i times the `unit` gradient its forward kept.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cross_entropy_backward(&mut self, g: Tensor, logits: Tensor, target: Tensor, reduction: Reduction, eps: f64, ignore_index: i64, unit: Tensor) -> Result<Tensor> {
        let sl = self.shape(logits)?;
        let (n, c) = (sl.dim(0), sl.dim(1));
        float_dispatch!(self.dtype(logits)?, T => {
            let mut out = self.alloc::<T>(n * c)?;
            let (tv, gv, q) = (self.data_i64(target)?, self.data::<T>(g)?, self.data::<T>(unit)?);
            let count = vectorised(|| tv.iter().filter(|&&t| t != ignore_index).count());
            cross_entropy_backward_rows(q, c, tv, ignore_index, reduction, gv, count, &mut out);
            self.record(
                Op::CrossEntropyBackward { grad: g, logits, target, reduction, label_smoothing: eps, ignore_index },
                sl,
                T::wrap(out),
            )
        })
    }

    /// Binary cross-entropy on logits (a fused, stable sigmoid + BCE) against targets of the same shape.
    pub fn binary_cross_entropy_with_logits(&mut self, x: Tensor, target: Tensor, reduction: Reduction) -> Result<Tensor> {
        let (sx, st) = (self.shape(x)?, self.shape(target)?);
        if sx != st {
            bail!(ShapeMismatch, "binary_cross_entropy_with_logits: input {:?} and target {:?} differ", sx, st);
        }
        if self.dtype(x)? != self.dtype(target)? {
            bail!(DType, "binary_cross_entropy_with_logits: input and target dtypes differ");
        }
        let out_shape = reduced_shape(&sx, reduction);
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let (xv, tv) = (self.data::<T>(x)?, self.data::<T>(target)?);
            let per = |v: T, t: T| -> f64 {
                let (v, t) = (v.to_f64(), t.to_f64());
                v.max(0.0) - v * t + (-v.abs()).exp().ln_1p()
            };
            match reduction {
                Reduction::None => out.iter_mut().zip(xv.iter().zip(tv)).for_each(|(o, (&v, &t))| *o = T::from_f64(per(v, t))),
                Reduction::Mean | Reduction::Sum => {
                    let s: f64 = xv.iter().zip(tv).map(|(&v, &t)| per(v, t)).sum();
                    out[0] = T::from_f64(if reduction == Reduction::Mean { s / xv.len() as f64 } else { s });
                }
            }
            self.record(Op::BceWithLogits { x, target, reduction }, out_shape, T::wrap(out))
        })
    }

    pub(crate) fn bce_backward(&mut self, x: Tensor, target: Tensor, reduction: Reduction, g: Tensor, needs: &[bool]) -> Result<Grads> {
        let dims = self.shape(x)?;
        let s = self.loss_scale(g, dims.dims(), reduction)?;
        let dx = if needs[0] {
            let p = self.sigmoid(x)?;
            let d = self.sub(p, target)?;
            Some(self.mul(d, s)?)
        } else {
            None
        };
        let dt = if needs[1] {
            let d = self.neg(x)?;
            Some(self.mul(d, s)?)
        } else {
            None
        };
        Ok(grads![dx, dt])
    }

    /// Dropout: in training, zeroes each element with probability `p` (from the graph's seeded generator)
    /// and scales the rest by 1/(1−p); returns `x` itself when `training` is false or `p` is 0.
    pub fn dropout(&mut self, x: Tensor, p: f64, training: bool) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            bail!(InvalidArgument, "dropout probability must lie in [0, 1], got {}", p);
        }
        if !training || p == 0.0 {
            return Ok(x);
        }
        let dims = self.dims(x)?;
        let dt = self.dtype(x)?;
        let mask = self.rand(&dims, 0.0, 1.0, dt)?;
        let scale = if p == 1.0 { 0.0 } else { 1.0 / (1.0 - p) };
        float_dispatch!(dt, T => {
            let (pt, st) = (T::from_f64(p), T::from_f64(scale));
            for v in self.data_mut::<T>(mask)?.iter_mut() {
                *v = if *v < pt { T::ZERO } else { st };
            }
        });
        self.mul(x, mask)
    }
}
