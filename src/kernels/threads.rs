//! The library's thread count and its small persistent pool of worker threads.
//!
//! The count is set by [`set_num_threads`] or, before the first use, by the environment variable
//! `BP_NUM_THREADS`. The default is 1: a runtime embedded in a host program should not take cores the
//! host did not give it, and small networks gain nothing from threads. Results never depend on the
//! count: a kernel splits its output into parts that are each computed by one thread in a fixed order.
//!
//! Workers are started on first need and kept. Handing them a job takes no lock and allocates
//! nothing (see `Pool`), so a steady training loop stays allocation-free with threads too, and a
//! job of a few microseconds still runs on both cores. After a job a worker spins briefly before
//! sleeping, because training steps issue kernels back to back. The parts of a job are claimed, not
//! assigned: the caller takes the first (a job that splits the same data the same way each time
//! then finds the caller's part in its caches), then the caller and the workers each take the next
//! unclaimed part until none is left, and the caller waits only for parts a worker has actually
//! started. A worker that wakes late, or whose
//! core another process holds, then costs at most the part it took. Measured with another process
//! spinning on one of the two cores, 2-thread products: 256³ 54 → 160 GFLOP/s, 128×784×512 85 → 142
//! (the caller no longer waits a scheduler time slice for a worker to start; one thread alone does
//! 160 and 150).

use super::simd::vectorised;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// 0 means "not yet read from the environment".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The most threads the library will use, whatever is asked.
pub(crate) const MAX_THREADS: usize = 64;

/// Sets how many threads large kernels may use (1 = only the calling thread; clamped to 1..=64).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.clamp(1, MAX_THREADS), std::sync::atomic::Ordering::Relaxed);
}

/// How many threads large kernels may use: set by [`set_num_threads`], else `BP_NUM_THREADS`, else 1.
pub fn num_threads() -> usize {
    use std::sync::atomic::Ordering::Relaxed;
    match NUM_THREADS.load(Relaxed) {
        0 => {
            let n = std::env::var("BP_NUM_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1);
            // Another thread may have set a count meanwhile: keep theirs.
            let _ = NUM_THREADS.compare_exchange(0, n.clamp(1, MAX_THREADS), Relaxed, Relaxed);
            NUM_THREADS.load(Relaxed)
        }
        n => n,
    }
}

thread_local! {
    /// Whether this thread is computing a part of a job: a kernel called from a part runs on that
    /// thread alone (the pool serves one job at a time, and its caller holds it while it waits).
    static IN_PART: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is running a part of a job.
fn in_part() -> bool {
    IN_PART.with(|c| c.get())
}

/// How many threads a kernel called here may use: [`num_threads`], or 1 inside a part of a job.
pub(crate) fn kernel_threads() -> usize {
    if in_part() { 1 } else { num_threads() }
}

/// `f(part)` with this thread marked as inside a part (restored after, also on a panic).
fn as_part(f: &(dyn Fn(usize) + Sync), part: usize) {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_PART.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(IN_PART.with(|c| c.replace(true)));
    f(part)
}

/// A job: `f(part)` for every part in `0..parts`, each part on whichever thread claims it. The
/// reference is only valid while `run` waits.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    parts: usize,
    threads: usize,
}

/// The pool. A job is handed over without locks: `run` writes it into `job`, resets `next` and opens
/// a new epoch (an odd `epoch`); threads claim parts with one atomic add on `next`; `run` closes
/// the epoch (even again) once every part is claimed and waits until no worker is `active`. A
/// worker counts itself active *before* it checks that the epoch it saw is still open, and `run`
/// closes *before* it reads `active` (all sequentially consistent), so either the worker sees the
/// close and leaves without touching the job, or `run` sees the worker and waits for it: no worker
/// reads `job` while `run` rewrites it. The locks serve only threads that sleep.
///
/// Taking a mutex to claim a part, as this pool once did, cost more than whole small products: on a
/// virtual machine a thread that blocks on a contended lock sleeps, and waking it took longer than
/// the caller needed to compute both halves of a 128³ product alone (2 threads gained nothing there).
struct Pool {
    job: UnsafeCell<Job>,
    epoch: AtomicU64,
    /// The next part nobody has claimed yet.
    next: AtomicUsize,
    /// Workers inside the current epoch (claiming or computing parts).
    active: AtomicUsize,
    /// A part panicked on a worker: `run` re-raises it on the calling thread.
    panicked: AtomicBool,
    /// Workers asleep on `wake`, and whether `run` sleeps on `done`.
    sleepers: AtomicUsize,
    waiting: AtomicBool,
    /// Guards only the sleeping: a thread checks its condition under it before it waits.
    sleep: Mutex<()>,
    wake: Condvar,
    done: Condvar,
    /// Serialises jobs from different calling threads (each graph is used by one thread, but two
    /// graphs on two threads may both run large kernels); holds the number of workers started.
    submit: Mutex<usize>,
}

// SAFETY: `job` is written only by `run`, under `submit`, while no worker is active (see Pool), and
// read by workers only while the epoch that published it is open; the rest is atomics and locks.
unsafe impl Sync for Pool {}
// SAFETY: the raw closure pointer in `job` is only called under the protocol above.
unsafe impl Send for Pool {}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        job: UnsafeCell::new(Job { f: &|_| {}, parts: 0, threads: 0 }),
        epoch: AtomicU64::new(0),
        next: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        sleepers: AtomicUsize::new(0),
        waiting: AtomicBool::new(false),
        sleep: Mutex::new(()),
        wake: Condvar::new(),
        done: Condvar::new(),
        submit: Mutex::new(0),
    })
}

/// How long an idle worker keeps polling for the next job before it sleeps, and how long `run`
/// polls for the workers' last parts before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// Polls `busy` until it is false or [`SPIN`] has passed, pausing between polls. The clock is read
/// every sixteenth poll only: a thread that waits here should leave its core's resources to the
/// work it waits for (a virtual CPU may share a physical core with the other).
fn spin_while(mut busy: impl FnMut() -> bool) {
    let until = Instant::now() + SPIN;
    let mut polls = 0u32;
    while busy() {
        std::hint::spin_loop();
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(16) && Instant::now() >= until {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Claims and runs parts of the current job until none is left.
    fn claim_parts(&self, f: &(dyn Fn(usize) + Sync), parts: usize) {
        loop {
            let part = self.next.fetch_add(1, SeqCst);
            if part >= parts {
                return;
            }
            as_part(f, part);
        }
    }
}

fn worker_loop(p: &'static Pool, id: usize) {
    let mut seen = 0u64;
    loop {
        // Poll for an open epoch other than the last one served, for a while; then sleep.
        let fresh = |e: u64| e != seen && e % 2 == 1;
        let mut e = p.epoch.load(SeqCst);
        spin_while(|| {
            e = p.epoch.load(SeqCst);
            !fresh(e)
        });
        if !fresh(e) {
            let mut g = lock(&p.sleep);
            p.sleepers.fetch_add(1, SeqCst);
            loop {
                e = p.epoch.load(SeqCst);
                if fresh(e) {
                    break;
                }
                g = p.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            p.sleepers.fetch_sub(1, SeqCst);
        }
        p.active.fetch_add(1, SeqCst);
        if p.epoch.load(SeqCst) != e {
            // Closed (or replaced) meanwhile: this worker must not read the job.
            leave(p);
            continue;
        }
        seen = e;
        // SAFETY: the epoch that published this job is open and this worker is active, so `run`
        // neither rewrites the job nor lets its closure's borrow end (see Pool).
        let job = unsafe { *p.job.get() };
        if id < job.threads {
            // SAFETY: as above.
            let f = unsafe { &*job.f };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.claim_parts(f, job.parts))).is_err() {
                p.panicked.store(true, SeqCst);
            }
        }
        leave(p);
    }
}

/// A worker leaves the epoch it was active in, waking `run` if it was the last one `run` waits for.
fn leave(p: &Pool) {
    if p.active.fetch_sub(1, SeqCst) == 1 && p.waiting.load(SeqCst) {
        drop(lock(&p.sleep));
        p.done.notify_all();
    }
}

/// Calls `f(part)` for every part in `0..parts` on up to `threads` threads and returns when all have
/// finished. Each part runs exactly once: the first on the caller, each other on whichever thread
/// claims it first (the caller claims too), so `f` must write disjoint outputs for different parts and must not rely on which thread
/// runs a part. Called from inside a part, it runs every part on the calling thread.
pub fn run(parts: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = if in_part() { 1 } else { threads.min(parts).min(MAX_THREADS) };
    if threads <= 1 {
        (0..parts).for_each(f);
        return;
    }
    let p = pool();
    let mut started = lock(&p.submit);
    while *started < threads - 1 {
        *started += 1;
        let id = *started;
        std::thread::Builder::new()
            .name(format!("bp-worker-{id}"))
            .spawn(move || worker_loop(p, id))
            .expect("the system could not start a worker thread");
    }
    // SAFETY (lifetime erasure): workers call the pointer only while the epoch below is open and
    // they are active; this function closes the epoch and waits until none is active before `f`'s
    // borrow ends.
    let fp: *const (dyn Fn(usize) + Sync + '_) = f;
    let fp: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(fp) };
    // SAFETY: the previous job's epoch is closed and no worker is active (its `run` waited), so no
    // thread reads the slot now; `submit` keeps other callers out.
    unsafe { *p.job.get() = Job { f: fp, parts, threads } };
    // The caller keeps the first part for itself: a job that splits the same data the same way
    // every time (a split training step, a product's halves) then finds its part in this core's
    // caches, instead of whichever part a worker claimed first.
    p.next.store(1, SeqCst);
    p.panicked.store(false, SeqCst);
    let epoch = p.epoch.load(SeqCst) + 1;
    p.epoch.store(epoch, SeqCst);
    if p.sleepers.load(SeqCst) > 0 {
        // A sleeper checks the epoch under the lock before it waits: once we hold it, it waits.
        drop(lock(&p.sleep));
        p.wake.notify_all();
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        as_part(f, 0);
        p.claim_parts(f, parts)
    }));
    // Every part is claimed (or this thread panicked: stop handing parts out). Close the epoch, then
    // wait for the workers inside it; they usually finish within microseconds of the caller.
    p.next.store(parts, SeqCst);
    p.epoch.store(epoch + 1, SeqCst);
    spin_while(|| p.active.load(SeqCst) > 0);
    if p.active.load(SeqCst) > 0 {
        let mut g = lock(&p.sleep);
        p.waiting.store(true, SeqCst);
        while p.active.load(SeqCst) > 0 {
            g = p.done.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        p.waiting.store(false, SeqCst);
    }
    let worker_panicked = p.panicked.load(SeqCst);
    drop(started);
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
    let parts = if work < PARALLEL_MIN_ELEMS { 1 } else { kernel_threads().min(work / (PARALLEL_MIN_ELEMS / 2)).min(len / 16).max(1) };
    let blocks = len.div_ceil(16);
    (parts, move |p: usize| if p == parts { len } else { (blocks * p / parts * 16).min(len) })
}

/// A slice (or one that is only read) handed out in disjoint pieces to the parts of one job: the
/// pieces of an elementwise pass, the rows of a split training step's buffers. Each part reads and
/// writes only its own elements of a slice it writes, so no element is written by one thread while
/// another touches it, and `run` returns only when every part has finished.
pub(crate) struct Shared<T> {
    pub(crate) p: *mut T,
    pub(crate) len: usize,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        *self
    }
}
impl<T> Copy for Shared<T> {}

// SAFETY: see Shared: the parts of a job access disjoint elements, within one `run`.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub(crate) const NONE: Shared<T> = Shared { p: std::ptr::null_mut(), len: 0 };

    pub(crate) fn new(s: &mut [T]) -> Shared<T> {
        Shared { p: s.as_mut_ptr(), len: s.len() }
    }

    /// A slice that is only read (through [`Shared::all`] and [`Shared::rows_ref`]).
    pub(crate) fn read(s: &[T]) -> Shared<T> {
        Shared { p: s.as_ptr() as *mut T, len: s.len() }
    }

    /// Rows `r` of `width` elements each (elements r when width is 1), to write.
    ///
    /// # Safety
    /// The rows lie inside the slice, which came from [`Shared::new`] and is alive, and no other
    /// live reference covers them.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn rows<'a>(self, r: &std::ops::Range<usize>, width: usize) -> &'a mut [T] {
        debug_assert!(r.start <= r.end && r.end * width <= self.len);
        std::slice::from_raw_parts_mut(self.p.add(r.start * width), r.len() * width)
    }

    /// Rows `r` of `width` elements each, to read.
    ///
    /// # Safety
    /// The rows lie inside the slice, which is alive, and no thread writes them meanwhile.
    pub(crate) unsafe fn rows_ref<'a>(self, r: &std::ops::Range<usize>, width: usize) -> &'a [T] {
        debug_assert!(r.start <= r.end && r.end * width <= self.len);
        std::slice::from_raw_parts(self.p.add(r.start * width), r.len() * width)
    }

    /// The whole slice, to read (None for [`Shared::NONE`]).
    ///
    /// # Safety
    /// As [`Shared::rows_ref`].
    pub(crate) unsafe fn all<'a>(self) -> Option<&'a [T]> {
        (!self.p.is_null()).then(|| std::slice::from_raw_parts(self.p, self.len))
    }
}

/// Calls `f(lo, &mut out[lo..hi])` over consecutive pieces of `out` that cover it, on several
/// threads when `out` is long (at least [`PARALLEL_MIN_ELEMS`]) — for memory-bound elementwise
/// passes whose inputs the closure slices with the same range. Each element is computed by exactly
/// one call, so the results do not depend on the thread count. `f` runs inlined into code compiled
/// for the CPU's vector unit ([`super::simd::vectorised`]), so its plain loops vectorise.
pub(crate) fn for_each_piece<A: Send, F: Fn(usize, &mut [A]) + Sync>(out: &mut [A], f: &F) {
    for_each_piece_of(out, out.len(), f)
}

/// [`for_each_piece`] for a pass whose total work is `work` elements rather than `out.len()` (a
/// reduction that reads many elements per output).
pub(crate) fn for_each_piece_of<A: Send, F: Fn(usize, &mut [A]) + Sync>(out: &mut [A], work: usize, f: &F) {
    let (parts, start) = elementwise_parts(out.len(), work);
    if parts <= 1 {
        let _flush = (work >= super::denormals::FLUSH_MIN_ELEMENTS).then(super::denormals::FlushGuard::new);
        return vectorised(|| f(0, out));
    }
    let shared = Shared::new(out);
    run(parts, parts, &|p| {
        let (lo, hi) = (start(p), start(p + 1));
        let _flush = super::denormals::FlushGuard::new();
        // SAFETY: the ranges of different parts are disjoint and inside `out`, which is borrowed
        // mutably until `run` returns.
        vectorised(|| f(lo, unsafe { shared.rows(&(lo..hi), 1) }))
    });
}

/// [`for_each_piece`] over two outputs of the same length, cut at the same places.
pub(crate) fn for_each_piece2<A: Send, B: Send, F: Fn(usize, &mut [A], &mut [B]) + Sync>(a: &mut [A], b: &mut [B], f: &F) {
    assert_eq!(a.len(), b.len(), "for_each_piece2: the outputs differ in length");
    let (parts, start) = elementwise_parts(a.len(), a.len());
    if parts <= 1 {
        let _flush = (a.len() >= super::denormals::FLUSH_MIN_ELEMENTS).then(super::denormals::FlushGuard::new);
        return vectorised(|| f(0, a, b));
    }
    let (sa, sb) = (Shared::new(a), Shared::new(b));
    run(parts, parts, &|p| {
        let _flush = super::denormals::FlushGuard::new();
        let (lo, hi) = (start(p), start(p + 1));
        // SAFETY: as in for_each_piece, for each of the two slices.
        vectorised(|| f(lo, unsafe { sa.rows(&(lo..hi), 1) }, unsafe { sb.rows(&(lo..hi), 1) }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

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
    fn a_job_started_inside_a_part_runs_on_that_part_s_thread() {
        // The pool serves one job at a time: a kernel called from a part (a split training step's
        // products) must not wait for it.
        let hits: Vec<AtomicU64> = (0..6).map(|_| AtomicU64::new(0)).collect();
        run(2, 2, &|p| {
            assert_eq!(kernel_threads(), 1);
            let me = std::thread::current().id();
            run(3, 2, &|q| {
                assert_eq!(std::thread::current().id(), me);
                hits[3 * p + q].fetch_add(1, Ordering::Relaxed);
            });
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn back_to_back_jobs_never_lose_or_repeat_a_part() {
        // Many short jobs in a row: workers still inside one job (or waking late for it) while the
        // next is published must neither run a stale closure nor miss a part of the new one.
        for threads in [2, 3] {
            for round in 0..3000u64 {
                let parts = 1 + (round % 5) as usize;
                let hits: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
                run(parts, threads, &|i| {
                    hits[i].fetch_add(round + 1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1), "threads = {threads}, round = {round}");
            }
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
