//! A counting global allocator for the tests that pin "a steady-state step allocates nothing". Include
//! it with `#[path = "harness/counting_alloc.rs"] mod counting_alloc;` — it installs itself as the test
//! binary's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

/// Allocations by any thread of the process while `ON` is set.
static PROCESS: AtomicUsize = AtomicUsize::new(0);
static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Allocations by this thread (const-initialised, no destructor: safe to touch from the allocator).
    static THREAD: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if ON.load(Ordering::Relaxed) {
        PROCESS.fetch_add(1, Ordering::Relaxed);
    }
    let _ = THREAD.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `p` came from this allocator with layout `l`.
        unsafe { System.realloc(p, l, new_size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from this allocator with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by every thread of the process while `f` runs (worker threads included). Only for a
/// test file that holds a single test: other tests would run meanwhile and be counted.
#[allow(dead_code)]
pub fn allocations(f: impl FnOnce()) -> usize {
    PROCESS.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    f();
    ON.store(false, Ordering::SeqCst);
    PROCESS.load(Ordering::SeqCst)
}

/// Allocations made by the calling thread while `f` runs: safe beside tests running in parallel.
#[allow(dead_code)]
pub fn allocations_on_this_thread(f: impl FnOnce()) -> usize {
    let before = THREAD.with(Cell::get);
    f();
    THREAD.with(Cell::get) - before
}
