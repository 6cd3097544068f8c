//! Small products without packing (AVX-512): the products of small networks, where a side of C or
//! the depth is a few dozen at most and packing A and B into panels would cost as much as the
//! product itself (the seed network's layers are 20→13→8→3 over a batch of 500).
//!
//! Operands are read where they lie, in one of two ways, whichever the layout allows:
//! - **B in registers** when A's rows are contiguous and the depth is small (a layer's forward,
//!   x·Wᵀ, and the input gradient g·W): the k rows of B (at most 16 columns) are loaded into
//!   registers once, and each row of C is a chain of k fused multiply-adds of broadcast elements of
//!   A's row, eight rows interleaved. Outputs of at most five columns put several rows in one
//!   vector instead ([`packed_rows`]), and a layer's bias and relu can be applied as the sums are
//!   stored ([`sgemm_layer`]).
//! - **Register tiles over adjacent rows** when A's columns are contiguous (a weight gradient gᵀ·x,
//!   with a depth of the batch size): an MR×16 or MR×32 tile of C accumulates over k, broadcasting
//!   A's MR adjacent values and loading B's row with masked loads (masked-off lanes never fault, so a
//!   row of 13 floats is one load). Partial tiles are split into smaller full tiles (13 = 12 + 1),
//!   so nothing past A's last row is ever read.
//!
//! - **A narrow layer's backward in one pass** ([`linear_backward`]): a compiled training step's
//!   weight gradient gᵀ·a and input gradient g·W of one Linear layer of at most 12 outputs and 16
//!   inputs, over a k block of rows, broadcasting each element of g once for both.
//!
//! A product may run transposed (Cᵀ = Bᵀ·Aᵀ) when that puts more of the output into vector lanes or
//! lets one of the kernels apply: `gᵀ·x` with g 500×13 and x 500×20 runs as 20 rows of one 13-lane
//! vector, not 13 rows of a 32-lane pair of which 12 lanes would be idle. When B's rows are not
//! contiguous, B in registers gathers them (once per product) and the adjacent-row tiles, which
//! read B's rows again for every row tile, work on a copy (B is small here by definition); products
//! the kernels do not suit go to the blocked path.
//!
//! Products of 2^20 multiply-adds or more (those the blocked path may split over threads) never come
//! here, so which path computes a product depends on its shape alone, never on the thread count.
//!
//! Results are bit-identical to the blocked kernels of `gemm`: every output element is the same chain
//! of fused multiply-adds over k, in the same [`k_step`] blocks, added into C block by block with the
//! same alpha and beta arithmetic (the transposed form changes which operand is broadcast, not the
//! products or their order).

use super::gemm::{k_step, transpose_16x16, Views, PARALLEL_MIN_MACS};
use super::math::avx512 as vmath;
use super::math::Activation;
use super::simd::lane_mask;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Largest C the small path writes element by element (a transposed orientation whose output rows
/// are strided); past it the blocked kernel's vector stores win.
const MAX_STRIDED_C: usize = 1024;
/// Largest B (k × columns, floats) the tiles stream from cache on every row tile.
const MAX_B: usize = 1 << 15;
/// Deepest product whose B fits in registers (k vectors + 8 accumulators ≤ 32 zmm).
const MAX_K_IN_REGISTERS: usize = 22;

/// One orientation of a product: C (rows × cols) = A (rows × k) · B (k × cols).
#[derive(Clone, Copy)]
struct Plan {
    rows: usize,
    cols: usize,
    v: Views,
}

/// Which kernel computes a plan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kernel {
    BInRegisters,
    AdjacentRows,
}

impl Plan {
    /// The same product, transposed: Cᵀ = Bᵀ·Aᵀ.
    fn transposed(self) -> Plan {
        Plan { rows: self.cols, cols: self.rows, v: self.v.transposed() }
    }

    /// The kernel for this orientation and its estimated cost in vector multiply-adds (counting row
    /// padding, idle lanes, the copy (or gathers) of a B whose rows are not contiguous, and element-by-element
    /// stores of a C whose rows are not), or None when neither kernel suits it.
    fn costed(&self, k: usize) -> Option<(usize, Kernel)> {
        let vecs = self.cols.div_ceil(16);
        let copy_b = if self.v.csb == 1 { 0 } else { k * self.cols / 2 };
        let scalar_c = if self.v.csc == 1 { 0 } else { self.rows * self.cols * 2 };
        if self.v.csc != 1 && self.rows * self.cols > MAX_STRIDED_C {
            return None;
        }
        // B in registers gathers a strided B's rows with 32-bit lane offsets.
        let gatherable = self.v.csb == 1 || (1..1 << 26).contains(&self.v.csb);
        let (work, kernel) = if self.v.csa == 1 && k <= MAX_K_IN_REGISTERS && self.cols <= 16 && gatherable {
            (self.rows.div_ceil(8) * 8 * (k + 1), Kernel::BInRegisters)
        } else if self.v.rsa == 1 && k * self.cols.min(32) <= MAX_B {
            (row_tiles(self.rows, self.cols).map(|(mr, count)| count * (mr + 2)).sum::<usize>() * k * vecs, Kernel::AdjacentRows)
        } else {
            return None;
        };
        Some((work + copy_b + scalar_c, kernel))
    }
}

/// Row-tile heights per vector count: 16·NV·MR accumulator lanes in at most 24 zmm registers.
const TILE_ROWS_1: [usize; 7] = [24, 16, 12, 8, 4, 2, 1];
const TILE_ROWS_2: [usize; 5] = [12, 8, 4, 2, 1];
/// The most rows one tile takes whole (every height up to these is instantiated): 24 one-vector
/// or 13 two-vector rows of accumulators, with B's row and a broadcast, fill at most 29 registers.
const WHOLE_ROWS: [usize; 2] = [24, 13];

/// How `rows` rows of C are cut into full tiles of a width of `cols` (≤ 32 are used): one tile when
/// they fit (each tile is a chain of multiply-adds per accumulator, so a 3-row C cut into 2 + 1 rows
/// waited out two chains' latency: 1.4 µs for the seed network's 3×500×8, 0.7 in one tile);
/// otherwise the main height with the least padding, then the remainder greedily in smaller
/// heights. Yields (height, count) pairs.
fn row_tiles(rows: usize, cols: usize) -> impl Iterator<Item = (usize, usize)> {
    let wide = cols.min(32) > 16;
    let heights: &'static [usize] = if wide { &TILE_ROWS_2 } else { &TILE_ROWS_1 };
    let whole = (rows <= WHOLE_ROWS[wide as usize]).then_some((rows, 1));
    // The rows left for the greedy cut, and the main height that starts it: none when one tile
    // takes them whole (the search's divisions cost a small product's plan a few nanoseconds).
    let (main, mut left) = match whole {
        Some(_) => (0, 0),
        None => {
            let main = heights[..heights.len() - 3]
                .iter()
                .copied()
                .min_by_key(|&mr| (rows.div_ceil(mr) * (mr + 2), usize::MAX - mr))
                .expect("heights are not empty");
            (main, rows)
        }
    };
    whole.into_iter().chain(heights.iter().filter(move |&&h| h <= main && left > 0).map(move |&h| {
        let count = left / h;
        left -= count * h;
        (h, count)
    }))
}

thread_local! {
    /// This thread's copy of a B whose rows are not contiguous, for the adjacent-row tiles (grown on
    /// first use only).
    static B_COPY: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The plan and kernel that compute an m×k×n product on the small path (the orientation with the
/// lower estimated cost), or None if neither suits it.
fn choose(m: usize, k: usize, n: usize, v: Views) -> Option<(Plan, Kernel)> {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS {
        return None;
    }
    let plain = Plan { rows: m, cols: n, v };
    let flipped = plain.transposed();
    match (plain.costed(k), flipped.costed(k)) {
        (Some((cp, kp)), Some((cf, kf))) => Some(if cf < cp { (flipped, kf) } else { (plain, kp) }),
        (Some((_, kp)), None) => Some((plain, kp)),
        (None, Some((_, kf))) => Some((flipped, kf)),
        (None, None) => None,
    }
}

/// A layer's forward, C = A·B + bias (the same n values added to every row), then relu if `relu`,
/// each optional, on the small path, the bias added and relu applied as the sums are stored, if the
/// product runs there with B in registers and C unturned; returns false, having done nothing, if
/// not. Results are those of filling C with the bias and adding A·B to it (beta = 1), or of A·B
/// alone, then applying the relu op, without the passes that fill C and apply relu (the kernel's
/// masked loads of a filled C waited on the fill's stores: masked loads do not take data from
/// pending stores).
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL; the m×k and k×n views lie inside their buffers; C is a
/// contiguous m×n block (rsc = n, csc = 1) that overlaps neither A nor B; bias, if any, holds n
/// floats; m, n, k > 0.
pub(super) unsafe fn sgemm_layer(m: usize, k: usize, n: usize, v: Views, bias: Option<*const f32>, relu: bool) -> bool {
    match choose(m, k, n, v) {
        Some((p, Kernel::BInRegisters)) if p.rows == m && p.v.csc == 1 => {
            let _flush = super::denormals::FlushGuard::new();
            b_in_registers(p, k, 1.0, if bias.is_some() { 1.0 } else { 0.0 }, Epilogue { bias, relu, grad_of: None });
            true
        }
        _ => false,
    }
}

/// A gradient through an activation: C = (A·B) ⊙ act'(y), each sum multiplied as it is stored by
/// the derivative of relu, sigmoid or tanh at the activation's output y (m×n, laid out as C), with
/// the arithmetic of the activation's backward (gv·(y > 0 ? 1 : 0), gv·(y·(1 − y)), gv·(1 − y²)),
/// so the result is that of the product followed by that pass; on the small path with B in
/// registers and C unturned, one row per vector. Returns false, having done nothing, if not.
///
/// # Safety
/// As [`sgemm_layer`]; y holds m·n floats and does not overlap C.
pub(super) unsafe fn sgemm_grad(m: usize, k: usize, n: usize, v: Views, y: *const f32, act: Activation) -> bool {
    match choose(m, k, n, v) {
        Some((p, Kernel::BInRegisters)) if p.rows == m && p.v.csc == 1 && rows_per_vector(&p, k, 1.0, 0.0, false).is_none() => {
            let _flush = super::denormals::FlushGuard::new();
            b_in_registers(p, k, 1.0, 0.0, Epilogue { grad_of: Some((act, y)), ..Epilogue::default() });
            true
        }
        _ => false,
    }
}

/// The widest output a narrow layer's one-pass backward ([`linear_backward`]) takes: its weight's
/// rows and the weight gradient's sums, one vector per output, stay in registers beside the row's
/// loads (2 · 12 + 5 of 32).
pub(super) const BACKWARD_MAX_OUT: usize = 12;

/// A narrow linear layer's backward over a block of m rows, in one pass over them: the weight's
/// gradient dw = gᵀ·a (nout×nin, summed from zero over the rows in order, as one k block of the
/// other kernels) and the input's gradient gin = (g·w) ⊙ act'(a), the derivative of the activation
/// whose output is the layer's input a (or none), with the arithmetic of [`sgemm_grad`]'s stores.
/// Both products broadcast the same elements of g, and the weight gradient's chains (one
/// multiply-add per row, each waiting on the row before) leave the multiply-add ports room for the
/// input gradient's: apart, gᵀ·a waited on those chains (dW3 of the seed network, 3×8 over 500
/// rows) or on its loads. Every element is the chain of fused multiply-adds of the products apart,
/// so results do not change.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL; g holds m·nout floats, a and gin m·nin, w and dw nout·nin
/// (each contiguous, row-major); 1 ≤ nout ≤ [`BACKWARD_MAX_OUT`] and 1 ≤ nin ≤ 16; gin and dw
/// overlap nothing else.
#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn linear_backward(m: usize, nin: usize, nout: usize, g: *const f32, a: *const f32, w: *const f32, act: Option<Activation>, dw: *mut f32, gin: *mut f32) {
    macro_rules! by_width {
        ($($n:literal)*) => {
            match nout {
                $($n => linear_backward_as::<$n>(m, nin, g, a, w, act, dw, gin),)*
                _ => unreachable!("the caller bounds nout by BACKWARD_MAX_OUT"),
            }
        };
    }
    by_width!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// [`linear_backward`] for NOUT outputs, the activation's derivative chosen once.
#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn linear_backward_as<const NOUT: usize>(m: usize, nin: usize, g: *const f32, a: *const f32, w: *const f32, act: Option<Activation>, dw: *mut f32, gin: *mut f32) {
    match act {
        None => linear_backward_rows::<NOUT>(m, nin, g, a, w, dw, gin, |acc, _| acc),
        Some(Activation::Relu) => linear_backward_rows::<NOUT>(m, nin, g, a, w, dw, gin, |acc, y| times_derivative(Activation::Relu, acc, y)),
        Some(Activation::Sigmoid) => linear_backward_rows::<NOUT>(m, nin, g, a, w, dw, gin, |acc, y| times_derivative(Activation::Sigmoid, acc, y)),
        Some(Activation::Tanh) => linear_backward_rows::<NOUT>(m, nin, g, a, w, dw, gin, |acc, y| times_derivative(Activation::Tanh, acc, y)),
    }
}

/// A gradient g times the derivative of `act` at its output y, with the backward's formulas
/// rounded step by step (1 − v is −v + 1 exactly): g·(y > 0 ? 1 : 0), g·(y·(1 − y)), g·(1 − y²).
/// The kernels that apply a derivative as they store (the GRAD stores, [`linear_backward`]) all
/// take it from here; called with a constant `act`, the match folds away.
///
/// # Safety
/// The CPU has AVX-512F (only called from kernels that enable it, into which it inlines).
#[inline(always)]
unsafe fn times_derivative(act: Activation, g: __m512, y: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    match act {
        Activation::Relu => _mm512_mul_ps(g, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, _mm512_setzero_ps()), one)),
        Activation::Sigmoid => _mm512_mul_ps(g, _mm512_mul_ps(y, _mm512_sub_ps(one, y))),
        Activation::Tanh => _mm512_mul_ps(g, _mm512_sub_ps(one, _mm512_mul_ps(y, y))),
    }
}

/// The rows of [`linear_backward`], `scale` applying the derivative to a row's input gradient
/// from that row of a.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn linear_backward_rows<const NOUT: usize>(m: usize, nin: usize, g: *const f32, a: *const f32, w: *const f32, dw: *mut f32, gin: *mut f32, scale: impl Fn(__m512, __m512) -> __m512) {
    // The loads' and stores' width (16, 32 or 64 bytes) fixed outside the loop.
    match nin {
        ..=4 => linear_backward_width::<NOUT, 4>(m, nin, g, a, w, dw, gin, scale),
        5..=8 => linear_backward_width::<NOUT, 8>(m, nin, g, a, w, dw, gin, scale),
        _ => linear_backward_width::<NOUT, 16>(m, nin, g, a, w, dw, gin, scale),
    }
}

/// [`linear_backward_rows`] with rows of at most `WIDTH` (4, 8 or 16) inputs.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn linear_backward_width<const NOUT: usize, const WIDTH: usize>(m: usize, nin: usize, g: *const f32, a: *const f32, w: *const f32, dw: *mut f32, gin: *mut f32, scale: impl Fn(__m512, __m512) -> __m512) {
    let mask = lane_mask(nin);
    let wv: [__m512; NOUT] = std::array::from_fn(|j| load_narrow(w.add(j * nin), WIDTH, mask));
    let mut sums = [_mm512_setzero_ps(); NOUT];
    for i in 0..m {
        let row = load_narrow(a.add(i * nin), WIDTH, mask);
        let mut acc = _mm512_setzero_ps();
        for j in 0..NOUT {
            let gij = _mm512_set1_ps(*g.add(i * NOUT + j));
            acc = _mm512_fmadd_ps(gij, wv[j], acc);
            sums[j] = _mm512_fmadd_ps(gij, row, sums[j]);
        }
        store_narrow(gin.add(i * nin), WIDTH, mask, scale(acc, row));
    }
    for (j, &sum) in sums.iter().enumerate() {
        store_narrow(dw.add(j * nin), WIDTH, mask, sum);
    }
}

/// C = alpha·A·B + beta·C on the small path, if it suits the product; returns false, having done
/// nothing, if not.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL; the m×k, k×n and m×n views lie inside their buffers
/// (checked by `sgemm_on`); C does not overlap A or B; m, n, k > 0.
pub(super) unsafe fn sgemm(m: usize, k: usize, n: usize, alpha: f32, v: Views, beta: f32) -> bool {
    let Some((mut p, kernel)) = choose(m, k, n, v) else { return false };
    let _flush = super::denormals::FlushGuard::new();
    if kernel == Kernel::BInRegisters {
        // SAFETY: as this function's contract; the kernel suits the plan (costed checked it), and
        // it gathers the rows of a B whose rows are strided, which it reads only once.
        b_in_registers(p, k, alpha, beta, Epilogue::default());
        return true;
    }
    B_COPY.with(|cell| {
        let mut copy = cell.borrow_mut();
        if p.v.csb != 1 {
            // B's rows are strided (a weight read transposed): copy it into contiguous rows.
            let ld = p.cols.div_ceil(16) * 16;
            if copy.len() < k * ld {
                copy.resize(k * ld, 0.0);
            }
            for kk in 0..k {
                let row = &mut copy[kk * ld..kk * ld + p.cols];
                for (j, x) in row.iter_mut().enumerate() {
                    // SAFETY: (kk, j) lies inside B's k×cols view.
                    *x = *p.v.b.offset(kk as isize * p.v.rsb + j as isize * p.v.csb);
                }
            }
            p.v.b = copy.as_ptr();
            p.v.rsb = ld as isize;
            p.v.csb = 1;
        }
        // SAFETY: as this function's contract; B's rows are now contiguous, and the kernel suits
        // the plan's A layout (costed checked it).
        adjacent_rows(p, k, alpha, beta)
    });
    true
}

/// Writes one row of C: alpha·acc + beta·C on the lanes of `mask` (beta = 0 does not read C), with
/// the arithmetic of the blocked kernels' stores.
///
/// # Safety
/// The CPU has AVX-512F (only called from kernels that enable it, into which it inlines); C's row is
/// writable on the lanes of `mask` (csc = 1) or at its nr elements.
#[inline(always)]
unsafe fn store_row(acc: __m512, p: *mut f32, csc: isize, nr: usize, mask: __mmask16, alpha: f32, beta: f32) {
    if csc == 1 {
        let mut r = if alpha == 1.0 { acc } else { _mm512_mul_ps(_mm512_set1_ps(alpha), acc) };
        if beta == 1.0 {
            r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, p));
        } else if beta != 0.0 {
            r = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, p), r);
        }
        _mm512_mask_storeu_ps(p, mask, r);
    } else {
        let mut tmp = [0.0f32; 16];
        _mm512_storeu_ps(tmp.as_mut_ptr(), acc);
        for (j, &x) in tmp.iter().enumerate().take(nr) {
            let q = p.offset(j as isize * csc);
            let v = if alpha == 1.0 { x } else { alpha * x };
            *q = if beta == 0.0 { v } else if beta == 1.0 { v + *q } else { beta.mul_add(*q, v) };
        }
    }
}

/// A masked store of the first `cols` lanes, 16, 32 or 64 bytes wide, whichever covers them: a
/// 64-byte masked store whose span crosses a cache line pays for the split even where its lanes are
/// masked off, and a row of 3 or 8 floats crosses one with most of its rows (measured on the seed
/// network's products: h1·W2ᵀ 500×13×8 1.90 → 1.76 µs, h2·W3ᵀ 500×8×3 1.29 → 1.16–1.25, g·W3
/// 500×3×8 0.93 → 0.78–0.80).
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL (only called from kernels that enable them, into which it
/// inlines); `p` is writable on the lanes of `mask`, all below `cols`.
#[inline(always)]
unsafe fn store_narrow(p: *mut f32, cols: usize, mask: __mmask16, v: __m512) {
    if cols <= 4 {
        _mm_mask_storeu_ps(p, mask as __mmask8, _mm512_castps512_ps128(v));
    } else if cols <= 8 {
        _mm256_mask_storeu_ps(p, mask as __mmask8, _mm512_castps512_ps256(v));
    } else {
        _mm512_mask_storeu_ps(p, mask, v);
    }
}

/// The masked load matching [`store_narrow`].
///
/// # Safety
/// As [`store_narrow`], `p` readable on the lanes of `mask`.
#[inline(always)]
unsafe fn load_narrow(p: *const f32, cols: usize, mask: __mmask16) -> __m512 {
    if cols <= 4 {
        _mm512_castps128_ps512(_mm_maskz_loadu_ps(mask as __mmask8, p))
    } else if cols <= 8 {
        _mm512_castps256_ps512(_mm256_maskz_loadu_ps(mask as __mmask8, p))
    } else {
        _mm512_maskz_loadu_ps(mask, p)
    }
}

/// What a layer's forward does to its sums as they are stored: adds a bias row, then applies relu
/// (each optional; with either, alpha = 1, csc = 1, and beta = 1 with a bias, else 0). Sigmoid and
/// tanh are not applied here: on eight rows at once their constants and temporaries pushed B out of
/// its registers (500×13×8 with sigmoid: 1.3 µs for the product, 2.5 with a pass over C after it,
/// 3.9 in the stores), so [`super::gemm::sgemm_layer`] applies them in a pass over C.
///
/// Or, in a backward, scales each sum by an activation's derivative at that element of the
/// activation's output `y` (an m×n block laid out as C), as the activation's backward would in a
/// pass over C after the product (see [`sgemm_grad`]).
#[derive(Clone, Copy, Default)]
struct Epilogue {
    bias: Option<*const f32>,
    relu: bool,
    grad_of: Option<(Activation, *const f32)>,
}

/// The B-in-registers kernel over a whole plan (cols ≤ 16, k ≤ MAX_K_IN_REGISTERS, csa = 1, B's
/// rows contiguous or gathered), with a layer's epilogue in the stores.
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn b_in_registers(p: Plan, k: usize, alpha: f32, beta: f32, epi: Epilogue) {
    if let Some(per) = rows_per_vector(&p, k, alpha, beta, epi.bias.is_some()) {
        return packed_rows(p, k, per, epi);
    }
    macro_rules! by_depth {
        ($($k:literal)*) => {
            match k {
                $($k => rows_against_b::<$k>(p, alpha, beta, epi),)*
                _ => unreachable!("costed bounds k by MAX_K_IN_REGISTERS"),
            }
        };
    }
    by_depth!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22)
}

/// How many rows of C one vector holds in [`packed_rows`], if that suits the plan: C's rows at most
/// five wide, so that three or more fit in sixteen lanes, and at most 32 / k deep, so that the rows'
/// values of A lie in two vectors; A's and C's rows back to back; C stored without reading it (alpha
/// = 1, and beta = 0 or a bias); rows enough for four groups at a time.
fn rows_per_vector(p: &Plan, k: usize, alpha: f32, beta: f32, bias: bool) -> Option<usize> {
    let per = (16 / p.cols).min(32 / k);
    let laid_out = p.v.rsa == k as isize && p.v.csc == 1 && p.v.rsc == p.cols as isize;
    (per >= 3 && laid_out && alpha == 1.0 && (beta == 0.0 || bias) && p.rows >= 4 * per).then_some(per)
}

/// C = A·B (+ bias, then relu) with `per` rows of C in each vector, for outputs too narrow to fill
/// the lanes one row at a time (the seed network's last layer, 500×8×3: three lanes of sixteen):
/// the `per` rows' values of A (per·k ≤ 32 floats, back to back) are loaded into two vectors, and
/// for each k one two-source permute spreads A[i][k] over row i's lanes, to be multiplied by B's
/// row k repeated `per` times. Each element is the same chain of fused multiply-adds over k as in
/// the other kernels, and the bias and relu are applied as there, so results do not change. The permutes take the
/// shuffle port, one of the two that multiply-add, so this wins where it replaces three or more
/// multiply-adds per k (h2·W3ᵀ 500×8×3: 0.82 → 0.53 µs).
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL; [`rows_per_vector`] gave `per` for this plan; its views lie
/// inside their buffers; the epilogue's bias (if any) holds cols floats.
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn packed_rows(p: Plan, k: usize, per: usize, epi: Epilogue) {
    let cols = p.cols;
    let lanes = lane_mask(per * cols);
    // Lane r·cols + j holds row r's column j: for each k, the permute's index r·k + kk into the
    // group's values of A, and B's row kk repeated per times (gathered); and the bias likewise.
    let (mut rk, mut jv) = ([0i32; 16], [0i32; 16]);
    for l in 0..per * cols {
        (rk[l], jv[l]) = (((l / cols) * k) as i32, (l % cols) as i32);
    }
    let (rk, jv) = (_mm512_loadu_si512(rk.as_ptr() as *const _), _mm512_loadu_si512(jv.as_ptr() as *const _));
    let (mut index, mut brow) = ([_mm512_setzero_si512(); 10], [_mm512_setzero_ps(); 10]);
    let offsets = _mm512_mullo_epi32(jv, _mm512_set1_epi32(p.v.csb as i32));
    for kk in 0..k {
        index[kk] = _mm512_add_epi32(rk, _mm512_set1_epi32(kk as i32));
        brow[kk] = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), lanes, offsets, p.v.b.offset(kk as isize * p.v.rsb));
    }
    let bias = epi.bias.map(|b| _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), lanes, jv, b));
    let mut i0 = 0;
    while i0 + 4 * per <= p.rows {
        packed_groups::<4>(&p, k, &index, &brow, bias, epi.relu, i0, per, per);
        i0 += 4 * per;
    }
    while i0 < p.rows {
        let rows = per.min(p.rows - i0);
        packed_groups::<1>(&p, k, &index, &brow, bias, epi.relu, i0, per, rows);
        i0 += rows;
    }
}

/// G groups of [`packed_rows`] from row i0, `rows` rows in each (at most per): G independent
/// chains, so that the multiply-adds' latency is covered.
///
/// # Safety
/// As [`packed_rows`]; rows i0 to i0 + G·per (or i0 + rows for one group) exist.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn packed_groups<const G: usize>(p: &Plan, k: usize, index: &[__m512i; 10], brow: &[__m512; 10], bias: Option<__m512>, relu: bool, i0: usize, per: usize, rows: usize) {
    let span = rows * k;
    let (lo, hi, out) = (lane_mask(span.min(16)), lane_mask(span.saturating_sub(16)), lane_mask(rows * p.cols));
    let (mut s0, mut s1, mut acc) = ([_mm512_setzero_ps(); G], [_mm512_setzero_ps(); G], [_mm512_setzero_ps(); G]);
    for g in 0..G {
        let a = p.v.a.add((i0 + g * per) * k);
        s0[g] = _mm512_maskz_loadu_ps(lo, a);
        // wrapping_add: with span ≤ 16 (hi empty, nothing read) a + 16 may lie past A's buffer.
        s1[g] = _mm512_maskz_loadu_ps(hi, a.wrapping_add(16));
    }
    for (idx, b) in index.iter().zip(brow).take(k) {
        for g in 0..G {
            acc[g] = _mm512_fmadd_ps(_mm512_permutex2var_ps(s0[g], *idx, s1[g]), *b, acc[g]);
        }
    }
    for (g, &sum) in acc.iter().enumerate() {
        let v = match bias {
            Some(b) => _mm512_add_ps(sum, b),
            None => sum,
        };
        let v = if relu { vmath::relu(v) } else { v };
        _mm512_mask_storeu_ps(p.v.c.add((i0 + g * per) * p.cols), out, v);
    }
}

/// How a product's sums meet C, fixed per product so that the stores carry no per-row branches
/// (which made the compiler keep the accumulators on the stack): stored as they are into C's
/// contiguous rows (alpha = 1, beta = 0: a layer's forward and most of backward), stored plus a
/// bias row (a layer's forward with its bias, [`sgemm_layer`]), stored plus a bias row through relu
/// (a layer's forward fused with its relu; a layer without a bias adds −0, which leaves every value
/// as it is), or anything else (alpha·sum + beta·C, or C's rows strided).
const STORE: u8 = 0;
const BIAS: u8 = 1;
const ANY: u8 = 2;
const BIAS_RELU: u8 = 3;
/// Stored times an activation's derivative at y ([`sgemm_grad`]; one instance for the three
/// activations, chosen per group of rows: one per activation made the library 300 KB larger).
const GRAD: u8 = 4;

/// Rows of C per group of the B-in-registers kernel.
const R: usize = 8;

/// Each row of C as a chain of K fused multiply-adds against B held in K registers, R rows at a
/// time (the last group repeats its last row, whose extra results are not stored). When C is read
/// (beta ≠ 0), a group's rows of C are loaded before its multiply-adds: rows of a narrow C overlap
/// within one vector's span, and a load right after the masked store of the row before would wait
/// for that store to reach the cache (masked stores do not forward).
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn rows_against_b<const K: usize>(p: Plan, alpha: f32, beta: f32, epi: Epilogue) {
    let none = _mm512_setzero_ps();
    // The bias row, or −0 (x + −0 = x for every x) for a relu without a bias.
    let row = epi.bias.map_or(_mm512_set1_ps(-0.0), |b| load_narrow(b, p.cols, lane_mask(p.cols)));
    debug_assert!(epi.bias.is_none() && !epi.relu || p.v.csc == 1 && alpha == 1.0);
    if let Some(grad_of) = epi.grad_of {
        return rows_against_b_as::<K, GRAD>(p, alpha, beta, none, grad_of);
    }
    let no_y = (Activation::Relu, std::ptr::null());
    match (epi.bias, epi.relu) {
        (Some(_), false) => rows_against_b_as::<K, BIAS>(p, alpha, beta, row, no_y),
        (_, true) => rows_against_b_as::<K, BIAS_RELU>(p, alpha, beta, row, no_y),
        (None, false) if p.v.csc == 1 && alpha == 1.0 && beta == 0.0 => rows_against_b_as::<K, STORE>(p, alpha, beta, none, no_y),
        (None, false) => rows_against_b_as::<K, ANY>(p, alpha, beta, none, no_y),
    }
}

/// B's rows (as many as `bv` holds), each in the first `cols` lanes of a vector.
/// A B whose columns are contiguous and rows strided (a layer's weight W read as Wᵀ in x·Wᵀ) is
/// read by W's rows and turned in registers by 16×16 transposes; one strided both ways is gathered;
/// contiguous rows are loaded. One function for all of the kernel's instances (one per depth and
/// epilogue, 110), out of line. The transposes measured faster than the gathers: the seed
/// network's x·W1ᵀ (W1 13×20) 2396 → 2371 ns at 500 rows, 133 → 120 ns at 8.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL; the plan's B view (k × cols, cols ≤ 16) is readable.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline(never)]
unsafe fn b_rows(p: &Plan, bv: &mut [__m512]) {
    let k = bv.len();
    let mask = lane_mask(p.cols);
    if p.v.csb != 1 && p.v.rsb == 1 {
        for h in 0..k.div_ceil(16) {
            let len = (k - 16 * h).min(16);
            let m = lane_mask(len);
            let cols: [__m512; 16] = std::array::from_fn(|j| if j < p.cols { _mm512_maskz_loadu_ps(m, p.v.b.offset(j as isize * p.v.csb + 16 * h as isize)) } else { _mm512_setzero_ps() });
            let rows = transpose_16x16(cols);
            bv[16 * h..16 * h + len].copy_from_slice(&rows[..len]);
        }
    } else if p.v.csb != 1 {
        let index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(p.v.csb as i32));
        for (kk, v) in bv.iter_mut().enumerate() {
            *v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, index, p.v.b.offset(kk as isize * p.v.rsb));
        }
    } else {
        for (kk, v) in bv.iter_mut().enumerate() {
            *v = _mm512_maskz_loadu_ps(mask, p.v.b.offset(kk as isize * p.v.rsb));
        }
    }
}

/// [`rows_against_b`] for one way of meeting C (`EPI`: [`STORE`], [`BIAS`] or [`BIAS_RELU`] with
/// the bias row in `bias`, [`GRAD`] with the activation and its output `y` laid out as C, or
/// [`ANY`]).
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn rows_against_b_as<const K: usize, const EPI: u8>(p: Plan, alpha: f32, beta: f32, bias: __m512, (act, y): (Activation, *const f32)) {
    let mask = lane_mask(p.cols);
    let mut bv = [_mm512_setzero_ps(); K];
    b_rows(&p, &mut bv);
    let g = Group { mask, cols: p.cols, csc: p.v.csc, alpha, beta, bias, act };
    // The rows of y beside those of C (only read by the GRAD stores, which take a contiguous C).
    let y_row = |i: usize| y.wrapping_add(i * p.cols);
    let mut i0 = 0;
    // Full groups of a row-major A whose rows lie back to back (rsa = K): each row's offset from
    // the group's first is a constant, so the multiply-adds address A from one register with
    // immediate displacements instead of eight row pointers that spill.
    if p.v.rsa == K as isize {
        while i0 + R <= p.rows {
            let a = p.v.a.add(i0 * K);
            let c = p.v.c.offset(i0 as isize * p.v.rsc);
            g.run::<K, EPI, true>(&bv, std::array::from_fn(|r| a.add(r * K)), std::array::from_fn(|r| c.offset(r as isize * p.v.rsc)), std::array::from_fn(|r| y_row(i0 + r)), R);
            i0 += R;
        }
    }
    while i0 < p.rows {
        let live = R.min(p.rows - i0);
        let row = |r: usize| (i0 + r.min(live - 1)) as isize;
        g.run::<K, EPI, false>(&bv, std::array::from_fn(|r| p.v.a.offset(row(r) * p.v.rsa)), std::array::from_fn(|r| p.v.c.offset(row(r) * p.v.rsc)), std::array::from_fn(|r| y_row(row(r) as usize)), live);
        i0 += R;
    }
}

/// What every group of rows of one product shares.
#[derive(Clone, Copy)]
struct Group {
    mask: __mmask16,
    cols: usize,
    csc: isize,
    alpha: f32,
    beta: f32,
    /// The bias row ([`BIAS`] and [`BIAS_RELU`]).
    bias: __m512,
    /// The activation whose derivative scales the sums ([`GRAD`]).
    act: Activation,
}

impl Group {
    /// R rows of C (the first `live` stored; all R when `FULL`, so that no accumulator is indexed
    /// at run time and none leaves its register) against B's K rows held in `bv`, meeting C as `EPI`
    /// says (the blocked kernels' store arithmetic: alpha·acc, then + C when beta = 1, or fused
    /// beta·C + that for another beta).
    #[inline(always)]
    unsafe fn run<const K: usize, const EPI: u8, const FULL: bool>(self, bv: &[__m512; K], rows: [*const f32; R], c_rows: [*mut f32; R], y_rows: [*const f32; R], live: usize) {
        let Group { mask, cols, csc, alpha, beta, bias, act } = self;
        let vector_c = EPI != ANY || csc == 1;
        let mut old = [_mm512_setzero_ps(); R];
        if EPI == ANY && vector_c && beta != 0.0 {
            for r in 0..R {
                old[r] = load_narrow(c_rows[r], cols, mask);
            }
        }
        let mut acc = [_mm512_setzero_ps(); R];
        for (kk, &b) in bv.iter().enumerate() {
            for r in 0..R {
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(*rows[r].add(kk)), b, acc[r]);
            }
        }
        if EPI == GRAD {
            // The activation is chosen once for the group, outside the per-row code.
            let y = |r: usize| load_narrow(y_rows[r], cols, mask);
            macro_rules! scale_rows {
                ($act:expr) => {
                    for (r, a) in acc.iter_mut().enumerate() {
                        *a = times_derivative($act, *a, y(r));
                    }
                };
            }
            match act {
                Activation::Relu => scale_rows!(Activation::Relu),
                Activation::Sigmoid => scale_rows!(Activation::Sigmoid),
                Activation::Tanh => scale_rows!(Activation::Tanh),
            }
        }
        if vector_c {
            for r in 0..R {
                acc[r] = match EPI {
                    STORE => acc[r],
                    BIAS => _mm512_add_ps(acc[r], bias),
                    BIAS_RELU => vmath::relu(_mm512_add_ps(acc[r], bias)),
                    GRAD => acc[r],
                    _ => {
                        let x = if alpha == 1.0 { acc[r] } else { _mm512_mul_ps(_mm512_set1_ps(alpha), acc[r]) };
                        if beta == 1.0 {
                            _mm512_add_ps(x, old[r])
                        } else if beta != 0.0 {
                            _mm512_fmadd_ps(_mm512_set1_ps(beta), old[r], x)
                        } else {
                            x
                        }
                    }
                };
            }
            for r in 0..R {
                if FULL || r < live {
                    store_narrow(c_rows[r], cols, mask, acc[r]);
                }
            }
        } else {
            for r in 0..R {
                if FULL || r < live {
                    store_row(acc[r], c_rows[r], csc, cols, mask, alpha, beta);
                }
            }
        }
    }
}

/// The adjacent-rows kernel over a whole plan (rsa = 1, csb = 1): 32 columns at a time (16 for a last
/// ≤ 16), full tiles of the heights `row_tiles` gives.
#[target_feature(enable = "avx512f")]
unsafe fn adjacent_rows(p: Plan, k: usize, alpha: f32, beta: f32) {
    let mut j0 = 0;
    while j0 < p.cols {
        let nr = (p.cols - j0).min(32);
        let masks = [lane_mask(nr), lane_mask(nr.saturating_sub(16))];
        let mut i0 = 0;
        for (mr, count) in row_tiles(p.rows, nr) {
            for _ in 0..count {
                let (a, b) = (p.v.a.add(i0), p.v.b.add(j0));
                let c = p.v.c.offset(i0 as isize * p.v.rsc + j0 as isize * p.v.csc);
                macro_rules! go {
                    ($($mr:literal, $nv:literal;)*) => {
                        match (mr, nr > 16) {
                            $(($mr, $nv) => tile::<$mr, { 1 + $nv as usize }>(k, a, p.v.csa, b, p.v.rsb, masks, c, p.v.rsc, p.v.csc, nr, alpha, beta),)*
                            _ => unreachable!("row_tiles yields the instantiated heights"),
                        }
                    };
                }
                go!(24, false; 23, false; 22, false; 21, false; 20, false; 19, false; 18, false; 17, false;
                    16, false; 15, false; 14, false; 13, false; 12, false; 11, false; 10, false; 9, false;
                    8, false; 7, false; 6, false; 5, false; 4, false; 3, false; 2, false; 1, false;
                    13, true; 12, true; 11, true; 10, true; 9, true; 8, true; 7, true; 6, true; 5, true;
                    4, true; 3, true; 2, true; 1, true;);
                i0 += mr;
            }
        }
        j0 += nr;
    }
}

/// One MR×(16·NV) register tile: C = alpha·A·B + beta·C, A's MR rows adjacent (row i at a + i, k
/// columns csa apart), B's rows rsb apart, loaded under `masks`; summed over k in [`k_step`] blocks,
/// each added into C.
///
/// A tile of eight accumulators or fewer is bound by the latency of its chains of multiply-adds,
/// not by the multiply-add ports: it sums two k blocks at once, in two sets of accumulators, and
/// then adds them into C one after the other, as the one-block-at-a-time order would (same
/// results; the seed network's gᵀ·h2, 3×500×8, went from 0.86 to 0.5 µs, and with eight
/// accumulators too, its gᵀ·h1, 8×500×13, from 1.11 to 1.04).
///
/// # Safety
/// The CPU has AVX-512F; A's MR×k view is readable; B's k rows are readable on the masked lanes; C's
/// MR×nr view is writable.
///
/// Out of line: with its 37 instances inlined, `adjacent_rows` was one function of 260 KB with a
/// 5 KB stack frame, and every call paid for it (the seed network's gᵀ·h2 500 → 475 ns).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn tile<const MR: usize, const NV: usize>(
    k: usize, a: *const f32, csa: isize, b: *const f32, rsb: isize, masks: [__mmask16; 2],
    c: *mut f32, rsc: isize, csc: isize, nr: usize, alpha: f32, beta: f32,
) {
    /// One k of a block: acc += A's column (broadcast row by row) ⊗ B's row.
    ///
    /// # Safety
    /// As `tile`'s, for the k at `ap` and `bp` (it inlines into `tile`, which enables AVX-512F).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // register indices, constant once unrolled
    unsafe fn step<const MR: usize, const NV: usize>(acc: &mut [[__m512; NV]; MR], ap: *const f32, bp: *const f32, masks: [__mmask16; 2]) {
        let mut bv = [_mm512_setzero_ps(); NV];
        for v in 0..NV {
            bv[v] = _mm512_maskz_loadu_ps(masks[v], bp.add(16 * v));
        }
        for i in 0..MR {
            let ai = _mm512_set1_ps(*ap.add(i));
            for v in 0..NV {
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
            }
        }
    }
    let store = |acc: &[[__m512; NV]; MR], beta: f32| {
        if csc != 1 && rsc == 1 {
            // C transposed (the plan was turned): the tile's row i is column i of a row-major C,
            // whose rows are csc apart. Sixteen tile rows at a time are transposed in registers,
            // so that each of C's rows takes one masked store instead of an element at a time
            // (the seed network's gᵀ·x, 13×500×20, stored 260 elements singly per k block).
            for i0 in (0..MR).step_by(16) {
                let live = (MR - i0).min(16);
                let mask = lane_mask(live);
                for v in 0..NV {
                    let mut rows = [_mm512_setzero_ps(); 16];
                    rows[..live].iter_mut().zip(&acc[i0..]).for_each(|(r, a)| *r = a[v]);
                    let cols = transpose_16x16(rows);
                    for (j, &col) in cols.iter().enumerate().take(nr.saturating_sub(16 * v).min(16)) {
                        store_row(col, c.offset((16 * v + j) as isize * csc + i0 as isize), 1, live, mask, alpha, beta);
                    }
                }
            }
            return;
        }
        for (i, row_acc) in acc.iter().enumerate() {
            for (v, &x) in row_acc.iter().enumerate() {
                let at = c.offset(i as isize * rsc + (16 * v) as isize * csc);
                store_row(x, at, csc, nr.saturating_sub(16 * v).min(16), masks[v], alpha, beta);
            }
        }
    };
    let few_chains = MR * NV <= 8;
    let kstep = k_step(k);
    let mut pc = 0;
    while pc < k {
        let kc = kstep.min(k - pc);
        // The next block's length (never longer than this one: only the last block is shorter).
        let kc2 = if few_chains { kstep.min(k - pc - kc) } else { 0 };
        let (mut acc, mut acc2) = ([[_mm512_setzero_ps(); NV]; MR], [[_mm512_setzero_ps(); NV]; MR]);
        // The pointers move with wrapping arithmetic: after the last k (and for a second block
        // that does not exist) they point past the operands, where they are never read.
        let (mut ap, mut bp) = (a.offset(pc as isize * csa), b.offset(pc as isize * rsb));
        let (mut ap2, mut bp2) = (ap.wrapping_offset(kc as isize * csa), bp.wrapping_offset(kc as isize * rsb));
        for _ in 0..kc2 {
            step(&mut acc, ap, bp, masks);
            step(&mut acc2, ap2, bp2, masks);
            (ap, bp) = (ap.wrapping_offset(csa), bp.wrapping_offset(rsb));
            (ap2, bp2) = (ap2.wrapping_offset(csa), bp2.wrapping_offset(rsb));
        }
        for _ in kc2..kc {
            step(&mut acc, ap, bp, masks);
            (ap, bp) = (ap.wrapping_offset(csa), bp.wrapping_offset(rsb));
        }
        store(&acc, if pc == 0 { beta } else { 1.0 });
        if kc2 > 0 {
            store(&acc2, 1.0);
        }
        pc += kc + kc2;
    }
}
