//! The graph arena: every tensor and every node that records how a tensor was made lives here.
//!
//! A [`Tensor`] is a small value handle (graph id, slot index, generation). Freeing a slot bumps its
//! generation, so a stale handle is detected; the graph id catches a handle used with another graph.
//! Tensors are *step-scoped* unless marked persistent (parameters): [`Graph::reset`] drops every
//! step-scoped tensor and every node at once and keeps the persistent ones. Buffers of dropped tensors go
//! to a pool keyed by length, so a training loop that repeats the same step allocates nothing from the
//! system after its first step. The bytes held (live and pooled) never exceed the memory limit: past it an
//! allocation returns [`ErrorKind::OutOfMemory`](crate::ErrorKind::OutOfMemory).

use crate::dtype::{Block, Buf, DType, Float};
use crate::error::{bail, err, Result};
use crate::ops::Op;
use crate::rng::Generator;
use crate::shape::Shape;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

/// A handle to a tensor in a graph (`bp::Graph`; `bp_tensor` in C). Copy it freely: it is three
/// integers, not a pointer; all zeros is the null handle. A handle whose tensor was freed, or that names
/// another graph, is rejected with `ErrorKind::InvalidHandle` (`BP_ERR_INVALID_HANDLE` in C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Tensor {
    /// The id of the graph that owns the tensor (never 0 for a valid handle).
    pub graph: u32,
    /// The slot in the graph's arena.
    pub index: u32,
    /// The slot's generation when the tensor was made.
    pub generation: u32,
}

pub(crate) struct Entry {
    pub(crate) shape: Shape,
    pub(crate) buf: Buf,
    pub(crate) requires_grad: bool,
    /// The node that made this tensor; `None` for a leaf.
    pub(crate) node: Option<u32>,
    /// The accumulated gradient (`.grad`).
    pub(crate) grad: Option<Tensor>,
    pub(crate) retains_grad: bool,
    pub(crate) persistent: bool,
    /// Bumped by every in-place write; nodes remember it to detect writes to saved tensors.
    pub(crate) version: u32,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// A recorded operation: the op with its inputs and parameters, its output, and what backward needs.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) op: Op,
    pub(crate) out: Tensor,
    /// Versions of the first three inputs and of the output when the node was recorded.
    pub(crate) versions: [u32; 4],
    /// Set when a backward without retain_graph freed the node's saved state.
    pub(crate) released: bool,
}

/// Free buffers by length. Keyed by a buffer length the program itself chose, so the default SipHash's
/// protection against crafted keys buys nothing here, and it cost a fifth of a small op's time (W4).
#[doc(hidden)]
pub type PoolMap<T> = HashMap<usize, Vec<Block<T>>, std::hash::BuildHasherDefault<LenHasher>>;

/// A multiplicative hash of one usize (Fibonacci hashing, high bits folded into the low ones that
/// pick the bucket).
#[doc(hidden)]
#[derive(Default)]
pub struct LenHasher(u64);

impl std::hash::Hasher for LenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

#[doc(hidden)]
#[derive(Default)]
pub struct Pool {
    f32: PoolMap<f32>,
    f64: PoolMap<f64>,
    i64: PoolMap<i64>,
    bytes: usize,
}

impl Pool {
    fn put(&mut self, buf: Buf) {
        self.bytes += buf.bytes();
        match buf {
            Buf::F32(v) => self.f32.entry(v.len()).or_default().push(v),
            Buf::F64(v) => self.f64.entry(v.len()).or_default().push(v),
            Buf::I64(v) => self.i64.entry(v.len()).or_default().push(v),
            Buf::View(_) => {} // owns nothing (put() counted 0 bytes for it)
        }
    }
    fn clear(&mut self) {
        self.f32.clear();
        self.f64.clear();
        self.i64.clear();
        self.bytes = 0;
    }
}

/// An element type a buffer can be pooled for (internal).
#[doc(hidden)]
pub trait Pooled: Copy + Default + 'static {
    fn bucket(pool: &mut Pool) -> &mut PoolMap<Self>;
}
macro_rules! pooled {
    ($t:ty, $f:ident) => {
        impl Pooled for $t {
            fn bucket(pool: &mut Pool) -> &mut PoolMap<Self> {
                &mut pool.$f
            }
        }
    };
}
pooled!(f32, f32);
pooled!(f64, f64);
pooled!(i64, i64);

static NEXT_GRAPH_ID: AtomicU32 = AtomicU32::new(1);

/// Owns tensors, the nodes that made them, a random generator and the autograd state.
/// A graph is used by one thread at a time (it is `Send`, not `Sync`); separate graphs are independent
/// and share no lock.
pub struct Graph {
    id: u32,
    slots: Vec<Slot>,
    free: Vec<u32>,
    pub(crate) nodes: Vec<Node>,
    pool: Pool,
    live_bytes: usize,
    memory_limit: usize,
    pub(crate) grad_enabled: bool,
    pub(crate) anomaly: bool,
    pub(crate) rng: Generator,
    /// Scratch for backward: the pending gradient of each slot (kept to reuse its allocation).
    pub(crate) sweep: Vec<Option<Tensor>>,
    /// Set by a backward that accumulates into `.grad` without create_graph (so it owns the
    /// gradients it passes on and frees each once consumed): matmul and linear then add weight
    /// gradients straight into an existing `.grad` (gemm with beta = 1), and the fused activation
    /// backward writes over the incoming gradient.
    pub(crate) fuse_grad_accumulation: bool,
    /// Contiguous buffers shared by several tensors ([`Buf::View`]s point into them): flattened
    /// parameters and their gradients (src/flat.rs). A region lives as long as the graph; its bytes are
    /// counted once in `live_bytes`, its views count none.
    pub(crate) regions: Vec<Buf>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph {{ id: {}, tensors: {}, nodes: {} }}", self.id, self.tensor_count(), self.nodes.len())
    }
}

impl Graph {
    /// A new, empty graph with no memory limit and a generator seeded with 0.
    pub fn new() -> Graph {
        Graph {
            id: NEXT_GRAPH_ID.fetch_add(1, Ordering::Relaxed).max(1),
            slots: Vec::new(),
            free: Vec::new(),
            nodes: Vec::new(),
            pool: Pool::default(),
            live_bytes: 0,
            memory_limit: usize::MAX,
            grad_enabled: true,
            anomaly: false,
            fuse_grad_accumulation: false,
            rng: Generator::new(0),
            sweep: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// This graph's id, carried by each of its handles.
    pub fn id(&self) -> u32 {
        self.id
    }

    // ----- memory -------------------------------------------------------------------------------

    /// Caps the bytes of tensor data the graph holds (live and pooled). Fails when more is live already.
    pub fn set_memory_limit(&mut self, bytes: usize) -> Result<()> {
        if self.live_bytes > bytes {
            bail!(OutOfMemory, "{} bytes are in use, more than the requested limit of {}", self.live_bytes, bytes);
        }
        self.memory_limit = bytes;
        if self.live_bytes + self.pool.bytes > bytes {
            self.pool.clear();
        }
        Ok(())
    }

    /// The memory limit in bytes (`usize::MAX` when unlimited).
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Bytes of tensor data held by live tensors.
    pub fn memory_used(&self) -> usize {
        self.live_bytes
    }

    /// Bytes held in the pool of reusable buffers.
    pub fn memory_pooled(&self) -> usize {
        self.pool.bytes
    }

    /// A buffer of `n` elements (contents unspecified), from the pool when one of that length is free.
    pub(crate) fn alloc<T: Pooled>(&mut self, n: usize) -> Result<Block<T>> {
        if let Some(v) = T::bucket(&mut self.pool).get_mut(&n).and_then(|b| b.pop()) {
            self.pool.bytes -= n * std::mem::size_of::<T>();
            return Ok(v);
        }
        let bytes = n
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| err!(OutOfMemory, "a buffer of {} elements overflows the address space", n))?;
        if self.live_bytes.saturating_add(self.pool.bytes).saturating_add(bytes) > self.memory_limit {
            self.pool.clear();
            if self.live_bytes.saturating_add(bytes) > self.memory_limit {
                bail!(
                    OutOfMemory,
                    "allocating {} bytes would exceed the graph's memory limit of {} bytes ({} in use)",
                    bytes, self.memory_limit, self.live_bytes
                );
            }
        }
        Block::try_filled(n, T::default()).map_err(|_| err!(OutOfMemory, "the system could not allocate {} bytes", bytes))
    }

    /// A zero-filled buffer of `n` elements.
    pub(crate) fn alloc_zeroed<T: Pooled>(&mut self, n: usize) -> Result<Block<T>> {
        let mut v = self.alloc::<T>(n)?;
        v.iter_mut().for_each(|x| *x = T::default());
        Ok(v)
    }

    // ----- slots --------------------------------------------------------------------------------

    /// The entry of a live handle of this graph. The check is inlined into every op (a step makes
    /// hundreds of these lookups); building the error for a bad handle is kept out of line.
    #[inline]
    pub(crate) fn entry(&self, t: Tensor) -> Result<&Entry> {
        if t.graph == self.id {
            if let Some(Slot { generation, entry: Some(e) }) = self.slots.get(t.index as usize) {
                if *generation == t.generation {
                    return Ok(e);
                }
            }
        }
        Err(self.bad_handle(t))
    }

    #[cold]
    #[inline(never)]
    fn bad_handle(&self, t: Tensor) -> crate::Error {
        if t.graph == 0 {
            err!(InvalidHandle, "the tensor handle is null or was never initialised")
        } else if t.graph != self.id {
            err!(InvalidHandle, "the tensor belongs to graph {}, not to graph {}", t.graph, self.id)
        } else if (t.index as usize) < self.slots.len() {
            err!(InvalidHandle, "the tensor handle is stale: its tensor was freed or reset")
        } else {
            err!(InvalidHandle, "the tensor handle is forged: slot {} does not exist", t.index)
        }
    }

    pub(crate) fn entry_mut(&mut self, t: Tensor) -> Result<&mut Entry> {
        self.entry(t)?;
        Ok(self.slots[t.index as usize].entry.as_mut().expect("checked above"))
    }

    /// Adds a tensor to the arena.
    pub(crate) fn insert(&mut self, shape: Shape, buf: Buf, node: Option<u32>, requires_grad: bool) -> Tensor {
        debug_assert_eq!(shape.numel(), buf.len());
        self.live_bytes += buf.bytes();
        let entry = Entry {
            shape,
            buf,
            requires_grad,
            node,
            grad: None,
            retains_grad: false,
            persistent: false,
            version: 0,
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, entry: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1).max(1);
        slot.entry = Some(entry);
        Tensor { graph: self.id, index, generation: slot.generation }
    }

    /// Frees a tensor now (its handle and every copy of it become stale). Nodes that saved it will report
    /// the missing tensor if a backward needs it. Freeing a tensor also frees its `.grad`.
    pub fn free(&mut self, t: Tensor) -> Result<()> {
        self.entry(t)?;
        self.release_slot(t.index);
        Ok(())
    }

    fn release_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(e) = slot.entry.take() {
            slot.generation = slot.generation.wrapping_add(1).max(1);
            self.free.push(index);
            self.recycle(e.buf);
            if let Some(g) = e.grad {
                if self.entry(g).is_ok() {
                    self.release_slot(g.index);
                }
            }
        }
    }

    /// Counts `bytes` of a region as live (regions are allocated with [`Graph::alloc`] like tensors).
    pub(crate) fn live_bytes_add(&mut self, bytes: usize) {
        self.live_bytes += bytes;
    }

    /// Returns a kernel's scratch buffer (taken with [`Graph::alloc`], never made a tensor) to the pool
    /// when it fits under the limit, so that the next step reuses it.
    pub(crate) fn release_scratch(&mut self, buf: Buf) {
        if self.live_bytes + self.pool.bytes + buf.bytes() <= self.memory_limit {
            self.pool.put(buf);
        }
    }

    /// Gives a live buffer's bytes back: to the pool when it fits under the limit.
    pub(crate) fn recycle(&mut self, buf: Buf) {
        self.live_bytes -= buf.bytes();
        if self.live_bytes + self.pool.bytes + buf.bytes() <= self.memory_limit {
            self.pool.put(buf);
        }
    }

    /// The buffer that holds `buf`'s elements and their range in it: `buf` itself, or the region its
    /// view points into. Every read of tensor data goes through here (or [`Graph::data`]), so kernels
    /// get plain slices whether a tensor owns its storage or not.
    pub(crate) fn storage<'a>(&'a self, buf: &'a Buf) -> (&'a Buf, std::ops::Range<usize>) {
        match buf {
            Buf::View(v) => (&self.regions[v.region as usize], v.offset..v.offset + v.len),
            b => (b, 0..b.len()),
        }
    }

    /// Mutable [`Graph::storage`] of a tensor. Does not bump the version: the caller does, once the
    /// write is known to happen.
    pub(crate) fn storage_mut(&mut self, t: Tensor) -> Result<(&mut Buf, std::ops::Range<usize>)> {
        self.entry(t)?;
        let e = self.slots[t.index as usize].entry.as_mut().expect("checked above");
        Ok(match &mut e.buf {
            Buf::View(v) => {
                let r = v.offset..v.offset + v.len;
                (&mut self.regions[v.region as usize], r)
            }
            b => {
                let n = b.len();
                (b, 0..n)
            }
        })
    }

    /// Runs `f` on the elements of `a` (mutable; bumps its version) and of `b` (read-only) together,
    /// copying neither: `b`'s backing buffer (its own, or its whole region) is moved out for the call
    /// and back. `a` and `b` must have the same number of elements and must not share storage.
    pub(crate) fn with_mut_and_ref<T: Float, R>(&mut self, a: Tensor, b: Tensor, f: impl FnOnce(&mut [T], &[T]) -> R) -> Result<R> {
        let view_of = |e: &Entry| if let Buf::View(v) = e.buf { Some(v) } else { None };
        let (va, vb) = (view_of(self.entry(a)?), view_of(self.entry(b)?));
        if a == b || matches!((va, vb), (Some(x), Some(y)) if x.region == y.region) {
            bail!(InvalidArgument, "the two tensors share storage");
        }
        let dt = self.entry(b)?.buf.dtype();
        let (held, range) = match vb {
            Some(v) => (std::mem::replace(&mut self.regions[v.region as usize], Buf::empty(dt)), v.offset..v.offset + v.len),
            None => {
                let e = self.entry_mut(b)?;
                let n = e.buf.len();
                (std::mem::replace(&mut e.buf, Buf::empty(dt)), 0..n)
            }
        };
        let r = match (T::slice(&held), self.data_mut::<T>(a)) {
            (Some(src), Ok(dst)) if dst.len() == range.len() => Ok(f(dst, &src[range])),
            (Some(_), Ok(dst)) => Err(err!(ShapeMismatch, "{} elements against {}", dst.len(), range.len())),
            (None, _) => Err(err!(DType, "the tensors hold {} and {}", dt.name(), T::DTYPE.name())),
            (_, Err(e)) => Err(e),
        };
        match vb {
            Some(v) => self.regions[v.region as usize] = held,
            None => self.entry_mut(b)?.buf = held,
        }
        r
    }

    /// Runs `f` on the elements of `t`, mutably, while the rest of the graph stays readable: `t`'s
    /// storage (its own buffer, or the whole region it is a view of) is taken out for the call and put
    /// back after, and `t`'s version is bumped. Inside `f`, `t` and tensors viewing the same region read
    /// as empty, so callers must not read them there.
    pub(crate) fn with_storage_taken<T: Float, R>(&mut self, t: Tensor, f: impl FnOnce(&Graph, &mut [T]) -> R) -> Result<R> {
        let dt = self.entry(t)?.buf.dtype();
        let view = if let Buf::View(v) = self.entry(t)?.buf { Some(v) } else { None };
        let (mut held, range) = match view {
            Some(v) => (std::mem::replace(&mut self.regions[v.region as usize], Buf::empty(dt)), v.offset..v.offset + v.len),
            None => {
                let e = self.entry_mut(t)?;
                let n = e.buf.len();
                (std::mem::replace(&mut e.buf, Buf::empty(dt)), 0..n)
            }
        };
        let r = match T::slice_mut(&mut held) {
            Some(v) => Ok(f(self, &mut v[range])),
            None => Err(err!(DType, "the tensor holds {}, not {}", dt.name(), T::DTYPE.name())),
        };
        match view {
            Some(v) => self.regions[v.region as usize] = held,
            None => self.entry_mut(t)?.buf = held,
        }
        self.entry_mut(t)?.version += 1;
        r
    }

    /// The flat region `t` is a view of, if any.
    pub(crate) fn region_of(&self, t: Tensor) -> Result<Option<u32>> {
        Ok(if let Buf::View(v) = self.entry(t)?.buf { Some(v.region) } else { None })
    }

    /// Drops every step-scoped tensor and every recorded node at once; persistent tensors (parameters)
    /// and their `.grad` stay, detached from any graph history. Handles of dropped tensors become stale.
    pub fn reset(&mut self) {
        for i in 0..self.slots.len() {
            let keep = matches!(&self.slots[i].entry, Some(e) if e.persistent);
            if keep {
                let e = self.slots[i].entry.as_mut().expect("matched above");
                e.node = None;
            } else if self.slots[i].entry.is_some() {
                // A persistent tensor's .grad is persistent too, so this never frees a kept tensor's grad.
                self.release_slot(i as u32);
            }
        }
        self.nodes.clear();
    }

    /// Marks a leaf tensor as persistent (it and its `.grad` survive [`Graph::reset`]) or step-scoped.
    pub fn set_persistent(&mut self, t: Tensor, persistent: bool) -> Result<()> {
        let e = self.entry(t)?;
        if e.node.is_some() && persistent {
            bail!(InvalidArgument, "only a leaf tensor can be persistent; detach it first");
        }
        let grad = e.grad;
        self.entry_mut(t)?.persistent = persistent;
        if let Some(g) = grad {
            self.entry_mut(g)?.persistent = persistent;
        }
        Ok(())
    }

    /// Whether the tensor survives [`Graph::reset`].
    pub fn is_persistent(&self, t: Tensor) -> Result<bool> {
        Ok(self.entry(t)?.persistent)
    }

    /// The number of slots (live and free): an upper bound on slot indices.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The handle of the live tensor in slot `index`, if any.
    pub(crate) fn handle_at(&self, index: usize) -> Option<Tensor> {
        let s = self.slots.get(index)?;
        s.entry.as_ref().map(|_| Tensor { graph: self.id, index: index as u32, generation: s.generation })
    }

    /// How many tensors are live.
    pub fn tensor_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// How many nodes are recorded.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    // ----- creation -----------------------------------------------------------------------------

    /// A leaf tensor holding a copy of `data` (float32 or float64).
    pub fn from_slice<T: Float>(&mut self, data: &[T], dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        if shape.numel() != data.len() {
            bail!(InvalidArgument, "{} values given for shape {:?} ({} elements)", data.len(), dims, shape.numel());
        }
        let mut v = self.alloc::<T>(data.len())?;
        v.copy_from_slice(data);
        Ok(self.insert(shape, T::wrap(v), None, false))
    }

    /// A leaf int64 tensor (class indices, gather indices) holding a copy of `data`.
    pub fn from_i64(&mut self, data: &[i64], dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        if shape.numel() != data.len() {
            bail!(InvalidArgument, "{} values given for shape {:?} ({} elements)", data.len(), dims, shape.numel());
        }
        let mut v = self.alloc::<i64>(data.len())?;
        v.copy_from_slice(data);
        Ok(self.insert(shape, Buf::I64(v), None, false))
    }

    /// A leaf tensor of `dtype` with every element equal to `value`.
    pub fn full(&mut self, dims: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        let n = shape.numel();
        let buf = match dtype {
            DType::F32 => Buf::F32({
                let mut v = self.alloc::<f32>(n)?;
                v.fill(value as f32);
                v
            }),
            DType::F64 => Buf::F64({
                let mut v = self.alloc::<f64>(n)?;
                v.fill(value);
                v
            }),
            DType::I64 => {
                if value.fract() != 0.0 || !value.is_finite() {
                    bail!(InvalidArgument, "{} is not an integer", value);
                }
                Buf::I64({
                    let mut v = self.alloc::<i64>(n)?;
                    v.fill(value as i64);
                    v
                })
            }
        };
        Ok(self.insert(shape, buf, None, false))
    }

    /// A leaf tensor of zeros.
    pub fn zeros(&mut self, dims: &[usize], dtype: DType) -> Result<Tensor> {
        self.full(dims, 0.0, dtype)
    }

    /// A leaf tensor of ones.
    pub fn ones(&mut self, dims: &[usize], dtype: DType) -> Result<Tensor> {
        self.full(dims, 1.0, dtype)
    }

    /// A 1-D leaf tensor `start, start + step, …` up to (not including) `end`, as `torch.arange`.
    pub fn arange(&mut self, start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            bail!(InvalidArgument, "arange needs finite bounds and a non-zero step");
        }
        let n = ((end - start) / step).ceil().max(0.0);
        if n > crate::shape::MAX_NUMEL as f64 {
            bail!(ShapeMismatch, "arange would have {} elements", n);
        }
        let n = n as usize;
        let t = self.zeros(&[n], dtype)?;
        match &mut self.entry_mut(t)?.buf {
            Buf::F32(v) => v.iter_mut().enumerate().for_each(|(i, x)| *x = (start + i as f64 * step) as f32),
            Buf::F64(v) => v.iter_mut().enumerate().for_each(|(i, x)| *x = start + i as f64 * step),
            Buf::I64(v) => v.iter_mut().enumerate().for_each(|(i, x)| *x = (start + i as f64 * step) as i64),
            Buf::View(_) => bail!(Internal, "a new tensor is never a view"),
        }
        Ok(t)
    }

    /// Reseeds the graph's generator, as `torch.manual_seed`.
    pub fn manual_seed(&mut self, seed: u64) {
        self.rng = Generator::new(seed);
    }

    /// The graph's generator (for saving its state).
    pub fn generator(&self) -> &Generator {
        &self.rng
    }

    /// Replaces the graph's generator (when resuming from a checkpoint).
    pub fn set_generator(&mut self, g: Generator) {
        self.rng = g;
    }

    /// A leaf tensor uniform on [low, high), as `torch.rand(...) * (high - low) + low` draws it
    /// (`torch.empty(...).uniform_(low, high)` exactly).
    pub fn rand(&mut self, dims: &[usize], low: f64, high: f64, dtype: DType) -> Result<Tensor> {
        let t = self.zeros(dims, dtype)?;
        let mut buf = std::mem::replace(&mut self.entry_mut(t)?.buf, Buf::F32(Block::new()));
        match &mut buf {
            Buf::F32(v) => v.iter_mut().for_each(|x| *x = self.rng.uniform_f32(low as f32, high as f32)),
            Buf::F64(v) => v.iter_mut().for_each(|x| *x = self.rng.uniform_f64(low, high)),
            Buf::I64(_) => bail!(DType, "rand makes floating-point tensors; use randint for integers"),
            Buf::View(_) => bail!(Internal, "a new tensor is never a view"),
        }
        self.entry_mut(t)?.buf = buf;
        Ok(t)
    }

    /// A leaf tensor of normal samples, as `torch.randn(...) * std + mean`.
    pub fn randn(&mut self, dims: &[usize], mean: f64, std: f64, dtype: DType) -> Result<Tensor> {
        let t = self.zeros(dims, dtype)?;
        let mut buf = std::mem::replace(&mut self.entry_mut(t)?.buf, Buf::F32(Block::new()));
        match &mut buf {
            Buf::F32(v) => self.rng.fill_normal_f32(v, mean as f32, std as f32),
            Buf::F64(v) => self.rng.fill_normal_f64(v, mean, std),
            Buf::I64(_) => bail!(DType, "randn makes floating-point tensors"),
            Buf::View(_) => bail!(Internal, "a new tensor is never a view"),
        }
        self.entry_mut(t)?.buf = buf;
        Ok(t)
    }

    /// A leaf int64 tensor uniform on the integers [low, high), as `torch.randint`.
    pub fn randint(&mut self, low: i64, high: i64, dims: &[usize]) -> Result<Tensor> {
        if high <= low {
            bail!(InvalidArgument, "randint needs low < high, got [{}, {})", low, high);
        }
        let t = self.zeros(dims, DType::I64)?;
        let mut buf = std::mem::replace(&mut self.entry_mut(t)?.buf, Buf::I64(Block::new()));
        if let Buf::I64(v) = &mut buf {
            v.iter_mut().for_each(|x| *x = self.rng.randint(low, high));
        }
        self.entry_mut(t)?.buf = buf;
        Ok(t)
    }

    // ----- reading and writing ----------------------------------------------------------------

    /// The tensor's shape.
    pub fn shape(&self, t: Tensor) -> Result<Shape> {
        Ok(self.entry(t)?.shape)
    }

    /// The tensor's dimensions, as a vector.
    pub fn dims(&self, t: Tensor) -> Result<Vec<usize>> {
        Ok(self.entry(t)?.shape.dims().to_vec())
    }

    /// The tensor's element type.
    pub fn dtype(&self, t: Tensor) -> Result<DType> {
        Ok(self.entry(t)?.buf.dtype())
    }

    /// The number of elements.
    pub fn numel(&self, t: Tensor) -> Result<usize> {
        Ok(self.entry(t)?.shape.numel())
    }

    /// Borrows the elements of a floating-point tensor of type `T`.
    pub fn data<T: Float>(&self, t: Tensor) -> Result<&[T]> {
        let e = self.entry(t)?;
        let (b, r) = self.storage(&e.buf);
        T::slice(b).map(|v| &v[r]).ok_or_else(|| {
            err!(DType, "the tensor holds {}, not {}", e.buf.dtype().name(), T::DTYPE.name())
        })
    }

    /// Borrows the elements of an int64 tensor.
    pub fn data_i64(&self, t: Tensor) -> Result<&[i64]> {
        match self.storage(&self.entry(t)?.buf) {
            (Buf::I64(v), r) => Ok(&v[r]),
            (b, _) => bail!(DType, "the tensor holds {}, not int64", b.dtype().name()),
        }
    }

    /// The elements converted to f32, whatever the dtype.
    pub fn to_vec_f32(&self, t: Tensor) -> Result<Vec<f32>> {
        let (b, r) = self.storage(&self.entry(t)?.buf);
        Ok(r.map(|i| b.get_f64(i) as f32).collect())
    }

    /// The elements converted to f64, whatever the dtype.
    pub fn to_vec_f64(&self, t: Tensor) -> Result<Vec<f64>> {
        let (b, r) = self.storage(&self.entry(t)?.buf);
        Ok(r.map(|i| b.get_f64(i)).collect())
    }

    /// The value of a one-element tensor, as f64.
    pub fn item(&self, t: Tensor) -> Result<f64> {
        let e = self.entry(t)?;
        if e.shape.numel() != 1 {
            bail!(ShapeMismatch, "item() needs a tensor with one element, this one has shape {:?}", e.shape);
        }
        let (b, r) = self.storage(&e.buf);
        Ok(b.get_f64(r.start))
    }

    /// Overwrites the elements in place from f64 values (converted to the tensor's dtype). Like every
    /// in-place write it bumps the tensor's version, so a backward that saved the old values fails.
    pub fn write_f64(&mut self, t: Tensor, data: &[f64]) -> Result<()> {
        let (b, r) = self.storage_mut(t)?;
        if data.len() != r.len() {
            bail!(InvalidArgument, "{} values given for a tensor of {} elements", data.len(), r.len());
        }
        match b {
            Buf::F32(v) => v[r].iter_mut().zip(data).for_each(|(x, &y)| *x = y as f32),
            Buf::F64(v) => v[r].copy_from_slice(data),
            Buf::I64(v) => v[r].iter_mut().zip(data).for_each(|(x, &y)| *x = y as i64),
            Buf::View(_) => bail!(Internal, "a region never holds a view"),
        }
        self.entry_mut(t)?.version += 1;
        Ok(())
    }

    /// Overwrites the elements of a floating-point tensor in place (bumps its version).
    pub fn write<T: Float>(&mut self, t: Tensor, data: &[T]) -> Result<()> {
        let (b, r) = self.storage_mut(t)?;
        let dt = b.dtype();
        let v = T::slice_mut(b).ok_or_else(|| err!(DType, "the tensor holds {}, not {}", dt.name(), T::DTYPE.name()))?;
        if data.len() != r.len() {
            bail!(InvalidArgument, "{} values given for a tensor of {} elements", data.len(), r.len());
        }
        v[r].copy_from_slice(data);
        self.entry_mut(t)?.version += 1;
        Ok(())
    }

    /// Overwrites the elements of an int64 tensor in place (bumps its version).
    pub fn write_i64(&mut self, t: Tensor, data: &[i64]) -> Result<()> {
        match self.storage_mut(t)? {
            (Buf::I64(v), r) if r.len() == data.len() => v[r].copy_from_slice(data),
            (Buf::I64(_), r) => bail!(InvalidArgument, "{} values given for a tensor of {} elements", data.len(), r.len()),
            (b, _) => bail!(DType, "the tensor holds {}, not int64", b.dtype().name()),
        }
        self.entry_mut(t)?.version += 1;
        Ok(())
    }

    /// Mutable access for in-place updates by optimizers: bumps the version.
    pub(crate) fn data_mut<T: Float>(&mut self, t: Tensor) -> Result<&mut [T]> {
        self.entry_mut(t)?.version += 1;
        let (b, r) = self.storage_mut(t)?;
        let dt = b.dtype();
        T::slice_mut(b).map(|v| &mut v[r]).ok_or_else(|| err!(DType, "the tensor holds {}, not {}", dt.name(), T::DTYPE.name()))
    }

    /// The version counter (bumped by every in-place write).
    pub fn version(&self, t: Tensor) -> Result<u32> {
        Ok(self.entry(t)?.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn stale_handles_are_detected_after_free_and_reset() {
        let mut g = Graph::new();
        let a = g.zeros(&[2], DType::F32).unwrap();
        g.free(a).unwrap();
        assert_eq!(g.shape(a).unwrap_err().kind(), ErrorKind::InvalidHandle);
        let b = g.zeros(&[2], DType::F32).unwrap();
        assert_eq!(b.index, a.index, "the slot is reused");
        g.reset();
        assert_eq!(g.shape(b).unwrap_err().kind(), ErrorKind::InvalidHandle);
    }

    #[test]
    fn handles_of_another_graph_are_rejected() {
        let mut g = Graph::new();
        let mut h = Graph::new();
        let a = g.zeros(&[2], DType::F32).unwrap();
        let _ = h.zeros(&[2], DType::F32).unwrap();
        assert_eq!(h.shape(a).unwrap_err().kind(), ErrorKind::InvalidHandle);
    }

    #[test]
    fn memory_limit_is_an_error_and_the_graph_stays_usable() {
        let mut g = Graph::new();
        g.set_memory_limit(1000).unwrap();
        assert_eq!(g.zeros(&[1000], DType::F32).unwrap_err().kind(), ErrorKind::OutOfMemory);
        assert!(g.zeros(&[100], DType::F32).is_ok());
    }

    #[test]
    fn every_buffer_of_64_elements_or_more_starts_on_a_cache_line() {
        let mut g = Graph::new();
        for n in [64usize, 65, 100, 500, 6500] {
            let x = g.rand(&[n], -1.0, 1.0, DType::F32).unwrap();
            let y = g.relu(x).unwrap();
            let z = g.rand(&[n], -1.0, 1.0, DType::F64).unwrap();
            let i = g.randint(0, 5, &[n]).unwrap();
            let ptrs = [g.data::<f32>(x).unwrap().as_ptr() as usize, g.data::<f32>(y).unwrap().as_ptr() as usize, g.data::<f64>(z).unwrap().as_ptr() as usize, g.data_i64(i).unwrap().as_ptr() as usize];
            assert!(ptrs.iter().all(|p| p % 64 == 0), "n = {n}: {:?}", ptrs.map(|p| p % 64));
            // Buffers that come back from the pool are still aligned, and hold exactly n elements.
            g.reset();
            let again = g.zeros(&[n], DType::F32).unwrap();
            assert_eq!(g.data::<f32>(again).unwrap().len(), n);
            assert_eq!(g.data::<f32>(again).unwrap().as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn reset_keeps_persistent_tensors_and_reuses_buffers() {
        let mut g = Graph::new();
        let p = g.ones(&[4], DType::F32).unwrap();
        g.set_persistent(p, true).unwrap();
        let _tmp = g.ones(&[8], DType::F32).unwrap();
        g.reset();
        assert_eq!(g.data::<f32>(p).unwrap(), &[1.0; 4]);
        assert_eq!(g.memory_pooled(), 32);
        let _again = g.zeros(&[8], DType::F32).unwrap();
        assert_eq!(g.memory_pooled(), 0);
    }
}
