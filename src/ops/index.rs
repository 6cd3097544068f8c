//! Indexing ops with int64 indices: index_select (embeddings) and gather (class targets), with their
//! adjoints index_add and scatter_add.

use super::elementwise::float_dispatch;
use super::Op;
use crate::dtype::Float;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::shape::Shape;

/// Checks every index against `size`, naming the first bad one.
fn check_indices(idx: &[i64], size: usize, what: &str) -> Result<()> {
    if let Some(&bad) = idx.iter().find(|&&i| i < 0 || i as usize >= size) {
        bail!(InvalidArgument, "{}: index {} is out of range for a dimension of size {}", what, bad, size);
    }
    Ok(())
}

impl Graph {
    /// Picks the slices `index[k]` of `x` along `dim` (`index` is a 1-D int64 tensor).
    pub fn index_select(&mut self, x: Tensor, dim: i64, index: Tensor) -> Result<Tensor> {
        let shape = self.shape(x)?;
        let d = shape.norm_dim(dim)?;
        if shape.rank() == 0 || self.shape(index)?.rank() != 1 {
            bail!(ShapeMismatch, "index_select needs a tensor of rank >= 1 and a 1-D index");
        }
        let idx = self.data_i64(index)?;
        check_indices(idx, shape.dim(d), "index_select")?;
        let n = idx.len();
        let out_shape = shape.with_dim(d, n);
        let outer: usize = shape.dims()[..d].iter().product();
        let inner: usize = shape.dims()[d + 1..].iter().product();
        let size = shape.dim(d);
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let (v, idx) = (self.data::<T>(x)?, self.data_i64(index)?);
            for o in 0..outer {
                for (k, &i) in idx.iter().enumerate() {
                    let src = (o * size + i as usize) * inner;
                    let dst = (o * n + k) * inner;
                    out[dst..dst + inner].copy_from_slice(&v[src..src + inner]);
                }
            }
            self.record(Op::IndexSelect { x, dim: d, index }, out_shape, T::wrap(out))
        })
    }

    /// Zeros with `size` entries along `dim`, then `out[index[k]] += x[k]` along `dim`: the adjoint of
    /// index_select.
    pub fn index_add_into(&mut self, x: Tensor, dim: usize, index: Tensor, size: usize) -> Result<Tensor> {
        let shape = self.shape(x)?;
        let idx = self.data_i64(index)?;
        if dim >= shape.rank() || idx.len() != shape.dim(dim) {
            bail!(ShapeMismatch, "index_add: {} indices for {} slices", idx.len(), shape.dims().get(dim).copied().unwrap_or(0));
        }
        check_indices(idx, size, "index_add")?;
        let out_shape = shape.with_dim(dim, size);
        let outer: usize = shape.dims()[..dim].iter().product();
        let inner: usize = shape.dims()[dim + 1..].iter().product();
        let n = idx.len();
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc_zeroed::<T>(out_shape.numel())?;
            let (v, idx) = (self.data::<T>(x)?, self.data_i64(index)?);
            for o in 0..outer {
                for (k, &i) in idx.iter().enumerate() {
                    let dst = (o * size + i as usize) * inner;
                    let src = (o * n + k) * inner;
                    for j in 0..inner {
                        out[dst + j] += v[src + j];
                    }
                }
            }
            self.record(Op::IndexAdd { x, dim, index }, out_shape, T::wrap(out))
        })
    }

    /// `out[i][j][k] = x[i][index[i][j][k]][k]` for dim = 1, and likewise for any dim (`torch.gather`).
    pub fn gather(&mut self, x: Tensor, dim: i64, index: Tensor) -> Result<Tensor> {
        let shape = self.shape(x)?;
        let d = shape.norm_dim(dim)?;
        let is = self.shape(index)?;
        if is.rank() != shape.rank() || (0..is.rank()).any(|i| i != d && is.dim(i) > shape.dim(i)) {
            bail!(ShapeMismatch, "gather: index shape {:?} does not fit input shape {:?} along dim {}", is, shape, d);
        }
        check_indices(self.data_i64(index)?, shape.dims().get(d).copied().unwrap_or(1), "gather")?;
        let st = shape.strides();
        let ist = is.strides();
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(is.numel())?;
            let (v, idx) = (self.data::<T>(x)?, self.data_i64(index)?);
            for (p, o) in out.iter_mut().enumerate() {
                *o = v[gather_offset(p, &is, &ist, &st, d, idx[p])];
            }
            self.record(Op::Gather { x, dim: d, index }, is, T::wrap(out))
        })
    }

    /// Zeros of shape `dims`, then `out[..index..] += x` along `dim`: the adjoint of gather.
    pub fn scatter_add_into(&mut self, x: Tensor, dim: usize, index: Tensor, dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        let xs = self.shape(x)?;
        let is = self.shape(index)?;
        if xs != is || is.rank() != shape.rank() || (0..is.rank()).any(|i| i != dim && is.dim(i) > shape.dim(i)) {
            bail!(ShapeMismatch, "scatter_add: source {:?} and index {:?} do not fit {:?}", xs, is, dims);
        }
        check_indices(self.data_i64(index)?, shape.dims().get(dim).copied().unwrap_or(1), "scatter_add")?;
        let st = shape.strides();
        let ist = is.strides();
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc_zeroed::<T>(shape.numel())?;
            let (v, idx) = (self.data::<T>(x)?, self.data_i64(index)?);
            for (p, &val) in v.iter().enumerate() {
                out[gather_offset(p, &is, &ist, &st, dim, idx[p])] += val;
            }
            self.record(Op::ScatterAdd { x, dim, index }, shape, T::wrap(out))
        })
    }
}

/// The offset in the data tensor addressed by position `p` of the index tensor.
fn gather_offset(p: usize, is: &Shape, ist: &[usize; 8], st: &[usize; 8], dim: usize, i: i64) -> usize {
    let mut off = 0;
    let mut rem = p;
    for k in 0..is.rank() {
        let c = rem / ist[k];
        rem %= ist[k];
        off += if k == dim { i as usize } else { c } * st[k];
    }
    off
}
