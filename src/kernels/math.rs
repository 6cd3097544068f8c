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
    p = p * r + 5.000_000_1e-1;
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
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { sigmoid_avx512(x, out) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { sigmoid_avx2(x, out) };
        }
    }
    sigmoid_loop(x, out)
}

#[inline(always)]
fn sigmoid_loop(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = sigmoid_one(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_avx512(x: &[f32], out: &mut [f32]) {
    sigmoid_loop(x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_avx2(x: &[f32], out: &mut [f32]) {
    sigmoid_loop(x, out)
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
}
