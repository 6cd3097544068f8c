//! Shapes: rank 0 to 8, row-major, with PyTorch's broadcasting rules.

use crate::error::{bail, Result};
use std::fmt;

/// The largest rank a tensor may have.
pub const MAX_RANK: usize = 8;

/// The most elements one tensor may hold (2^40): a product past this is rejected before any allocation.
pub const MAX_NUMEL: usize = 1 << 40;

/// A tensor's dimensions, stored inline (no heap allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    dims: [usize; MAX_RANK],
    rank: u8,
}

impl Shape {
    /// A shape from a list of dimensions; fails past rank 8 or when the element count overflows.
    pub fn new(dims: &[usize]) -> Result<Shape> {
        if dims.len() > MAX_RANK {
            bail!(ShapeMismatch, "rank {} exceeds the maximum rank {}", dims.len(), MAX_RANK);
        }
        let mut s = Shape { dims: [0; MAX_RANK], rank: dims.len() as u8 };
        s.dims[..dims.len()].copy_from_slice(dims);
        s.checked_numel()?;
        Ok(s)
    }

    /// The shape of a scalar (rank 0, one element).
    pub fn scalar() -> Shape {
        Shape::default()
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }

    /// The rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    fn checked_numel(&self) -> Result<usize> {
        let mut n: usize = 1;
        for &d in self.dims() {
            n = match n.checked_mul(d) {
                Some(v) if v <= MAX_NUMEL => v,
                _ => bail!(ShapeMismatch, "shape {:?} has more than {} elements", self.dims(), MAX_NUMEL),
            };
        }
        Ok(n)
    }

    /// Size of dimension `i` (already normalised).
    pub fn dim(&self, i: usize) -> usize {
        self.dims[i]
    }

    /// Row-major strides, in elements.
    pub fn strides(&self) -> [usize; MAX_RANK] {
        let mut st = [0usize; MAX_RANK];
        let mut acc = 1;
        for i in (0..self.rank()).rev() {
            st[i] = acc;
            acc *= self.dims[i];
        }
        st
    }

    /// Turns a possibly negative dimension index into `0..rank`.
    pub fn norm_dim(&self, dim: i64) -> Result<usize> {
        norm_dim(dim, self.rank())
    }

    /// A bit mask of the dimensions in `dims` (each normalised); an empty list means every dimension.
    pub fn dim_mask(&self, dims: &[i64]) -> Result<u8> {
        if dims.is_empty() {
            return Ok(((1u16 << self.rank()) - 1) as u8);
        }
        let mut mask = 0u8;
        for &d in dims {
            let d = self.norm_dim(d)?;
            if mask & (1 << d) != 0 {
                bail!(InvalidArgument, "dimension {} appears twice in {:?}", d, dims);
            }
            mask |= 1 << d;
        }
        Ok(mask)
    }

    /// The shape after reducing the dimensions in `mask` (kept as 1 with `keepdim`).
    pub fn reduced(&self, mask: u8, keepdim: bool) -> Shape {
        let mut out = Shape::default();
        for (i, &d) in self.dims().iter().enumerate() {
            if mask & (1 << i) != 0 {
                if keepdim {
                    out.push(1);
                }
            } else {
                out.push(d);
            }
        }
        out
    }

    /// Appends a dimension (callers guarantee rank < 8).
    pub(crate) fn push(&mut self, d: usize) {
        self.dims[self.rank as usize] = d;
        self.rank += 1;
    }

    /// The shape with dimension `i` replaced.
    pub(crate) fn with_dim(mut self, i: usize, d: usize) -> Shape {
        self.dims[i] = d;
        self
    }

    /// The broadcast of two shapes, as PyTorch computes it (aligned at the trailing dimension).
    pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape> {
        let r = a.rank().max(b.rank());
        let mut out = Shape { dims: [0; MAX_RANK], rank: r as u8 };
        for i in 0..r {
            let da = if i < r - a.rank() { 1 } else { a.dims[i - (r - a.rank())] };
            let db = if i < r - b.rank() { 1 } else { b.dims[i - (r - b.rank())] };
            out.dims[i] = if da == db || db == 1 {
                da
            } else if da == 1 {
                db
            } else {
                bail!(ShapeMismatch, "shapes {:?} and {:?} cannot be broadcast together", a.dims(), b.dims());
            };
        }
        Ok(out)
    }

    /// Strides for reading a tensor of this shape as if it had the (broadcast) shape `to`: 0 where broadcast.
    pub fn broadcast_strides(&self, to: &Shape) -> [usize; MAX_RANK] {
        let own = self.strides();
        let off = to.rank() - self.rank();
        let mut st = [0usize; MAX_RANK];
        for i in 0..self.rank() {
            if self.dims[i] != 1 {
                st[i + off] = own[i];
            }
        }
        st
    }
}

/// Turns a possibly negative dimension index into `0..rank`.
pub fn norm_dim(dim: i64, rank: usize) -> Result<usize> {
    // A scalar accepts 0 and -1, as in PyTorch.
    let r = (rank as i64).max(1);
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        bail!(InvalidArgument, "dimension {} is out of range for a tensor of rank {}", dim, rank);
    }
    Ok(d as usize)
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_aligns_trailing_dimensions() {
        let a = Shape::new(&[4, 1, 3]).unwrap();
        let b = Shape::new(&[5, 1]).unwrap();
        assert_eq!(Shape::broadcast(&a, &b).unwrap().dims(), &[4, 5, 3]);
        assert!(Shape::broadcast(&a, &Shape::new(&[2]).unwrap()).is_err());
    }

    #[test]
    fn overflowing_shapes_are_rejected() {
        assert!(Shape::new(&[1 << 32, 1 << 32]).is_err());
        assert!(Shape::new(&[0, usize::MAX]).is_ok());
        assert!(Shape::new(&[1; 9]).is_err());
    }
}
