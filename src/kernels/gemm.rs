//! Matrix multiply, C = alpha·A·B + beta·C with arbitrary strides, so that the transposed operands of
//! backward are read in place and weight gradients can accumulate with beta = 1.
//!
//! float32 runs on the library's own blocked kernel (Goto's scheme: pack a KC×NC panel of B and an
//! MC×KC block of A into contiguous buffers, then sweep a register-tile microkernel over them), with an
//! AVX-512 microkernel (12×32 or 12×16 tiles) and an AVX2 one (6×16 or 6×8), chosen at run time by CPU
//! feature detection. Machines with neither use `matrixmultiply`, which is also the float64 path.
//! With AVX-512, small products go to `gemm_small` (no packing), and x·Wᵀ may run turned around as
//! (W·xᵀ)ᵀ so that W is read in place (`reads_b_in_place_turned`).
//!
//! Why our own: the packing buffers are kept per thread, so a steady training loop allocates nothing
//! (matrixmultiply allocates them on every call), and large products are split over the library's
//! worker threads by output blocks. Every output element is accumulated by one thread, over k in
//! the same order, in KC-sized blocks that start at the same offsets whatever the split and the tile
//! size — so results are bit-identical for any thread count and across the AVX-512 and AVX2 kernels.

use super::math::Activation;
use std::cell::RefCell;

/// Which implementation computes a float32 product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgemmPath {
    /// Our kernel with the AVX-512 microkernel (AVX-512F and VL, with AVX2 and FMA for packing).
    Avx512,
    /// Our kernel with the AVX2 + FMA microkernel.
    Avx2,
    /// `matrixmultiply` (portable; allocates its packing buffers on every call, runs on one thread).
    Portable,
}

impl SgemmPath {
    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            SgemmPath::Avx512 => std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            SgemmPath::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            SgemmPath::Avx512 | SgemmPath::Avx2 => false,
            SgemmPath::Portable => true,
        }
    }

    /// The fastest path this CPU can run.
    pub fn best() -> SgemmPath {
        use std::sync::atomic::{AtomicU8, Ordering};
        static BEST: AtomicU8 = AtomicU8::new(0);
        match BEST.load(Ordering::Relaxed) {
            1 => SgemmPath::Avx512,
            2 => SgemmPath::Avx2,
            3 => SgemmPath::Portable,
            _ => {
                let p = [SgemmPath::Avx512, SgemmPath::Avx2].into_iter().find(|p| p.available()).unwrap_or(SgemmPath::Portable);
                BEST.store(match p { SgemmPath::Avx512 => 1, SgemmPath::Avx2 => 2, SgemmPath::Portable => 3 }, Ordering::Relaxed);
                p
            }
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SgemmPath::Avx512 => "backprop avx512 12x32",
            SgemmPath::Avx2 => "backprop avx2 6x16",
            SgemmPath::Portable => "matrixmultiply",
        }
    }
}

/// The name of the sgemm kernel this machine runs.
pub fn kernel_name() -> &'static str {
    SgemmPath::best().name()
}

/// The furthest element a strided m×n view touches, plus one; panics (caught at the boundary) on a view
/// that does not fit its slice — the only thing standing between a wrong stride and memory unsafety.
fn check_view(len: usize, rows: usize, cols: usize, rs: isize, cs: isize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(rs >= 0 && cs >= 0, "gemm: negative strides are not used");
    let last = (rows - 1) * rs as usize + (cols - 1) * cs as usize;
    assert!(last < len, "gemm: a {rows}x{cols} view with strides ({rs},{cs}) overruns a buffer of {len}");
}

/// C = beta·C for k = 0 (beta = 0 also clears NaNs, as BLAS does).
fn scale_c<T: Copy + PartialEq + std::ops::Mul<Output = T> + Default>(m: usize, n: usize, beta: T, c: &mut [T], rsc: isize, csc: isize) {
    for i in 0..m {
        for j in 0..n {
            let x = &mut c[i * rsc as usize + j * csc as usize];
            *x = if beta == T::default() { T::default() } else { *x * beta };
        }
    }
}

/// float64: C = alpha·A·B + beta·C through matrixmultiply (gradient checks, not the training path).
#[allow(clippy::too_many_arguments)]
pub fn dgemm(
    m: usize, k: usize, n: usize, alpha: f64,
    a: &[f64], rsa: isize, csa: isize,
    b: &[f64], rsb: isize, csb: isize,
    beta: f64, c: &mut [f64], rsc: isize, csc: isize,
) {
    check_view(a.len(), m, k, rsa, csa);
    check_view(b.len(), k, n, rsb, csb);
    check_view(c.len(), m, n, rsc, csc);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return scale_c(m, n, beta, c, rsc, csc);
    }
    // SAFETY: check_view proved that every element each strided view addresses lies inside its
    // slice; C is borrowed mutably, so it cannot alias A or B.
    unsafe { matrixmultiply::dgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc) }
}

/// float32: C = alpha·A·B + beta·C, A m×k, B k×n, C m×n, strides in elements, on the best path, split
/// over [`num_threads`](crate::num_threads) threads when the product is large enough.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize, k: usize, n: usize, alpha: f32,
    a: &[f32], rsa: isize, csa: isize,
    b: &[f32], rsb: isize, csb: isize,
    beta: f32, c: &mut [f32], rsc: isize, csc: isize,
) {
    sgemm_on(SgemmPath::best(), crate::kernels::threads::kernel_threads(), m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
}

/// A linear layer's forward: C = act(A·B + bias in every row) for a contiguous m×n C, with an
/// optional bias of n values and an optional activation. The result is that of filling C's rows
/// with the bias and adding A·B (beta = 1), or of A·B alone (beta = 0), then applying the
/// activation as the relu, sigmoid or tanh op would. Products on the small path add the bias and
/// apply relu as they store their sums; everything else is applied in a pass over C, in place.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_layer(
    m: usize, k: usize, n: usize,
    a: &[f32], rsa: isize, csa: isize,
    b: &[f32], rsb: isize, csb: isize,
    bias: Option<&[f32]>, act: Option<Activation>, c: &mut [f32],
) {
    assert!(bias.is_none_or(|b| b.len() == n) && c.len() == m * n, "gemm: the bias must hold n values and C m·n");
    let mut pending = act;
    'product: {
        #[cfg(target_arch = "x86_64")]
        if let Some(v) = (bias.is_some() || act.is_some()).then(|| small_path_views(m, k, n, a, rsa, csa, b, rsb, csb, c)).flatten() {
            let relu = act == Some(Activation::Relu);
            // SAFETY: as small_path_views says; the bias (if any) holds n floats (asserted above).
            if unsafe { super::gemm_small::sgemm_layer(m, k, n, v, bias.map(<[f32]>::as_ptr), relu) } {
                if relu {
                    pending = None;
                }
                break 'product;
            }
        }
        let beta = if fill_bias(c, bias) { 1.0 } else { 0.0 };
        sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, n as isize, 1);
    }
    if let Some(act) = pending {
        super::threads::for_each_piece(c, &|_, piece: &mut [f32]| super::math::activate_f32(act, piece));
    }
}

/// The gradient through an activation in one pass: C = (A·B) ⊙ act'(y) for a contiguous m×n C and
/// the activation's output y (m×n, laid out as C), as the product (C = A·B) followed by the
/// activation's backward over C would compute it, bit for bit; the derivative is applied as the
/// small path's kernel stores its sums. Returns false, having done nothing, where that kernel does
/// not take the product: the caller then runs the product and the activation's backward apart.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_act_grad(
    m: usize, k: usize, n: usize,
    a: &[f32], rsa: isize, csa: isize,
    b: &[f32], rsb: isize, csb: isize,
    y: &[f32], act: Activation, c: &mut [f32],
) -> bool {
    assert!(y.len() == m * n && c.len() == m * n, "gemm: y and C must hold m·n values");
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = small_path_views(m, k, n, a, rsa, csa, b, rsb, csb, c) {
        // SAFETY: as small_path_views says; y holds m·n floats (asserted above) and, a shared
        // borrow, does not overlap C.
        return unsafe { super::gemm_small::sgemm_grad(m, k, n, v, y.as_ptr(), act) };
    }
    false
}

/// Whether [`sgemm_linear_backward`] takes a layer of `nin` inputs and `nout` outputs on this CPU.
pub fn linear_backward_fits(nin: usize, nout: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if SgemmPath::best() == SgemmPath::Avx512 {
        return (1..=super::gemm_small::BACKWARD_MAX_OUT).contains(&nout) && (1..=16).contains(&nin);
    }
    let _ = (nin, nout);
    false
}

/// A narrow linear layer's backward over a block of m ≤ 256 rows (one k block of the products) in
/// one pass: its weight's gradient dw = gᵀ·a (nout×nin, stored over dw) and its input's gradient
/// gin = (g·w) ⊙ act'(a) (m×nin), a being the layer's input and, with `act`, that activation's
/// output; from g (m×nout) and the weight w (nout×nin), all contiguous and row-major. The results
/// are those of `sgemm(nout, m, nin, 1, g read transposed, a, 0, dw)` and of `sgemm_act_grad` (or,
/// without `act`, of the plain product g·w), bit for bit. Returns false, having done nothing,
/// unless [`linear_backward_fits`] says it takes the layer.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_linear_backward(m: usize, nin: usize, nout: usize, g: &[f32], a: &[f32], w: &[f32], act: Option<Activation>, dw: &mut [f32], gin: &mut [f32]) -> bool {
    assert!(
        g.len() == m * nout && a.len() == m * nin && w.len() == nout * nin && dw.len() == nout * nin && gin.len() == m * nin,
        "gemm: a layer's backward takes g m·nout, a and gin m·nin, w and dw nout·nin values"
    );
    #[cfg(target_arch = "x86_64")]
    if linear_backward_fits(nin, nout) && m <= k_step(m) {
        let _flush = super::denormals::FlushGuard::new();
        // SAFETY: the path is AVX-512 (F and VL, SgemmPath::available) and the widths are in
        // range (linear_backward_fits); the lengths were asserted; dw and gin are borrowed mutably,
        // so they overlap nothing.
        unsafe { super::gemm_small::linear_backward(m, nin, nout, g.as_ptr(), a.as_ptr(), w.as_ptr(), act, dw.as_mut_ptr(), gin.as_mut_ptr()) };
        return true;
    }
    false
}

/// The checked views of a product into a contiguous m×n C (C.len() = m·n, checked by the caller)
/// for the small path's layer and gradient kernels, when they can run: the CPU's best path is
/// AVX-512 (F and VL) and m, n, k > 0. C is borrowed mutably, so it overlaps neither A nor B.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn small_path_views(m: usize, k: usize, n: usize, a: &[f32], rsa: isize, csa: isize, b: &[f32], rsb: isize, csb: isize, c: &mut [f32]) -> Option<Views> {
    if m == 0 || n == 0 || k == 0 || SgemmPath::best() != SgemmPath::Avx512 {
        return None;
    }
    check_view(a.len(), m, k, rsa, csa);
    check_view(b.len(), k, n, rsb, csb);
    Some(Views { a: a.as_ptr(), rsa, csa, b: b.as_ptr(), rsb, csb, c: c.as_mut_ptr(), rsc: n as isize, csc: 1 })
}

/// The float64 counterpart of [`sgemm_layer`] (always filling C first and activating after).
#[allow(clippy::too_many_arguments)]
pub fn dgemm_layer(
    m: usize, k: usize, n: usize,
    a: &[f64], rsa: isize, csa: isize,
    b: &[f64], rsb: isize, csb: isize,
    bias: Option<&[f64]>, act: Option<Activation>, c: &mut [f64],
) {
    assert!(bias.is_none_or(|b| b.len() == n) && c.len() == m * n, "gemm: the bias must hold n values and C m·n");
    let beta = if fill_bias(c, bias) { 1.0 } else { 0.0 };
    dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, n as isize, 1);
    if let Some(act) = act {
        super::threads::for_each_piece(c, &|_, piece: &mut [f64]| super::math::activate_f64(act, piece));
    }
}

/// Fills C's rows with the bias, if there is one, and says whether it did (the product is then
/// added to C, beta = 1, rather than stored over it, beta = 0).
fn fill_bias<T: Copy>(c: &mut [T], bias: Option<&[T]>) -> bool {
    bias.inspect(|bias| fill_rows(c, bias)).is_some()
}

/// Every row of `c` (rows of row.len() values) set to `row`: the first lcm(row.len(), 16) values
/// row by row, then copies of that block (a memcpy call per row cost more than the copy for the
/// narrow layers of small networks, and cycling over the row element by element about 0.4 µs of
/// the seed network's 27 µs step).
fn fill_rows<T: Copy>(c: &mut [T], row: &[T]) {
    if c.is_empty() || row.is_empty() {
        return;
    }
    let n = row.len();
    // c holds a whole number of rows, so the period is one too.
    let period = super::simd::lcm(n, 16).min(c.len());
    let (head, tail) = c.split_at_mut(period);
    for r in head.chunks_exact_mut(n) {
        r.copy_from_slice(row);
    }
    for block in tail.chunks_mut(period) {
        block.copy_from_slice(&head[..block.len()]);
    }
}

/// Below this many multiply-adds a product runs on one thread: waking a worker costs more.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 20;

/// How many of `threads` the blocked kernel uses for an m×k×n product.
#[cfg(target_arch = "x86_64")]
fn threads_used(m: usize, k: usize, n: usize, threads: usize) -> usize {
    if m.saturating_mul(n).saturating_mul(k) < PARALLEL_MIN_MACS { 1 } else { threads.max(1) }
}

/// [`sgemm`] on a chosen path and thread count (for tests and benchmarks). Panics if the CPU cannot run
/// the path.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_on(
    path: SgemmPath, threads: usize,
    m: usize, k: usize, n: usize, alpha: f32,
    a: &[f32], rsa: isize, csa: isize,
    b: &[f32], rsb: isize, csb: isize,
    beta: f32, c: &mut [f32], rsc: isize, csc: isize,
) {
    check_view(a.len(), m, k, rsa, csa);
    check_view(b.len(), k, n, rsb, csb);
    check_view(c.len(), m, n, rsc, csc);
    assert!(path.available(), "gemm: this CPU cannot run the {:?} kernel", path);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return scale_c(m, n, beta, c, rsc, csc);
    }
    let v = Views { a: a.as_ptr(), rsa, csa, b: b.as_ptr(), rsb, csb, c: c.as_mut_ptr(), rsc, csc };
    match path {
        SgemmPath::Portable => {
            // SAFETY: check_view proved every addressed element lies inside its slice; C is borrowed
            // mutably, so it cannot alias A or B.
            unsafe { matrixmultiply::sgemm(m, k, n, alpha, v.a, rsa, csa, v.b, rsb, csb, beta, v.c, rsc, csc) }
        }
        #[cfg(target_arch = "x86_64")]
        SgemmPath::Avx512 => {
            // Small products first (no packing); the rest on the blocked kernel.
            // SAFETY: the views were checked above, C is borrowed mutably (no overlap), m, n, k > 0,
            // and the path's availability (AVX-512F and VL) was asserted.
            if !unsafe { super::gemm_small::sgemm(m, k, n, alpha, v, beta) } {
                if reads_b_in_place_turned(m, k, n, v, threads) {
                    parallel::<x86::Avx512>(threads, n, k, m, alpha, v.transposed(), beta)
                } else {
                    parallel::<x86::Avx512>(threads, m, k, n, alpha, v, beta)
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        SgemmPath::Avx2 => parallel::<x86::Avx2>(threads, m, k, n, alpha, v, beta),
        #[cfg(not(target_arch = "x86_64"))]
        SgemmPath::Avx512 | SgemmPath::Avx2 => unreachable!("not available off x86-64"),
    }
}

/// Whether to compute Cᵀ = Bᵀ·Aᵀ instead of C = A·B, for a B read transposed (x·Wᵀ, with W
/// row-major): the turned product reads W where it lies, as an A whose tiles need no packing
/// ([`row_major_a_in_place`], the rule `serial` applies), and packs Aᵀ (m·k floats, on every thread) instead of transposing
/// W (k·n, split over the threads); its tiles write C transposed through a register transpose,
/// which costs about what packing 2·m·k more floats would. So it turns when n / threads ≥ 3·m.
/// Every output element is the same chain of multiply-adds either way (a·b = b·a), so results do
/// not change, whichever is chosen. Measured (GFLOP/s, alternating runs): A·Bᵀ 128×512×784
/// 132/130 → 149/141 at one thread and 266/280 → 288/297 at two; W2's x·W1ᵀ 128×784×512 and
/// h1·W2ᵀ 128×512×512 +0–9 % at one thread, and x·W1ᵀ −4 % at two, where it does not turn. A W
/// whose rows are a multiple of 4 KiB apart (W3's layers) would still be packed and gains nothing.
#[cfg(target_arch = "x86_64")]
fn reads_b_in_place_turned(m: usize, k: usize, n: usize, v: Views, threads: usize) -> bool {
    let b_transposed = v.rsb == 1 && v.csb != 1;
    b_transposed
        && v.csa == 1
        && v.csc == 1
        && n / threads_used(m, k, n, threads) >= 3 * m
        && row_major_a_in_place(v.csb, m.div_ceil(x86::Avx512::NR))
}

/// Whether full tiles of a row-major A (rows `rsa` floats apart) are read where they lie rather
/// than packed, when `panels` column micro-panels reuse them (see DIRECT_A_MAX_PANELS).
#[cfg(target_arch = "x86_64")]
fn row_major_a_in_place(rsa: isize, panels: usize) -> bool {
    panels <= DIRECT_A_MAX_PANELS && !(rsa as usize * std::mem::size_of::<f32>()).is_multiple_of(4096)
}

/// Raw strided views of A, B and C, checked by the caller.
#[derive(Clone, Copy)]
pub(super) struct Views {
    pub(super) a: *const f32,
    pub(super) rsa: isize,
    pub(super) csa: isize,
    pub(super) b: *const f32,
    pub(super) rsb: isize,
    pub(super) csb: isize,
    pub(super) c: *mut f32,
    pub(super) rsc: isize,
    pub(super) csc: isize,
}

// SAFETY: the views are only shared between the threads of one `parallel` call, which give each thread
// a disjoint block of C and only read A and B.
unsafe impl Send for Views {}
unsafe impl Sync for Views {}

impl Views {
    /// The views of the transposed product, Cᵀ = Bᵀ·Aᵀ.
    pub(super) fn transposed(self) -> Views {
        Views { a: self.b, rsa: self.csb, csa: self.rsb, b: self.a, rsb: self.csa, csb: self.rsa, c: self.c, rsc: self.csc, csc: self.rsc }
    }

    /// The views of the sub-product C[i0.., j0..] = A[i0.., :]·B[:, j0..].
    fn offset(self, i0: usize, j0: usize) -> Views {
        // SAFETY: callers pass i0 < m and j0 < n, so the offsets stay inside the checked views.
        unsafe {
            Views {
                a: self.a.offset(i0 as isize * self.rsa),
                b: self.b.offset(j0 as isize * self.csb),
                c: self.c.offset(i0 as isize * self.rsc + j0 as isize * self.csc),
                ..self
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// A register-tile microkernel and its blocking.
trait Micro {
    /// Rows of a tile.
    const MR: usize;
    /// Columns of a wide tile (a narrow tile has half).
    const NR: usize;
    /// Rows of a packed block of A (a multiple of MR).
    const MC: usize;
    /// Columns of a packed panel of B (a multiple of NR).
    const NC: usize;
    /// Whether `tile` can pack a row-major B micro-panel while it computes (see `BSource`).
    const FUSED_B: bool;
    /// C[..mr, ..nr] = alpha·(A·B̃) + beta·C over an MR×kc tile of A read with strides (ars, acs) —
    /// (1, MR) when packed — and a packed B̃ (kc×nr_pack), where nr_pack is NR, or NR/2 when `narrow`.
    /// With `fill` (only when FUSED_B, never narrow), B̃ is not yet packed: the kernel reads the
    /// kc×NR micro-panel from B itself and writes B̃ as it goes.
    ///
    /// # Safety
    /// The CPU supports the kernel's features; A's MR×kc view is readable (all MR rows, even past mr);
    /// `b` holds kc·nr_pack floats (writable when filling); a fill source's kc×NR view is readable;
    /// C's mr×nr view is valid for writes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(narrow: bool, kc: usize, a: *const f32, ars: isize, acs: isize, b: *mut f32, fill: Option<BSource>, c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, alpha: f32, beta: f32);
}

/// A row-major micro-panel of B (its NR columns contiguous, rows `rs` apart) that a kernel packs
/// while it multiplies — the first tile that uses a panel does the packing, so reading B from
/// memory overlaps the arithmetic instead of being a separate pass bound by memory bandwidth.
#[derive(Clone, Copy)]
struct BSource {
    b: *const f32,
    rs: isize,
}

#[cfg(target_arch = "x86_64")]
/// Splits the product into blocks of C, one per part, and runs them on the worker threads.
#[allow(clippy::too_many_arguments)]
fn parallel<K: Micro>(threads: usize, m: usize, k: usize, n: usize, alpha: f32, v: Views, beta: f32) {
    let threads = threads_used(m, k, n, threads);
    if threads <= 1 {
        return serial::<K>(m, k, n, alpha, v, beta, (m, n));
    }
    // Split the longer side of C into `threads` runs of whole tiles.
    let (along_n, len, unit) = if n >= m { (true, n, K::NR) } else { (false, m, K::MR) };
    let units = len.div_ceil(unit);
    let parts = threads.min(units);
    let bounds = |p: usize| (units * p / parts * unit).min(len);
    // Parts go to whichever thread claims them first (see threads::run); which thread computes a
    // part does not change its results. Every thread sizes its packing buffers for the largest
    // part, since it may run any of them: they reach their size in the first call, so steady
    // training steps allocate nothing.
    let largest = (0..parts).map(|p| bounds(p + 1) - bounds(p)).max().unwrap_or(0);
    let cap = if along_n { (m, largest) } else { (largest, n) };
    crate::kernels::threads::run(parts, parts, &|p| {
        let (lo, hi) = (bounds(p), bounds(p + 1));
        if lo >= hi {
            return;
        }
        if along_n {
            serial::<K>(m, k, hi - lo, alpha, v.offset(0, lo), beta, cap);
        } else {
            serial::<K>(hi - lo, k, n, alpha, v.offset(lo, 0), beta, cap);
        }
    });
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Packing buffers of this thread: A's block and B's panel, kept for the thread's life.
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

#[cfg(target_arch = "x86_64")]
/// A 64-byte aligned window of `len` floats in `buf` (grown on first use only).
fn aligned(buf: &mut Vec<f32>, len: usize) -> *mut f32 {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let p = buf.as_mut_ptr();
    let skip = p.align_offset(64).min(15);
    // SAFETY: skip ≤ 15 and the buffer holds len + 16 floats.
    unsafe { p.add(skip) }
}

#[cfg(target_arch = "x86_64")]
/// The whole product on the calling thread, with packing buffers sized for products of up to
/// `cap` = (rows, columns).
#[allow(clippy::too_many_arguments)]
fn serial<K: Micro>(m: usize, k: usize, n: usize, alpha: f32, v: Views, beta: f32, cap: (usize, usize)) {
    let _flush = super::denormals::FlushGuard::new();
    PACK.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let (abuf, bbuf) = &mut *bufs;
        let nc_max = K::NC.min(cap.1.max(n).div_ceil(K::NR) * K::NR);
        let mc_max = K::MC.min(cap.0.max(m).div_ceil(K::MR) * K::MR);
        let kc_max = k_step(k);
        // Narrow tiles when every column fits in half a wide tile (the 10-wide output layer).
        let narrow = n <= K::NR / 2;
        let nr_pack = if narrow { K::NR / 2 } else { K::NR };
        // A tile is read where it lies, unpacked, when few column panels reuse it: up to
        // DIRECT_A_MAX_PANELS when its rows are contiguous and their stride is not a multiple of
        // 4 KiB (its MR rows would then share L1 sets with each other and with the B
        // micro-panel); up to 2 when its columns are (a transposed A, whose tile touches a new line
        // every k: 16 panels measured 150 -> 140 GFLOP/s on Aᵀ·B 784×128×512). A partial last tile
        // is always packed, because the kernel reads all MR rows.
        let panels = K::NC.min(n).div_ceil(nr_pack);
        let direct = (v.csa == 1 && row_major_a_in_place(v.rsa, panels)) || (v.rsa == 1 && panels <= 2);
        // With several B panels side by side (n > NC), A's blocks of one k block are packed once,
        // for the first panel, and kept for the others, instead of being packed again for each.
        let keep_a = !direct && n > K::NC;
        let ap = aligned(abuf, if keep_a { cap.0.max(m).div_ceil(K::MR) * K::MR } else { mc_max } * kc_max);
        let bp = aligned(bbuf, nc_max * kc_max);
        // A B of many megabytes streams from memory: a separate pass reading its rows front to
        // back (which the hardware prefetches) then does as well or better than filling panels
        // from rows 4 KiB or more apart.
        let fuse = K::FUSED_B && !narrow && v.csb == 1 && k * n <= FUSED_B_MAX_FLOATS;
        // k blocks outside, B panels inside: each output element still adds its k blocks in order.
        let kstep = k_step(k);
        for pc in (0..k).step_by(kstep) {
            let kc = kstep.min(k - pc);
            for jc in (0..n).step_by(K::NC) {
                let nc = K::NC.min(n - jc);
                let beta_pc = if pc == 0 { beta } else { 1.0 };
                let b_blk = ConstPtr(v.b).offset_by(pc as isize * v.rsb + jc as isize * v.csb);
                // Full micro-panels of a row-major B are packed by the first tile that uses them;
                // the rest of the panel (all of it otherwise) is packed here.
                let fused = if fuse { nc / nr_pack * nr_pack } else { 0 };
                // SAFETY: the views were checked by sgemm_on; (pc, jc + fused) lies inside B (or
                // nothing is packed), and the packed panel (nc rounded up to nr_pack, times kc)
                // fits the buffer sized above. Both of our paths require AVX2
                // (SgemmPath::available), checked by sgemm_on.
                unsafe { pack_b(kc, nc - fused, nr_pack, b_blk.offset_by(fused as isize * v.csb).0, v.rsb, v.csb, bp.add(fused * kc)) };
                for ic in (0..m).step_by(K::MC) {
                    let mc = K::MC.min(m - ic);
                    let a_blk = ConstPtr(v.a).offset_by(ic as isize * v.rsa + pc as isize * v.csa);
                    let full = if direct { mc / K::MR * K::MR } else { 0 };
                    // SAFETY: the buffer holds every block of this k block when A is kept (m
                    // rounded up to MR, times kc), one block otherwise.
                    let ap = if keep_a { unsafe { ap.add(ic * kc) } } else { ap };
                    if !keep_a || jc == 0 {
                        // SAFETY: as above, for A's block (or its partial last tile, at its packed
                        // place).
                        unsafe { pack_a(mc - full, kc, K::MR, a_blk.offset_by(full as isize * v.rsa).0, v.rsa, v.csa, ap.add(full * kc)) };
                    }
                    // Each A tile stays in L1 while the B panel streams past it from L2 (the
                    // other way round, a B micro-panel of kc×NR = 32 KiB left too little of L1 for
                    // the A tiles streaming through: 2–9 % slower on every W5 and W3 shape).
                    for ir in (0..mc).step_by(K::MR) {
                        let mr = K::MR.min(mc - ir);
                        let (a_tile, ars, acs) = if ir < full {
                            (a_blk.offset_by(ir as isize * v.rsa).0, v.rsa, v.csa)
                        } else {
                            // SAFETY: the packed block holds tile ir / MR at ir·kc.
                            (unsafe { ap.add(ir * kc) } as *const f32, 1, K::MR as isize)
                        };
                        for jr in (0..nc).step_by(nr_pack) {
                            let nr = nr_pack.min(nc - jr);
                            let fill = (ic == 0 && ir == 0 && jr < fused)
                                .then(|| BSource { b: b_blk.offset_by(jr as isize).0, rs: v.rsb });
                            // SAFETY: the CPU supports K (checked by sgemm_on); an unpacked tile is a
                            // full MR×kc view inside A, a packed one holds kc·MR floats; the packed B
                            // tile holds kc·nr_pack floats, and a fill source is a full kc×NR view
                            // inside B (jr < fused); C's mr×nr tile at (ic+ir, jc+jr) lies inside C.
                            unsafe {
                                K::tile(
                                    narrow, kc,
                                    a_tile, ars, acs, bp.add(jr * kc), fill,
                                    v.c.offset((ic + ir) as isize * v.rsc + (jc + jr) as isize * v.csc), v.rsc, v.csc,
                                    mr, nr, alpha, beta_pc,
                                )
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The largest B (k·n floats, 4 MiB) whose micro-panels are packed by the kernel as it first uses
/// them. Measured at one thread: 128³ 143 → 151 GFLOP/s, 256³ 154 → 161, 128×784×512 142 → 152
/// with the fill; 1024³ and 2048³ equal either way; 256×1024×4096 (a 16 MiB B) equal or worse.
const FUSED_B_MAX_FLOATS: usize = 1 << 20;

/// Up to this many column micro-panels per B panel, full tiles of a row-major A are read in place
/// instead of packed: packing costs a pass over A that so few reuses do not repay (measured: 128³ 142 → 156
/// GFLOP/s, 256³ 152 → 161 at one thread; no change past 16, where a 4 KiB row stride would also
/// start to alias A's rows in L1).
const DIRECT_A_MAX_PANELS: usize = 16;

/// Depth of the k blocks: k in equal blocks of at most 256 (784 = 4 × 196, not 3 × 256 + 16), because
/// a thin last block would pay packing and tile edges for little work. Every path sums each output
/// element over these blocks in order, block by block into C, so results are bit-identical across
/// kernels and thread counts: the blocks depend on k alone.
pub(crate) fn k_step(k: usize) -> usize {
    const KC: usize = 256;
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// A pointer into a checked view, moved without `unsafe` arithmetic (wrapping_offset is safe; every
/// offset used stays inside the view, which the dereferences' SAFETY comments rely on).
#[derive(Clone, Copy)]
struct ConstPtr(*const f32);

impl ConstPtr {
    fn offset_by(self, d: isize) -> ConstPtr {
        ConstPtr(self.0.wrapping_offset(d))
    }
}

/// Packs an mc×kc block of A into row panels of `mr` rows: panel p holds, for each k, its mr values
/// (zero past the last row).
///
/// # Safety
/// A's mc×kc view at `a` with strides (rsa, csa) is readable; `out` holds mc rounded up to mr, times
/// kc; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_a(mc: usize, kc: usize, mr: usize, a: *const f32, rsa: isize, csa: isize, out: *mut f32) {
    if rsa == 1 {
        // Columns of A are contiguous (a transposed operand): copy mr values per k and tile. Each
        // source row (one k) is read whole, for every tile, before the next: tile by tile, the
        // block's kc rows (usually a multiple of 4 KiB apart, so all in one L1 set) were fetched
        // again for every tile.
        for kk in 0..kc {
            let src = a.offset(kk as isize * csa);
            for (p, i0) in (0..mc).step_by(mr).enumerate() {
                x86::copy_row(src.add(i0), out.add(p * mr * kc + kk * mr), mr.min(mc - i0), mr);
            }
        }
        return;
    }
    for (p, i0) in (0..mc).step_by(mr).enumerate() {
        let rows = mr.min(mc - i0);
        let dst = out.add(p * mr * kc);
        if csa == 1 {
            // Rows are contiguous: transpose blocks in registers.
            x86::transpose_pack(a.offset(i0 as isize * rsa), rsa, rows, kc, dst, mr);
        } else {
            for i in 0..mr {
                for kk in 0..kc {
                    *dst.add(kk * mr + i) = if i < rows { *a.offset((i0 + i) as isize * rsa + kk as isize * csa) } else { 0.0 };
                }
            }
        }
    }
}

/// Rows of a row-major B that `pack_b` deals out to the panels together (measured, one thread,
/// medians of five: W3's g·W2 256×1024×4096 151.8 -> 155.5 GFLOP/s, 256×1024×4096 152.8 -> 154.2,
/// 2048³ 161.9 -> 163.9; sixteen rows the same; two threads within noise).
const PACK_B_ROWS: usize = 8;

/// Packs a kc×nc panel of B into column panels of `nr` columns: panel q holds, for each k, its nr
/// values (zero past the last column).
///
/// # Safety
/// B's kc×nc view at `b` with strides (rsb, csb) is readable; `out` holds nc rounded up to nr, times
/// kc; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_b(kc: usize, nc: usize, nr: usize, b: *const f32, rsb: isize, csb: isize, out: *mut f32) {
    if csb == 1 {
        // Rows of B are contiguous: read each row once, front to back, and deal its nr-wide pieces
        // out to the panels. Reading panel by panel instead would touch a couple of lines per row
        // and page, which defeats the hardware prefetcher when B is large (a 4096-wide B is
        // 16 KiB a row). PACK_B_ROWS rows at a time, panel by panel, so that each panel receives
        // a kilobyte of consecutive writes rather than 128 bytes: the panels lie a multiple of
        // 4 KiB apart, so row by row all of them wrote into the same two L1 sets.
        for k0 in (0..kc).step_by(PACK_B_ROWS) {
            for (q, j0) in (0..nc).step_by(nr).enumerate() {
                for kk in k0..kc.min(k0 + PACK_B_ROWS) {
                    x86::copy_row(b.offset(kk as isize * rsb).add(j0), out.add(q * nr * kc + kk * nr), nr.min(nc - j0), nr);
                }
            }
        }
        return;
    }
    for (q, j0) in (0..nc).step_by(nr).enumerate() {
        let cols = nr.min(nc - j0);
        let dst = out.add(q * nr * kc);
        if rsb == 1 {
            // Columns are contiguous (a transposed weight): transpose blocks in registers.
            x86::transpose_pack(b.offset(j0 as isize * csb), csb, cols, kc, dst, nr);
        } else {
            for j in 0..nr {
                for kk in 0..kc {
                    *dst.add(kk * nr + j) = if j < cols { *b.offset(kk as isize * rsb + (j0 + j) as isize * csb) } else { 0.0 };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::transpose_16x16;

#[cfg(target_arch = "x86_64")]
// Register tiles are indexed [row][vector] with loop counters that unrolling turns into constants;
// iterator chains over them read worse and hide which register is which.
#[allow(clippy::needless_range_loop)]
mod x86 {
    use super::{BSource, Micro};
    use crate::kernels::simd::lane_mask;
    use std::arch::x86_64::*;

    /// 12×32 tiles (24 zmm accumulators), 12×16 when narrow.
    pub(super) struct Avx512;
    /// 6×16 tiles (12 ymm accumulators), 6×8 when narrow.
    pub(super) struct Avx2;

    impl Micro for Avx512 {
        const MR: usize = 12;
        const NR: usize = 32;
        // 96 rather than 144: 2048³ 139 -> 145 GFLOP/s, 1024³ 143 -> 146 (a smaller A block leaves
        // L2 room for B's panel while C streams through); and 144 only for products with a single
        // k block or few rows (which measured faster one by one: Aᵀ·B 784×128×512 147 -> 155)
        // made the W3 step 3.5 % slower at one thread.
        const MC: usize = 96;
        const NC: usize = 1024;
        const FUSED_B: bool = true;
        unsafe fn tile(narrow: bool, kc: usize, a: *const f32, ars: isize, acs: isize, b: *mut f32, fill: Option<BSource>, c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, alpha: f32, beta: f32) {
            // Monomorphised for the packed layout, whose strides are then constants.
            let packed = ars == 1 && acs == Self::MR as isize;
            let (src, rs) = fill.map_or((b as *const f32, 0), |f| (f.b, f.rs));
            // A partial last tile (always packed) computes only the rows it has, rounded up to 4:
            // a 12-row tile for the last 8 of 128 rows wasted 3 % of the product's arithmetic.
            let rows = if packed && fill.is_none() { mr.div_ceil(4) * 4 } else { Self::MR };
            // One instantiation per (vectors, packed, filling, rows).
            macro_rules! kernel {
                ($nv:literal, true, $fill:literal, $rows:literal) => {
                    tile_avx512::<$nv, true, $fill, $rows>(kc, a, 1, Self::MR as isize, b, src, rs, c, rsc, csc, mr, nr, alpha, beta)
                };
                ($nv:literal, false, $fill:literal, $rows:literal) => {
                    tile_avx512::<$nv, false, $fill, $rows>(kc, a, ars, acs, b, src, rs, c, rsc, csc, mr, nr, alpha, beta)
                };
            }
            match (narrow, packed, fill.is_some(), rows) {
                (true, true, _, 4) => kernel!(1, true, false, 4),
                (true, true, _, 8) => kernel!(1, true, false, 8),
                (true, true, _, _) => kernel!(1, true, false, 12),
                (true, false, _, _) => kernel!(1, false, false, 12),
                (false, true, false, 4) => kernel!(2, true, false, 4),
                (false, true, false, 8) => kernel!(2, true, false, 8),
                (false, true, false, _) => kernel!(2, true, false, 12),
                (false, false, false, _) => kernel!(2, false, false, 12),
                (false, true, true, _) => kernel!(2, true, true, 12),
                (false, false, true, _) => kernel!(2, false, true, 12),
            }
        }
    }

    impl Micro for Avx2 {
        const MR: usize = 6;
        const NR: usize = 16;
        const MC: usize = 72;
        const NC: usize = 2048;
        const FUSED_B: bool = false;
        unsafe fn tile(narrow: bool, kc: usize, a: *const f32, ars: isize, acs: isize, b: *mut f32, _fill: Option<BSource>, c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, alpha: f32, beta: f32) {
            let b = b as *const f32;
            // Monomorphised for the packed layout, whose strides are then constants.
            match (narrow, ars == 1 && acs == Self::MR as isize) {
                (true, true) => tile_avx2::<1, true>(kc, a, 1, Self::MR as isize, b, c, rsc, csc, mr, nr, alpha, beta),
                (false, true) => tile_avx2::<2, true>(kc, a, 1, Self::MR as isize, b, c, rsc, csc, mr, nr, alpha, beta),
                (true, false) => tile_avx2::<1, false>(kc, a, ars, acs, b, c, rsc, csc, mr, nr, alpha, beta),
                (false, false) => tile_avx2::<2, false>(kc, a, ars, acs, b, c, rsc, csc, mr, nr, alpha, beta),
            }
        }
    }

    /// dst[..width] = src[..width] (a full panel row, or a full row of a packed A tile).
    ///
    /// # Safety
    /// src and dst hold width floats; the CPU has AVX.
    #[inline(always)]
    pub(super) unsafe fn copy_full(src: *const f32, dst: *mut f32, width: usize) {
        // Unrolled by hand for the widths the kernels use: a plain loop here is turned into a call
        // to memcpy, which costs more than the copy for 32 floats.
        match width {
            32 => {
                let (x0, x1, x2, x3) = (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8)), _mm256_loadu_ps(src.add(16)), _mm256_loadu_ps(src.add(24)));
                _mm256_storeu_ps(dst, x0);
                _mm256_storeu_ps(dst.add(8), x1);
                _mm256_storeu_ps(dst.add(16), x2);
                _mm256_storeu_ps(dst.add(24), x3);
            }
            16 => {
                let (x0, x1) = (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8)));
                _mm256_storeu_ps(dst, x0);
                _mm256_storeu_ps(dst.add(8), x1);
            }
            12 => {
                let (x0, x1) = (_mm256_loadu_ps(src), _mm_loadu_ps(src.add(8)));
                _mm256_storeu_ps(dst, x0);
                _mm_storeu_ps(dst.add(8), x1);
            }
            _ => copy_pad(src, dst, width, width),
        }
    }

    /// dst[..len] = src[..len], then zeros up to `width`: plain moves when the row is full.
    ///
    /// # Safety
    /// As [`copy_pad`].
    #[inline(always)]
    pub(super) unsafe fn copy_row(src: *const f32, dst: *mut f32, len: usize, width: usize) {
        if len == width {
            copy_full(src, dst, width)
        } else {
            copy_pad(src, dst, len, width)
        }
    }

    /// dst[..len] = src[..len], then zeros up to `width`.
    ///
    /// # Safety
    /// src holds len floats, dst width floats; the CPU has AVX.
    #[inline(always)]
    pub(super) unsafe fn copy_pad(src: *const f32, dst: *mut f32, len: usize, width: usize) {
        // Eight lanes at a time through masked loads and stores (masked-off lanes are neither read
        // nor written), so no scalar loop is left for the compiler to turn into memcpy and memset.
        let mut x = 0;
        while x < width {
            let v = _mm256_maskload_ps(src.add(x), first_lanes(len.saturating_sub(x)));
            if x + 8 <= width {
                _mm256_storeu_ps(dst.add(x), v);
            } else {
                _mm256_maskstore_ps(dst.add(x), first_lanes(width - x), v);
            }
            x += 8;
        }
    }

    /// A mask of the first min(n, 8) of eight 32-bit lanes.
    #[inline(always)]
    unsafe fn first_lanes(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// Transposes `live` source rows (each kc contiguous floats, `ld` apart) into a panel `width`
    /// wide: for each k, the rows' values at dst + k·width, zeros past `live`. Eight k at a time,
    /// the whole width (written a full panel row at a time), through 8×8 and 4×8 register blocks.
    ///
    /// # Safety
    /// live ≤ width; the live rows are readable for kc floats; dst is writable for kc·width floats;
    /// the CPU has AVX.
    #[inline(always)]
    pub(super) unsafe fn transpose_pack(src: *const f32, ld: isize, live: usize, kc: usize, dst: *mut f32, width: usize) {
        // (A macro, not a closure: a closure does not inherit this function's target features, so
        // the transposes would not inline into it.)
        macro_rules! block {
            ($k0:expr, $g:expr) => {{
                let (k0, g) = ($k0, $g);
                let w = (width - g).min(8);
                let rows = live.saturating_sub(g).min(w);
                let (s, d) = (src.offset(g as isize * ld + k0 as isize), dst.add(k0 * width + g));
                if w == 4 {
                    transpose_4x8(s, ld, rows, d, width);
                } else {
                    transpose_8x8(s, ld, rows, d, width, w);
                }
                w
            }};
        }
        // Sixteen k (a whole line of each source row) per group of rows, then the next group: with
        // eight, the other half of each line was read after all `width` rows had been touched, and
        // rows a multiple of 4 KiB apart (W3's weights) share one L1 set, so it came from L2 again.
        let mut k0 = 0;
        while k0 + 16 <= kc {
            let mut g = 0;
            while g < width {
                block!(k0, g);
                g += block!(k0 + 8, g);
            }
            k0 += 16;
        }
        if k0 + 8 <= kc {
            let mut g = 0;
            while g < width {
                g += block!(k0, g);
            }
            k0 += 8;
        }
        for kk in k0..kc {
            let d = dst.add(kk * width);
            for j in 0..width {
                *d.add(j) = if j < live { *src.offset(j as isize * ld + kk as isize) } else { 0.0 };
            }
        }
    }

    /// An 8×8 block: `live` rows of 8 floats (`ld` apart; the rest zero) into 8 rows of `w` floats
    /// `stride` apart.
    #[inline(always)]
    unsafe fn transpose_8x8(src: *const f32, ld: isize, live: usize, dst: *mut f32, stride: usize, w: usize) {
        let mut r = [_mm256_setzero_ps(); 8];
        for (j, rj) in r.iter_mut().enumerate().take(live) {
            *rj = _mm256_loadu_ps(src.offset(j as isize * ld));
        }
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let o = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (kk, ok) in o.iter().enumerate() {
            let d = dst.add(kk * stride);
            if w == 8 {
                _mm256_storeu_ps(d, *ok);
            } else {
                _mm256_maskstore_ps(d, first_lanes(w), *ok);
            }
        }
    }

    /// A 4×8 block (the last four rows of a 12-row tile): `live` rows of 8 floats into 8 rows of 4,
    /// with a third of the shuffles of an 8×8 block.
    #[inline(always)]
    unsafe fn transpose_4x8(src: *const f32, ld: isize, live: usize, dst: *mut f32, stride: usize) {
        let mut r = [_mm256_setzero_ps(); 4];
        for (j, rj) in r.iter_mut().enumerate().take(live) {
            *rj = _mm256_loadu_ps(src.offset(j as isize * ld));
        }
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        // u_i holds k = i in its low half and k = i + 4 in its high half.
        let u = [
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        ];
        for (i, ui) in u.iter().enumerate() {
            _mm_storeu_ps(dst.add(i * stride), _mm256_castps256_ps128(*ui));
            _mm_storeu_ps(dst.add((i + 4) * stride), _mm256_extractf128_ps::<1>(*ui));
        }
    }

    /// Writes one row of a tile: C[j] = alpha·acc[j] + beta·C[j] for j < nr.
    #[inline(always)]
    unsafe fn store_row_scalar(acc: &[f32], c: *mut f32, csc: isize, nr: usize, alpha: f32, beta: f32) {
        for (j, &x) in acc.iter().enumerate().take(nr) {
            let p = c.offset(j as isize * csc);
            let v = if alpha == 1.0 { x } else { alpha * x };
            *p = if beta == 0.0 { v } else if beta == 1.0 { v + *p } else { beta.mul_add(*p, v) };
        }
    }

    /// The transpose of a 16×16 block held as sixteen row vectors: lane i of column j is row i's
    /// lane j. Interleaves pairs of floats, then pairs of pairs, then 128-bit quarters (64 shuffles).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::kernels) unsafe fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // s[4g + c], lane quarter q: column 4q + c of rows 4g..4g+3.
        let mut s = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let pd = |x: __m512| _mm512_castps_pd(x);
            let (t0, t1, t2, t3) = (pd(t[4 * g]), pd(t[4 * g + 1]), pd(t[4 * g + 2]), pd(t[4 * g + 3]));
            s[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            s[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            s[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            s[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        // Column 4q + c gathers quarter q of s[c], s[4 + c], s[8 + c], s[12 + c].
        let mut out = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let u0 = _mm512_shuffle_f32x4::<0x44>(s[c], s[4 + c]);
            let u1 = _mm512_shuffle_f32x4::<0xEE>(s[c], s[4 + c]);
            let u2 = _mm512_shuffle_f32x4::<0x44>(s[8 + c], s[12 + c]);
            let u3 = _mm512_shuffle_f32x4::<0xEE>(s[8 + c], s[12 + c]);
            out[c] = _mm512_shuffle_f32x4::<0x88>(u0, u2);
            out[4 + c] = _mm512_shuffle_f32x4::<0xDD>(u0, u2);
            out[8 + c] = _mm512_shuffle_f32x4::<0x88>(u1, u3);
            out[12 + c] = _mm512_shuffle_f32x4::<0xDD>(u1, u3);
        }
        out
    }

    /// How many floats ahead of its position in a packed B panel the kernel prefetches (eight rows
    /// of a 32-wide panel).
    const PACKED_B_AHEAD: usize = 256;

    /// How many rows of B ahead a filling kernel prefetches.
    const FILL_AHEAD: isize = 8;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx512<const NV: usize, const PACKED: bool, const FILL: bool, const R: usize>(kc: usize, a: *const f32, ars: isize, acs: isize, b: *mut f32, src: *const f32, rs: isize, c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, alpha: f32, beta: f32) {
        // A packed tile holds MR values per k, of which this kernel multiplies the first R (mr ≤ R).
        const MR: usize = 12;
        let nrp = 16 * NV;
        debug_assert!(mr <= R);
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        // Bring the C tile towards L1 while the k loop runs (a tile's rows are a matrix row apart).
        if csc == 1 {
            for i in 0..R.min(mr) {
                let row = c.offset(i as isize * rsc) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64 * NV - 4));
            }
        }
        let (mut a, mut b, mut src) = (a, b, src);
        let mut step = |acc: &mut [[__m512; NV]; R]| {
            let mut bv = [_mm512_setzero_ps(); NV];
            for v in 0..NV {
                if FILL {
                    // Rows of B are rs apart, too far for the hardware prefetcher to follow.
                    // (Also prefetching the next micro-panel into L2 was measured: no gain.)
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_offset(FILL_AHEAD * rs + 16 * v as isize) as *const i8);
                    bv[v] = _mm512_loadu_ps(src.add(16 * v));
                    _mm512_store_ps(b.add(16 * v), bv[v]);
                } else {
                    // The packed panel streams from L2; the hardware prefetcher alone left the
                    // loads waiting (measured: 1–3 % on W5 and W3's products).
                    _mm_prefetch::<_MM_HINT_T0>((b as *const f32).wrapping_add(PACKED_B_AHEAD + 16 * v) as *const i8);
                    bv[v] = _mm512_load_ps(b.add(16 * v));
                }
            }
            for i in 0..R {
                let ai = _mm512_set1_ps(if PACKED { *a.add(i) } else { *a.offset(i as isize * ars) });
                for v in 0..NV {
                    acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
                }
            }
            a = if PACKED { a.add(MR) } else { a.offset(acs) };
            b = b.add(nrp);
            if FILL {
                src = src.offset(rs);
            }
        };
        // Two k per trip: the loop's own instructions share the issue slots of the multiply-adds
        // (paired runs in one process, one thread, GFLOP/s: 2048³ 159.9 → 161.1, 512³ 156.9 →
        // 158.1, 128×784×512 150.2 → 153.1; Aᵀ·B 784×128×512 unchanged).
        for _ in 0..kc / 2 {
            step(&mut acc);
            step(&mut acc);
        }
        if kc % 2 == 1 {
            step(&mut acc);
        }
        let alphav = _mm512_set1_ps(alpha);
        let betav = _mm512_set1_ps(beta);
        // alpha·acc + beta·C at p, on the lanes of `mask`.
        let store = |acc: __m512, p: *mut f32, mask: __mmask16| {
            let mut r = if alpha == 1.0 { acc } else { _mm512_mul_ps(alphav, acc) };
            if beta == 1.0 {
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, p));
            } else if beta != 0.0 {
                r = _mm512_fmadd_ps(betav, _mm512_maskz_loadu_ps(mask, p), r);
            }
            _mm512_mask_storeu_ps(p, mask, r);
        };
        if csc != 1 && rsc == 1 {
            // A transposed C (the product was turned around, see `sgemm_on`): the tile's row i is
            // column i of a row-major block of C, so its column j is mr consecutive floats at
            // c + j·csc. Transposed in registers, sixteen columns at a time.
            let mask = lane_mask(mr);
            for v in 0..NV {
                let left = nr.saturating_sub(16 * v).min(16);
                if left == 0 {
                    break;
                }
                let mut rows = [_mm512_setzero_ps(); 16];
                for i in 0..R {
                    rows[i] = acc[i][v];
                }
                let cols = transpose_16x16(rows);
                for (j, &col) in cols.iter().enumerate().take(left) {
                    store(col, c.offset((16 * v + j) as isize * csc), mask);
                }
            }
            return;
        }
        for i in 0..R {
            if i >= mr {
                break;
            }
            let row = c.offset(i as isize * rsc);
            if csc == 1 {
                for v in 0..NV {
                    let left = nr.saturating_sub(16 * v);
                    if left == 0 {
                        break;
                    }
                    let mask = lane_mask(left);
                    store(acc[i][v], row.add(16 * v), mask);
                }
            } else {
                let mut tmp = [0.0f32; 32];
                for v in 0..NV {
                    _mm512_storeu_ps(tmp.as_mut_ptr().add(16 * v), acc[i][v]);
                }
                store_row_scalar(&tmp[..nrp], row, csc, nr, alpha, beta);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx2<const NV: usize, const PACKED: bool>(kc: usize, a: *const f32, ars: isize, acs: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, alpha: f32, beta: f32) {
        const MR: usize = 6;
        let nrp = 8 * NV;
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let mut bv = [_mm256_setzero_ps(); NV];
            for v in 0..NV {
                bv[v] = _mm256_loadu_ps(b.add(8 * v));
            }
            for i in 0..MR {
                let ai = _mm256_set1_ps(if PACKED { *a.add(i) } else { *a.offset(i as isize * ars) });
                for v in 0..NV {
                    acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
                }
            }
            a = if PACKED { a.add(MR) } else { a.offset(acs) };
            b = b.add(nrp);
        }
        for i in 0..MR {
            if i >= mr {
                break;
            }
            let row = c.offset(i as isize * rsc);
            let mut tmp = [0.0f32; 16];
            for v in 0..NV {
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * v), acc[i][v]);
            }
            if csc == 1 && nr == nrp && alpha == 1.0 {
                for v in 0..NV {
                    let p = row.add(8 * v);
                    let r = acc[i][v];
                    let r = if beta == 0.0 {
                        r
                    } else if beta == 1.0 {
                        _mm256_add_ps(r, _mm256_loadu_ps(p))
                    } else {
                        _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(p), r)
                    };
                    _mm256_storeu_ps(p, r);
                }
            } else {
                store_row_scalar(&tmp[..nrp], row, csc, nr, alpha, beta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_strides_match_naive_product() {
        // A is 2x3 stored transposed (3x2 row-major), B is 3x2.
        let at = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut c = [1.0f32; 4];
        sgemm(2, 3, 2, 1.0, &at, 1, 2, &b, 2, 1, 1.0, &mut c, 2, 1);
        assert_eq!(c, [23.0, 29.0, 50.0, 65.0]);
    }
}
