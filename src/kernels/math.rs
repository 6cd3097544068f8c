//! Scalar math that Rust's standard library lacks.

extern "C" {
    fn erf(x: f64) -> f64;
    fn erff(x: f32) -> f32;
}

/// The error function (C's `erf`, from the platform's libm, which std already links).
pub fn erf_f64(x: f64) -> f64 {
    // SAFETY: erf is a pure function of its argument, defined for every double, NaN included.
    unsafe { erf(x) }
}

/// The error function in float32 (C's `erff`).
pub fn erf_f32(x: f32) -> f32 {
    // SAFETY: as above.
    unsafe { erff(x) }
}

/// e^x for float32 without branches, so that a loop over a slice vectorises: Cephes' range reduction
/// (x = n·ln2 + r) and degree-6 polynomial, within 2 ulp of the exact value for normal results.
/// Arguments below −87.3 give 0 (the exact result would be subnormal, under 1.2e−38), above 88.7 give
/// +inf; NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.7);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = e * scale;
    if x.is_nan() {
        x
    } else if x > 88.7 {
        f32::INFINITY
    } else if x < -87.3 {
        0.0
    } else {
        y
    }
}

/// The logistic sigmoid of one float32, stable in both tails (e = e^−|x|, then 1/(1+e) or e/(1+e)).
#[inline(always)]
fn sigmoid_one(v: f32) -> f32 {
    let e = exp_f32(-v.abs());
    let s = 1.0 / (1.0 + e);
    if v >= 0.0 { s } else if v.is_nan() { v } else { e * s }
}

/// `out[i] = sigmoid(x[i])` over float32 slices, vectorised for the widest vector unit this CPU has.
pub fn sigmoid_f32(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "sigmoid_f32: slices differ in length");
    // SAFETY: x is readable and out writable for x.len() floats, and a shared and a mutable borrow
    // cannot overlap.
    unsafe { sigmoid_f32_raw(x.as_ptr(), out.as_mut_ptr(), x.len()) }
}

/// dst[i] = sigmoid(src[i]) for n floats on the widest vector unit this CPU has; src may be dst.
///
/// # Safety
/// src is readable and dst writable for n floats; they are the same pointer or do not overlap.
unsafe fn sigmoid_f32_raw(src: *const f32, dst: *mut f32, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); as this function's contract.
            return avx512::map_raw_sigmoid(src, dst, n);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); as this function's contract.
            return sigmoid_avx2(src, dst, n);
        }
    }
    sigmoid_loop(src, dst, n)
}

/// `out[i] = tanh(x[i])` over float32 slices: with AVX-512 sixteen lanes at a time by Cephes' tanhf
/// (an odd polynomial below |x| = 0.625, 1 − 2/(e^2|x| + 1) above; within 2 ulp, tested), else libm.
pub fn tanh_f32(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "tanh_f32: slices differ in length");
    // SAFETY: as in sigmoid_f32.
    unsafe { tanh_f32_raw(x.as_ptr(), out.as_mut_ptr(), x.len()) }
}

/// dst[i] = tanh(src[i]) for n floats; src may be dst.
///
/// # Safety
/// As [`sigmoid_f32_raw`].
unsafe fn tanh_f32_raw(src: *const f32, dst: *mut f32, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); as this function's contract.
            return avx512::map_raw_tanh(src, dst, n);
        }
    }
    for i in 0..n {
        *dst.add(i) = (*src.add(i)).tanh();
    }
}

/// An activation that a linear layer applies to its output in the same op
/// ([`Graph::linear_act`](crate::Graph::linear_act)): each one's gradient follows from its output
/// alone, so the layer's backward needs no pre-activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// max(x, 0), NaN kept
    Relu,
    /// 1 / (1 + e^−x)
    Sigmoid,
    /// tanh x
    Tanh,
}

/// relu of one value: `!(v <= 0)` keeps NaN as NaN and sends −0 to +0 (the relu op's formula).
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(crate) fn relu<T: crate::dtype::Float>(v: T) -> T {
    if !(v <= T::ZERO) { v } else { T::ZERO }
}

/// `x[i] = act(x[i])` in place over float32, with the arithmetic of the relu, sigmoid and tanh ops
/// (so the results are theirs bit for bit).
pub fn activate_f32(act: Activation, x: &mut [f32]) {
    let map_in_place = match act {
        Activation::Relu => return x.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::Sigmoid => sigmoid_f32_raw,
        Activation::Tanh => tanh_f32_raw,
    };
    let (p, n) = (x.as_mut_ptr(), x.len());
    // SAFETY: p is readable and writable for n floats, and src = dst is allowed.
    unsafe { map_in_place(p, p, n) }
}

/// The float64 counterpart of [`activate_f32`].
pub fn activate_f64(act: Activation, x: &mut [f64]) {
    match act {
        Activation::Relu => x.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::Sigmoid => x.iter_mut().for_each(|v| *v = sigmoid_f64_one(*v)),
        Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
    }
}

/// `out[i] = tanh(x[i])` over float64 slices (libm).
pub fn tanh_f64(x: &[f64], out: &mut [f64]) {
    assert_eq!(x.len(), out.len(), "tanh_f64: slices differ in length");
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v.tanh();
    }
}

/// `x[i] = e^x[i]` in place over a float32 slice, vectorised where the CPU allows (within 2 ulp of
/// the exact value; the same limits as [`exp_f32`]).
pub fn exp_f32_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512::exp_slice(x) };
        }
    }
    x.iter_mut().for_each(|v| *v = exp_f32(*v));
}

/// `x[i] = ln x[i]` in place over a float32 slice, vectorised where the CPU allows (within 2 ulp;
/// ln 0 = −inf, ln of a negative number or NaN = NaN, ln inf = inf).
pub fn ln_f32_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512::ln_slice(x) };
        }
    }
    x.iter_mut().for_each(|v| *v = v.ln());
}

/// `x[i] = e^x[i]` in place over a float64 slice (libm).
pub fn exp_f64_in_place(x: &mut [f64]) {
    x.iter_mut().for_each(|v| *v = v.exp());
}

/// `x[i] = ln x[i]` in place over a float64 slice (libm).
pub fn ln_f64_in_place(x: &mut [f64]) {
    x.iter_mut().for_each(|v| *v = v.ln());
}

/// `out[i] = sigmoid(x[i])` over float64 slices, stable in both tails (the elementwise op's formula).
pub fn sigmoid_f64(x: &[f64], out: &mut [f64]) {
    assert_eq!(x.len(), out.len(), "sigmoid_f64: slices differ in length");
    for (o, &v) in out.iter_mut().zip(x) {
        *o = sigmoid_f64_one(v);
    }
}

#[inline(always)]
fn sigmoid_f64_one(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// Per row of an [n, c] matrix x: e = e^(x − max) into `e`, the row's max, Σe (the softmax
/// denominator) and log-sum-exp (max + ln Σe). The exponentials and logarithms run over whole slices,
/// vectorised for float32 (see [`softmax_rows_f32`]). Slices: x and e n·c, the others n.
pub fn softmax_rows<T: crate::dtype::Float>(x: &[T], c: usize, e: &mut [T], maxes: &mut [T], sums: &mut [T], lse: &mut [T]) {
    if c == 0 || maxes.is_empty() {
        return;
    }
    // Column by column, so that the rows' maxima and sums are independent chains (a row of 3 logits
    // summed on its own is a chain of dependent adds); each row still sums in column order.
    maxes.fill(T::from_f64(f64::NEG_INFINITY));
    for j in 0..c {
        for (m, &v) in maxes.iter_mut().zip(x[j..].iter().step_by(c)) {
            *m = m.max(v);
        }
    }
    for ((row, er), &m) in x.chunks_exact(c).zip(e.chunks_exact_mut(c)).zip(maxes.iter()) {
        for (o, &v) in er.iter_mut().zip(row) {
            *o = v - m;
        }
    }
    T::exp_in_place(e);
    sums.fill(T::ZERO);
    for j in 0..c {
        for (s, &v) in sums.iter_mut().zip(e[j..].iter().step_by(c)) {
            *s += v;
        }
    }
    lse.copy_from_slice(sums);
    T::ln_in_place(lse);
    for (l, &m) in lse.iter_mut().zip(maxes.iter()) {
        *l += m;
    }
}


/// [`softmax_rows`] for float32: with AVX-512 and at most 32 columns, sixteen rows at a time, each
/// column gathered from the sixteen rows (a row of 3 logits would leave most of a vector idle); the
/// same arithmetic in the same order, so the results equal the general loop's.
pub fn softmax_rows_f32(x: &[f32], c: usize, e: &mut [f32], maxes: &mut [f32], sums: &mut [f32], lse: &mut [f32]) {
    let n = maxes.len();
    assert!(x.len() == n * c && e.len() == n * c && sums.len() == n && lse.len() == n, "softmax_rows_f32: slice lengths do not match");
    #[cfg(target_arch = "x86_64")]
    {
        if (1..=32).contains(&c) && std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); the lengths were checked.
            return unsafe { avx512::softmax_rows(x, c, e, maxes, sums, lse) };
        }
    }
    softmax_rows(x, c, e, maxes, sums, lse)
}

/// Cross-entropy of each row of float32 logits [n, c] against class indices, into `out` (n):
/// (1 − ε)·(lse − x_t) − ε·(mean_j x_j − lse), and 0 for a row whose target is `ignore` — with AVX-512
/// and at most 32 classes, sixteen rows at a time (the forward needs no softmax, only each row's
/// log-sum-exp and its target's logit). With `unit` (n·c), also the gradient of each row's loss
/// with respect to its logits, softmax_ij − ε/c − (1 − ε) at the target (zeros for an ignored row),
/// from the same exponentials: the backward then only scales it. Returns false, having done nothing,
/// where that does not apply; the caller then runs the general loop. Targets must already be
/// checked to lie in 0..c (or equal `ignore`).
pub fn cross_entropy_rows_f32(x: &[f32], c: usize, targets: &[i64], ignore: i64, eps: f32, out: &mut [f32], unit: Option<&mut [f32]>) -> bool {
    let n = out.len();
    assert!(x.len() == n * c && targets.len() == n, "cross_entropy_rows_f32: slice lengths do not match");
    assert!(unit.as_ref().is_none_or(|u| u.len() == n * c), "cross_entropy_rows_f32: the unit gradient is not n·c long");
    #[cfg(target_arch = "x86_64")]
    {
        if (1..=32).contains(&c) && std::is_x86_feature_detected!("avx512f") {
            debug_assert!(targets.iter().all(|&t| t == ignore || (0..c as i64).contains(&t)));
            // SAFETY: the CPU has AVX-512F (checked just above); lengths checked; targets in range.
            unsafe { avx512::cross_entropy_rows(x, c, targets, ignore, eps, out, unit) };
            return true;
        }
    }
    false
}

/// The float64 counterpart of [`cross_entropy_rows_f32`]: always the general loop.
pub fn cross_entropy_rows_f64(_x: &[f64], _c: usize, _targets: &[i64], _ignore: i64, _eps: f64, _out: &mut [f64], _unit: Option<&mut [f64]>) -> bool {
    false
}

/// # Safety
/// As [`sigmoid_f32_raw`].
#[inline(always)]
unsafe fn sigmoid_loop(src: *const f32, dst: *mut f32, n: usize) {
    for i in 0..n {
        *dst.add(i) = sigmoid_one(*src.add(i));
    }
}

/// # Safety
/// The CPU has AVX2 and FMA; as [`sigmoid_f32_raw`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_avx2(src: *const f32, dst: *mut f32, n: usize) {
    sigmoid_loop(src, dst, n)
}

/// exp, ln, sigmoid, tanh and relu on 16 float32 lanes with AVX-512F: the same reductions and
/// polynomials as the scalar code (Cephes), written with fused multiply-adds, `roundscale` for the
/// nearest integer, `scalef` for 2ⁿ and `getexp`/`getmant` to split a float, so nothing leaves the
/// vector registers.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// x[i] = f(x[i]) in place, 16 lanes at a time (f inlines: it is always one of this module's
    /// functions, called from a function with the same features).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn map_in_place(x: &mut [f32], f: impl Fn(__m512) -> __m512) {
        let p = x.as_mut_ptr();
        map_raw(p, p, x.len(), f)
    }

    /// dst[i] = f(src[i]) for i < n, 16 lanes at a time, the tail under a mask; src and dst may be
    /// the same (each vector is read before it is written).
    ///
    /// # Safety
    /// The CPU has AVX-512F; src is readable and dst writable for n floats.
    #[inline(always)]
    unsafe fn map_raw(src: *const f32, dst: *mut f32, n: usize, f: impl Fn(__m512) -> __m512) {
        let mut i = 0;
        while i + 16 <= n {
            _mm512_storeu_ps(dst.add(i), f(_mm512_loadu_ps(src.add(i))));
            i += 16;
        }
        if i < n {
            let mask = crate::kernels::simd::lane_mask(n - i);
            _mm512_mask_storeu_ps(dst.add(i), mask, f(_mm512_maskz_loadu_ps(mask, src.add(i))));
        }
    }

    /// dst[i] = sigmoid(src[i]) for n floats (src may be dst).
    ///
    /// # Safety
    /// The CPU has AVX-512F; src is readable and dst writable for n floats, the same pointer or
    /// not overlapping.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn map_raw_sigmoid(src: *const f32, dst: *mut f32, n: usize) {
        map_raw(src, dst, n, |v| sigmoid(v))
    }

    /// dst[i] = tanh(src[i]) for n floats (src may be dst).
    ///
    /// # Safety
    /// As [`map_raw_sigmoid`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn map_raw_tanh(src: *const f32, dst: *mut f32, n: usize) {
        map_raw(src, dst, n, |v| tanh(v))
    }

    /// exp over a slice, in place.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_slice(x: &mut [f32]) {
        map_in_place(x, |v| exp(v))
    }

    /// ln over a slice, in place.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn ln_slice(x: &mut [f32]) {
        map_in_place(x, |v| ln(v))
    }

    /// The max of PyTorch's `max`: NaN if either is NaN (vmaxps alone returns its second operand).
    #[inline(always)]
    unsafe fn max_nan(m: __m512, v: __m512) -> __m512 {
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(m, m), _mm512_max_ps(m, v), m)
    }

    /// A fixed permutation of 16·c floats held in c vectors into c vectors, by two-source permutes:
    /// output vector o, lane l takes source element s(o, l) (vector s/16, lane s mod 16), and the
    /// source vectors 2p and 2p + 1 form pair p, permuted together by one `vpermt2ps`. It moves the
    /// sixteen rows of a block of c ≤ [`SHUFFLED_MAX`] columns between their row-major layout and
    /// one vector per column without gathers and scatters: per output vector, one permute per pair
    /// and a blend per pair after the first (6 operations for 3 columns, against 3 gathers or 3
    /// scatters of 16 elements each).
    #[derive(Clone, Copy)]
    struct Shuffle {
        c: usize,
        /// Per output vector: each lane's source index within its pair (s mod 32).
        idx: [[i32; 16]; SHUFFLED_MAX],
        /// Per output vector and pair: the lanes whose source lies in that pair.
        from: [[__mmask16; SHUFFLED_MAX.div_ceil(2)]; SHUFFLED_MAX],
    }

    /// The widest block [`Shuffle`] moves: the cross-entropy of 500 rows with its gradient took
    /// 1.32 µs instead of 1.90 at 3 columns and 3.24 instead of 3.43 at 8, but 1.21 instead of 1.07
    /// for 128 rows of 10 (whose permutes, about c² a direction, outnumber the gathers' loads).
    const SHUFFLED_MAX: usize = 8;

    impl Shuffle {
        /// The permutation of a block of c columns from rows to columns (column j's lane r is
        /// element r·c + j) or, `to_rows`, back (element f is column f mod c, lane f / c).
        const fn new(c: usize, to_rows: bool) -> Shuffle {
            let mut t = Shuffle { c, idx: [[0; 16]; SHUFFLED_MAX], from: [[0; SHUFFLED_MAX.div_ceil(2)]; SHUFFLED_MAX] };
            let mut f = 0;
            while f < 16 * c {
                let (o, l) = (f / 16, f % 16);
                let src = if to_rows { (f % c) * 16 + f / c } else { l * c + o };
                t.idx[o][l] = (src % 32) as i32;
                t.from[o][src / 32] |= 1 << l;
                f += 1;
            }
            t
        }

        /// Applies the permutation to `v[..c]`.
        ///
        /// # Safety
        /// The CPU has AVX-512F (it inlines into the row kernels, which enable it).
        #[inline(always)]
        unsafe fn apply(&self, v: &[__m512], out: &mut [__m512]) {
            let c = self.c;
            if c == 1 {
                out[0] = v[0];
                return;
            }
            for (o, res) in out.iter_mut().enumerate().take(c) {
                let idx = _mm512_loadu_si512(self.idx[o].as_ptr().cast());
                let mut r = _mm512_permutex2var_ps(v[0], idx, v[1]);
                for p in 1..c.div_ceil(2) {
                    let m = self.from[o][p];
                    r = if 2 * p + 1 < c {
                        _mm512_mask_blend_ps(m, r, _mm512_permutex2var_ps(v[2 * p], idx, v[2 * p + 1]))
                    } else {
                        // The last pair is one vector: lanes 0–15 of idx address it.
                        _mm512_mask_permutexvar_ps(r, m, idx, v[2 * p])
                    };
                }
                *res = r;
            }
        }
    }

    /// The permutations of a block of c columns, both ways, for c = 1 ..= [`SHUFFLED_MAX`] (wider
    /// blocks are gathered and scattered).
    #[derive(Clone, Copy)]
    struct Shuffles {
        to_columns: Shuffle,
        to_rows: Shuffle,
    }

    static SHUFFLES: [Shuffles; SHUFFLED_MAX] = {
        let mut t = [Shuffles { to_columns: Shuffle::new(1, false), to_rows: Shuffle::new(1, true) }; SHUFFLED_MAX];
        let mut c = 2;
        while c <= SHUFFLED_MAX {
            t[c - 1] = Shuffles { to_columns: Shuffle::new(c, false), to_rows: Shuffle::new(c, true) };
            c += 1;
        }
        t
    };

    /// Sixteen consecutive rows of an [n, c] row-major matrix (c ≤ 32), read column by column: lane r
    /// of a column vector is row r of the block. The row kernels below share it.
    #[derive(Clone, Copy)]
    struct RowBlock<'a> {
        /// The first row of the block.
        i0: usize,
        /// The block's rows that exist (the last block may have fewer than sixteen).
        mask: __mmask16,
        /// How many of its 16·c elements exist (kept beside `mask` rather than counted from it:
        /// a popcount per vector made the cross-entropy of 500×3 about 6 % slower).
        live: usize,
        /// Lane r's offset from the block's first element: r·c.
        offsets: __m512i,
        c: usize,
        shuffles: Option<&'a Shuffles>,
    }

    impl RowBlock<'_> {
        /// Calls `f` on each two blocks of `n` rows in order (the second empty, all its lanes
        /// masked off, when the blocks are odd in number): a kernel that works on both at once gives
        /// the processor two independent chains side by side. A block's pointers are formed with
        /// wrapping arithmetic, since an empty block's lie past the buffer; masked-off lanes are
        /// never read or written.
        #[inline(always)]
        unsafe fn pairs(n: usize, c: usize, mut f: impl FnMut([RowBlock; 2])) {
            let offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(c as i32));
            let shuffles = SHUFFLES.get(c.wrapping_sub(1));
            let block = |i0: usize| {
                let live = n.saturating_sub(i0).min(16);
                RowBlock { i0, mask: crate::kernels::simd::lane_mask(live), live: live * c, offsets, c, shuffles }
            };
            let mut i0 = 0;
            while i0 < n {
                f([block(i0), block(i0 + 16)]);
                i0 += 32;
            }
        }

        /// Column j of the block of `x`.
        #[inline(always)]
        unsafe fn column(self, x: &[f32], j: usize) -> __m512 {
            _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), self.mask, self.offsets, x.as_ptr().wrapping_add(self.i0 * self.c + j))
        }

        /// The mask of the existing elements of the block's row-major vector q.
        #[inline(always)]
        fn vector_mask(self, q: usize) -> __mmask16 {
            crate::kernels::simd::lane_mask(self.live.saturating_sub(16 * q))
        }

        /// The block's columns of `x` into `cols[..c]` (lanes of rows past the end are zero).
        #[inline(always)]
        unsafe fn columns(self, x: &[f32], cols: &mut [__m512; 32]) {
            match self.shuffles {
                Some(s) => {
                    let p = x.as_ptr().wrapping_add(self.i0 * self.c);
                    let mut rows = [_mm512_setzero_ps(); SHUFFLED_MAX];
                    for (q, v) in rows.iter_mut().enumerate().take(self.c) {
                        *v = _mm512_maskz_loadu_ps(self.vector_mask(q), p.wrapping_add(16 * q));
                    }
                    s.to_columns.apply(&rows, cols);
                }
                None => {
                    for (j, col) in cols.iter_mut().enumerate().take(self.c) {
                        *col = self.column(x, j);
                    }
                }
            }
        }

        /// Writes the block's columns `cols[..c]` into `out` (laid out like x).
        #[inline(always)]
        unsafe fn set_columns(self, out: &mut [f32], cols: &[__m512; 32]) {
            match self.shuffles {
                Some(s) => {
                    let p = out.as_mut_ptr().wrapping_add(self.i0 * self.c);
                    let mut rows = [_mm512_setzero_ps(); SHUFFLED_MAX];
                    s.to_rows.apply(cols, &mut rows);
                    for (q, v) in rows.iter().enumerate().take(self.c) {
                        _mm512_mask_storeu_ps(p.wrapping_add(16 * q), self.vector_mask(q), *v);
                    }
                }
                None => {
                    for (j, &v) in cols.iter().enumerate().take(self.c) {
                        _mm512_mask_i32scatter_ps::<4>(out.as_mut_ptr().wrapping_add(self.i0 * self.c + j), self.mask, self.offsets, v);
                    }
                }
            }
        }

        /// The block's class indices as 32-bit lanes, and the lanes whose target is not `ignore`.
        #[inline(always)]
        unsafe fn targets(self, targets: &[i64], ignore: i64) -> (__m512i, __mmask16) {
            let (lo, hi) = (self.mask as u8, (self.mask >> 8) as u8);
            let tp = targets.as_ptr().wrapping_add(self.i0);
            let t_lo = _mm512_maskz_loadu_epi64(lo, tp as *const _);
            let t_hi = _mm512_maskz_loadu_epi64(hi, tp.wrapping_add(8) as *const _);
            let ign = _mm512_set1_epi64(ignore);
            let keep = (_mm512_mask_cmpneq_epi64_mask(lo, t_lo, ign) as u16) | ((_mm512_mask_cmpneq_epi64_mask(hi, t_hi, ign) as u16) << 8);
            let t32 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(t_lo)), _mm512_cvtepi64_epi32(t_hi));
            (t32, keep)
        }

        /// Stores one value per row of the block into `out` (one per row).
        #[inline(always)]
        unsafe fn store(self, out: &mut [f32], v: __m512) {
            _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(self.i0), self.mask, v);
        }
    }

    /// Each row's max and Σ e^(x − max) in two blocks of c columns, replacing each column by its
    /// exponentials e^(x − max), the blocks' steps interleaved. The max is NaN for a row holding a
    /// NaN when `NAN_MAX`, else the max of its other elements (the sum is NaN either way: a NaN
    /// runs through x − max and e^x).
    #[inline(always)]
    unsafe fn max_and_exp_sum<const NAN_MAX: bool>(c: usize, cols: &mut [[__m512; 32]; 2]) -> ([__m512; 2], [__m512; 2]) {
        // vmaxps returns its second operand, the running max, when v is NaN.
        let m = [0, 1].map(|h| cols[h][..c].iter().fold(splat(f32::NEG_INFINITY), |m, &v| if NAN_MAX { max_nan(m, v) } else { _mm512_max_ps(v, m) }));
        let mut s = [_mm512_setzero_ps(); 2];
        let [c0, c1] = cols;
        for (x0, x1) in c0[..c].iter_mut().zip(&mut c1[..c]) {
            // Column j of both blocks, one after the other.
            *x0 = exp_not_above(_mm512_sub_ps(*x0, m[0]));
            s[0] = _mm512_add_ps(s[0], *x0);
            *x1 = exp_not_above(_mm512_sub_ps(*x1, m[1]));
            s[1] = _mm512_add_ps(s[1], *x1);
        }
        (m, s)
    }

    /// Softmax parts of sixteen rows at a time (c ≤ 32), two blocks at once.
    ///
    /// # Safety
    /// The CPU has AVX-512F; x and e hold n·c floats, maxes, sums and lse n (n = maxes.len()); c ≤ 32.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_rows(x: &[f32], c: usize, e: &mut [f32], maxes: &mut [f32], sums: &mut [f32], lse: &mut [f32]) {
        let mut cols = [[_mm512_setzero_ps(); 32]; 2];
        RowBlock::pairs(maxes.len(), c, |bs| {
            for (b, cols) in bs.iter().zip(cols.iter_mut()) {
                b.columns(x, cols);
            }
            let (m, s) = max_and_exp_sum::<true>(c, &mut cols);
            let lse_h = [0, 1].map(|h| _mm512_add_ps(ln(s[h]), m[h]));
            for h in 0..2 {
                bs[h].set_columns(e, &cols[h]);
                bs[h].store(maxes, m[h]);
                bs[h].store(sums, s[h]);
                bs[h].store(lse, lse_h[h]);
            }
        });
    }

    /// Per-row cross-entropy, sixteen rows at a time (c ≤ 32), two blocks at once.
    ///
    /// # Safety
    /// The CPU has AVX-512F; x holds n·c floats, targets and out n (n = out.len()); every target is
    /// `ignore` or lies in 0..c.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn cross_entropy_rows(x: &[f32], c: usize, targets: &[i64], ignore: i64, eps: f32, out: &mut [f32], mut unit: Option<&mut [f32]>) {
        let (off, keep_t) = (splat(eps / c as f32), splat(1.0 - eps));
        let (mut cols, mut grad) = ([[_mm512_setzero_ps(); 32]; 2], [_mm512_setzero_ps(); 32]);
        let zero = _mm512_setzero_ps();
        RowBlock::pairs(out.len(), c, |bs| {
            let (mut t32, mut keep, mut sum_x) = ([_mm512_setzero_si512(); 2], [0; 2], [zero; 2]);
            for h in 0..2 {
                (t32[h], keep[h]) = bs[h].targets(targets, ignore);
                bs[h].columns(x, &mut cols[h]);
                if eps > 0.0 {
                    sum_x[h] = cols[h][..c].iter().fold(zero, |s, &v| _mm512_add_ps(s, v));
                }
            }
            // A NaN or +inf logit makes s NaN, and with it the row's loss and gradient.
            let (m, s) = max_and_exp_sum::<false>(c, &mut cols);
            if let Some(u) = unit.as_deref_mut() {
                for h in 0..2 {
                    let inv = _mm512_div_ps(splat(1.0), s[h]);
                    for (j, (g, &ej)) in grad.iter_mut().zip(&cols[h][..c]).enumerate() {
                        // e_j/s − ε/c, then − (1 − ε) at the target; zeros in ignored rows.
                        let q = _mm512_maskz_fmsub_ps(keep[h], ej, inv, off);
                        let is_t = _mm512_mask_cmpeq_epi32_mask(keep[h], t32[h], _mm512_set1_epi32(j as i32));
                        *g = _mm512_mask_sub_ps(q, is_t, q, keep_t);
                    }
                    bs[h].set_columns(u, &grad);
                }
            }
            let lse = [0, 1].map(|h| _mm512_add_ps(ln_positive(s[h]), m[h]));
            for h in 0..2 {
                let b = bs[h];
                let xt = _mm512_mask_i32gather_ps::<4>(zero, keep[h], _mm512_add_epi32(b.offsets, t32[h]), x.as_ptr().wrapping_add(b.i0 * c));
                let mut l = _mm512_maskz_mul_ps(keep[h], splat(1.0 - eps), _mm512_sub_ps(lse[h], xt));
                if eps > 0.0 {
                    let mean_logp = _mm512_sub_ps(_mm512_div_ps(sum_x[h], splat(c as f32)), lse[h]);
                    l = _mm512_maskz_fnmadd_ps(keep[h], splat(eps), mean_logp, l);
                }
                b.store(out, l);
            }
        });
    }

    #[inline(always)]
    unsafe fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }

    /// e^x: x = n·ln2 + r, e^r by Cephes' degree-6 polynomial, times 2ⁿ. Below −87.3 gives 0, above
    /// 88.7 gives +inf, NaN stays NaN (as the scalar [`super::exp_f32`]).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn exp(x: __m512) -> __m512 {
        // min(88.7, x), not min(x, 88.7): vminps returns its second operand when either is NaN.
        let y = exp_not_above(_mm512_min_ps(splat(88.7), x));
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, splat(88.7)), y, splat(f32::INFINITY))
    }

    /// [`exp`] for arguments of at most 88.7, where it cannot overflow (NaN stays NaN): the
    /// sigmoid's e^−|x| and the softmax's e^(x − max) skip the overflow test.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn exp_not_above(x: __m512) -> __m512 {
        // max(−87.3, x) keeps a NaN x (vmaxps returns its second operand when either is NaN), which
        // then runs through to the result; results below −87.3 (subnormal, and slow to produce
        // where subnormals are not flushed) are zeroed by the final scaling's mask.
        let xc = _mm512_max_ps(splat(-87.3), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(xc, splat(std::f32::consts::LOG2_E)));
        let r = _mm512_fnmadd_ps(n, splat(0.693_359_4), xc);
        let r = _mm512_fnmadd_ps(n, splat(-2.121_944_4e-4), r);
        let mut p = splat(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5e-1] {
            p = _mm512_fmadd_ps(p, r, splat(c));
        }
        // 1 + r + r²·p as (p·r + 1)·r + 1: two multiply-adds instead of three operations.
        let e = _mm512_fmadd_ps(_mm512_fmadd_ps(p, r, splat(1.0)), r, splat(1.0));
        _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, splat(-87.3)), e, n)
    }

    /// ln x: x = m·2ᵉ with m in [√½, √2), ln(1 + f) by Cephes' logf polynomial, plus e·ln2 in two
    /// parts. ln 0 = −inf, negative or NaN gives NaN, +inf gives +inf; subnormals are exact inputs
    /// (getexp and getmant normalise them).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn ln(x: __m512) -> __m512 {
        let r = ln_positive(x);
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps()), r, splat(f32::NEG_INFINITY));
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, splat(f32::INFINITY)), r, x);
        // Negative numbers and NaN.
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_NGE_UQ>(x, _mm512_setzero_ps()), r, splat(f32::NAN))
    }

    /// [`ln`] of a positive finite number or NaN (which runs through to the result): a softmax
    /// denominator, at least 1, skips the tests for 0, +inf and negative numbers.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn ln_positive(x: __m512) -> __m512 {
        let one = splat(1.0);
        // m in [0.5, 1) and e with x = m·2ᵉ.
        let m = _mm512_getmant_ps::<_MM_MANT_NORM_P5_1, _MM_MANT_SIGN_ZERO>(x);
        let e = _mm512_add_ps(_mm512_getexp_ps(x), one);
        let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m, splat(std::f32::consts::FRAC_1_SQRT_2));
        let e = _mm512_mask_sub_ps(e, small, e, one);
        let f = _mm512_sub_ps(m, one);
        let f = _mm512_mask_add_ps(f, small, f, m);
        let z = _mm512_mul_ps(f, f);
        let mut y = splat(7.037_683_6e-2);
        for c in [-1.151_461e-1, 1.167_699_9e-1, -1.242_014_1e-1, 1.424_932_3e-1, -1.666_805_8e-1, 2.000_071_4e-1, -2.499_999_4e-1, 3.333_333e-1] {
            y = _mm512_fmadd_ps(y, f, splat(c));
        }
        let y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
        let y = _mm512_fmadd_ps(e, splat(-2.121_944_4e-4), y);
        let y = _mm512_fnmadd_ps(splat(0.5), z, y);
        _mm512_fmadd_ps(e, splat(0.693_359_4), _mm512_add_ps(f, y))
    }

    /// tanh x, within 2 ulp; ±inf give ±1, NaN stays NaN.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn tanh(x: __m512) -> __m512 {
        // Cephes tanhf: for |x| < 0.625, |x| + |x|·x²·P(x²); above, 1 − 2/(e^2|x| + 1) (e^2|x|
        // overflows to +inf past 44, giving exactly 1). NaN takes the second branch and stays NaN.
        let a = _mm512_abs_ps(x);
        let z = _mm512_mul_ps(x, x);
        let mut p = splat(-5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
            p = _mm512_fmadd_ps(p, z, splat(c));
        }
        // Both branches on |x| (non-negative), then x's sign (bit 31) copied on: tanh is odd.
        let small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), a, a);
        let e = exp(_mm512_add_ps(a, a));
        let big = _mm512_sub_ps(splat(1.0), _mm512_div_ps(splat(2.0), _mm512_add_ps(e, splat(1.0))));
        let t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, splat(0.625)), big, small);
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign))
    }

    /// The logistic sigmoid, stable in both tails: e = e^−|x|, then 1/(1+e) for x ≥ 0 and e/(1+e)
    /// below; NaN stays NaN.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn sigmoid(x: __m512) -> __m512 {
        // −|x|: the sign bit set (a NaN stays NaN and runs through to the result).
        let e = exp_not_above(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN))));
        // 1/d for d = 1 + e in (1, 2]: the 14-bit reciprocal estimate and one Newton step, within an
        // ulp of the quotient and about three times cheaper than vdivps, which bounded this loop.
        let d = _mm512_add_ps(splat(1.0), e);
        let r = _mm512_rcp14_ps(d);
        let s = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, splat(2.0)));
        _mm512_mask_mul_ps(s, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps()), e, s)
    }

    /// relu on 16 lanes with the scalar formula ([`super::relu`]): x where !(x ≤ 0), NaN
    /// included, else +0.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn relu(x: __m512) -> __m512 {
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(x, _mm512_setzero_ps()), x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_exp_is_within_two_ulp_of_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_f32(x), (x as f64).exp());
            let ulp = (want as f32).to_bits().abs_diff(got.to_bits());
            assert!(ulp <= 2, "exp({x}) = {got}, want {want} ({ulp} ulp)");
            x += 0.0137;
        }
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn vectorised_sigmoid_matches_the_formula_in_both_tails() {
        let xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.05).chain([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).collect();
        let mut out = vec![0.0; xs.len()];
        sigmoid_f32(&xs, &mut out);
        for (&x, &s) in xs.iter().zip(&out) {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            if x.is_nan() {
                assert!(s.is_nan());
            } else {
                assert!((s as f64 - want).abs() <= 2.5e-7 * want.max(1e-30) + 1e-38, "sigmoid({x}) = {s}, want {want}");
            }
        }
    }

    #[test]
    fn vectorised_tanh_is_within_two_ulp_with_its_limits() {
        let xs: Vec<f32> = (-12_000..12_000).map(|i| i as f32 * 0.0007).chain((-200..200).map(|i| i as f32 * 0.25)).collect();
        let mut out = vec![0.0; xs.len()];
        tanh_f32(&xs, &mut out);
        for (&x, &t) in xs.iter().zip(&out) {
            assert!(ulps(t, (x as f64).tanh()) <= 2, "tanh({x}) = {t}, want {}", (x as f64).tanh());
        }
        let edges = [0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-30, -1e-30, 0.625, -0.625, 44.0, 100.0];
        let mut out = [0.0f32; 11];
        tanh_f32(&edges, &mut out);
        assert_eq!(out[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(out[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(&out[2..4], &[1.0, -1.0]);
        assert!(out[4].is_nan());
        assert_eq!(&out[5..7], &[1e-30, -1e-30]);
        assert_eq!(&out[9..], &[1.0, 1.0]);
    }

    /// Distance in units in the last place between a float32 result and the exact (float64) value.
    fn ulps(got: f32, want: f64) -> u32 {
        (want as f32).to_bits().abs_diff(got.to_bits())
    }

    #[test]
    fn exp_over_a_slice_is_within_two_ulp_with_the_scalar_limits() {
        let mut xs: Vec<f32> = (0..13_000).map(|i| -87.0 + i as f32 * 0.0134).collect();
        let want: Vec<f64> = xs.iter().map(|&x| (x as f64).exp()).collect();
        exp_f32_in_place(&mut xs);
        for (i, (&g, &w)) in xs.iter().zip(&want).enumerate() {
            assert!(ulps(g, w) <= 2, "exp at index {i}: {g}, want {w}");
        }
        let mut edges = [0.0f32, 100.0, -100.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 88.7, -87.3];
        exp_f32_in_place(&mut edges);
        assert_eq!(&edges[..3], &[1.0, f32::INFINITY, 0.0]);
        assert!(edges[3].is_nan());
        assert_eq!(&edges[4..6], &[f32::INFINITY, 0.0]);
        assert!(edges[6].is_finite() && edges[7] > 0.0);
    }

    #[test]
    fn ln_over_a_slice_is_within_two_ulp_and_handles_the_edges() {
        let mut xs: Vec<f32> = (0..20_000).map(|i| 1e-30f32 * 1.0041f32.powi(i)).chain([1.0, 2.0, 0.5, 1e-40, f32::MAX, std::f32::consts::FRAC_1_SQRT_2, std::f32::consts::SQRT_2]).collect();
        let want: Vec<f64> = xs.iter().map(|&x| (x as f64).ln()).collect();
        ln_f32_in_place(&mut xs);
        for (i, (&g, &w)) in xs.iter().zip(&want).enumerate() {
            assert!(ulps(g, w) <= 2 || (g as f64 - w).abs() < 1e-7, "ln at index {i}: {g}, want {w}");
        }
        let mut edges = [0.0f32, -0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0];
        ln_f32_in_place(&mut edges);
        assert_eq!(&edges[..2], &[f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert!(edges[2].is_nan() && edges[3].is_nan() && edges[5].is_nan());
        assert_eq!(edges[4], f32::INFINITY);
        assert_eq!(edges[6], 0.0);
    }

    /// A xorshift generator for the vectorised-kernel tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Uniform in [−span/2, span/2).
        fn float(&mut self, span: f32) -> f32 {
            ((self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * span
        }
    }

    /// Cross-entropy test data: logits in [−20, 20), and targets with every fifth row (from row 3)
    /// ignored (−100).
    fn logits_and_targets(rng: &mut XorShift, n: usize, c: usize) -> (Vec<f32>, Vec<i64>) {
        let x = (0..n * c).map(|_| rng.float(40.0)).collect();
        let t = (0..n).map(|i| if i % 5 == 3 { -100 } else { (rng.next() % c as u64) as i64 }).collect();
        (x, t)
    }

    #[test]
    fn gathered_softmax_rows_equal_the_general_loop_bit_for_bit() {
        let mut rng = XorShift(0x2545f4914f6cdd1d);
        for c in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 31, 32, 33] {
            for n in [0usize, 1, 15, 16, 17, 40] {
                let mut x: Vec<f32> = (0..n * c).map(|_| rng.float(60.0)).collect();
                if n > 2 {
                    x[c] = f32::NAN; // row 1 holds a NaN
                    x[2 * c] = f32::INFINITY; // row 2 an infinity
                }
                type SoftmaxRows = fn(&[f32], usize, &mut [f32], &mut [f32], &mut [f32], &mut [f32]);
                let run = |f: SoftmaxRows| {
                    let (mut e, mut m, mut s, mut l) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                    f(&x, c, &mut e, &mut m, &mut s, &mut l);
                    [e, m, s, l].concat().iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
                };
                assert_eq!(run(softmax_rows_f32), run(softmax_rows::<f32>), "c = {c}, n = {n}");
            }
        }
    }

    #[test]
    fn vectorised_cross_entropy_rows_match_the_float64_formula() {
        let mut rng = XorShift(0x9e3779b97f4a7c15);
        for c in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32] {
            for n in [1usize, 15, 16, 17, 40] {
                for eps in [0.0f32, 0.1] {
                    let (x, t) = logits_and_targets(&mut rng, n, c);
                    let mut out = vec![f32::NAN; n];
                    if !cross_entropy_rows_f32(&x, c, &t, -100, eps, &mut out, None) {
                        return; // no AVX-512 here: the general loop is the only path
                    }
                    // With the unit gradient: the same losses, bit for bit.
                    let (mut out_u, mut unit) = (vec![f32::NAN; n], vec![f32::NAN; n * c]);
                    assert!(cross_entropy_rows_f32(&x, c, &t, -100, eps, &mut out_u, Some(&mut unit)));
                    assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), out_u.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                    for i in 0..n {
                        let row: Vec<f64> = x[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
                        let want = if t[i] == -100 {
                            0.0
                        } else {
                            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                            let mean_logp = row.iter().map(|v| v - lse).sum::<f64>() / c as f64;
                            (1.0 - eps as f64) * (lse - row[t[i] as usize]) - eps as f64 * mean_logp
                        };
                        assert!((out[i] as f64 - want).abs() <= 2e-5 * (1.0 + want.abs()), "c={c} n={n} eps={eps} row {i}: {} vs {want}", out[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn vectorised_cross_entropy_gradient_matches_the_float64_formula() {
        let mut rng = XorShift(0x853c49e6748fea9b);
        for c in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32] {
            for n in [1usize, 15, 16, 17, 40] {
                for eps in [0.0f32, 0.1] {
                    let (x, t) = logits_and_targets(&mut rng, n, c);
                    let w: Vec<f32> = (0..n).map(|i| if t[i] == -100 { 0.0 } else { 0.25 + (i % 3) as f32 }).collect();
                    // The forward's unit gradient, scaled by each row's weight as the backward does.
                    let (mut rows, mut unit) = (vec![f32::NAN; n], vec![f32::NAN; n * c]);
                    if !cross_entropy_rows_f32(&x, c, &t, -100, eps, &mut rows, Some(&mut unit)) {
                        return; // no AVX-512 here: the general loop is the only path
                    }
                    let out: Vec<f32> = (0..n * c).map(|f| unit[f] * w[f / c]).collect();
                    for i in 0..n {
                        let row: Vec<f64> = x[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
                        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                        for j in 0..c {
                            let wi = w[i] as f64;
                            let mut want = wi * ((row[j] - m).exp() / s - eps as f64 / c as f64);
                            if wi != 0.0 && t[i] == j as i64 {
                                want -= wi * (1.0 - eps as f64);
                            }
                            let got = out[i * c + j] as f64;
                            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "c={c} n={n} eps={eps} ({i},{j}): {got} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
