//! Flat parameter storage: the parameters of a model, and their gradients, each in one contiguous
//! buffer, so that one collective call (an all-reduce of the gradients, a broadcast of the parameters)
//! covers the whole model with no per-step copy.
//!
//! [`Graph::flatten_parameters`] moves the values of the given parameters into a graph-owned region and
//! turns each parameter's storage into a view of its range ([`Buf::View`]); every parameter gets a
//! persistent `.grad` that is a view of a second, zero-initialised region. The tensors keep their
//! handles, shapes, flags and versions, so models, optimizers and checkpoints work on them unchanged;
//! backward accumulates into the flat gradients in place (a `.grad` that exists is added to), and
//! `zero_grad` zeroes them in place instead of dropping them.

use crate::dtype::{Buf, DType, Float, View};
use crate::error::{bail, err, Result};
use crate::graph::{Graph, Tensor};
use crate::ops::elementwise::float_dispatch;

/// A group of parameters whose values and gradients each live in one contiguous buffer of the graph
/// that made it ([`Graph::flatten_parameters`]). Read and write the buffers with
/// [`Graph::flat_params`], [`Graph::flat_params_mut`], [`Graph::flat_grads`] and
/// [`Graph::flat_grads_mut`]. The group stays valid while its parameters live (they are persistent, so
/// a reset keeps them); freeing one of them makes every accessor fail with `InvalidHandle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatParams {
    graph: u32,
    params: Vec<Tensor>,
    grads: Vec<Tensor>,
    offsets: Vec<usize>,
    param_region: u32,
    grad_region: u32,
    len: usize,
    dtype: DType,
}

impl FlatParams {
    /// The parameters, in the order given (their ranges follow one another in that order).
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }
    /// The gradient tensor of each parameter (its `.grad`), a view of the flat gradient buffer.
    pub fn grads(&self) -> &[Tensor] {
        &self.grads
    }
    /// Where each parameter starts in the flat buffers, in elements.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// The number of elements of each flat buffer (the sum of the parameters' sizes).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the group holds no element (never true: flattening needs at least one parameter).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The element type of every parameter of the group.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

impl Graph {
    /// Moves the given parameters into one contiguous buffer and gives each a `.grad` that is a view of
    /// a second contiguous buffer, zero-initialised (an existing `.grad` is copied in and freed).
    /// Values, shapes, `requires_grad`, persistence and version counters are kept, and so are the
    /// handles: nothing else changes for code that uses the tensors.
    ///
    /// Each parameter must be a persistent floating-point leaf that requires grad, not already
    /// flattened; all must have the same dtype and be distinct. From then on a parameter always has a
    /// `.grad` (zeroed in place by [`Graph::zero_grad`], as PyTorch's `zero_grad(set_to_none=False)`).
    /// The buffers live as long as the graph and count once toward its memory use.
    pub fn flatten_parameters(&mut self, params: &[Tensor]) -> Result<FlatParams> {
        let Some(&first) = params.first() else { bail!(InvalidArgument, "flattening needs at least one parameter") };
        let dtype = self.dtype(first)?;
        let mut offsets = Vec::with_capacity(params.len());
        let mut len = 0usize;
        for (i, &p) in params.iter().enumerate() {
            let e = self.entry(p)?;
            if e.buf.dtype() != dtype {
                bail!(DType, "parameter {} is {}, parameter 0 is {}; a flat group has one dtype", i, e.buf.dtype().name(), dtype.name());
            }
            if dtype == DType::I64 {
                bail!(DType, "only floating-point parameters can be flattened");
            }
            if e.node.is_some() || !e.requires_grad || !e.persistent {
                bail!(InvalidArgument, "parameter {} must be a persistent leaf that requires grad", i);
            }
            if matches!(e.buf, Buf::View(_)) {
                bail!(InvalidArgument, "parameter {} is already flattened", i);
            }
            if params[..i].contains(&p) {
                bail!(InvalidArgument, "parameter {} is given twice", i);
            }
            offsets.push(len);
            len += e.shape.numel();
        }
        float_dispatch!(dtype, T => self.flatten_into::<T>(params, offsets, len))
    }

    fn flatten_into<T: Float>(&mut self, params: &[Tensor], offsets: Vec<usize>, len: usize) -> Result<FlatParams> {
        // Both regions are allocated (and counted) before any tensor changes, so running out of memory
        // leaves the parameters as they were.
        let values = self.alloc::<T>(len)?;
        self.live_bytes_add(len * std::mem::size_of::<T>());
        let grads = match self.alloc_zeroed::<T>(len) {
            Ok(v) => v,
            Err(e) => {
                self.recycle(T::wrap(values));
                return Err(e);
            }
        };
        self.live_bytes_add(len * std::mem::size_of::<T>());
        let (mut values, mut grads) = (values, grads);
        for (&p, &at) in params.iter().zip(&offsets) {
            let src = self.data::<T>(p)?;
            values[at..at + src.len()].copy_from_slice(src);
            if let Some(old) = self.entry(p)?.grad.filter(|&gt| self.entry(gt).is_ok()) {
                let src = self.data::<T>(old)?;
                grads[at..at + src.len()].copy_from_slice(src);
            }
        }
        let param_region = self.regions.len() as u32;
        let grad_region = param_region + 1;
        self.regions.push(T::wrap(values));
        self.regions.push(T::wrap(grads));

        let mut grad_tensors = Vec::with_capacity(params.len());
        for (&p, &at) in params.iter().zip(&offsets) {
            let (shape, n) = {
                let e = self.entry(p)?;
                (e.shape, e.shape.numel())
            };
            let view = |region| Buf::View(View { region, offset: at, len: n, dtype: T::DTYPE });
            let owned = std::mem::replace(&mut self.entry_mut(p)?.buf, view(param_region));
            self.recycle(owned);
            if let Some(old) = self.entry_mut(p)?.grad.take() {
                if self.entry(old).is_ok() {
                    self.free(old)?;
                }
            }
            let gt = self.insert(shape, view(grad_region), None, false);
            self.entry_mut(gt)?.persistent = true;
            self.entry_mut(p)?.grad = Some(gt);
            grad_tensors.push(gt);
        }
        Ok(FlatParams {
            graph: self.id(),
            params: params.to_vec(),
            grads: grad_tensors,
            offsets,
            param_region,
            grad_region,
            len,
            dtype: T::DTYPE,
        })
    }

    /// Fails unless every tensor of the group is alive and still a view of the group's buffers.
    fn check_group(&self, f: &FlatParams) -> Result<()> {
        if f.graph != self.id() {
            bail!(InvalidHandle, "the flat parameter group belongs to graph {}, not to graph {}", f.graph, self.id());
        }
        for (i, (&p, &gt)) in f.params.iter().zip(&f.grads).enumerate() {
            let in_region = |t: Tensor, region: u32| matches!(self.entry(t).map(|e| &e.buf), Ok(Buf::View(v)) if v.region == region);
            if !in_region(p, f.param_region) || !in_region(gt, f.grad_region) || self.entry(p)?.grad != Some(gt) {
                bail!(InvalidHandle, "parameter {} of the flat group (or its gradient) was freed", i);
            }
        }
        Ok(())
    }

    fn region<T: Float>(&self, f: &FlatParams, region: u32) -> Result<&[T]> {
        self.check_group(f)?;
        T::slice(&self.regions[region as usize])
            .ok_or_else(|| err!(DType, "the flat group holds {}, not {}", f.dtype.name(), T::DTYPE.name()))
    }

    fn region_mut<T: Float>(&mut self, f: &FlatParams, region: u32, bump: &[Tensor]) -> Result<&mut [T]> {
        self.check_group(f)?;
        if T::DTYPE != f.dtype {
            bail!(DType, "the flat group holds {}, not {}", f.dtype.name(), T::DTYPE.name());
        }
        // Any of these tensors may have been saved for a backward: a write through the flat buffer is
        // an in-place write to each of them.
        for &t in bump {
            self.entry_mut(t)?.version += 1;
        }
        Ok(T::slice_mut(&mut self.regions[region as usize]).expect("dtype checked above"))
    }

    /// The values of every parameter of the group, one after the other in the group's order.
    pub fn flat_params<T: Float>(&self, f: &FlatParams) -> Result<&[T]> {
        self.region(f, f.param_region)
    }

    /// The parameters' values, writable (a broadcast from rank 0 lands here). Bumps every parameter's
    /// version, as any in-place write does.
    pub fn flat_params_mut<T: Float>(&mut self, f: &FlatParams) -> Result<&mut [T]> {
        self.region_mut(f, f.param_region, &f.params)
    }

    /// The gradients of every parameter of the group, laid out as [`Graph::flat_params`].
    pub fn flat_grads<T: Float>(&self, f: &FlatParams) -> Result<&[T]> {
        self.region(f, f.grad_region)
    }

    /// The gradients, writable (an all-reduce sums into them in place). Bumps every gradient's version.
    pub fn flat_grads_mut<T: Float>(&mut self, f: &FlatParams) -> Result<&mut [T]> {
        self.region_mut(f, f.grad_region, &f.grads)
    }
}
