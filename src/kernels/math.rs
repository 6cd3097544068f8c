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
