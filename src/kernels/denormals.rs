//! Subnormal floats flushed to zero inside the library's kernels.
//!
//! A training run drifts into subnormal numbers (below 1.2·10⁻³⁸ in float32): a saturated sigmoid's
//! gradient times a small upstream gradient, then products of those. x86 processors compute with
//! them through microcode assists, many times slower than normal arithmetic, so a step slows down
//! as training goes on — the seed network's step went from 32 to over 50 µs after 60,000 steps.
//! The kernels (matrix products, and elementwise passes of at least 1024 elements) therefore run
//! with the SSE/AVX control bits FTZ (results that would be subnormal are
//! zero) and DAZ (subnormal inputs read as zero), as TensorFlow's CPU kernels and real-time audio
//! and game engines do. Only values below the smallest normal float change. The host's own setting
//! is restored when a kernel returns, so its floating point is never affected.
//!
//! PyTorch keeps subnormals by default (`torch.set_flush_denormal(False)`); so does backprop after
//! [`set_flush_denormal`]`(false)` or with `BP_FLUSH_DENORMAL=0` in the environment.

use std::sync::atomic::{AtomicU8, Ordering};

/// Elementwise passes shorter than this run without the guard: switching the control word twice
/// costs more than a short pass loses to subnormals (it was a tenth of W4's 16-element ops).
pub(crate) const FLUSH_MIN_ELEMENTS: usize = 1024;

/// 0: not read yet; 1: flush; 2: keep subnormals.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the kernels flush subnormals (the default; `BP_FLUSH_DENORMAL=0` turns it off).
pub fn flush_denormal() -> bool {
    match MODE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("BP_FLUSH_DENORMAL").map_or(true, |v| v.trim() != "0");
            MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
        m => m == 1,
    }
}

/// Makes the kernels flush subnormal numbers to zero (true, the default) or compute with them as
/// IEEE 754 says (false, PyTorch's default). Returns whether this CPU supports flushing (x86-64).
pub fn set_flush_denormal(on: bool) -> bool {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    cfg!(target_arch = "x86_64")
}

/// While alive, this thread computes with FTZ and DAZ set (if flushing is on); dropping it restores
/// the thread's previous control word. Nested guards leave the outer one to restore.
pub(crate) struct FlushGuard {
    #[cfg(target_arch = "x86_64")]
    saved: Option<u32>,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

impl FlushGuard {
    #[inline]
    pub(crate) fn new() -> FlushGuard {
        #[cfg(target_arch = "x86_64")]
        {
            if flush_denormal() {
                let csr = read_csr();
                if csr & FTZ_DAZ != FTZ_DAZ {
                    write_csr(csr | FTZ_DAZ);
                    return FlushGuard { saved: Some(csr) };
                }
            }
            FlushGuard { saved: None }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushGuard {}
    }
}

impl Drop for FlushGuard {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(csr) = self.saved {
            write_csr(csr);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_csr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: stmxcsr stores the 32-bit SSE control/status word (x86-64 always has SSE) into a
    // valid, writable local.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
    csr
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn write_csr(csr: u32) {
    // SAFETY: ldmxcsr loads a control word read from this thread's own register with only the FTZ
    // and DAZ bits changed (both valid settings), from a valid local.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_flushes_inside_and_restores_the_hosts_setting() {
        let tiny = std::hint::black_box(1e-39f32); // subnormal
        let before = std::hint::black_box(tiny) * std::hint::black_box(1.0f32);
        assert_eq!(before, 1e-39f32, "the host computes with subnormals");
        set_flush_denormal(true);
        {
            let _g = FlushGuard::new();
            let inside = std::hint::black_box(tiny) * std::hint::black_box(1.0f32);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(inside, 0.0, "subnormals flush inside a kernel");
            let _ = inside;
        }
        let after = std::hint::black_box(tiny) * std::hint::black_box(1.0f32);
        assert_eq!(after, 1e-39f32, "the host's setting is back");
    }
}
