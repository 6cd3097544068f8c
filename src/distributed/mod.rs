//! Data-parallel training across processes (or threads, or machines) with any collective transport.
//!
//! The runtime knows nothing of MPI, NCCL or Gloo: it needs two collectives, given by the host through
//! the [`Collective`] trait (or, from C, two callbacks: `bp_collective` in `src/ffi/distributed.rs`):
//!
//! - **broadcast** from rank 0, in place: at startup, every rank gets rank 0's initial parameters;
//! - **all-reduce (sum)**, in place: after each backward, every rank gets the sum of the gradients.
//!
//! [`DataParallel`] flattens the model's parameters ([`Graph::flatten_parameters`]) so that each
//! collective is *one* call over one contiguous buffer with no per-step copy, broadcasts them at
//! startup, and after every backward all-reduces the flat gradient buffer and divides it by the world
//! size. Each rank's loss is a mean over its own batch of B rows, so the averaged gradient is the
//! gradient of the mean over the N·B rows of all ranks: N ranks with batch B take the same steps as one
//! process with batch N·B (the batches must be the same size on every rank, which the sharded
//! [`DataLoader`](crate::data::DataLoader) guarantees).
//!
//! A collective that fails (a peer died, a timeout expired) returns an error of kind
//! [`ErrorKind::Collective`](crate::ErrorKind::Collective); the step fails with it and the gradients
//! must be considered garbage. [`InProcessGroup`] is a ready collective between threads of one process
//! (for tests, and for data parallelism on one machine without MPI); the MPI one lives outside the core
//! library, in `examples/mpi/` (the core keeps no MPI dependency).

mod in_process;

pub use in_process::InProcessGroup;

use crate::error::{bail, Result};
use crate::flat::FlatParams;
use crate::graph::{Graph, Tensor};
use std::time::{Duration, Instant};

/// The collectives data-parallel training needs. Every rank calls each method in the same order with
/// buffers of the same length; an implementation must fail (rather than block forever) when a peer
/// does not take part, with an error of kind [`ErrorKind::Collective`](crate::ErrorKind::Collective).
/// `Send`, so that a training state can move between threads (the C ABI's objects may).
pub trait Collective: Send {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// Replaces `buf` on every rank with the elementwise sum of every rank's `buf`.
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<()>;
    /// Replaces `buf` on every rank with rank 0's `buf`.
    fn broadcast(&mut self, buf: &mut [f32]) -> Result<()>;
}

/// What a [`DataParallel`] has spent in collectives so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// All-reduce calls made.
    pub all_reduces: u64,
    /// Seconds spent in all-reduce calls (wall clock, including waiting for slower ranks).
    pub all_reduce_seconds: f64,
    /// Bytes of gradient handed to all-reduce calls (what one rank contributes; the traffic of a ring
    /// all-reduce is about twice this per rank).
    pub all_reduce_bytes: u64,
    /// Seconds spent in broadcasts.
    pub broadcast_seconds: f64,
}

/// Data-parallel training of one model over a [`Collective`]: owns the model's flat parameter group and
/// the collective. Build it on every rank with the same parameters in the same order.
pub struct DataParallel {
    flat: FlatParams,
    collective: Box<dyn Collective>,
    stats: CommStats,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataParallel {{ rank: {}, world_size: {}, elements: {} }}", self.rank(), self.world_size(), self.flat.len())
    }
}

impl DataParallel {
    /// Flattens `params` (persistent float32 leaves that require grad, see
    /// [`Graph::flatten_parameters`]) and broadcasts their values from rank 0, so every rank starts from
    /// the same model whatever its own initialisation drew. This is the startup synchronisation: every
    /// rank must call it.
    pub fn new(g: &mut Graph, params: &[Tensor], collective: Box<dyn Collective>) -> Result<DataParallel> {
        if collective.world_size() == 0 || collective.rank() >= collective.world_size() {
            bail!(InvalidArgument, "rank {} of a world of {} does not exist", collective.rank(), collective.world_size());
        }
        let flat = g.flatten_parameters(params)?;
        if flat.dtype() != crate::DType::F32 {
            bail!(DType, "data-parallel training reduces float32 parameters");
        }
        let mut dp = DataParallel { flat, collective, stats: CommStats::default() };
        dp.sync_parameters(g)?;
        Ok(dp)
    }

    /// Broadcasts the parameters from rank 0 (done by [`DataParallel::new`]; call it again after rank 0
    /// alone changed them, e.g. loaded a checkpoint).
    pub fn sync_parameters(&mut self, g: &mut Graph) -> Result<()> {
        let t = Instant::now();
        let r = self.collective.broadcast(g.flat_params_mut::<f32>(&self.flat)?);
        self.stats.broadcast_seconds += t.elapsed().as_secs_f64();
        r
    }

    /// Backward from `loss` (accumulating into the flat gradients), then [`DataParallel::average_gradients`].
    pub fn backward(&mut self, g: &mut Graph, loss: Tensor) -> Result<()> {
        g.backward(loss, None, false)?;
        self.average_gradients(g)
    }

    /// All-reduces the flat gradient buffer (one call for the whole model) and divides it by the world
    /// size: every rank ends with the mean of the ranks' gradients. The collective sums; the runtime
    /// averages (a collective that averaged itself would be applied twice).
    pub fn average_gradients(&mut self, g: &mut Graph) -> Result<()> {
        let world = self.collective.world_size();
        let grads = g.flat_grads_mut::<f32>(&self.flat)?;
        let t = Instant::now();
        let r = self.collective.all_reduce_sum(grads);
        self.stats.all_reduce_seconds += t.elapsed().as_secs_f64();
        self.stats.all_reduces += 1;
        self.stats.all_reduce_bytes += (grads.len() * 4) as u64;
        r?;
        if world > 1 {
            let scale = 1.0 / world as f32;
            grads.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(())
    }

    /// The flat parameter group (its parameters and gradient tensors, its buffers through the graph).
    pub fn flat(&self) -> &FlatParams {
        &self.flat
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.collective.world_size()
    }

    /// Time and bytes spent in collectives so far.
    pub fn stats(&self) -> CommStats {
        self.stats
    }
}

/// The deadline helper shared by collectives that poll: how long is left, or a clear error.
pub(crate) fn remaining(start: Instant, timeout: Duration, what: &str) -> Result<Duration> {
    match timeout.checked_sub(start.elapsed()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => bail!(
            Collective,
            "{} timed out after {:.1} s: a peer rank did not take part (did it die or fall out of step?)",
            what,
            timeout.as_secs_f64()
        ),
    }
}
