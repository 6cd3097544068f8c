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
//! back to back. The parts of a job are claimed, not assigned: the caller and the workers each take
//! the next unclaimed part until none is left, and the caller waits only for parts a worker has
//! actually started. A worker that wakes late, or whose core another process holds, then costs at
//! most the part it took. Measured with another process spinning on one of the two cores, 2-thread
//! products: 256³ 54 → 160 GFLOP/s, 128×784×512 85 → 142 (the caller no longer waits a scheduler
//! time slice for a worker to start; one thread alone does 160 and 150).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// 0 means "not yet read from the environment".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The most threads the library will use, whatever is asked.
pub(crate) const MAX_THREADS: usize = 64;

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

/// A job: `f(part)` for every part in `0..parts`, each part on whichever thread claims it. The
/// reference is only valid while `run` waits.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    parts: usize,
    threads: usize,
}

// SAFETY: the pointee is `Sync` (shared calls from several threads are allowed) and `run` keeps it
// alive until no worker can call it any more (see `run`).
unsafe impl Send for Job {}

struct State {
    /// Bumped for every job, so a worker knows a job is new.
    epoch: u64,
    /// The job being run; `run` clears it, under the lock, before it returns.
    job: Option<Job>,
    /// The next part nobody has claimed yet.
    next: usize,
    /// Parts claimed by workers and not yet finished.
    running: usize,
    /// Workers started so far (worker i is thread i of a job, i ≥ 1).
    workers: usize,
    /// A part panicked on a worker: `run` re-raises it on the calling thread.
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
    epoch: AtomicU64,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State { epoch: 0, job: None, next: 0, running: 0, workers: 0, panicked: false }),
        work: Condvar::new(),
        done: Condvar::new(),
        submit: Mutex::new(()),
        epoch: AtomicU64::new(0),
    })
}

/// How long an idle worker keeps polling for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

fn lock(p: &Pool) -> std::sync::MutexGuard<'_, State> {
    p.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker_loop(p: &'static Pool, id: usize) {
    let mut seen = 0u64;
    loop {
        // Poll (without the lock) for a while, then sleep until a job comes.
        let spin_until = Instant::now() + SPIN;
        while p.epoch.load(Ordering::Acquire) == seen && Instant::now() < spin_until {
            std::hint::spin_loop();
        }
        let mut st = lock(p);
        while st.epoch == seen {
            st = p.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        seen = st.epoch;
        // Claim parts of this job while any is left. The job is read under the lock each time: once
        // `run` has cleared it (or published another), this worker must not touch it.
        while let Some(job) = st.job.filter(|j| st.epoch == seen && id < j.threads && st.next < j.parts) {
            let part = st.next;
            st.next += 1;
            st.running += 1;
            drop(st);
            // SAFETY: `run` keeps the closure alive until `running` is back to zero, which happens
            // only after this part is done.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job.f)(part) })).is_ok();
            st = lock(p);
            st.panicked |= !ok;
            st.running -= 1;
            if st.running == 0 {
                p.done.notify_all();
            }
        }
    }
}

/// Calls `f(part)` for every part in `0..parts` on up to `threads` threads and returns when all have
/// finished. Each part runs exactly once, on whichever thread claims it first (the caller claims
/// too), so `f` must write disjoint outputs for different parts and must not rely on which thread
/// runs a part.
pub fn run(parts: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = threads.min(parts).min(MAX_THREADS);
    if threads <= 1 {
        (0..parts).for_each(f);
        return;
    }
    let p = pool();
    let _turn = p.submit.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY (lifetime erasure): workers call the pointer only for parts they claimed while the
    // job was published; this function unpublishes the job and waits for every claimed part to
    // finish before `f`'s borrow ends.
    let fp: *const (dyn Fn(usize) + Sync + '_) = f;
    let fp: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(fp) };
    let job = Job { f: fp, parts, threads };
    {
        let mut st = lock(p);
        while st.workers < threads - 1 {
            st.workers += 1;
            let id = st.workers;
            std::thread::Builder::new()
                .name(format!("bp-worker-{id}"))
                .spawn(move || worker_loop(p, id))
                .expect("the system could not start a worker thread");
        }
        st.job = Some(job);
        st.next = 0;
        st.running = 0;
        st.panicked = false;
        st.epoch += 1;
        p.epoch.store(st.epoch, Ordering::Release);
        p.work.notify_all();
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
        let part = {
            let mut st = lock(p);
            if st.next >= parts {
                break;
            }
            st.next += 1;
            st.next - 1
        };
        f(part);
    }));
    let mut st = lock(p);
    // After a panic here, stop handing out parts; in any case wait for the parts workers started.
    st.next = parts;
    while st.running > 0 {
        drop(st);
        // Workers usually finish within microseconds of the caller: poll briefly before sleeping.
        let until = Instant::now() + SPIN;
        while Instant::now() < until {
            std::hint::spin_loop();
            if p.state.try_lock().map(|s| s.running == 0).unwrap_or(false) {
                break;
            }
        }
        st = lock(p);
        if st.running > 0 {
            st = p.done.wait_while(st, |s| s.running > 0).unwrap_or_else(|e| e.into_inner());
        }
    }
    st.job = None;
    let worker_panicked = st.panicked;
    drop(st);
    if let Err(e) = mine {
        std::panic::resume_unwind(e);
    }
    assert!(!worker_panicked, "a part of a parallel kernel panicked on a worker thread");
}

/// Below this many elements a memory-bound elementwise pass stays on the calling thread: waking a
/// worker costs microseconds, and small tensors sit in the caller's cache.
pub(crate) const PARALLEL_MIN_ELEMS: usize = 1 << 17;

/// How many parts a pass writing `len` elements and touching `work` elements in all is split into,
/// and the start of part p (parts begin on 16-element boundaries, so no two threads write the same
/// cache line).
fn elementwise_parts(len: usize, work: usize) -> (usize, impl Fn(usize) -> usize) {
    let parts = if work < PARALLEL_MIN_ELEMS { 1 } else { num_threads().min(work / (PARALLEL_MIN_ELEMS / 2)).min(len / 16).max(1) };
    let blocks = len.div_ceil(16);
    (parts, move |p: usize| if p == parts { len } else { (blocks * p / parts * 16).min(len) })
}

/// A slice handed out in disjoint pieces to the parts of one job.
struct SharedMut<T>(*mut T, usize);

// SAFETY: the parts of a job each touch a disjoint range of the slice (see `piece`), and the slice
// is borrowed mutably for the whole job.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The elements lo..hi.
    ///
    /// # Safety
    /// lo ≤ hi ≤ the slice's length, and no other live reference covers lo..hi.
    #[allow(clippy::mut_from_ref)]
    unsafe fn piece(&self, lo: usize, hi: usize) -> &mut [T] {
        debug_assert!(lo <= hi && hi <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(lo), hi - lo)
    }
}

/// Calls `f(lo, &mut out[lo..hi])` over consecutive pieces of `out` that cover it, on several
/// threads when `out` is long (at least [`PARALLEL_MIN_ELEMS`]) — for memory-bound elementwise
/// passes whose inputs the closure slices with the same range. Each element is computed by exactly
/// one call, so the results do not depend on the thread count.
pub(crate) fn for_each_piece<A: Send>(out: &mut [A], f: &(dyn Fn(usize, &mut [A]) + Sync)) {
    for_each_piece_of(out, out.len(), f)
}

/// [`for_each_piece`] for a pass whose total work is `work` elements rather than `out.len()` (a
/// reduction that reads many elements per output).
pub(crate) fn for_each_piece_of<A: Send>(out: &mut [A], work: usize, f: &(dyn Fn(usize, &mut [A]) + Sync)) {
    let (parts, start) = elementwise_parts(out.len(), work);
    if parts <= 1 {
        let _flush = (work >= super::denormals::FLUSH_MIN_ELEMENTS).then(super::denormals::FlushGuard::new);
        return f(0, out);
    }
    let shared = SharedMut(out.as_mut_ptr(), out.len());
    run(parts, parts, &|p| {
        let (lo, hi) = (start(p), start(p + 1));
        let _flush = super::denormals::FlushGuard::new();
        // SAFETY: the ranges of different parts are disjoint and inside `out`, which is borrowed
        // mutably until `run` returns.
        f(lo, unsafe { shared.piece(lo, hi) })
    });
}

/// [`for_each_piece`] over two outputs of the same length, cut at the same places.
pub(crate) fn for_each_piece2<A: Send, B: Send>(a: &mut [A], b: &mut [B], f: &(dyn Fn(usize, &mut [A], &mut [B]) + Sync)) {
    assert_eq!(a.len(), b.len(), "for_each_piece2: the outputs differ in length");
    let (parts, start) = elementwise_parts(a.len(), a.len());
    if parts <= 1 {
        let _flush = (a.len() >= super::denormals::FLUSH_MIN_ELEMENTS).then(super::denormals::FlushGuard::new);
        return f(0, a, b);
    }
    let (sa, sb) = (SharedMut(a.as_mut_ptr(), a.len()), SharedMut(b.as_mut_ptr(), b.len()));
    run(parts, parts, &|p| {
        let _flush = super::denormals::FlushGuard::new();
        let (lo, hi) = (start(p), start(p + 1));
        // SAFETY: as in for_each_piece, for each of the two slices.
        f(lo, unsafe { sa.piece(lo, hi) }, unsafe { sb.piece(lo, hi) })
    });
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
    fn pieces_cover_the_output_once_whatever_the_thread_count() {
        for threads in [1, 2, 3] {
            set_num_threads(threads);
            for len in [0, 5, PARALLEL_MIN_ELEMS - 1, PARALLEL_MIN_ELEMS * 3 + 7] {
                let mut out = vec![0u32; len];
                let mut twin = vec![0u8; len];
                for_each_piece2(&mut out, &mut twin, &|lo, o, t| {
                    for (i, (x, y)) in o.iter_mut().zip(t.iter_mut()).enumerate() {
                        *x += (lo + i) as u32 + 1;
                        *y += 1;
                    }
                });
                assert!(out.iter().enumerate().all(|(i, &x)| x == i as u32 + 1), "threads = {threads}, len = {len}");
                assert!(twin.iter().all(|&y| y == 1));
            }
        }
        set_num_threads(1);
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
