//! Matrix products: matmul (2-D and batched, with transpose flags so that backward reads transposed
//! operands through strides instead of copies) and linear (x·Wᵀ + b, fused).

use super::elementwise::float_dispatch;
use super::{grads, Grads, Op};
use crate::dtype::Float;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::kernels::math::Activation;
use crate::shape::{Shape, MAX_RANK};

/// The geometry of one operand: stored [.., rows, cols], read transposed or not.
#[derive(Clone, Copy)]
struct Operand {
    batch: usize,
    rows: usize,
    cols: usize,
    t: bool,
}

impl Operand {
    fn of(s: &Shape, t: bool) -> Result<Operand> {
        let r = s.rank();
        if r < 2 {
            bail!(ShapeMismatch, "matmul needs operands of rank 2 or more, got {:?} (reshape a vector to a matrix)", s);
        }
        Ok(Operand { batch: s.dims()[..r - 2].iter().product(), rows: s.dim(r - 2), cols: s.dim(r - 1), t })
    }
    /// (rows, cols) of the operand as read.
    fn logical(&self) -> (usize, usize) {
        if self.t { (self.cols, self.rows) } else { (self.rows, self.cols) }
    }
    /// (row stride, col stride) of the operand as read.
    fn strides(&self) -> (isize, isize) {
        if self.t { (1, self.cols as isize) } else { (self.cols as isize, 1) }
    }
    fn size(&self) -> usize {
        self.rows * self.cols
    }
}

impl Graph {
    /// The matrix product; batched over leading dimensions, which must match or be absent on one side.
    pub fn matmul(&mut self, a: Tensor, b: Tensor) -> Result<Tensor> {
        self.matmul_t(a, b, false, false)
    }

    /// op(a)·op(b), where op transposes the last two dimensions when its flag is set.
    pub fn matmul_t(&mut self, a: Tensor, b: Tensor, ta: bool, tb: bool) -> Result<Tensor> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        let (oa, ob) = (Operand::of(&sa, ta)?, Operand::of(&sb, tb)?);
        let ((m, k), (k2, n)) = (oa.logical(), ob.logical());
        if k != k2 {
            bail!(ShapeMismatch, "matmul: {:?}{} and {:?}{} do not chain ({} vs {})", sa, if ta { "ᵀ" } else { "" }, sb, if tb { "ᵀ" } else { "" }, k, k2);
        }
        // Batch dimensions: both operands have the same ones, or one operand is a plain matrix.
        if sa.rank() > 2 && sb.rank() > 2 && sa.dims()[..sa.rank() - 2] != sb.dims()[..sb.rank() - 2] {
            bail!(ShapeMismatch, "matmul: batch dimensions of {:?} and {:?} differ", sa, sb);
        }
        let lead = if sa.rank() > 2 { &sa } else { &sb };
        if self.dtype(a)? != self.dtype(b)? {
            bail!(DType, "matmul: operands of different dtypes");
        }
        let mut out_dims = [0usize; MAX_RANK];
        let r = lead.rank();
        out_dims[..r - 2].copy_from_slice(&lead.dims()[..r - 2]);
        out_dims[r - 2..r].copy_from_slice(&[m, n]);
        let out_shape = Shape::new(&out_dims[..r])?;
        let batch = if sa.rank() > 2 { oa.batch } else { ob.batch };
        float_dispatch!(self.dtype(a)?, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let (xa, xb) = (self.data::<T>(a)?, self.data::<T>(b)?);
            let ((rsa, csa), (rsb, csb)) = (oa.strides(), ob.strides());
            if !ta && ob.batch == 1 && batch > 1 {
                // Rows of every batch of A against one B: a single tall product.
                T::gemm(batch * m, k, n, T::ONE, xa, rsa, csa, xb, rsb, csb, T::ZERO, &mut out, n as isize, 1);
            } else {
                for bi in 0..batch {
                    let pa = if oa.batch == 1 { 0 } else { bi * oa.size() };
                    let pb = if ob.batch == 1 { 0 } else { bi * ob.size() };
                    T::gemm(m, k, n, T::ONE, &xa[pa..pa + oa.size()], rsa, csa, &xb[pb..pb + ob.size()], rsb, csb,
                        T::ZERO, &mut out[bi * m * n..(bi + 1) * m * n], n as isize, 1);
                }
            }
            self.record(Op::Matmul { a, b, ta, tb }, out_shape, T::wrap(out))
        })
    }

    /// In a backward that accumulates into `.grad` without create_graph, adds op(a)·op(b) straight into
    /// the existing `.grad` of the leaf `target` (gemm with beta = 1: no temporary, no separate add) and
    /// returns true. Returns false when that does not apply (create_graph, the functional form, no
    /// `.grad` yet, batched operands, shared storage); the caller then returns a new gradient tensor.
    fn gemm_into_grad(&mut self, target: Tensor, a: Tensor, ta: bool, b: Tensor, tb: bool) -> Result<bool> {
        if !self.fuse_grad_accumulation {
            return Ok(false);
        }
        let e = self.entry(target)?;
        let Some(gt) = e.grad.filter(|_| e.node.is_none() && e.requires_grad) else { return Ok(false) };
        let target_shape = e.shape;
        let Ok(ge) = self.entry(gt) else { return Ok(false) };
        let (gshape, dt) = (ge.shape, ge.buf.dtype());
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        if sa.rank() != 2 || sb.rank() != 2 || gshape != target_shape || gt == a || gt == b {
            return Ok(false);
        }
        if self.dtype(a)? != dt || self.dtype(b)? != dt {
            return Ok(false);
        }
        let region = self.region_of(gt)?;
        if region.is_some() && (self.region_of(a)? == region || self.region_of(b)? == region) {
            return Ok(false);
        }
        let (oa, ob) = (Operand::of(&sa, ta)?, Operand::of(&sb, tb)?);
        let ((m, k), (k2, n)) = (oa.logical(), ob.logical());
        if k != k2 || gshape.dims() != [m, n] {
            return Ok(false);
        }
        let ((rsa, csa), (rsb, csb)) = (oa.strides(), ob.strides());
        float_dispatch!(dt, T => {
            self.with_storage_taken::<T, _>(gt, |g, c| -> Result<()> {
                T::gemm(m, k, n, T::ONE, g.data::<T>(a)?, rsa, csa, g.data::<T>(b)?, rsb, csb, T::ONE, c, n as isize, 1);
                Ok(())
            })??;
        });
        Ok(true)
    }

    pub(crate) fn matmul_backward(&mut self, a: Tensor, b: Tensor, ta: bool, tb: bool, g: Tensor, needs: &[bool]) -> Result<Grads> {
        let fused_a = needs[0] && if ta { self.gemm_into_grad(a, b, tb, g, true)? } else { self.gemm_into_grad(a, g, false, b, !tb)? };
        let fused_b = needs[1] && if tb { self.gemm_into_grad(b, g, true, a, ta)? } else { self.gemm_into_grad(b, a, !ta, g, false)? };
        let da = if needs[0] && !fused_a {
            let d = if ta { self.matmul_t(b, g, tb, true)? } else { self.matmul_t(g, b, false, !tb)? };
            let dims = self.shape(a)?;
            Some(self.sum_to_batch(d, dims.dims())?)
        } else {
            None
        };
        let db = if needs[1] && !fused_b {
            let d = if tb { self.matmul_t(g, a, true, ta)? } else { self.matmul_t(a, g, !ta, false)? };
            let dims = self.shape(b)?;
            Some(self.sum_to_batch(d, dims.dims())?)
        } else {
            None
        };
        Ok(grads![da, db])
    }

    /// Sums a batched gradient over the batch dimensions its operand did not have.
    fn sum_to_batch(&mut self, d: Tensor, dims: &[usize]) -> Result<Tensor> {
        if self.shape(d)?.dims() == dims {
            return Ok(d);
        }
        self.sum_to(d, dims)
    }

    /// x·Wᵀ + b for x of shape `[.., in]`, W `[out, in]`, b `[out]` (optional), in one fused pass.
    pub fn linear(&mut self, x: Tensor, w: Tensor, b: Option<Tensor>) -> Result<Tensor> {
        self.linear_with(x, w, b, None)
    }

    /// act(x·Wᵀ + b): a linear layer and the activation after it as one op (relu applied as the
    /// product stores its sums where it can, sigmoid and tanh in one pass over the output in
    /// place). The result is bit-identical to
    /// `linear` followed by `relu`, `sigmoid` or `tanh`, and so are the gradients, but the
    /// pre-activation tensor is never materialised: its grad_fn is `linear_relu` (or
    /// `linear_sigmoid`, `linear_tanh`) where PyTorch's would be the activation's.
    /// [`Sequential`](crate::nn::Sequential) uses it for every Linear layer followed by one of
    /// these activations.
    pub fn linear_act(&mut self, x: Tensor, w: Tensor, b: Option<Tensor>, act: Activation) -> Result<Tensor> {
        self.linear_with(x, w, b, Some(act))
    }

    fn linear_with(&mut self, x: Tensor, w: Tensor, b: Option<Tensor>, act: Option<Activation>) -> Result<Tensor> {
        let (sx, sw) = (self.shape(x)?, self.shape(w)?);
        if sx.rank() < 2 {
            bail!(ShapeMismatch, "linear: the input must have rank 2 or more, got {:?} (reshape [in] to [1, in])", sx);
        }
        if sw.rank() != 2 || sx.dim(sx.rank() - 1) != sw.dim(1) {
            bail!(ShapeMismatch, "linear: input {:?} does not fit weight {:?} (expected [.., {}])", sx, sw, sw.dims().get(1).copied().unwrap_or(0));
        }
        let (nout, nin) = (sw.dim(0), sw.dim(1));
        if let Some(b) = b {
            if self.shape(b)?.dims() != [nout] {
                bail!(ShapeMismatch, "linear: bias shape {:?} should be [{}]", self.shape(b)?, nout);
            }
            if self.dtype(b)? != self.dtype(w)? {
                bail!(DType, "linear: bias and weight dtypes differ");
            }
        }
        if self.dtype(x)? != self.dtype(w)? {
            bail!(DType, "linear: input and weight dtypes differ");
        }
        let rows: usize = sx.dims()[..sx.rank() - 1].iter().product();
        let out_shape = sx.with_dim(sx.rank() - 1, nout);
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(out_shape.numel())?;
            let (xv, wv) = (self.data::<T>(x)?, self.data::<T>(w)?);
            let bv = b.map(|b| self.data::<T>(b)).transpose()?;
            T::gemm_layer(rows, nin, nout, xv, nin as isize, 1, wv, 1, nin as isize, bv, act, &mut out);
            self.record(Op::Linear { x, w, b, act }, out_shape, T::wrap(out))
        })
    }

    pub(crate) fn linear_backward(&mut self, x: Tensor, w: Tensor, b: Option<Tensor>, g: Tensor, needs: &[bool]) -> Result<Grads> {
        let gx = if needs[0] { Some(self.matmul_t(g, w, false, false)?) } else { None };
        let gw = if needs[1] && !self.gemm_into_grad(w, g, true, x, false)? {
            let (sx, sg) = (self.shape(x)?, self.shape(g)?);
            Some(if sx.rank() == 2 {
                self.matmul_t(g, x, true, false)?
            } else {
                let (nin, nout) = (sx.dim(sx.rank() - 1), sg.dim(sg.rank() - 1));
                let rows: usize = sx.dims()[..sx.rank() - 1].iter().product();
                let g2 = self.reshape(g, &[rows, nout])?;
                let x2 = self.reshape(x, &[rows, nin])?;
                self.matmul_t(g2, x2, true, false)?
            })
        } else {
            None
        };
        let gb = match b {
            Some(b) if needs[2] => {
                let dims = self.shape(b)?;
                Some(self.sum_to(g, dims.dims())?)
            }
            _ => None,
        };
        Ok(if b.is_some() { grads![gx, gw, gb] } else { grads![gx, gw] })
    }
}
