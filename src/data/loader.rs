//! A seeded mini-batch iterator that reshuffles every epoch with PyTorch's `randperm`.

use super::Dataset;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};
use crate::rng::Generator;

/// Hands out mini-batches of a data set's rows. With shuffling, each epoch's order is
/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` — the same draws as PyTorch's,
/// epoch after epoch — so a training run can be reproduced on both sides. The generator, the current
/// order and the position in it are its whole state (saved in checkpoints).
#[derive(Clone, Debug)]
pub struct DataLoader {
    n: usize,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    generator: Generator,
    order: Vec<usize>,
    cursor: usize,
    epoch: u64,
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
            xs: Vec::new(),
            ys: Vec::new(),
        })
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
        if self.drop_last { self.n / self.batch_size } else { self.n.div_ceil(self.batch_size) }
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
        let left = self.n.saturating_sub(self.cursor);
        if left == 0 || (self.drop_last && left < self.batch_size) {
            return None;
        }
        let take = left.min(self.batch_size);
        let at = self.cursor;
        self.cursor += take;
        Some(&self.order[at..at + take])
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
