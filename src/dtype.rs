//! Element types and the buffers that hold them.

use crate::kernels::math::Activation;
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum DType {
    /// IEEE float32, the training type.
    F32 = 0,
    /// IEEE float64, for gradient checks and precise work.
    F64 = 1,
    /// int64, for class indices and gather/index_select indices.
    I64 = 2,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
    /// PyTorch's / safetensors' name for it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
        }
    }
}

/// A tensor's elements: a `Vec` over-allocated by less than 64 bytes, the elements starting at the first
/// 64-byte boundary (a cache line, and one AVX-512 vector) in it, so that the vector loops over a
/// buffer load and store whole lines. Vec alone gives the allocator's 16-byte alignment, with which
/// every 64-byte store of an elementwise pass straddles two lines (relu over 6,500 floats 0.71 →
/// 0.66 µs aligned, an activation's backward over its gradient 0.79 → 0.65 µs, microbenchmark with
/// the buffers in L2).
#[doc(hidden)]
pub struct Block<T> {
    /// The padding, then the elements (the Vec ends with the last element).
    vec: Vec<T>,
    /// Where the elements start.
    start: usize,
}

/// The least size in bytes of a [`Block`] that is aligned. Smaller buffers (a few vectors at most,
/// where a straddling store costs little) are not padded, so that a graph of many scalars takes no
/// more memory than it counts: the graph's memory use counts elements, not the padding, which stays
/// under a quarter of any buffer.
const ALIGNED_FROM: usize = 256;

impl<T: Copy> Block<T> {
    /// An empty block (allocates nothing).
    pub const fn new() -> Block<T> {
        Block { vec: Vec::new(), start: 0 }
    }

    /// `len` copies of `value`, starting on a 64-byte boundary when they take at least
    /// [`ALIGNED_FROM`] bytes; an error if the allocator refuses.
    pub fn try_filled(len: usize, value: T) -> Result<Block<T>, std::collections::TryReserveError> {
        let size = std::mem::size_of::<T>().max(1);
        let pad = if len.saturating_mul(size) < ALIGNED_FROM { 0 } else { 64usize.div_ceil(size) - 1 };
        let mut vec = Vec::new();
        vec.try_reserve_exact(len.saturating_add(pad))?;
        vec.resize(len + pad, value);
        let start = vec.as_ptr().align_offset(64).min(pad);
        vec.truncate(start + len);
        Ok(Block { vec, start })
    }

    /// The number of elements (without slicing the Vec first, as the slice's `len` would).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.vec.len() - self.start
    }

    /// Whether the block holds no element.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Copy> Default for Block<T> {
    fn default() -> Block<T> {
        Block::new()
    }
}

impl<T> std::ops::Deref for Block<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        &self.vec[self.start..]
    }
}

impl<T> std::ops::DerefMut for Block<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.vec[self.start..]
    }
}

impl<T: Debug> Debug for Block<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A tensor's storage (internal; public only because [`Float`] names it).
#[doc(hidden)]
#[derive(Debug)]
pub enum Buf {
    F32(Block<f32>),
    F64(Block<f64>),
    I64(Block<i64>),
    /// The elements live in a graph-owned region shared by several tensors (flattened parameters and
    /// their gradients, see [`Graph::flatten_parameters`](crate::Graph::flatten_parameters)). Only the
    /// graph can resolve it into a slice (`Graph::storage`), so code that matches on the owned variants
    /// must go through the graph's accessors for a view.
    View(View),
}

/// Where a view's elements sit: `len` elements of `dtype` from `offset` in region `region`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub(crate) region: u32,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) dtype: DType,
}

impl Buf {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Buf::F32(_) => DType::F32,
            Buf::F64(_) => DType::F64,
            Buf::I64(_) => DType::I64,
            Buf::View(v) => v.dtype,
        }
    }
    pub(crate) fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
            Buf::I64(v) => v.len(),
            Buf::View(v) => v.len,
        }
    }
    /// The bytes this buffer owns: a view owns none (its region is counted once, by the graph).
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Buf::View(_) => 0,
            b => b.len() * b.dtype().size(),
        }
    }
    /// Each element as f64 (for printing, DOT labels and checks). A view must be resolved first
    /// (`Graph::storage`); its elements read as NaN here rather than as a plausible number.
    pub(crate) fn get_f64(&self, i: usize) -> f64 {
        match self {
            Buf::F32(v) => v[i] as f64,
            Buf::F64(v) => v[i],
            Buf::I64(v) => v[i] as f64,
            Buf::View(_) => f64::NAN,
        }
    }
    /// An empty owned buffer of the given type (a placeholder while a buffer is moved out).
    pub(crate) fn empty(dtype: DType) -> Buf {
        match dtype {
            DType::F32 => Buf::F32(Block::new()),
            DType::F64 => Buf::F64(Block::new()),
            DType::I64 => Buf::I64(Block::new()),
        }
    }
}

/// A floating-point element type: the kernels are generic over it.
pub trait Float:
    crate::graph::Pooled
    + Copy
    + Default
    + PartialOrd
    + Debug
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// The dtype tag.
    const DTYPE: DType;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Converts from f64 (rounding).
    fn from_f64(v: f64) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// ln(1 + x).
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// x^p.
    fn powf(self, p: Self) -> Self;
    /// The error function.
    fn erf(self) -> Self;
    /// The larger (NaN-propagating like PyTorch's max).
    fn max(self, o: Self) -> Self;
    /// Whether the value is NaN or infinite.
    fn is_finite(self) -> bool;
    /// e^x over a slice, in place (vectorised for float32).
    fn exp_in_place(x: &mut [Self]);
    /// ln x over a slice, in place (vectorised for float32).
    fn ln_in_place(x: &mut [Self]);
    /// out = sigmoid(x) over slices of one length (vectorised for float32).
    fn sigmoid_into(x: &[Self], out: &mut [Self]);
    /// out = tanh(x) over slices of one length (vectorised for float32).
    fn tanh_into(x: &[Self], out: &mut [Self]);
    /// Softmax parts of the rows of an [n, c] matrix (see [`crate::kernels::math::softmax_rows`]).
    fn softmax_rows(x: &[Self], c: usize, e: &mut [Self], maxes: &mut [Self], sums: &mut [Self], lse: &mut [Self]);
    /// Per-row cross-entropy losses (and, with `unit`, their gradients) where a vectorised kernel
    /// applies (see [`crate::kernels::math::cross_entropy_rows_f32`]); false when the caller must
    /// loop itself.
    fn cross_entropy_rows(x: &[Self], c: usize, targets: &[i64], ignore: i64, eps: Self, out: &mut [Self], unit: Option<&mut [Self]>) -> bool;
    #[doc(hidden)]
    fn slice(b: &Buf) -> Option<&[Self]>;
    #[doc(hidden)]
    fn slice_mut(b: &mut Buf) -> Option<&mut [Self]>;
    #[doc(hidden)]
    fn wrap(v: Block<Self>) -> Buf;
    #[doc(hidden)]
    fn unwrap(b: Buf) -> Option<Block<Self>>;
    /// C = alpha·A·B + beta·C with arbitrary strides (in elements).
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    fn gemm(
        m: usize, k: usize, n: usize, alpha: Self,
        a: &[Self], rsa: isize, csa: isize,
        b: &[Self], rsb: isize, csb: isize,
        beta: Self, c: &mut [Self], rsc: isize, csc: isize,
    );
    /// A linear layer's forward: C (m×n, contiguous) = act(A·B + bias in every row), the bias (n
    /// values) and the activation each optional.
    #[allow(clippy::too_many_arguments)]
    fn gemm_layer(
        m: usize, k: usize, n: usize,
        a: &[Self], rsa: isize, csa: isize,
        b: &[Self], rsb: isize, csb: isize,
        bias: Option<&[Self]>, act: Option<Activation>, c: &mut [Self],
    );
}

macro_rules! impl_float {
    ($t:ty, $variant:ident, $gemm:path, $gemm_layer:path, $erf:path, $exp:path, $ln:path, $sigmoid:path, $tanh:path, $softmax:path, $ce:path) => {
        impl Float for $t {
            const DTYPE: DType = DType::$variant;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn exp(self) -> Self { <$t>::exp(self) }
            #[inline(always)]
            fn ln(self) -> Self { <$t>::ln(self) }
            #[inline(always)]
            fn ln_1p(self) -> Self { <$t>::ln_1p(self) }
            #[inline(always)]
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            #[inline(always)]
            fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)]
            fn tanh(self) -> Self { <$t>::tanh(self) }
            #[inline(always)]
            fn powf(self, p: Self) -> Self { <$t>::powf(self, p) }
            #[inline(always)]
            fn erf(self) -> Self { $erf(self) }
            #[inline(always)]
            fn max(self, o: Self) -> Self { if self.is_nan() || self > o { self } else { o } }
            #[inline(always)]
            fn is_finite(self) -> bool { <$t>::is_finite(self) }
            fn exp_in_place(x: &mut [Self]) { $exp(x) }
            fn ln_in_place(x: &mut [Self]) { $ln(x) }
            fn sigmoid_into(x: &[Self], out: &mut [Self]) { $sigmoid(x, out) }
            fn tanh_into(x: &[Self], out: &mut [Self]) { $tanh(x, out) }
            fn softmax_rows(x: &[Self], c: usize, e: &mut [Self], maxes: &mut [Self], sums: &mut [Self], lse: &mut [Self]) {
                $softmax(x, c, e, maxes, sums, lse)
            }
            fn cross_entropy_rows(x: &[Self], c: usize, targets: &[i64], ignore: i64, eps: Self, out: &mut [Self], unit: Option<&mut [Self]>) -> bool {
                $ce(x, c, targets, ignore, eps, out, unit)
            }
            fn slice(b: &Buf) -> Option<&[Self]> { if let Buf::$variant(v) = b { Some(v) } else { None } }
            fn slice_mut(b: &mut Buf) -> Option<&mut [Self]> { if let Buf::$variant(v) = b { Some(v) } else { None } }
            fn wrap(v: Block<Self>) -> Buf { Buf::$variant(v) }
            fn unwrap(b: Buf) -> Option<Block<Self>> { if let Buf::$variant(v) = b { Some(v) } else { None } }
            fn gemm(
                m: usize, k: usize, n: usize, alpha: Self,
                a: &[Self], rsa: isize, csa: isize,
                b: &[Self], rsb: isize, csb: isize,
                beta: Self, c: &mut [Self], rsc: isize, csc: isize,
            ) {
                $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }
            #[inline]
            fn gemm_layer(
                m: usize, k: usize, n: usize,
                a: &[Self], rsa: isize, csa: isize,
                b: &[Self], rsb: isize, csb: isize,
                bias: Option<&[Self]>, act: Option<Activation>, c: &mut [Self],
            ) {
                $gemm_layer(m, k, n, a, rsa, csa, b, rsb, csb, bias, act, c)
            }
        }
    };
}

impl_float!(f32, F32, crate::kernels::gemm::sgemm, crate::kernels::gemm::sgemm_layer, crate::kernels::math::erf_f32,
    crate::kernels::math::exp_f32_in_place, crate::kernels::math::ln_f32_in_place, crate::kernels::math::sigmoid_f32, crate::kernels::math::tanh_f32,
    crate::kernels::math::softmax_rows_f32, crate::kernels::math::cross_entropy_rows_f32);
impl_float!(f64, F64, crate::kernels::gemm::dgemm, crate::kernels::gemm::dgemm_layer, crate::kernels::math::erf_f64,
    crate::kernels::math::exp_f64_in_place, crate::kernels::math::ln_f64_in_place, crate::kernels::math::sigmoid_f64, crate::kernels::math::tanh_f64,
    crate::kernels::math::softmax_rows::<f64>, crate::kernels::math::cross_entropy_rows_f64);
