//! Elementwise ops: unary functions, scalar arithmetic and broadcasting binary arithmetic.

use super::{grads, Grads, Op, OpKind, Saved};
use crate::dtype::{Buf, Float};
use crate::kernels::math::{relu, Activation};
use crate::kernels::simd::vectorised;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::shape::{Shape, MAX_RANK};

/// A unary elementwise function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// |x|
    Abs,
    /// max(x, 0)
    Relu,
    /// x for x > 0, slope·x otherwise
    LeakyRelu(f64),
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// x·Φ(x), the exact (erf) form, PyTorch's default
    Gelu,
    /// x^p for a scalar exponent p
    Pow(f64),
    /// x + c
    AddScalar(f64),
    /// x · c
    MulScalar(f64),
}

impl From<Activation> for Unary {
    fn from(act: Activation) -> Unary {
        match act {
            Activation::Relu => Unary::Relu,
            Activation::Sigmoid => Unary::Sigmoid,
            Activation::Tanh => Unary::Tanh,
        }
    }
}

impl Unary {
    /// The activation this function is, if it is one whose derivative is taken from its output
    /// (relu, sigmoid, tanh: the fused backward, and the layer-fused ops).
    pub(crate) fn activation(self) -> Option<Activation> {
        match self {
            Unary::Relu => Some(Activation::Relu),
            Unary::Sigmoid => Some(Activation::Sigmoid),
            Unary::Tanh => Some(Activation::Tanh),
            _ => None,
        }
    }

    pub(crate) fn kind(self) -> OpKind {
        match self {
            Unary::Neg => OpKind::Neg,
            Unary::Exp => OpKind::Exp,
            Unary::Log => OpKind::Log,
            Unary::Sqrt => OpKind::Sqrt,
            Unary::Abs => OpKind::Abs,
            Unary::Relu => OpKind::Relu,
            Unary::LeakyRelu(_) => OpKind::LeakyRelu,
            Unary::Sigmoid => OpKind::Sigmoid,
            Unary::Tanh => OpKind::Tanh,
            Unary::Gelu => OpKind::Gelu,
            Unary::Pow(_) => OpKind::Pow,
            Unary::AddScalar(_) => OpKind::AddScalar,
            Unary::MulScalar(_) => OpKind::MulScalar,
        }
    }

    pub(crate) fn saved(self) -> Saved {
        match self {
            Unary::Neg | Unary::AddScalar(_) | Unary::MulScalar(_) => Saved { inputs: 0, output: false },
            Unary::Exp | Unary::Sqrt | Unary::Relu | Unary::Sigmoid | Unary::Tanh => Saved { inputs: 0, output: true },
            Unary::Log | Unary::Abs | Unary::LeakyRelu(_) | Unary::Gelu | Unary::Pow(_) => Saved { inputs: 1, output: false },
        }
    }
}

/// A binary elementwise function with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
}

impl Binary {
    pub(crate) fn kind(self) -> OpKind {
        match self {
            Binary::Add => OpKind::Add,
            Binary::Sub => OpKind::Sub,
            Binary::Mul => OpKind::Mul,
            Binary::Div => OpKind::Div,
        }
    }
    pub(crate) fn saved(self) -> Saved {
        match self {
            Binary::Add | Binary::Sub => Saved { inputs: 0, output: false },
            Binary::Mul | Binary::Div => Saved { inputs: 0b11, output: false },
        }
    }
}

const SQRT_2_OVER_PI_HALF: f64 = 0.398_942_280_401_432_7; // 1/√(2π)

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    // Stable in both tails.
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

#[inline(always)]
fn gelu<T: Float>(x: T) -> T {
    x * T::from_f64(0.5) * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

/// d gelu / dx = Φ(x) + x·φ(x).
#[inline(always)]
fn gelu_grad<T: Float>(x: T) -> T {
    let cdf = T::from_f64(0.5) * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf());
    let pdf = T::from_f64(SQRT_2_OVER_PI_HALF) * (T::from_f64(-0.5) * x * x).exp();
    cdf + x * pdf
}

/// out = u(x) over slices of one length: the forward of the unary op.
pub(crate) fn unary_into<T: Float>(x: &[T], out: &mut [T], u: Unary) {
    // Sigmoid and tanh run over the slice (vectorised for float32: libm's expf per element was a
    // fifth of the seed step, and tanhf a fifth of W4's chain).
    match u {
        Unary::Sigmoid => T::sigmoid_into(x, out),
        Unary::Tanh => T::tanh_into(x, out),
        _ => map_into(x, out, u),
    }
}

/// The gradient through leaky relu or GELU from their input xs, over the incoming gradient d in
/// place: d · (x > 0 ? 1 : slope), as the op's backward multiplies g by that mask, and
/// d · gelu'(x), as `gelu_backward` computes it (other functions are not taken).
pub(crate) fn input_activation_grad<T: Float>(u: Unary, d: &mut [T], xs: &[T]) {
    match u {
        Unary::LeakyRelu(a) => {
            let a = T::from_f64(a);
            chain_rule(d, xs, None, |x, gv| gv * if x > T::ZERO { T::ONE } else { a })
        }
        Unary::Gelu => chain_rule(d, xs, None, |x, gv| gv * gelu_grad(x)),
        _ => unreachable!("input_activation_grad takes leaky relu and GELU"),
    }
}

fn map_into<T: Float>(x: &[T], out: &mut [T], u: Unary) {
    // Long tensors are mapped in pieces on the library's threads (same function per element).
    macro_rules! map {
        (|$v:ident| $e:expr) => {
            crate::kernels::threads::for_each_piece(out, &|lo, out: &mut [T]| {
                for (o, &$v) in out.iter_mut().zip(&x[lo..]) {
                    *o = $e;
                }
            })
        };
    }
    match u {
        Unary::Neg => map!(|v| -v),
        Unary::Exp => map!(|v| v.exp()),
        Unary::Log => map!(|v| v.ln()),
        Unary::Sqrt => map!(|v| v.sqrt()),
        Unary::Abs => map!(|v| v.abs()),
        // One compare and a masked move per vector; the op is bound by memory either way (0.56 µs
        // for 500×13, as with the tests it replaced).
        Unary::Relu => map!(|v| relu(v)),
        Unary::LeakyRelu(a) => {
            let a = T::from_f64(a);
            map!(|v| if v > T::ZERO { v } else { v * a })
        }
        Unary::Sigmoid => map!(|v| sigmoid(v)),
        Unary::Tanh => map!(|v| v.tanh()),
        Unary::Gelu => map!(|v| gelu(v)),
        Unary::Pow(p) => {
            if p == 2.0 {
                map!(|v| v * v)
            } else {
                let p = T::from_f64(p);
                map!(|v| v.powf(p))
            }
        }
        Unary::AddScalar(c) => {
            let c = T::from_f64(c);
            map!(|v| v + c)
        }
        Unary::MulScalar(c) => {
            let c = T::from_f64(c);
            map!(|v| v * c)
        }
    }
}

/// Runs `f` with the float type of a buffer, or fails for int64.
macro_rules! float_dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::dtype::DType::I64 => {
                $crate::error::bail!(DType, "this op needs a floating-point tensor, not int64")
            }
        }
    };
}
pub(crate) use float_dispatch;

impl Graph {
    /// A new leaf tensor (no grad) computed elementwise from `x` — masks and signs for backward.
    pub(crate) fn map_const<T: Float>(&mut self, x: Tensor, f: impl Fn(T) -> T) -> Result<Tensor> {
        let shape = self.shape(x)?;
        let mut out = self.alloc::<T>(shape.numel())?;
        for (o, &v) in out.iter_mut().zip(self.data::<T>(x)?) {
            *o = f(v);
        }
        Ok(self.insert(shape, T::wrap(out), None, false))
    }

    /// Applies a unary function elementwise.
    pub fn unary(&mut self, u: Unary, x: Tensor) -> Result<Tensor> {
        let e = self.entry(x)?;
        let shape = e.shape;
        float_dispatch!(e.buf.dtype(), T => {
            let mut out = self.alloc::<T>(shape.numel())?;
            unary_into(self.data::<T>(x)?, &mut out, u);
            self.record(Op::Unary(u, x), shape, T::wrap(out))
        })
    }

    /// -x
    pub fn neg(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Neg, x) }
    /// e^x
    pub fn exp(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Exp, x) }
    /// ln x
    pub fn log(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Log, x) }
    /// √x
    pub fn sqrt(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Sqrt, x) }
    /// |x|
    pub fn abs(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Abs, x) }
    /// max(x, 0)
    pub fn relu(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Relu, x) }
    /// Leaky ReLU with the given negative slope (PyTorch's default is 0.01).
    pub fn leaky_relu(&mut self, x: Tensor, slope: f64) -> Result<Tensor> { self.unary(Unary::LeakyRelu(slope), x) }
    /// The logistic sigmoid.
    pub fn sigmoid(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Sigmoid, x) }
    /// tanh x
    pub fn tanh(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Tanh, x) }
    /// GELU, exact form (`approximate='none'`).
    pub fn gelu(&mut self, x: Tensor) -> Result<Tensor> { self.unary(Unary::Gelu, x) }
    /// x^p for a scalar exponent.
    pub fn pow(&mut self, x: Tensor, p: f64) -> Result<Tensor> { self.unary(Unary::Pow(p), x) }
    /// x + c
    pub fn add_scalar(&mut self, x: Tensor, c: f64) -> Result<Tensor> { self.unary(Unary::AddScalar(c), x) }
    /// x · c
    pub fn mul_scalar(&mut self, x: Tensor, c: f64) -> Result<Tensor> { self.unary(Unary::MulScalar(c), x) }

    /// The gradient through an activation that a linear op applied ([`Graph::linear_act`]), from
    /// its output: that of the matching elementwise op.
    pub(crate) fn activation_backward(&mut self, act: Activation, out: Tensor, g: Tensor) -> Result<Tensor> {
        // These three read only their output; it stands in for the input they never read.
        self.unary_backward(act.into(), out, out, g)
    }

    pub(crate) fn unary_backward(&mut self, u: Unary, x: Tensor, out: Tensor, g: Tensor) -> Result<Tensor> {
        let dt = self.dtype(x)?;
        if let Some(act) = u.activation().filter(|_| !self.grad_enabled) {
            // Not recorded (no create_graph): one fused pass instead of two to four graph ops, with
            // the same arithmetic in the same order, so the result is bit-identical.
            return float_dispatch!(dt, T => self.unary_backward_fused::<T>(u, act, out, g));
        }
        let gx = match u {
            Unary::Neg => self.neg(g)?,
            Unary::Exp => self.mul(g, out)?,
            Unary::Log => self.div(g, x)?,
            Unary::Sqrt => {
                let h = self.mul_scalar(g, 0.5)?;
                self.div(h, out)?
            }
            Unary::Abs => {
                let s = float_dispatch!(dt, T => self.map_const::<T>(x, |v| if v > T::ZERO { T::ONE } else if v < T::ZERO { -T::ONE } else { T::ZERO })?);
                self.mul(g, s)?
            }
            Unary::Relu => {
                let m = float_dispatch!(dt, T => self.map_const::<T>(out, |v| if v > T::ZERO { T::ONE } else { T::ZERO })?);
                self.mul(g, m)?
            }
            Unary::LeakyRelu(a) => {
                let m = float_dispatch!(dt, T => self.map_const::<T>(x, |v| if v > T::ZERO { T::ONE } else { T::from_f64(a) })?);
                self.mul(g, m)?
            }
            Unary::Sigmoid => {
                let one_minus = self.unary(Unary::Neg, out)?;
                let one_minus = self.add_scalar(one_minus, 1.0)?;
                let d = self.mul(out, one_minus)?;
                self.mul(g, d)?
            }
            Unary::Tanh => {
                let sq = self.mul(out, out)?;
                let d = self.neg(sq)?;
                let d = self.add_scalar(d, 1.0)?;
                self.mul(g, d)?
            }
            Unary::Gelu => self.gelu_backward(g, x)?,
            Unary::Pow(p) => {
                if p == 0.0 {
                    self.mul_scalar(g, 0.0)?
                } else {
                    let d = self.pow(x, p - 1.0)?;
                    let d = self.mul_scalar(d, p)?;
                    self.mul(g, d)?
                }
            }
            Unary::AddScalar(_) => g,
            Unary::MulScalar(c) => self.mul_scalar(g, c)?,
        };
        Ok(gx)
    }

    /// The gradient of relu, sigmoid or tanh from their output in one pass, as a leaf.
    ///
    /// In a backward that owns the gradients it passes along and frees each once it is consumed
    /// (no create_graph, into `.grad`), the result overwrites the incoming gradient, which is then
    /// handed on: one pass over two arrays instead of three, and no fresh buffer whose first write
    /// fetches every line of it (the relu and sigmoid backward of the seed step, 500×13 and 500×8,
    /// wrote mostly stalled on those fetches).
    fn unary_backward_fused<T: Float>(&mut self, u: Unary, act: Activation, out: Tensor, g: Tensor) -> Result<Tensor> {
        let shape = self.shape(out)?;
        if self.shape(g)? != shape {
            bail!(ShapeMismatch, "{} backward: gradient shape {:?} differs from {:?}", u.kind().name(), self.shape(g)?, shape);
        }
        let derivative = |d: &mut [T], ys: &[T], gs: Option<&[T]>| activation_grad(act, d, ys, gs);
        if self.fuse_grad_accumulation && g != out && !matches!(self.entry(g)?.buf, Buf::View(_)) {
            self.with_mut_and_ref::<T, _>(g, out, |gs, ys| derivative(gs, ys, None))?;
            return Ok(g);
        }
        let mut d = self.alloc::<T>(shape.numel())?;
        let (ys, gs) = (self.data::<T>(out)?, self.data::<T>(g)?);
        derivative(&mut d, ys, Some(gs));
        Ok(self.insert(shape, T::wrap(d), None, false))
    }

    /// g · gelu'(x), recorded as its own op so that it can be differentiated again.
    pub(crate) fn gelu_backward(&mut self, g: Tensor, x: Tensor) -> Result<Tensor> {
        let shape = self.shape(x)?;
        if self.shape(g)? != shape {
            bail!(ShapeMismatch, "gelu_backward: gradient shape {:?} differs from input shape {:?}", self.shape(g)?, shape);
        }
        float_dispatch!(self.dtype(x)?, T => {
            let mut out = self.alloc::<T>(shape.numel())?;
            let (gs, xs) = (self.data::<T>(g)?, self.data::<T>(x)?);
            for ((o, &gv), &xv) in out.iter_mut().zip(gs).zip(xs) {
                *o = gv * gelu_grad(xv);
            }
            self.record(Op::GeluBackward { grad: g, x }, shape, T::wrap(out))
        })
    }

    /// Gradients of `gelu_backward(grad, x)`: d/dgrad = gelu'(x), d/dx = grad · φ(x) · (2 − x²).
    pub(crate) fn gelu_backward_backward(&mut self, grad: Tensor, x: Tensor, gout: Tensor, needs: &[bool]) -> Result<Grads> {
        let dgrad = if needs[0] { Some(self.gelu_backward(gout, x)?) } else { None };
        let dx = if needs[1] {
            let x2 = self.mul(x, x)?;
            let phi = self.mul_scalar(x2, -0.5)?;
            let phi = self.exp(phi)?;
            let phi = self.mul_scalar(phi, SQRT_2_OVER_PI_HALF)?;
            let two_minus = self.neg(x2)?;
            let two_minus = self.add_scalar(two_minus, 2.0)?;
            let d = self.mul(phi, two_minus)?;
            let d = self.mul(d, grad)?;
            Some(self.mul(d, gout)?)
        } else {
            None
        };
        Ok(grads![dgrad, dx])
    }

    /// Applies a binary function with broadcasting.
    pub fn binary(&mut self, op: Binary, a: Tensor, b: Tensor) -> Result<Tensor> {
        let (ea, eb) = (self.entry(a)?, self.entry(b)?);
        if ea.buf.dtype() != eb.buf.dtype() {
            bail!(DType, "{}: operands are {} and {}; convert one first", op.kind().name(), ea.buf.dtype().name(), eb.buf.dtype().name());
        }
        let (sa, sb) = (ea.shape, eb.shape);
        let shape = Shape::broadcast(&sa, &sb)?;
        float_dispatch!(ea.buf.dtype(), T => {
            let mut out = self.alloc::<T>(shape.numel())?;
            let (xa, xb) = (self.data::<T>(a)?, self.data::<T>(b)?);
            match op {
                Binary::Add => broadcast_zip(xa, &sa, xb, &sb, &shape, &mut out, |x, y| x + y),
                Binary::Sub => broadcast_zip(xa, &sa, xb, &sb, &shape, &mut out, |x, y| x - y),
                Binary::Mul => broadcast_zip(xa, &sa, xb, &sb, &shape, &mut out, |x, y| x * y),
                Binary::Div => broadcast_zip(xa, &sa, xb, &sb, &shape, &mut out, |x, y| x / y),
            }
            self.record(Op::Binary(op, a, b), shape, T::wrap(out))
        })
    }

    /// a + b, broadcasting.
    pub fn add(&mut self, a: Tensor, b: Tensor) -> Result<Tensor> { self.binary(Binary::Add, a, b) }
    /// a - b, broadcasting.
    pub fn sub(&mut self, a: Tensor, b: Tensor) -> Result<Tensor> { self.binary(Binary::Sub, a, b) }
    /// a · b, broadcasting.
    pub fn mul(&mut self, a: Tensor, b: Tensor) -> Result<Tensor> { self.binary(Binary::Mul, a, b) }
    /// a / b, broadcasting.
    pub fn div(&mut self, a: Tensor, b: Tensor) -> Result<Tensor> { self.binary(Binary::Div, a, b) }

    pub(crate) fn binary_backward(&mut self, op: Binary, a: Tensor, b: Tensor, g: Tensor, needs: &[bool]) -> Result<Grads> {
        let (da, db) = (self.shape(a)?, self.shape(b)?);
        let ga = if !needs[0] {
            None
        } else {
            let t = match op {
                Binary::Add | Binary::Sub => g,
                Binary::Mul => self.mul(g, b)?,
                Binary::Div => self.div(g, b)?,
            };
            Some(self.sum_to(t, da.dims())?)
        };
        let gb = if !needs[1] {
            None
        } else {
            let t = match op {
                Binary::Add => g,
                Binary::Sub => self.neg(g)?,
                Binary::Mul => self.mul(g, a)?,
                Binary::Div => {
                    let num = self.mul(g, a)?;
                    let b2 = self.mul(b, b)?;
                    let q = self.div(num, b2)?;
                    self.neg(q)?
                }
            };
            Some(self.sum_to(t, db.dims())?)
        };
        Ok(grads![ga, gb])
    }
}

/// out[i] = f(a[i'], b[i'']) over the broadcast shape, with fast paths for the common layouts.
pub(crate) fn broadcast_zip<T: Copy>(a: &[T], sa: &Shape, b: &[T], sb: &Shape, shape: &Shape, out: &mut [T], f: impl Fn(T, T) -> T) {
    if out.is_empty() {
        return;
    }
    vectorised(|| broadcast_zip_loops(a, sa, b, sb, shape, out, f))
}

#[inline(always)]
fn broadcast_zip_loops<T: Copy>(a: &[T], sa: &Shape, b: &[T], sb: &Shape, shape: &Shape, out: &mut [T], f: impl Fn(T, T) -> T) {
    if sa == sb {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    } else if b.len() == 1 {
        let y = b[0];
        for (o, &x) in out.iter_mut().zip(a) {
            *o = f(x, y);
        }
    } else if a.len() == 1 {
        let x = a[0];
        for (o, &y) in out.iter_mut().zip(b) {
            *o = f(x, y);
        }
    } else if sa == shape && is_suffix(sb, shape) {
        for (oc, ac) in out.chunks_exact_mut(b.len()).zip(a.chunks_exact(b.len())) {
            for ((o, &x), &y) in oc.iter_mut().zip(ac).zip(b) {
                *o = f(x, y);
            }
        }
    } else if sb == shape && is_suffix(sa, shape) {
        for (oc, bc) in out.chunks_exact_mut(a.len()).zip(b.chunks_exact(a.len())) {
            for ((o, &y), &x) in oc.iter_mut().zip(bc).zip(a) {
                *o = f(x, y);
            }
        }
    } else {
        let (ta, tb) = (sa.broadcast_strides(shape), sb.broadcast_strides(shape));
        strided_for_each(shape, &ta, &tb, |i, ia, ib| out[i] = f(a[ia], b[ib]));
    }
}

/// Whether `s` (without leading ones) equals the trailing dimensions of `full`.
fn is_suffix(s: &Shape, full: &Shape) -> bool {
    let d = s.dims();
    let skip = d.iter().take_while(|&&x| x == 1).count();
    let d = &d[skip..];
    full.dims().ends_with(d)
}

/// Calls `f(i, offset_a, offset_b)` for every row-major index `i` of `shape`, with offsets from strides.
pub(crate) fn strided_for_each(shape: &Shape, sa: &[usize; MAX_RANK], sb: &[usize; MAX_RANK], mut f: impl FnMut(usize, usize, usize)) {
    let r = shape.rank();
    let n = shape.numel();
    if n == 0 {
        return;
    }
    if r == 0 {
        f(0, 0, 0);
        return;
    }
    let last = shape.dim(r - 1);
    let (la, lb) = (sa[r - 1], sb[r - 1]);
    let mut idx = [0usize; MAX_RANK];
    let (mut oa, mut ob) = (0usize, 0usize);
    let mut i = 0;
    while i < n {
        for j in 0..last {
            f(i + j, oa + j * la, ob + j * lb);
        }
        i += last;
        // Advance the outer index (odometer over dims 0..r-1).
        let mut d = r - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < shape.dim(d) {
                break;
            }
            oa -= sa[d] * idx[d];
            ob -= sb[d] * idx[d];
            idx[d] = 0;
        }
    }
}

/// The gradient through relu, sigmoid or tanh from their output: d = gs · act'(ys), with the
/// arithmetic of the ops' recorded backward (so bit for bit theirs); with gs None, d holds the
/// incoming gradient and is overwritten. One pass per activation, each monomorphised (and so
/// vectorised) for its own formula.
pub(crate) fn activation_grad<T: Float>(act: Activation, d: &mut [T], ys: &[T], gs: Option<&[T]>) {
    match act {
        Activation::Relu => chain_rule(d, ys, gs, |y, gv| gv * if y > T::ZERO { T::ONE } else { T::ZERO }),
        Activation::Sigmoid => chain_rule(d, ys, gs, |y, gv| gv * (y * (-y + T::ONE))),
        Activation::Tanh => chain_rule(d, ys, gs, |y, gv| gv * (-(y * y) + T::ONE)),
    }
}

/// d[i] = f(ys[i], gs[i]) for an activation's output ys and the incoming gradient gs; with gs None,
/// d holds the incoming gradient and is overwritten. Long tensors go in pieces on the library's
/// threads, each element computed by one call with the same arithmetic.
fn chain_rule<T: Float>(d: &mut [T], ys: &[T], gs: Option<&[T]>, f: impl Fn(T, T) -> T + Sync) {
    crate::kernels::threads::for_each_piece(d, &|lo, d: &mut [T]| match gs {
        Some(gs) => {
            for ((o, &y), &gv) in d.iter_mut().zip(&ys[lo..]).zip(&gs[lo..]) {
                *o = f(y, gv);
            }
        }
        None => {
            for (o, &y) in d.iter_mut().zip(&ys[lo..]) {
                *o = f(y, *o);
            }
        }
    })
}
