//! The library's thread count: how many threads a large kernel may split its work over.
//!
//! Set by [`set_num_threads`] or, before the first use, by the environment variable `BP_NUM_THREADS`.
//! The default is 1: a training runtime embedded in a host program should not take cores the host did
//! not give it, and many small networks gain nothing from threads. Results never depend on the count
//! (every output element is computed by one thread in a fixed order).

use std::sync::atomic::{AtomicUsize, Ordering};

/// 0 means "not yet read from the environment".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The most threads the library will use, whatever is asked.
pub const MAX_THREADS: usize = 64;

/// Sets how many threads large kernels may use (1 = none beyond the caller; clamped to 1..=64).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.clamp(1, MAX_THREADS), Ordering::Relaxed);
}

/// How many threads large kernels may use: set by [`set_num_threads`], else `BP_NUM_THREADS`, else 1.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("BP_NUM_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1);
            let n = n.clamp(1, MAX_THREADS);
            // Another thread may have set a count meanwhile: keep theirs.
            let _ = NUM_THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
            NUM_THREADS.load(Ordering::Relaxed)
        }
        n => n,
    }
}
