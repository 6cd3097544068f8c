//! A seeded mini-batch iterator that reshuffles every epoch with PyTorch's `randperm`.

use super::Dataset;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::rng::Generator;

/// Hands out mini-batches of a data set's rows. With shuffling, each epoch's order is
/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` — the same draws as PyTorch's,
/// epoch after epoch — so a training run can be reproduced on both sides. The generator, the current
/// order and the position in it are its whole state (saved in checkpoints).
///
/// **Sharding** ([`DataLoader::shard`]) splits every epoch between the ranks of data-parallel training,
/// as PyTorch's `DistributedSampler`: every rank draws the same seeded permutation of all rows and takes
/// its strided slice of it (rank r gets positions r, r + N, r + 2N, …). When N does not divide the number
/// of rows, the permutation is padded with its own first rows up to a multiple of N, so every rank has
/// the same number of rows and batches per epoch and no row is dropped (a few are seen twice in that
/// epoch). Then, at each step, the union of the N ranks' batches of B rows is exactly the next N·B rows
/// of the (padded) permutation: what one process with batch N·B would take. The saved state (generator,
/// full permutation, position) is the same on every rank, so one rank's checkpoint resumes all of them.
#[derive(Clone, Debug)]
pub struct DataLoader {
    n: usize,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    generator: Generator,
    /// The epoch's permutation of all rows (the same on every rank when sharded).
    order: Vec<usize>,
    /// Position in this rank's share of `order` (in rows).
    cursor: usize,
    epoch: u64,
    rank: usize,
    world_size: usize,
    /// Scratch for a sharded batch's rows (a strided pick from `order`).
    picked: Vec<usize>,
    // Scratch for a batch's rows, reused so that batching allocates nothing in the steady state.
    xs: Vec<f32>,
    ys: Vec<i64>,
}

impl DataLoader {
    /// A loader over `n` rows. The last partial batch is kept unless `drop_last`.
    pub fn new(n: usize, batch_size: usize, shuffle: bool, seed: u64) -> Result<DataLoader> {
        if batch_size == 0 {
            bail!(InvalidArgument, "the batch size must be at least 1");
        }
        Ok(DataLoader {
            n,
            batch_size,
            shuffle,
            drop_last: false,
            generator: Generator::new(seed),
            order: (0..n).collect(),
            cursor: n, // no epoch started yet
            epoch: 0,
            rank: 0,
            world_size: 1,
            picked: Vec::new(),
            xs: Vec::new(),
            ys: Vec::new(),
        })
    }

    /// Makes this loader hand out only rank `rank`'s share of every epoch, out of `world_size` ranks
    /// (see the type's documentation for the rule). Every rank must use the same rows, batch size,
    /// shuffling and seed.
    pub fn shard(&mut self, rank: usize, world_size: usize) -> Result<()> {
        if world_size == 0 || rank >= world_size {
            bail!(InvalidArgument, "rank {} of a world of {} does not exist", rank, world_size);
        }
        self.rank = rank;
        self.world_size = world_size;
        self.cursor = self.cursor.min(self.rows_per_epoch());
        Ok(())
    }

    /// This loader's (rank, world size); (0, 1) when not sharded.
    pub fn shard_of(&self) -> (usize, usize) {
        (self.rank, self.world_size)
    }

    /// The rows this rank sees per epoch: all of them unless sharded, else ⌈rows / world size⌉.
    pub fn rows_per_epoch(&self) -> usize {
        self.n.div_ceil(self.world_size)
    }

    /// Drops the last batch of an epoch when it is smaller than the batch size.
    pub fn set_drop_last(&mut self, drop_last: bool) {
        self.drop_last = drop_last;
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let rows = self.rows_per_epoch();
        if self.drop_last { rows / self.batch_size } else { rows.div_ceil(self.batch_size) }
    }

    /// Epochs started so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts an epoch: draws a new order when shuffling, and rewinds.
    pub fn start_epoch(&mut self) {
        if self.shuffle {
            randperm(&mut self.generator, &mut self.order);
        }
        self.cursor = 0;
        self.epoch += 1;
    }

    /// The rows of the next batch of the current epoch, or `None` at its end.
    pub fn next_indices(&mut self) -> Option<&[usize]> {
        let left = self.rows_per_epoch().saturating_sub(self.cursor);
        if left == 0 || (self.drop_last && left < self.batch_size) {
            return None;
        }
        let take = left.min(self.batch_size);
        let at = self.cursor;
        self.cursor += take;
        if self.world_size == 1 {
            return Some(&self.order[at..at + take]);
        }
        // Position i of this rank's share is position i·N + rank of the permutation padded with its
        // own beginning: index (i·N + rank) mod rows.
        let (n, world, rank) = (self.n, self.world_size, self.rank);
        self.picked.clear();
        self.picked.extend((at..at + take).map(|i| self.order[(i * world + rank) % n]));
        Some(&self.picked)
    }

    /// The next batch of the current epoch as graph tensors (features `[B, dim]` float32, labels `[B]`
    /// int64, both step-scoped), or `None` at the end of the epoch.
    pub fn next_batch(&mut self, g: &mut Graph, data: &Dataset) -> Result<Option<(Tensor, Tensor)>> {
        if data.len() != self.n {
            bail!(InvalidArgument, "the loader was made for {} rows, the data set has {}", self.n, data.len());
        }
        let (mut xs, mut ys) = (std::mem::take(&mut self.xs), std::mem::take(&mut self.ys));
        xs.clear();
        ys.clear();
        let Some(rows) = self.next_indices() else {
            (self.xs, self.ys) = (xs, ys);
            return Ok(None);
        };
        for &r in rows {
            xs.extend_from_slice(data.row(r));
            ys.push(data.labels()[r]);
        }
        let b = ys.len();
        let r = (|| Ok(Some((g.from_slice(&xs, &[b, data.dim()])?, g.from_i64(&ys, &[b])?))))();
        (self.xs, self.ys) = (xs, ys);
        r
    }

    /// The loader's generator (its state goes into checkpoints).
    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// The current epoch's order and the position in it.
    pub fn position(&self) -> (&[usize], usize) {
        (&self.order, self.cursor)
    }

    /// Restores a saved state: generator, order, position and epoch count. The order must be a
    /// permutation of the rows.
    pub fn restore(&mut self, generator: Generator, order: &[usize], cursor: usize, epoch: u64) -> Result<()> {
        Self::check_restore(self.n, order, cursor)?;
        if cursor > self.rows_per_epoch() {
            bail!(Format, "the saved loader position {} is past this rank's {} rows per epoch", cursor, self.rows_per_epoch());
        }
        self.generator = generator;
        self.order.copy_from_slice(order);
        self.cursor = cursor;
        self.epoch = epoch;
        Ok(())
    }

    pub(crate) fn check_restore(n: usize, order: &[usize], cursor: usize) -> Result<()> {
        if order.len() != n || cursor > n {
            bail!(Format, "the saved loader state is for {} rows at position {}, this loader has {} rows", order.len(), cursor, n);
        }
        let mut seen = vec![false; n];
        for &i in order {
            if i >= n || std::mem::replace(&mut seen[i], true) {
                bail!(Format, "the saved loader order is not a permutation of {} rows", n);
            }
        }
        Ok(())
    }
}

/// Overwrites `out` with a random permutation of 0..n as ATen's CPU `randperm` draws it: a
/// Fisher–Yates pass from the front, each swap partner `i + random() % (n − i)`.
pub fn randperm(gen: &mut Generator, out: &mut [usize]) {
    let n = out.len();
    for (i, v) in out.iter_mut().enumerate() {
        *v = i;
    }
    for i in 0..n.saturating_sub(1) {
        let z = if n < (u32::MAX / 20) as usize {
            (gen.next_u32() as u64 % (n - i) as u64) as usize
        } else {
            (gen.next_u64() % (n - i) as u64) as usize
        };
        out.swap(i, i + z);
    }
}
