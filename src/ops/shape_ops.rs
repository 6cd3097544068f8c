//! Ops that move data without arithmetic: reshape, permute/transpose, expand (broadcast_to) and its
//! adjoint sum_to, concat, slice and its adjoint slice_scatter.

use super::elementwise::{float_dispatch, strided_for_each};
use super::reduce::sum_into;
use super::Op;
use crate::dtype::Float;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::shape::{norm_dim, Shape, MAX_RANK};

impl Graph {
    /// The same elements in a new shape (see [`Graph::view`] for an inferred `-1`). Copies the data.
    pub fn reshape(&mut self, x: Tensor, dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        let xs = self.shape(x)?;
        if shape.numel() != xs.numel() {
            bail!(ShapeMismatch, "cannot reshape {:?} ({} elements) into {:?}", xs, xs.numel(), dims);
        }
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(shape.numel())?;
            out.copy_from_slice(self.data::<T>(x)?);
            self.record(Op::Reshape(x), shape, T::wrap(out))
        })
    }

    /// Like [`Graph::reshape`], with PyTorch's `-1` for one inferred dimension.
    pub fn view(&mut self, x: Tensor, dims: &[i64]) -> Result<Tensor> {
        let n = self.numel(x)?;
        let mut out = [0usize; MAX_RANK];
        if dims.len() > MAX_RANK {
            bail!(ShapeMismatch, "rank {} exceeds the maximum rank {}", dims.len(), MAX_RANK);
        }
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in dims.iter().enumerate() {
            if d == -1 {
                if infer.replace(i).is_some() {
                    bail!(InvalidArgument, "only one dimension can be -1 in {:?}", dims);
                }
            } else if d < 0 {
                bail!(InvalidArgument, "invalid dimension {} in {:?}", d, dims);
            } else {
                out[i] = d as usize;
                known = known.saturating_mul(d as usize);
            }
        }
        if let Some(i) = infer {
            if known == 0 || n % known != 0 {
                bail!(ShapeMismatch, "cannot infer -1 in {:?} for {} elements", dims, n);
            }
            out[i] = n / known;
        }
        self.reshape(x, &out[..dims.len()])
    }

    /// Reorders dimensions: output dimension i is input dimension `perm[i]`. Copies the data.
    pub fn permute(&mut self, x: Tensor, perm: &[i64]) -> Result<Tensor> {
        let shape = self.shape(x)?;
        let r = shape.rank();
        if perm.len() != r {
            bail!(ShapeMismatch, "permute needs {} dimensions, got {:?}", r, perm);
        }
        let mut p = [0u8; 8];
        let mut seen = 0u16;
        let mut out_shape = Shape::scalar();
        for (i, &d) in perm.iter().enumerate() {
            let d = norm_dim(d, r)?;
            if seen & (1 << d) != 0 {
                bail!(InvalidArgument, "permute: dimension {} repeats in {:?}", d, perm);
            }
            seen |= 1 << d;
            p[i] = d as u8;
            out_shape.push(shape.dim(d));
        }
        let st = shape.strides();
        let mut src = [0usize; MAX_RANK];
        for i in 0..r {
            src[i] = st[p[i] as usize];
        }
        let zero = [0usize; MAX_RANK];
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(shape.numel())?;
            let xs = self.data::<T>(x)?;
            strided_for_each(&out_shape, &src, &zero, |i, s, _| out[i] = xs[s]);
            self.record(Op::Permute { x, perm: p }, out_shape, T::wrap(out))
        })
    }

    /// Swaps two dimensions.
    pub fn transpose(&mut self, x: Tensor, d0: i64, d1: i64) -> Result<Tensor> {
        let r = self.shape(x)?.rank();
        let (a, b) = (norm_dim(d0, r)?, norm_dim(d1, r)?);
        let mut perm = [0i64; MAX_RANK];
        for (i, p) in perm.iter_mut().enumerate().take(r) {
            *p = i as i64;
        }
        perm.swap(a, b);
        self.permute(x, &perm[..r])
    }

    /// Broadcasts `x` to `dims` (as `torch.broadcast_to`); returns `x` itself when the shape already fits.
    pub fn expand(&mut self, x: Tensor, dims: &[usize]) -> Result<Tensor> {
        let xs = self.shape(x)?;
        let target = Shape::new(dims)?;
        if xs == target {
            return Ok(x);
        }
        if Shape::broadcast(&xs, &target)? != target {
            bail!(ShapeMismatch, "cannot expand {:?} to {:?}", xs, dims);
        }
        let st = xs.broadcast_strides(&target);
        let zero = [0usize; MAX_RANK];
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(target.numel())?;
            let v = self.data::<T>(x)?;
            strided_for_each(&target, &st, &zero, |i, s, _| out[i] = v[s]);
            self.record(Op::Expand(x), target, T::wrap(out))
        })
    }

    /// Sums `x` down to `dims`, the shape it was broadcast from (the adjoint of expand); returns `x`
    /// itself when the shape already fits.
    pub fn sum_to(&mut self, x: Tensor, dims: &[usize]) -> Result<Tensor> {
        let xs = self.shape(x)?;
        let target = Shape::new(dims)?;
        if xs == target {
            return Ok(x);
        }
        if target.rank() > xs.rank() || Shape::broadcast(&xs, &target)? != xs {
            bail!(ShapeMismatch, "cannot sum {:?} down to {:?}", xs, dims);
        }
        // Reduce the leading extra dimensions and those where the target has size 1.
        let off = xs.rank() - target.rank();
        let mut mask = 0u8;
        for i in 0..xs.rank() {
            if i < off || (target.dim(i - off) == 1 && xs.dim(i) != 1) {
                mask |= 1 << i;
            }
        }
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(target.numel())?;
            sum_into(self.data::<T>(x)?, &xs, mask, &mut out);
            self.record(Op::SumTo(x), target, T::wrap(out))
        })
    }

    /// Joins tensors along `dim`; every other dimension must agree.
    pub fn concat(&mut self, xs: &[Tensor], dim: i64) -> Result<Tensor> {
        let Some(&first) = xs.first() else { bail!(InvalidArgument, "concat needs at least one tensor") };
        let s0 = self.shape(first)?;
        let dt = self.dtype(first)?;
        let d = s0.norm_dim(dim)?;
        if s0.rank() == 0 {
            bail!(ShapeMismatch, "concat needs tensors of rank 1 or more");
        }
        let mut total = 0usize;
        for &t in xs {
            let s = self.shape(t)?;
            if self.dtype(t)? != dt {
                bail!(DType, "concat: tensors of different dtypes");
            }
            if s.rank() != s0.rank() || (0..s.rank()).any(|i| i != d && s.dim(i) != s0.dim(i)) {
                bail!(ShapeMismatch, "concat along {}: shape {:?} does not match {:?}", d, s, s0);
            }
            total += s.dim(d);
        }
        let out_shape = s0.with_dim(d, total);
        let outer: usize = s0.dims()[..d].iter().product();
        let inner: usize = s0.dims()[d + 1..].iter().product();
        float_dispatch!(dt, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let row = total * inner;
            let mut offset = 0;
            for &t in xs {
                let w = self.shape(t)?.dim(d) * inner;
                let v = self.data::<T>(t)?;
                for o in 0..outer {
                    out[o * row + offset..o * row + offset + w].copy_from_slice(&v[o * w..(o + 1) * w]);
                }
                offset += w;
            }
            self.record(Op::Concat { xs: xs.to_vec(), dim: d }, out_shape, T::wrap(out))
        })
    }

    pub(crate) fn concat_backward(&mut self, xs: &[Tensor], dim: usize, g: Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mut out = Vec::with_capacity(xs.len());
        let mut start = 0usize;
        for (i, &t) in xs.iter().enumerate() {
            let n = self.shape(t)?.dim(dim);
            out.push(if needs[i] { Some(self.slice(g, dim as i64, start as i64, (start + n) as i64, 1)?) } else { None });
            start += n;
        }
        Ok(out)
    }

    /// Elements `start, start + step, …` below `end` along `dim`, as `x[..., start:end:step]`
    /// (negative bounds count from the end; bounds are clamped as Python slices are). Copies the data.
    pub fn slice(&mut self, x: Tensor, dim: i64, start: i64, end: i64, step: i64) -> Result<Tensor> {
        let shape = self.shape(x)?;
        let d = shape.norm_dim(dim)?;
        if shape.rank() == 0 {
            bail!(ShapeMismatch, "cannot slice a scalar");
        }
        if step <= 0 {
            bail!(InvalidArgument, "slice step must be positive, got {}", step);
        }
        let size = shape.dim(d) as i64;
        let clamp = |v: i64| if v < 0 { (v + size).max(0) } else { v.min(size) };
        let (s, e) = (clamp(start), clamp(end));
        // A step past the dimension takes one element, as the dimension itself would; capping it keeps
        // the length and stride arithmetic below from overflowing for a step near i64::MAX.
        let step = step.min(size.max(1));
        let len = if e > s { ((e - s + step - 1) / step) as usize } else { 0 };
        let (s, step) = (s as usize, step as usize);
        let out_shape = shape.with_dim(d, len);
        let mut src = shape.strides();
        let offset = s * src[d];
        src[d] *= step;
        let zero = [0usize; MAX_RANK];
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let v = self.data::<T>(x)?;
            strided_for_each(&out_shape, &src, &zero, |i, si, _| out[i] = v[offset + si]);
            self.record(Op::Slice { x, dim: d, start: s, step }, out_shape, T::wrap(out))
        })
    }

    /// Zeros of shape `dims` with `x` written at `start, start + step, …` along `dim`: the adjoint of
    /// [`Graph::slice`].
    pub fn slice_scatter(&mut self, x: Tensor, dims: &[usize], dim: usize, start: usize, step: usize) -> Result<Tensor> {
        let xs = self.shape(x)?;
        let shape = Shape::new(dims)?;
        let len = xs.dim(dim);
        let fits = xs.rank() == shape.rank()
            && (0..xs.rank()).all(|i| i == dim || xs.dim(i) == shape.dim(i))
            && step > 0
            && (len == 0 || (len - 1).checked_mul(step).and_then(|n| n.checked_add(start)).is_some_and(|last| last < shape.dim(dim)));
        if !fits {
            bail!(ShapeMismatch, "slice_scatter: {:?} does not fit into {:?} at dim {}", xs, shape, dim);
        }
        let mut dst = shape.strides();
        let offset = start * dst[dim];
        dst[dim] *= step;
        let zero = [0usize; MAX_RANK];
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc_zeroed::<T>(shape.numel())?;
            let v = self.data::<T>(x)?;
            strided_for_each(&xs, &dst, &zero, |i, di, _| out[offset + di] = v[i]);
            self.record(Op::SliceScatter { x, dim, start, step }, shape, T::wrap(out))
        })
    }
}
