//! The C ABI of data-parallel training: a collective hook (two callbacks with user data) plugged into
//! [`DataParallel`], the flat parameter and gradient buffers as pointers, and sharding of a `bp_loader`.
//! The core library calls the callbacks and knows nothing of the transport (MPI, NCCL, Gloo, sockets):
//! `examples/mpi/bp_mpi.c` is a ready MPI implementation.

use super::boundary::{boundary, error, slice_in, Out};
use super::data::bp_loader;
use super::graph::with_graph;
use super::object::{free_object, impl_object, new_object, with_object, Shell};
use super::bp_status;
use crate::distributed::{Collective, CommStats, DataParallel};
use crate::error::{ErrorKind, Result};
use crate::flat::FlatParams;
use crate::graph::{Graph, Tensor};
use std::ffi::c_void;

/// A collective callback: all-reduce (replace `buf[0..len]` on every rank with the elementwise sum over
/// the ranks) or broadcast (replace it with rank 0's), in place. Returns 0 on success; any other value
/// is a failure (a dead peer, a timeout), which makes the calling bp_ function fail with
/// `BP_ERR_COLLECTIVE`. It must not block forever: give up after a timeout and return an error.
///
/// Ownership: `buf` is lent to the callback for the call only; it must not keep the pointer.
pub type bp_collective_fn = Option<unsafe extern "C" fn(user: *mut c_void, buf: *mut f32, len: usize) -> i32>;

/// The collective transport of data-parallel training, given by the host. The runtime calls
/// `broadcast` once at startup (and at each `bp_data_parallel_sync_parameters`) and `all_reduce` once
/// per step, on the whole flat buffer, then divides the summed gradients by `world_size` itself (so
/// the callback must sum, not average). `user` is passed back to every call untouched. Every rank must
/// make the same calls in the same order. With `world_size` 1 both callbacks may be NULL. The callbacks
/// run on the thread that calls the bp_data_parallel function (which may differ from call to call).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct bp_collective {
    /// Passed to every callback; the library never reads it.
    pub user: *mut c_void,
    /// This process's rank, 0 ≤ rank < world_size.
    pub rank: i32,
    /// The number of ranks, at least 1.
    pub world_size: i32,
    /// Sums `buf` over the ranks, in place.
    pub all_reduce: bp_collective_fn,
    /// Copies rank 0's `buf` to every rank, in place.
    pub broadcast: bp_collective_fn,
}

/// A host's callbacks as a [`Collective`].
struct HostCollective {
    c: bp_collective,
}

// SAFETY: a bp_data_parallel may be used from any thread (one at a time, enforced by its shell's busy
// flag); the header tells the host that its callbacks and `user` are called on whichever thread makes
// the call, which is the host's contract to honour.
unsafe impl Send for HostCollective {}

impl HostCollective {
    fn call(&self, f: bp_collective_fn, what: &str, buf: &mut [f32]) -> Result<()> {
        let Some(f) = f else {
            return if self.c.world_size == 1 {
                Ok(())
            } else {
                Err(error(ErrorKind::InvalidArgument, format!("the {} callback is NULL", what)))
            };
        };
        // SAFETY: the host gave this function pointer for exactly this call signature (the header's
        // contract); `buf` is a valid, exclusively borrowed buffer of `buf.len()` floats for the call.
        let code = unsafe { f(self.c.user, buf.as_mut_ptr(), buf.len()) };
        if code != 0 {
            return Err(error(
                ErrorKind::Collective,
                format!("the {} callback failed with code {} on rank {} of {}", what, code, self.c.rank, self.c.world_size),
            ));
        }
        Ok(())
    }
}

impl Collective for HostCollective {
    fn rank(&self) -> usize {
        self.c.rank as usize
    }
    fn world_size(&self) -> usize {
        self.c.world_size as usize
    }
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<()> {
        self.call(self.c.all_reduce, "all-reduce", buf)
    }
    fn broadcast(&mut self, buf: &mut [f32]) -> Result<()> {
        self.call(self.c.broadcast, "broadcast", buf)
    }
}

/// Data-parallel training state of one model on one rank (opaque): the flat parameter group and the
/// host's collective. Made by `bp_data_parallel_new`, released by `bp_data_parallel_free`; a use after
/// free is detected as for every toolkit object.
pub struct bp_data_parallel(Shell<DataParallel>);
impl_object!(bp_data_parallel, DataParallel, 0x6270_5f64_7061_7261);

/// Starts data-parallel training of the model whose parameters are `params[0..n_params]` (persistent
/// float32 leaves that require grad, the same on every rank in the same order): flattens them into one
/// contiguous buffer, gives each a `.grad` that is a view of a second one (from then on zero_grad
/// zeroes it in place), and broadcasts the values from rank 0 through `collective->broadcast` (the
/// startup synchronisation: every rank must call this). `*collective` is copied.
///
/// When the broadcast fails (`BP_ERR_COLLECTIVE`) the parameters are already flat; the job should stop.
///
/// Ownership: on success the caller owns `*dp_out` and releases it with `bp_data_parallel_free`;
/// `collective->user` must stay valid until then. The graph must outlive it.
#[no_mangle]
pub extern "C" fn bp_data_parallel_new(
    graph: *mut super::bp_graph,
    params: *const Tensor,
    n_params: usize,
    collective: *const bp_collective,
    dp_out: *mut *mut bp_data_parallel,
) -> bp_status {
    boundary(|| {
        let out = Out::new(dp_out, "dp_out")?;
        let params = slice_in(params, n_params, "params")?;
        // A one-element input buffer: checked for NULL and alignment like every other.
        let c = match slice_in(collective, 1, "collective")? {
            [c] => *c,
            _ => return Err(error(ErrorKind::InvalidArgument, "collective is NULL")),
        };
        if c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size {
            return Err(error(ErrorKind::InvalidArgument, format!("rank {} of a world of {} does not exist", c.rank, c.world_size)));
        }
        if c.world_size > 1 && (c.all_reduce.is_none() || c.broadcast.is_none()) {
            return Err(error(ErrorKind::InvalidArgument, "a world of more than one rank needs both callbacks"));
        }
        let dp = with_graph(graph, |g| DataParallel::new(g, params, Box::new(HostCollective { c })))?;
        out.write(new_object::<bp_data_parallel>(dp));
        Ok(())
    })
}

/// Releases a data-parallel state; NULL does nothing; freeing twice returns `BP_ERR_INVALID_HANDLE`.
/// The parameters stay flat (and keep working).
///
/// Ownership: afterwards the pointer must not be used (a use is detected).
#[no_mangle]
pub extern "C" fn bp_data_parallel_free(dp: *mut bp_data_parallel) -> bp_status {
    boundary(|| free_object(dp))
}

/// Backward from the scalar `loss` (gradients accumulate into the flat gradient buffer), then one
/// all-reduce of that buffer and a division by the world size: every rank holds the mean gradient.
/// A failed callback returns `BP_ERR_COLLECTIVE` (the gradients are then garbage).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_data_parallel_backward(graph: *mut super::bp_graph, dp: *mut bp_data_parallel, loss: Tensor) -> bp_status {
    boundary(|| with_object(dp, |d: &mut DataParallel| with_graph(graph, |g| d.backward(g, loss))))
}

/// The all-reduce and averaging of `bp_data_parallel_backward` alone, for a host that ran backward
/// itself (e.g. several backwards to accumulate gradients before one reduction).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_data_parallel_average_gradients(graph: *mut super::bp_graph, dp: *mut bp_data_parallel) -> bp_status {
    boundary(|| with_object(dp, |d: &mut DataParallel| with_graph(graph, |g| d.average_gradients(g))))
}

/// Broadcasts the parameters from rank 0 again (e.g. after rank 0 alone loaded a checkpoint).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_data_parallel_sync_parameters(graph: *mut super::bp_graph, dp: *mut bp_data_parallel) -> bp_status {
    boundary(|| with_object(dp, |d: &mut DataParallel| with_graph(graph, |g| d.sync_parameters(g))))
}

/// The flat parameter buffer: `*data_out` points to `*len_out` floats, every parameter's values one
/// after the other in the order given to `bp_data_parallel_new`. The host may read and write it (an
/// optimizer step, loading a checkpoint); this call counts as an in-place write to every parameter
/// (their versions move): call it after backward, not between a forward and its backward (that
/// backward would fail with `BP_ERR_AUTOGRAD`, its saved parameters having been modified).
///
/// Ownership: the buffer belongs to the graph. The pointer stays valid until the next call that may
/// change the graph (any bp_ call taking it); the library never reallocates the buffer, but do not
/// rely on that beyond this contract.
#[no_mangle]
pub extern "C" fn bp_data_parallel_parameters(
    graph: *mut super::bp_graph,
    dp: *mut bp_data_parallel,
    data_out: *mut *mut f32,
    len_out: *mut usize,
) -> bp_status {
    flat_buffer_out(graph, dp, data_out, len_out, Graph::flat_params_mut::<f32>)
}

/// The flat gradient buffer, laid out as the parameters (see `bp_data_parallel_parameters`; the same
/// validity rule). After `bp_data_parallel_backward` it holds the mean gradient over the ranks.
///
/// Ownership: as `bp_data_parallel_parameters`.
#[no_mangle]
pub extern "C" fn bp_data_parallel_gradients(
    graph: *mut super::bp_graph,
    dp: *mut bp_data_parallel,
    data_out: *mut *mut f32,
    len_out: *mut usize,
) -> bp_status {
    flat_buffer_out(graph, dp, data_out, len_out, Graph::flat_grads_mut::<f32>)
}

/// Writes the pointer and length of one of a data-parallel model's flat buffers (`buffer` picks which).
fn flat_buffer_out(
    graph: *mut super::bp_graph,
    dp: *mut bp_data_parallel,
    data_out: *mut *mut f32,
    len_out: *mut usize,
    buffer: for<'a> fn(&'a mut Graph, &FlatParams) -> Result<&'a mut [f32]>,
) -> bp_status {
    boundary(|| {
        let (data_out, len_out) = (Out::new(data_out, "data_out")?, Out::new(len_out, "len_out")?);
        let (p, n) = with_object(dp, |d: &mut DataParallel| with_graph(graph, |g| buffer(g, d.flat()).map(|s| (s.as_mut_ptr(), s.len()))))?;
        data_out.write(p);
        len_out.write(n);
        Ok(())
    })
}

/// Time and bytes spent in collectives by one rank (`bp_data_parallel_stats`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct bp_comm_stats {
    /// All-reduce calls made.
    pub all_reduces: u64,
    /// Seconds spent inside the all-reduce callback (including waiting for slower ranks).
    pub all_reduce_seconds: f64,
    /// Bytes handed to the all-reduce callback in total.
    pub all_reduce_bytes: u64,
    /// Seconds spent inside the broadcast callback.
    pub broadcast_seconds: f64,
}

/// Writes the time and bytes this rank spent in collectives so far.
///
/// Ownership: the caller owns `*stats_out`.
#[no_mangle]
pub extern "C" fn bp_data_parallel_stats(dp: *mut bp_data_parallel, stats_out: *mut bp_comm_stats) -> bp_status {
    boundary(|| {
        let out = Out::new(stats_out, "stats_out")?;
        let s: CommStats = with_object(dp, |d: &mut DataParallel| Ok(d.stats()))?;
        out.write(bp_comm_stats {
            all_reduces: s.all_reduces,
            all_reduce_seconds: s.all_reduce_seconds,
            all_reduce_bytes: s.all_reduce_bytes,
            broadcast_seconds: s.broadcast_seconds,
        });
        Ok(())
    })
}

/// Makes the loader hand out only rank `rank`'s share of every epoch, out of `world_size` ranks, as
/// PyTorch's DistributedSampler: every rank draws the same seeded permutation of all rows (so every
/// rank must make its loader with the same rows, batch size, shuffling and seed) and takes positions
/// rank, rank + N, rank + 2N, … of it, padded with its own beginning to a multiple of N. Every rank gets
/// ⌈rows / N⌉ rows and the same number of batches per epoch, no row is dropped (when N does not divide
/// the rows, a few are seen twice in that epoch), and the union of the ranks' k-th batches of B rows is
/// the k-th batch of N·B rows of one process. A checkpoint of the loader is the same on every rank.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_loader_shard(loader: *mut bp_loader, rank: i32, world_size: i32) -> bp_status {
    boundary(|| {
        if rank < 0 || world_size < 1 {
            return Err(error(ErrorKind::InvalidArgument, format!("rank {} of a world of {} does not exist", rank, world_size)));
        }
        with_object(loader, |l| l.shard(rank as usize, world_size as usize))
    })
}

/// Writes the number of epochs the loader has started (restored by `bp_checkpoint_load`), so that a
/// resumed job knows where it stands.
///
/// Ownership: the caller owns `*epochs_out`.
#[no_mangle]
pub extern "C" fn bp_loader_epoch(loader: *mut bp_loader, epochs_out: *mut u64) -> bp_status {
    boundary(|| {
        let out = Out::new(epochs_out, "epochs_out")?;
        out.write(with_object(loader, |l| Ok(l.epoch()))?);
        Ok(())
    })
}
