//! Numerical kernels. `unsafe` lives here and in `ffi`, nowhere else.

pub mod denormals;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_small;
pub mod math;
pub(crate) mod simd;
pub mod threads;
