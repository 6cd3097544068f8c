//! The library's thread count and its small persistent pool of worker threads.
//!
//! The count is set by [`set_num_threads`] or, before the first use, by the environment variable
//! `BP_NUM_THREADS`. The default is 1: a runtime embedded in a host program should not take cores the
//! host did not give it, and small networks gain nothing from threads. Results never depend on the
//! count: a kernel splits its output into parts that are each computed by one thread in a fixed order.
//!
//! Workers are started on first need and kept; handing them a job takes a mutex and a condition
//! variable and allocates nothing, so a steady training loop stays allocation-free with threads too.
//! After a job a worker spins briefly before sleeping, because training steps issue large kernels
//! back to back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// 0 means "not yet read from the environment".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The most threads the library will use, whatever is asked.
pub const MAX_THREADS: usize = 64;

/// Sets how many threads large kernels may use (1 = only the calling thread; clamped to 1..=64).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.clamp(1, MAX_THREADS), Ordering::Relaxed);
}

/// How many threads large kernels may use: set by [`set_num_threads`], else `BP_NUM_THREADS`, else 1.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("BP_NUM_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1);
            // Another thread may have set a count meanwhile: keep theirs.
            let _ = NUM_THREADS.compare_exchange(0, n.clamp(1, MAX_THREADS), Ordering::Relaxed, Ordering::Relaxed);
            NUM_THREADS.load(Ordering::Relaxed)
        }
        n => n,
    }
}

/// A job: `f(part)` for every part in `0..parts`. The reference is only valid while `run` waits.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    parts: usize,
}

// SAFETY: the pointee is `Sync` (shared calls from several threads are allowed) and `run` keeps it
// alive until every worker has finished with it.
unsafe impl Send for Job {}

struct State {
    /// Bumped for every job, so a worker knows a job is new.
    epoch: u64,
    job: Option<Job>,
    /// The next part to hand out.
    next: usize,
    /// Parts not yet finished.
    unfinished: usize,
    /// Workers started so far.
    workers: usize,
    /// A part panicked: `run` re-raises it on the calling thread.
    panicked: bool,
}

struct Pool {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    /// Serialises jobs from different calling threads (each graph is used by one thread, but two
    /// graphs on two threads may both run large kernels).
    submit: Mutex<()>,
    /// A copy of `State::epoch` that idle workers poll without taking the lock.
    epoch: std::sync::atomic::AtomicU64,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State { epoch: 0, job: None, next: 0, unfinished: 0, workers: 0, panicked: false }),
        work: Condvar::new(),
        done: Condvar::new(),
        submit: Mutex::new(()),
        epoch: std::sync::atomic::AtomicU64::new(0),
    })
}

/// How long an idle worker keeps polling for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

fn worker_loop(p: &'static Pool) {
    let mut seen = 0u64;
    loop {
        // Poll (without the lock) for a while, then sleep until a job comes.
        let spin_until = Instant::now() + SPIN;
        while p.epoch.load(Ordering::Acquire) == seen && Instant::now() < spin_until {
            std::hint::spin_loop();
        }
        let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.epoch == seen {
            st = p.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        seen = st.epoch;
        let Some(job) = st.job else { continue };
        // Take parts until none is left.
        while st.next < job.parts {
            let part = st.next;
            st.next += 1;
            drop(st);
            // SAFETY: `run` does not return (and so does not end the closure's borrow) until
            // `unfinished` reaches zero, which happens only after this call returns.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job.f)(part) })).is_ok();
            st = p.state.lock().unwrap_or_else(|e| e.into_inner());
            st.panicked |= !ok;
            st.unfinished -= 1;
            if st.unfinished == 0 {
                p.done.notify_all();
            }
        }
    }
}

/// Calls `f(part)` for every part in `0..parts`, spread over up to `threads` threads (the caller is
/// one of them), and returns when all have finished. Which thread runs a part is not fixed, so `f`
/// must make each part's result independent of that (write disjoint outputs).
pub fn run(parts: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = threads.min(parts).min(MAX_THREADS);
    if threads <= 1 {
        (0..parts).for_each(f);
        return;
    }
    let p = pool();
    let _turn = p.submit.lock().unwrap_or_else(|e| e.into_inner());
    {
        let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.workers < threads - 1 {
            st.workers += 1;
            std::thread::Builder::new()
                .name(format!("bp-worker-{}", st.workers))
                .spawn(move || worker_loop(p))
                .expect("the system could not start a worker thread");
        }
        // SAFETY (lifetime erasure): the pointer is used only until `unfinished` is zero, and this
        // function waits for that below before `f`'s borrow ends.
        let f: *const (dyn Fn(usize) + Sync + '_) = f;
        let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f) };
        st.job = Some(Job { f, parts });
        st.epoch += 1;
        st.next = 0;
        st.unfinished = parts;
        st.panicked = false;
        p.epoch.store(st.epoch, Ordering::Release);
        p.work.notify_all();
    }
    // The caller works too.
    let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut caller_panic = None;
    while st.next < parts {
        let part = st.next;
        st.next += 1;
        drop(st);
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(part))) {
            caller_panic = Some(e);
        }
        st = p.state.lock().unwrap_or_else(|e| e.into_inner());
        st.unfinished -= 1;
    }
    while st.unfinished > 0 {
        st = p.done.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    st.job = None;
    let worker_panicked = st.panicked;
    drop(st);
    if let Some(e) = caller_panic {
        std::panic::resume_unwind(e);
    }
    assert!(!worker_panicked, "a part of a parallel kernel panicked on a worker thread");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_exactly_once_whatever_the_thread_count() {
        for threads in [1, 2, 3, 8] {
            let hits: Vec<AtomicU64> = (0..37).map(|_| AtomicU64::new(0)).collect();
            run(37, threads, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "threads = {threads}");
        }
    }

    #[test]
    fn a_panicking_part_panics_the_caller_and_the_pool_survives() {
        let r = std::panic::catch_unwind(|| run(4, 2, &|i| assert!(i != 3, "part 3 fails")));
        assert!(r.is_err());
        let n = AtomicU64::new(0);
        run(5, 2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 5);
    }
}
