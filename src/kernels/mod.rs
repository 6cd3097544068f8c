//! Numerical kernels. `unsafe` lives here and in `ffi`, nowhere else.

pub mod gemm;
pub mod math;
pub mod threads;
