//! The C ABI of data-parallel training: a collective hook (two callbacks with user data) plugged into
//! [`DataParallel`], the flat parameter and gradient buffers as pointers, and the sharded sampler.
//! The core library calls the callbacks and knows nothing of the transport (MPI, NCCL, Gloo, sockets):
//! `examples/mpi/bp_mpi.c` is a ready MPI implementation.

use super::boundary::{boundary, error, slice_in, slice_out, Out};
use super::graph::with_graph;
use super::bp_status;
use crate::data::DataLoader;
use crate::distributed::{Collective, CommStats, DataParallel};
use crate::error::{ErrorKind, Result};
use crate::graph::Tensor;
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
/// make the same calls in the same order. With `world_size` 1 both callbacks may be NULL.
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

const DP_MAGIC: u64 = 0x6270_6470_6172_616c; // "bpdparal"

/// Data-parallel training state of one model on one rank (opaque): the flat parameter group and the
/// host's collective. Made by `bp_data_parallel_new`, released by `bp_data_parallel_free`.
pub struct bp_data_parallel {
    magic: u64,
    dp: DataParallel,
}

fn with_dp<R>(dp: *mut bp_data_parallel, f: impl FnOnce(&mut DataParallel) -> Result<R>) -> Result<R> {
    if dp.is_null() || (dp as usize) % std::mem::align_of::<bp_data_parallel>() != 0 {
        return Err(error(ErrorKind::InvalidArgument, "the bp_data_parallel pointer is NULL or misaligned"));
    }
    // SAFETY: non-null and aligned; the C contract is that it came from bp_data_parallel_new, was not
    // freed, and is used by one thread at a time (as its graph is).
    let d = unsafe { &mut *dp };
    if d.magic != DP_MAGIC {
        return Err(error(ErrorKind::InvalidHandle, "the pointer is not a live bp_data_parallel"));
    }
    f(&mut d.dp)
}

/// Starts data-parallel training of the model whose parameters are `params[0..n_params]` (persistent
/// float32 leaves that require grad, the same on every rank in the same order): flattens them into one
/// contiguous buffer, gives each a `.grad` that is a view of a second one (from then on zero_grad
/// zeroes it in place), and broadcasts the values from rank 0 through `collective->broadcast` (the
/// startup synchronisation: every rank must call this). `*collective` is copied.
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
        if collective.is_null() {
            return Err(error(ErrorKind::InvalidArgument, "collective is NULL"));
        }
        // SAFETY: non-null; the C contract is that it points to an initialised bp_collective for the call.
        let c = unsafe { *collective };
        if c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size {
            return Err(error(ErrorKind::InvalidArgument, format!("rank {} of a world of {} does not exist", c.rank, c.world_size)));
        }
        if c.world_size > 1 && (c.all_reduce.is_none() || c.broadcast.is_none()) {
            return Err(error(ErrorKind::InvalidArgument, "a world of more than one rank needs both callbacks"));
        }
        let dp = with_graph(graph, |g| DataParallel::new(g, params, Box::new(HostCollective { c })))?;
        out.write(Box::into_raw(Box::new(bp_data_parallel { magic: DP_MAGIC, dp })));
        Ok(())
    })
}

/// Releases a data-parallel state; `NULL` does nothing. The parameters stay flat (and keep working).
///
/// Ownership: afterwards the pointer must not be used again.
#[no_mangle]
pub extern "C" fn bp_data_parallel_free(dp: *mut bp_data_parallel) -> bp_status {
    if dp.is_null() {
        return super::BP_OK;
    }
    boundary(|| {
        with_dp(dp, |_| Ok(()))?;
        // SAFETY: checked live above; it was made by Box::into_raw in bp_data_parallel_new. The magic
        // is cleared first so that a use after free is more likely to be caught than to go unnoticed.
        unsafe {
            (*dp).magic = 0;
            drop(Box::from_raw(dp));
        }
        Ok(())
    })
}

/// Backward from the scalar `loss` (gradients accumulate into the flat gradient buffer), then one
/// all-reduce of that buffer and a division by the world size: every rank holds the mean gradient.
/// A failed callback returns `BP_ERR_COLLECTIVE` (the gradients are then garbage).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_data_parallel_backward(graph: *mut super::bp_graph, dp: *mut bp_data_parallel, loss: Tensor) -> bp_status {
    boundary(|| with_dp(dp, |d| with_graph(graph, |g| d.backward(g, loss))))
}

/// The all-reduce and averaging of `bp_data_parallel_backward` alone, for a host that ran backward
/// itself (e.g. several backwards to accumulate gradients before one reduction).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_data_parallel_average_gradients(graph: *mut super::bp_graph, dp: *mut bp_data_parallel) -> bp_status {
    boundary(|| with_dp(dp, |d| with_graph(graph, |g| d.average_gradients(g))))
}

/// Broadcasts the parameters from rank 0 again (e.g. after rank 0 alone loaded a checkpoint).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_data_parallel_sync_parameters(graph: *mut super::bp_graph, dp: *mut bp_data_parallel) -> bp_status {
    boundary(|| with_dp(dp, |d| with_graph(graph, |g| d.sync_parameters(g))))
}

/// The flat parameter buffer: `*data_out` points to `*len_out` floats, every parameter's values one
/// after the other in the order given to `bp_data_parallel_new`. The host may read and write it (an
/// optimizer step, loading a checkpoint); this call counts as an in-place write to every parameter
/// (their versions move), so call it again after each forward rather than keeping it across one.
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
    boundary(|| {
        let (data_out, len_out) = (Out::new(data_out, "data_out")?, Out::new(len_out, "len_out")?);
        let (p, n) = with_dp(dp, |d| with_graph(graph, |g| g.flat_params_mut::<f32>(d.flat()).map(|s| (s.as_mut_ptr(), s.len()))))?;
        data_out.write(p);
        len_out.write(n);
        Ok(())
    })
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
    boundary(|| {
        let (data_out, len_out) = (Out::new(data_out, "data_out")?, Out::new(len_out, "len_out")?);
        let (p, n) = with_dp(dp, |d| with_graph(graph, |g| g.flat_grads_mut::<f32>(d.flat()).map(|s| (s.as_mut_ptr(), s.len()))))?;
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
        let s: CommStats = with_dp(dp, |d| Ok(d.stats()))?;
        out.write(bp_comm_stats {
            all_reduces: s.all_reduces,
            all_reduce_seconds: s.all_reduce_seconds,
            all_reduce_bytes: s.all_reduce_bytes,
            broadcast_seconds: s.broadcast_seconds,
        });
        Ok(())
    })
}

/// A seeded, sharded mini-batch sampler over row indices (opaque): the toolkit's data loader without
/// the data. Every epoch is a PyTorch `randperm` of the rows (with shuffling), the same on every rank;
/// rank r takes positions r, r + N, r + 2N, … of it, padded with its beginning to a multiple of N
/// (PyTorch's DistributedSampler): every rank gets ⌈rows / N⌉ rows per epoch, no row is dropped, and
/// the union of the ranks' k-th batches is the k-th batch of N·B rows of one process.
pub struct bp_sampler {
    magic: u64,
    loader: DataLoader,
}

const SAMPLER_MAGIC: u64 = 0x6270_7361_6d70_6c72; // "bpsamplr"

fn with_sampler<R>(s: *mut bp_sampler, f: impl FnOnce(&mut DataLoader) -> Result<R>) -> Result<R> {
    if s.is_null() || (s as usize) % std::mem::align_of::<bp_sampler>() != 0 {
        return Err(error(ErrorKind::InvalidArgument, "the bp_sampler pointer is NULL or misaligned"));
    }
    // SAFETY: non-null and aligned; the C contract is that it came from bp_sampler_new and was not freed.
    let s = unsafe { &mut *s };
    if s.magic != SAMPLER_MAGIC {
        return Err(error(ErrorKind::InvalidHandle, "the pointer is not a live bp_sampler"));
    }
    f(&mut s.loader)
}

/// A sampler over `n_rows` rows in batches of `batch_size`, reshuffled every epoch with `seed` when
/// `shuffle` is non-zero, sharded for `rank` of `world_size` (0 and 1 for no sharding). The last
/// partial batch of an epoch is kept unless `drop_last` is non-zero.
///
/// Ownership: on success the caller owns `*sampler_out` and releases it with `bp_sampler_free`.
#[no_mangle]
pub extern "C" fn bp_sampler_new(
    n_rows: usize,
    batch_size: usize,
    shuffle: i32,
    seed: u64,
    drop_last: i32,
    rank: i32,
    world_size: i32,
    sampler_out: *mut *mut bp_sampler,
) -> bp_status {
    boundary(|| {
        let out = Out::new(sampler_out, "sampler_out")?;
        if rank < 0 || world_size < 1 {
            return Err(error(ErrorKind::InvalidArgument, format!("rank {} of a world of {} does not exist", rank, world_size)));
        }
        let mut loader = DataLoader::new(n_rows, batch_size, shuffle != 0, seed)?;
        loader.set_drop_last(drop_last != 0);
        loader.shard(rank as usize, world_size as usize)?;
        out.write(Box::into_raw(Box::new(bp_sampler { magic: SAMPLER_MAGIC, loader })));
        Ok(())
    })
}

/// Releases a sampler; `NULL` does nothing.
///
/// Ownership: afterwards the pointer must not be used again.
#[no_mangle]
pub extern "C" fn bp_sampler_free(sampler: *mut bp_sampler) -> bp_status {
    if sampler.is_null() {
        return super::BP_OK;
    }
    boundary(|| {
        with_sampler(sampler, |_| Ok(()))?;
        // SAFETY: checked live above; made by Box::into_raw in bp_sampler_new.
        unsafe {
            (*sampler).magic = 0;
            drop(Box::from_raw(sampler));
        }
        Ok(())
    })
}

/// Starts the next epoch (draws its permutation when shuffling). Call it before the first batch.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_sampler_start_epoch(sampler: *mut bp_sampler) -> bp_status {
    boundary(|| with_sampler(sampler, |l| {
        l.start_epoch();
        Ok(())
    }))
}

/// Writes the row indices of this rank's next batch into `rows_out[0..capacity]` and their number into
/// `*count_out`: 0 at the end of the epoch. `capacity` must be at least the batch size.
///
/// Ownership: the caller owns `rows_out` and `*count_out`.
#[no_mangle]
pub extern "C" fn bp_sampler_next(sampler: *mut bp_sampler, rows_out: *mut i64, capacity: usize, count_out: *mut usize) -> bp_status {
    boundary(|| {
        let count = Out::new(count_out, "count_out")?;
        let rows = slice_out(rows_out, capacity, "rows_out")?;
        let n = with_sampler(sampler, |l| {
            if capacity < l.batch_size() {
                return Err(error(ErrorKind::InvalidArgument, format!("capacity {} is less than the batch size {}", capacity, l.batch_size())));
            }
            Ok(match l.next_indices() {
                Some(idx) => {
                    for (o, &i) in rows.iter_mut().zip(idx) {
                        *o = i as i64;
                    }
                    idx.len()
                }
                None => 0,
            })
        })?;
        count.write(n);
        Ok(())
    })
}

/// Writes the number of batches this rank gets per epoch.
///
/// Ownership: the caller owns `*count_out`.
#[no_mangle]
pub extern "C" fn bp_sampler_batches_per_epoch(sampler: *mut bp_sampler, count_out: *mut usize) -> bp_status {
    boundary(|| {
        let out = Out::new(count_out, "count_out")?;
        out.write(with_sampler(sampler, |l| Ok(l.batches_per_epoch()))?);
        Ok(())
    })
}
