//! Plain loops compiled for the vector unit this CPU has.

/// Runs `f` inlined into a function compiled for AVX-512 (else AVX2 with FMA) when this CPU has it,
/// so that the plain elementwise loops in `f` are vectorised 16 (or 8) lanes wide instead of the
/// x86-64 baseline's 4. The arithmetic per element is unchanged — Rust never contracts a·b + c into
/// a fused multiply-add, and the vectoriser does not reorder a loop's floating-point sums — so
/// results are the same on every CPU.
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// The first `n` of 16 lanes as an AVX-512 mask (all sixteen from 16 up).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn lane_mask(n: usize) -> u16 {
    if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as u16 }
}

/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The least common multiple of a and b (both > 0): the period, in elements, at which rows of `a`
/// elements line up with vectors of `b` lanes.
pub(crate) fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    a / gcd(a, b) * b
}
