//! `bp_graph`: the opaque object C holds a pointer to, and the graph-level functions.
//!
//! A `bp_graph*` points to a *shell* that holds the engine's [`Graph`]. Shells are never returned to the
//! allocator: `bp_graph_free` drops the graph inside, marks the shell freed and parks it in a queue; only
//! after `REUSE_DELAY` more graphs have been freed may `bp_graph_new` hand the shell out again. So a
//! pointer that `bp_graph_new` once returned always stays readable, and using it after `bp_graph_free`
//! is answered with `BP_ERR_INVALID_HANDLE` (until that shell is reused, when it names the new graph).
//! A pointer that never came from `bp_graph_new` is rejected by a magic number when it points to
//! readable memory; reading through a wild pointer is undefined behaviour that no library can prevent.
//!
//! Each shell has a `busy` flag taken with one atomic compare-and-swap per call: a graph used by two
//! threads at once makes one of the calls fail instead of racing. Separate graphs share nothing, so
//! there is no global lock on the hot path (the queue's mutex is taken only by `_new` and `_free`).

use super::boundary::{boundary, error, slice_in, slice_out, Out};
use super::bp_status;
use crate::error::{ErrorKind, Result};
use crate::graph::{Graph, Tensor};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// "bp_graph" in ASCII: marks memory that is a graph shell.
const MAGIC: u64 = 0x6270_5f67_7261_7068;

/// How many freed shells wait before one is reused, so a use-after-free is caught for a good while.
const REUSE_DELAY: usize = 64;

/// A graph: an arena of tensors and the record of the ops that made them. Opaque: C only holds
/// pointers to it, made by `bp_graph_new` and released by `bp_graph_free`.
#[repr(C)]
pub struct bp_graph {
    // Never constructed: a `*mut bp_graph` points to a [`Shell`]. Keeping the exported type opaque
    // leaves the shell's layout free to be `repr(C)` (see there) without cbindgen exporting it.
    _opaque: [u8; 0],
}

/// What a `bp_graph*` points to. `repr(C)` keeps `magic` at offset 0, so the forgery check reads a
/// pointer's first 8 bytes and nothing else. (With Rust's layout `magic` sat after the ~2.8 KB
/// `Graph`, so checking a forged pointer read far past the memory it named; found by the
/// `c_abi_calls` fuzz target under AddressSanitizer.)
#[repr(C)]
struct Shell {
    magic: u64,
    live: AtomicBool,
    busy: AtomicBool,
    poisoned: AtomicBool,
    graph: UnsafeCell<Option<Graph>>,
}

// SAFETY: the graph inside is only reached through `with_graph` (or `bp_graph_free`), which hold the
// `busy` flag, so at most one thread touches it at a time; `Graph` itself is `Send`.
unsafe impl Sync for Shell {}

/// Freed shells, oldest first (addresses; a `*mut` is not `Send`).
static PARKED: Mutex<VecDeque<usize>> = Mutex::new(VecDeque::new());

/// Clears the busy flag when a call ends, also when it ends by a panic (which poisons the graph:
/// its invariants may be broken half-way).
struct BusyGuard<'a>(&'a Shell);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Checks that `g` points to a shell and takes its busy flag.
fn lock_shell<'a>(g: *mut bp_graph) -> Result<BusyGuard<'a>> {
    if g.is_null() {
        return Err(error(ErrorKind::InvalidArgument, "the graph is NULL"));
    }
    let g = g as *const Shell;
    if !(g as usize).is_multiple_of(std::mem::align_of::<Shell>()) {
        return Err(error(ErrorKind::InvalidHandle, "the graph pointer is forged: it is not aligned like a bp_graph"));
    }
    // SAFETY: the C contract is that `g` came from bp_graph_new. Shells are never deallocated, so even
    // after bp_graph_free this memory is a live shell; `magic` is written once before the pointer is
    // handed out and never changed. For a pointer that did not come from bp_graph_new this 8-byte read
    // at offset 0 (repr(C)) is the best-effort forgery check described in the module doc: it touches
    // only the first 8 bytes the pointer names, and no reference to a shell exists before it passes.
    let magic = unsafe { std::ptr::addr_of!((*g).magic).read() };
    if magic != MAGIC {
        return Err(error(ErrorKind::InvalidHandle, "the graph pointer is forged: it does not point to a bp_graph"));
    }
    // SAFETY: the magic number marks memory written by `bp_graph_new` as a shell (see above).
    let shell: &'a Shell = unsafe { &*g };
    if shell.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return Err(error(ErrorKind::InvalidArgument, "the graph is being used by another thread right now; a graph must be used by one thread at a time"));
    }
    let guard = BusyGuard(shell);
    if !shell.live.load(Ordering::Relaxed) {
        return Err(error(ErrorKind::InvalidHandle, "the graph was freed"));
    }
    Ok(guard)
}

/// Runs `f` on the graph behind `g`: the only way FFI code reaches a `Graph`. Fails for a NULL, forged,
/// freed, busy or poisoned graph.
pub(crate) fn with_graph<R>(g: *mut bp_graph, f: impl FnOnce(&mut Graph) -> Result<R>) -> Result<R> {
    let guard = lock_shell(g)?;
    if guard.0.poisoned.load(Ordering::Relaxed) {
        return Err(error(ErrorKind::Internal, "the graph is poisoned by an earlier internal error; free it"));
    }
    // SAFETY: the busy flag, held by `guard` until this function returns, gives this thread exclusive
    // access to the cell's contents.
    let graph = unsafe { &mut *guard.0.graph.get() };
    match graph.as_mut() {
        Some(graph) => f(graph),
        None => Err(error(ErrorKind::InvalidHandle, "the graph was freed")),
    }
}

/// Makes a new, empty graph: no memory limit, gradient recording on, random generator seeded with 0.
///
/// Ownership: on success the caller owns `*graph_out` and must release it with `bp_graph_free`.
#[no_mangle]
pub extern "C" fn bp_graph_new(graph_out: *mut *mut bp_graph) -> bp_status {
    boundary(|| {
        let out = Out::new(graph_out, "graph_out")?;
        let reused = {
            let mut parked = PARKED.lock().unwrap_or_else(|p| p.into_inner());
            if parked.len() > REUSE_DELAY { parked.pop_front() } else { None }
        };
        let fresh = || {
            Box::into_raw(Box::new(Shell {
                magic: MAGIC,
                live: AtomicBool::new(true),
                busy: AtomicBool::new(false),
                poisoned: AtomicBool::new(false),
                graph: UnsafeCell::new(Some(Graph::new())),
            }))
        };
        let shell: *mut bp_graph = match reused {
            Some(addr) => {
                // SAFETY: parked addresses are shells made by `fresh` and never deallocated.
                let parked: &Shell = unsafe { &*(addr as *const Shell) };
                // A thread calling through a stale pointer may hold the flag for a moment; then this
                // shell waits for another turn.
                if parked.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    // SAFETY: the busy flag gives exclusive access to the cell.
                    unsafe { *parked.graph.get() = Some(Graph::new()) };
                    parked.poisoned.store(false, Ordering::Relaxed);
                    parked.live.store(true, Ordering::Relaxed);
                    parked.busy.store(false, Ordering::Release);
                    addr as *mut bp_graph
                } else {
                    PARKED.lock().unwrap_or_else(|p| p.into_inner()).push_back(addr);
                    fresh() as *mut bp_graph
                }
            }
            None => fresh() as *mut bp_graph,
        };
        out.write(shell);
        Ok(())
    })
}

/// Frees a graph and every tensor in it. `bp_graph_free(NULL)` does nothing and returns `BP_OK`;
/// freeing a graph twice returns `BP_ERR_INVALID_HANDLE` and does nothing else; a graph being used by
/// another thread right now is not freed (`BP_ERR_INVALID_ARGUMENT`).
///
/// Ownership: afterwards the caller owns nothing: every tensor handle of the graph is stale and the
/// pointer must not be used again (a use is detected as described in `docs/C_API.md`).
#[no_mangle]
pub extern "C" fn bp_graph_free(graph: *mut bp_graph) -> bp_status {
    if graph.is_null() {
        return super::BP_OK;
    }
    boundary(|| {
        let guard = lock_shell(graph)?;
        guard.0.live.store(false, Ordering::Relaxed);
        // SAFETY: the busy flag (held by `guard`) gives exclusive access to the cell.
        let dropped = unsafe { (*guard.0.graph.get()).take() };
        drop(guard);
        drop(dropped);
        PARKED.lock().unwrap_or_else(|p| p.into_inner()).push_back(graph as usize);
        Ok(())
    })
}

/// Drops every tensor of the graph that is not persistent, and every recorded op, at once; persistent
/// tensors (parameters) and their gradients stay. Call it between training steps. Buffers are kept for
/// reuse, so a loop that repeats the same step stops allocating after its first step.
///
/// Ownership: handles of the dropped tensors become stale.
#[no_mangle]
pub extern "C" fn bp_graph_reset(graph: *mut bp_graph) -> bp_status {
    boundary(|| with_graph(graph, |g| {
        g.reset();
        Ok(())
    }))
}

/// Caps the bytes of tensor data the graph holds (live and pooled); past it, an allocation fails with
/// `BP_ERR_OUT_OF_MEMORY` and the graph stays usable. `SIZE_MAX` means no limit. Fails when more than
/// `bytes` are in use already.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_set_memory_limit(graph: *mut bp_graph, bytes: usize) -> bp_status {
    boundary(|| with_graph(graph, |g| g.set_memory_limit(bytes)))
}

/// Writes the graph's memory limit in bytes (`SIZE_MAX` when unlimited) to `*bytes_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_memory_limit(graph: *mut bp_graph, bytes_out: *mut usize) -> bp_status {
    boundary(|| {
        let out = Out::new(bytes_out, "bytes_out")?;
        out.write(with_graph(graph, |g| Ok(g.memory_limit()))?);
        Ok(())
    })
}

/// Writes the bytes of tensor data held by live tensors to `*bytes_out`, and the bytes kept in the
/// pool of reusable buffers to `*pooled_out` (either may be NULL when not wanted).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_memory_used(graph: *mut bp_graph, bytes_out: *mut usize, pooled_out: *mut usize) -> bp_status {
    boundary(|| {
        let used = Out::optional(bytes_out, "bytes_out")?;
        let pooled = Out::optional(pooled_out, "pooled_out")?;
        let (u, p) = with_graph(graph, |g| Ok((g.memory_used(), g.memory_pooled())))?;
        if let Some(o) = used {
            o.write(u);
        }
        if let Some(o) = pooled {
            o.write(p);
        }
        Ok(())
    })
}

/// Writes the number of live tensors to `*count_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_tensor_count(graph: *mut bp_graph, count_out: *mut usize) -> bp_status {
    boundary(|| {
        let out = Out::new(count_out, "count_out")?;
        out.write(with_graph(graph, |g| Ok(g.tensor_count()))?);
        Ok(())
    })
}

/// Writes the number of recorded ops (autograd nodes) to `*count_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_node_count(graph: *mut bp_graph, count_out: *mut usize) -> bp_status {
    boundary(|| {
        let out = Out::new(count_out, "count_out")?;
        out.write(with_graph(graph, |g| Ok(g.node_count()))?);
        Ok(())
    })
}

/// Reseeds the graph's random generator, as `torch.manual_seed(seed)`: `bp_tensor_rand`,
/// `bp_tensor_randn`, `bp_tensor_randint` and `bp_dropout` then draw exactly what PyTorch's CPU
/// generator draws.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_manual_seed(graph: *mut bp_graph, seed: u64) -> bp_status {
    boundary(|| with_graph(graph, |g| {
        g.manual_seed(seed);
        Ok(())
    }))
}

/// The number of `uint32_t` words in a saved random-generator state.
pub const BP_GENERATOR_STATE_WORDS: usize = 630;

/// Copies the whole state of the graph's random generator (seed, position, cached normal sample and
/// the 624 Mersenne Twister words) into `words_out[0..len]`; `len` must be `BP_GENERATOR_STATE_WORDS`.
/// Restoring it with `bp_graph_set_generator_state` makes the generator continue exactly from here
/// (for checkpoints that resume bit for bit).
///
/// Ownership: the caller owns `words_out`; the library keeps no pointer to it.
#[no_mangle]
pub extern "C" fn bp_graph_get_generator_state(graph: *mut bp_graph, words_out: *mut u32, len: usize) -> bp_status {
    boundary(|| {
        if len != BP_GENERATOR_STATE_WORDS {
            return Err(error(ErrorKind::InvalidArgument, format!("the state has {} words, not {}", BP_GENERATOR_STATE_WORDS, len)));
        }
        let dst = slice_out(words_out, len, "words_out")?;
        let words = with_graph(graph, |g| Ok(g.generator().to_words()))?;
        if words.len() != len {
            return Err(error(ErrorKind::Internal, "the generator state changed size"));
        }
        dst.copy_from_slice(&words);
        Ok(())
    })
}

/// Replaces the graph's random generator with a state saved by `bp_graph_get_generator_state`
/// (`len` must be `BP_GENERATOR_STATE_WORDS`). Malformed words fail with `BP_ERR_FORMAT` and leave the
/// generator unchanged.
///
/// Ownership: `words` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_graph_set_generator_state(graph: *mut bp_graph, words: *const u32, len: usize) -> bp_status {
    boundary(|| {
        let src = slice_in(words, len, "words")?;
        let gen = crate::rng::Generator::from_words(src)
            .ok_or_else(|| error(ErrorKind::Format, format!("not a generator state ({} words; {} expected)", len, BP_GENERATOR_STATE_WORDS)))?;
        with_graph(graph, |g| {
            g.set_generator(gen);
            Ok(())
        })
    })
}

/// Turns gradient recording on or off (off is PyTorch's `torch.no_grad()`): with it off, ops record
/// nothing and their results do not require grad. Writes the previous setting to `*previous_out` when
/// it is not NULL, so that a caller can restore it.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_set_grad_enabled(graph: *mut bp_graph, enabled: bool, previous_out: *mut bool) -> bp_status {
    boundary(|| {
        let out = Out::optional(previous_out, "previous_out")?;
        let prev = with_graph(graph, |g| Ok(g.set_grad_enabled(enabled)))?;
        if let Some(o) = out {
            o.write(prev);
        }
        Ok(())
    })
}

/// Writes whether ops record (gradient mode is on) to `*enabled_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_is_grad_enabled(graph: *mut bp_graph, enabled_out: *mut bool) -> bp_status {
    boundary(|| {
        let out = Out::new(enabled_out, "enabled_out")?;
        out.write(with_graph(graph, |g| Ok(g.is_grad_enabled()))?);
        Ok(())
    })
}

/// Turns anomaly detection on or off: with it on, an op whose forward or backward produces a NaN or an
/// infinity fails with `BP_ERR_ANOMALY`, naming the op.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_graph_set_anomaly_detection(graph: *mut bp_graph, enabled: bool) -> bp_status {
    boundary(|| with_graph(graph, |g| {
        g.set_anomaly_detection(enabled);
        Ok(())
    }))
}

/// Writes the Graphviz DOT source of everything `root` was computed from into `buf`, NUL-terminated.
/// Two-call protocol: the size needed, terminating NUL included, is always written to `*size_out` on
/// success; when `buf` is NULL (and `capacity` 0) nothing else is written, so call once to learn the
/// size and again with a buffer at least that large. A non-NULL `buf` smaller than needed fails with
/// `BP_ERR_INVALID_ARGUMENT` and writes nothing.
///
/// Ownership: the caller owns `buf` before and after; the library keeps no pointer to it.
#[no_mangle]
pub extern "C" fn bp_graph_to_dot(graph: *mut bp_graph, root: Tensor, buf: *mut c_char, capacity: usize, size_out: *mut usize) -> bp_status {
    boundary(|| {
        let size = Out::new(size_out, "size_out")?;
        if buf.is_null() && capacity != 0 {
            return Err(error(ErrorKind::InvalidArgument, "buf is NULL but capacity is not 0"));
        }
        let dot = with_graph(graph, |g| g.to_dot(root))?;
        let needed = dot.len() + 1;
        if !buf.is_null() {
            if capacity < needed {
                return Err(error(ErrorKind::InvalidArgument, format!("the buffer holds {} bytes; the DOT source needs {}", capacity, needed)));
            }
            let dst = slice_out(buf as *mut u8, needed, "buf")?;
            dst[..dot.len()].copy_from_slice(dot.as_bytes());
            dst[dot.len()] = 0;
        }
        size.write(needed);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{BP_ERR_INTERNAL, BP_ERR_INVALID_ARGUMENT, BP_ERR_INVALID_HANDLE, BP_OK};

    fn new_graph() -> *mut bp_graph {
        let mut g = std::ptr::null_mut();
        assert_eq!(bp_graph_new(&mut g), BP_OK);
        g
    }

    #[test]
    fn generator_state_size_matches_the_engine() {
        assert_eq!(crate::rng::Generator::new(5).to_words().len(), BP_GENERATOR_STATE_WORDS);
    }

    #[test]
    fn a_graph_in_use_is_refused_instead_of_raced() {
        let g = new_graph();
        // While one call holds the graph, any other call on it (here: from inside the first) is refused.
        let inner = with_graph(g, |_| Ok(bp_graph_reset(g))).unwrap();
        assert_eq!(inner, BP_ERR_INVALID_ARGUMENT);
        assert_eq!(bp_graph_free(g), BP_OK);
    }

    #[test]
    fn a_panic_inside_a_graph_call_poisons_that_graph_only() {
        let (g, h) = (new_graph(), new_graph());
        let status = boundary(|| with_graph(g, |_| -> Result<()> { panic!("a bug") }));
        assert_eq!(status, BP_ERR_INTERNAL);
        assert_eq!(bp_graph_reset(g), BP_ERR_INTERNAL);
        assert_eq!(bp_graph_reset(h), BP_OK);
        assert_eq!(bp_graph_free(g), BP_OK, "a poisoned graph can still be freed");
        assert_eq!(bp_graph_free(h), BP_OK);
    }

    /// Regression (c_abi_calls fuzz target, AddressSanitizer): checking a forged pointer read the magic
    /// number ~2.8 KB past it. Now only its first 8 bytes are read: a forged pointer to the last 8
    /// readable bytes before an inaccessible page is rejected instead of faulting.
    #[test]
    fn a_forged_graph_pointer_is_checked_by_reading_its_first_8_bytes_only() {
        const PAGE: usize = 4096;
        // SAFETY: an anonymous private mapping of two pages, checked for failure; the second page is
        // made inaccessible, the first is readable and writable and holds no shell.
        let base = unsafe {
            let p = libc::mmap(std::ptr::null_mut(), 2 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert_ne!(p, libc::MAP_FAILED);
            assert_eq!(libc::mprotect((p as *mut u8).add(PAGE) as *mut libc::c_void, PAGE, libc::PROT_NONE), 0);
            p as *mut u8
        };
        let forged = base.wrapping_add(PAGE - 8) as *mut bp_graph;
        assert_eq!(bp_graph_reset(forged), BP_ERR_INVALID_HANDLE);
        assert_eq!(bp_graph_free(forged), BP_ERR_INVALID_HANDLE);
        // SAFETY: unmapping the mapping made above; nothing refers to it any more.
        unsafe { assert_eq!(libc::munmap(base as *mut libc::c_void, 2 * PAGE), 0) };
    }

    #[test]
    fn freed_graphs_are_detected_and_their_shells_reused_only_later() {
        let g = new_graph();
        assert_eq!(bp_graph_free(g), BP_OK);
        assert_eq!(bp_graph_reset(g), BP_ERR_INVALID_HANDLE);
        assert_eq!(bp_graph_free(g), BP_ERR_INVALID_HANDLE);
        // The next graph never lands in the shell just freed (other tests may free graphs concurrently,
        // so only the immediate reuse is checked).
        let h = new_graph();
        assert_ne!(h, g);
        assert_eq!(bp_graph_free(h), BP_OK);
    }
}
