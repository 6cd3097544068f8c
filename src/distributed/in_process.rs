//! A [`Collective`] between threads of one process: each thread owns its graph and its member of the
//! group. Used by the tests to check data-parallel training without MPI, and usable for data
//! parallelism on one machine.

use super::{remaining, Collective};
use crate::error::{bail, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One member of an in-process group (one per thread). Made by [`InProcessGroup::new`].
#[derive(Debug)]
pub struct InProcessGroup {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    world: usize,
    timeout: Duration,
    state: Mutex<Round>,
    changed: Condvar,
}

/// One collective call at a time: ranks arrive (contributing), then leave (reading the result); the
/// next call starts when every rank has left, so a fast rank cannot overwrite a result still being read.
#[derive(Debug, Default)]
struct Round {
    arrived: usize,
    left: usize,
    /// Each rank's contribution, summed in rank order by the last to arrive, so that the rounding of
    /// the sum does not depend on which thread came first (runs are reproducible).
    parts: Vec<Vec<f32>>,
    acc: Vec<f32>,
    /// Set when a rank gave up (timeout, mismatched call): every later call fails at once.
    broken: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Broadcast,
}

impl InProcessGroup {
    /// A group of `world_size` members, one per rank, in rank order. A call that waits longer than
    /// `timeout` for the other ranks fails with [`ErrorKind::Collective`](crate::ErrorKind::Collective),
    /// and breaks the group: every later call on any member fails too.
    pub fn new(world_size: usize, timeout: Duration) -> Vec<InProcessGroup> {
        let shared = Arc::new(Shared { world: world_size, timeout, state: Mutex::new(Round::default()), changed: Condvar::new() });
        (0..world_size).map(|rank| InProcessGroup { rank, shared: shared.clone() }).collect()
    }

    fn wait_until<'a>(&'a self, mut st: MutexGuard<'a, Round>, start: Instant, what: &str, done: impl Fn(&Round) -> bool) -> Result<MutexGuard<'a, Round>> {
        loop {
            // Done first: a rank that has every contribution finishes even if a peer left just after.
            if done(&st) {
                return Ok(st);
            }
            if let Some(why) = &st.broken {
                bail!(Collective, "{} failed on rank {}: the group is broken ({})", what, self.rank, why);
            }
            let left = match remaining(start, self.shared.timeout, what) {
                Ok(left) => left,
                Err(e) => {
                    st.broken = Some(format!("rank {} timed out", self.rank));
                    self.shared.changed.notify_all();
                    return Err(e);
                }
            };
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn exchange(&self, buf: &mut [f32], kind: Kind, what: &str) -> Result<()> {
        let (world, start) = (self.shared.world, Instant::now());
        let st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        // Wait for the previous call to be fully read.
        let mut st = self.wait_until(st, start, what, |r| r.left == 0)?;
        if st.arrived == 0 {
            st.acc.clear();
            st.acc.resize(buf.len(), 0.0);
            st.parts.resize_with(world, Vec::new);
        } else if st.acc.len() != buf.len() {
            let why = format!("rank {} passed {} elements, another rank {}", self.rank, buf.len(), st.acc.len());
            st.broken = Some(why.clone());
            self.shared.changed.notify_all();
            bail!(Collective, "{}: {}", what, why);
        }
        match kind {
            Kind::Sum => {
                let part = &mut st.parts[self.rank];
                part.clear();
                part.extend_from_slice(buf);
            }
            Kind::Broadcast if self.rank == 0 => st.acc.copy_from_slice(buf),
            Kind::Broadcast => {}
        }
        st.arrived += 1;
        if st.arrived == world && kind == Kind::Sum {
            let Round { parts, acc, .. } = &mut *st;
            for part in parts.iter() {
                acc.iter_mut().zip(part).for_each(|(a, &b)| *a += b);
            }
        }
        self.shared.changed.notify_all();
        let mut st = self.wait_until(st, start, what, |r| r.arrived == world)?;
        buf.copy_from_slice(&st.acc);
        st.left += 1;
        if st.left == world {
            st.arrived = 0;
            st.left = 0;
        }
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl Drop for InProcessGroup {
    /// A member that goes away (its thread returned or panicked) breaks the group, so the other ranks
    /// fail at their next collective instead of waiting for it until the timeout.
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.broken.is_none() {
            st.broken = Some(format!("rank {} left the group", self.rank));
        }
        self.shared.changed.notify_all();
    }
}

impl Collective for InProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.shared.world
    }
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<()> {
        self.exchange(buf, Kind::Sum, "all-reduce")
    }
    fn broadcast(&mut self, buf: &mut [f32]) -> Result<()> {
        self.exchange(buf, Kind::Broadcast, "broadcast")
    }
}
