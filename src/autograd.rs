//! Reverse-mode differentiation: one loop over the recorded nodes in reverse creation order (creation
//! order is already topological), with no recursion, so a deep graph cannot overflow the stack.
//!
//! PyTorch's rules, each pinned by a test in `tests/semantics.rs`: requires_grad per leaf; `.grad`
//! accumulates across backward calls until zeroed; non-leaves keep no `.grad` unless retain_grad was
//! asked; backward frees saved state unless retain_graph; a functional gradient that leaves `.grad`
//! untouched and can build a differentiable result (create_graph); no-grad mode; detach; a version
//! counter that catches writes to saved tensors; ops without a gradient fail by name.

use crate::dtype::{Block, Buf, Float};
use crate::error::{bail, err, Result};
use crate::graph::{Graph, Tensor};
use crate::ops::elementwise::float_dispatch;
use crate::ops::OpKind;

/// Fails with an anomaly error naming the op when `buf` holds a NaN or infinity.
pub(crate) fn check_finite(buf: &Buf, kind: OpKind, phase: &str) -> Result<()> {
    let bad = match buf {
        Buf::F32(v) => v.iter().position(|x| !x.is_finite()),
        Buf::F64(v) => v.iter().position(|x| !x.is_finite()),
        Buf::I64(_) => None,
        // Only fresh op results are checked, and an op never makes a view.
        Buf::View(_) => None,
    };
    if let Some(i) = bad {
        bail!(Anomaly, "anomaly: the {} of '{}' produced {} at element {}", phase, kind.name(), buf.get_f64(i), i);
    }
    Ok(())
}

/// Where the gradients of a sweep go.
enum Sink<'a> {
    /// Accumulate into the `.grad` of leaves (and of non-leaves that retain it).
    Accumulate,
    /// Return the gradients of these tensors; `.grad` is left alone.
    Return(&'a [Tensor], &'a mut [Option<Tensor>]),
}

impl Graph {
    // ----- flags ---------------------------------------------------------------------------------

    /// Sets whether a leaf takes part in differentiation (`requires_grad_`). Only floating-point leaves
    /// can require grad; on a non-leaf this fails as in PyTorch.
    pub fn set_requires_grad(&mut self, t: Tensor, requires_grad: bool) -> Result<()> {
        let e = self.entry(t)?;
        if e.node.is_some() {
            bail!(Autograd, "you can only change requires_grad flags of leaf tensors; use detach() to get a leaf");
        }
        if requires_grad && e.buf.dtype() == crate::DType::I64 {
            bail!(DType, "only floating-point tensors can require gradients");
        }
        self.entry_mut(t)?.requires_grad = requires_grad;
        Ok(())
    }

    /// Whether the tensor requires grad (a leaf that asked, or a result of an op on one).
    pub fn requires_grad(&self, t: Tensor) -> Result<bool> {
        Ok(self.entry(t)?.requires_grad)
    }

    /// Whether the tensor is a leaf (made by the caller, not by a recorded op).
    pub fn is_leaf(&self, t: Tensor) -> Result<bool> {
        Ok(self.entry(t)?.node.is_none())
    }

    /// The name of the op that made the tensor (`grad_fn`), `None` for a leaf.
    pub fn grad_fn(&self, t: Tensor) -> Result<Option<&'static str>> {
        Ok(self.entry(t)?.node.map(|n| self.nodes[n as usize].op.kind().name()))
    }

    /// Asks a non-leaf to keep its `.grad` during backward (a no-op on leaves).
    pub fn retain_grad(&mut self, t: Tensor) -> Result<()> {
        let e = self.entry(t)?;
        if !e.requires_grad {
            bail!(Autograd, "can't retain_grad on a tensor that doesn't require grad");
        }
        if e.node.is_some() {
            self.entry_mut(t)?.retains_grad = true;
        }
        Ok(())
    }

    /// The accumulated gradient (`.grad`): `Ok(None)` for a leaf that has none yet; an error for a
    /// non-leaf that was not asked to retain it (PyTorch returns None with a warning; we say so).
    pub fn grad(&self, t: Tensor) -> Result<Option<Tensor>> {
        let e = self.entry(t)?;
        if e.node.is_some() && !e.retains_grad {
            bail!(
                Autograd,
                "the .grad of a non-leaf tensor is not kept; call retain_grad() on it before backward, or use the functional grad()"
            );
        }
        Ok(e.grad)
    }

    /// Drops the tensor's `.grad` (PyTorch's `zero_grad(set_to_none=True)`). A flattened parameter's
    /// `.grad` is a view into the group's gradient buffer ([`Graph::flatten_parameters`]): it is zeroed
    /// in place instead (`set_to_none=False`), so the flat buffer stays whole.
    pub fn zero_grad(&mut self, t: Tensor) -> Result<()> {
        if let Some(g) = self.entry(t)?.grad.filter(|&g| matches!(self.entry(g).map(|e| &e.buf), Ok(Buf::View(_)))) {
            return float_dispatch!(self.dtype(g)?, T => {
                self.data_mut::<T>(g)?.fill(T::ZERO);
                Ok(())
            });
        }
        if let Some(g) = self.entry_mut(t)?.grad.take() {
            if self.entry(g).is_ok() {
                self.free(g)?;
            }
        }
        Ok(())
    }

    /// Turns gradient recording on or off (off is PyTorch's `no_grad`); returns the previous setting.
    pub fn set_grad_enabled(&mut self, enabled: bool) -> bool {
        std::mem::replace(&mut self.grad_enabled, enabled)
    }

    /// Whether ops record nodes.
    pub fn is_grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Runs `f` with gradient recording off, then restores the previous setting.
    pub fn no_grad<R>(&mut self, f: impl FnOnce(&mut Graph) -> R) -> R {
        let prev = self.set_grad_enabled(false);
        let r = f(self);
        self.grad_enabled = prev;
        r
    }

    /// Turns anomaly detection on or off: with it on, an op whose forward or backward produces a NaN or
    /// infinity fails with [`ErrorKind::Anomaly`](crate::ErrorKind::Anomaly) naming the op.
    pub fn set_anomaly_detection(&mut self, on: bool) {
        self.anomaly = on;
    }

    /// A new leaf with a copy of the tensor's values, cut from its history; never requires grad.
    /// (PyTorch's detach shares storage; this one copies, so writes to either side stay separate.)
    pub fn detach(&mut self, t: Tensor) -> Result<Tensor> {
        let shape = self.shape(t)?;
        let buf = match self.dtype(t)? {
            crate::DType::F32 => Buf::F32(self.copy_of::<f32>(t)?),
            crate::DType::F64 => Buf::F64(self.copy_of::<f64>(t)?),
            crate::DType::I64 => {
                let n = shape.numel();
                let mut out = self.alloc::<i64>(n)?;
                out.copy_from_slice(self.data_i64(t)?);
                Buf::I64(out)
            }
        };
        Ok(self.insert(shape, buf, None, false))
    }

    fn copy_of<T: Float>(&mut self, t: Tensor) -> Result<Block<T>> {
        let n = self.numel(t)?;
        let mut out = self.alloc::<T>(n)?;
        out.copy_from_slice(self.data::<T>(t)?);
        Ok(out)
    }

    // ----- backward -----------------------------------------------------------------------------

    /// Computes the gradient of `root` with respect to every leaf that requires grad, accumulating into
    /// their `.grad`. A scalar root is seeded with 1; any other root needs `gradient` of its shape.
    /// Unless `retain_graph`, the saved state of the nodes passed is freed, and a second backward that
    /// needs it fails.
    pub fn backward(&mut self, root: Tensor, gradient: Option<Tensor>, retain_graph: bool) -> Result<()> {
        self.sweep(&[root], &[gradient], retain_graph, false, Sink::Accumulate)
    }

    /// Like [`Graph::backward`] with create_graph: the accumulated gradients are themselves
    /// differentiable (the graph is retained).
    pub fn backward_create_graph(&mut self, root: Tensor, gradient: Option<Tensor>) -> Result<()> {
        self.sweep(&[root], &[gradient], true, true, Sink::Accumulate)
    }

    /// The functional gradient, as `torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph,
    /// create_graph)`: returns d(Σ outputs·grad_outputs)/d input for each input without touching any
    /// `.grad`. With `create_graph` the results are differentiable (and the graph is retained). An input
    /// the outputs do not depend on is an error, never a silent zero.
    pub fn grad_of(
        &mut self,
        outputs: &[Tensor],
        inputs: &[Tensor],
        grad_outputs: &[Option<Tensor>],
        retain_graph: bool,
        create_graph: bool,
    ) -> Result<Vec<Tensor>> {
        if outputs.is_empty() || inputs.is_empty() {
            bail!(InvalidArgument, "grad needs at least one output and one input");
        }
        if !grad_outputs.is_empty() && grad_outputs.len() != outputs.len() {
            bail!(InvalidArgument, "{} grad_outputs given for {} outputs", grad_outputs.len(), outputs.len());
        }
        for &i in inputs {
            if !self.entry(i)?.requires_grad {
                bail!(Autograd, "one of the differentiated tensors does not require grad");
            }
        }
        let mut found = vec![None; inputs.len()];
        let none = vec![None; outputs.len()];
        let gos = if grad_outputs.is_empty() { &none[..] } else { grad_outputs };
        self.sweep(outputs, gos, retain_graph || create_graph, create_graph, Sink::Return(inputs, &mut found))?;
        found
            .into_iter()
            .map(|g| g.ok_or_else(|| err!(Autograd, "one of the differentiated tensors appears to not have been used in the graph")))
            .collect()
    }

    fn sweep(&mut self, roots: &[Tensor], seeds: &[Option<Tensor>], retain_graph: bool, create_graph: bool, mut sink: Sink) -> Result<()> {
        let mut pending = std::mem::take(&mut self.sweep);
        pending.clear();
        pending.resize(self.slot_count(), None);
        let prev = self.set_grad_enabled(create_graph);
        // Anomaly mode checks every gradient tensor, so it keeps the unfused path.
        self.fuse_grad_accumulation = !create_graph && !self.anomaly && matches!(sink, Sink::Accumulate);
        let r = self.sweep_inner(roots, seeds, retain_graph, create_graph, &mut sink, &mut pending);
        self.fuse_grad_accumulation = false;
        self.grad_enabled = prev;
        pending.clear();
        self.sweep = pending;
        r
    }

    fn sweep_inner(
        &mut self,
        roots: &[Tensor],
        seeds: &[Option<Tensor>],
        retain_graph: bool,
        create_graph: bool,
        sink: &mut Sink,
        pending: &mut Vec<Option<Tensor>>,
    ) -> Result<()> {
        // Without create_graph, intermediate gradients die as soon as they are consumed (their buffers go
        // back to the pool for the next op). The functional form returns some of them, so keeps them all.
        let may_free = !create_graph && matches!(sink, Sink::Accumulate);
        // Seed every root.
        let mut top: Option<usize> = None;
        for (i, &root) in roots.iter().enumerate() {
            let e = self.entry(root)?;
            if !e.requires_grad {
                bail!(Autograd, "element {} of tensors does not require grad and does not have a grad_fn", i);
            }
            let (shape, node, dt) = (e.shape, e.node, e.buf.dtype());
            let seed = match seeds[i] {
                None if shape.numel() != 1 => {
                    bail!(Autograd, "grad can be implicitly created only for scalar outputs; pass a gradient of shape {:?}", shape)
                }
                None => self.full(shape.dims(), 1.0, dt)?,
                Some(s) => {
                    let se = self.entry(s)?;
                    if se.shape != shape {
                        bail!(ShapeMismatch, "the gradient has shape {:?}, but the output has shape {:?}", se.shape, shape);
                    }
                    if se.buf.dtype() != dt {
                        bail!(DType, "the gradient is {}, the output {}", se.buf.dtype().name(), dt.name());
                    }
                    // Copy: the sweep owns every tensor it accumulates into; the caller keeps its own.
                    if create_graph { self.mul_scalar(s, 1.0)? } else { self.detach(s)? }
                }
            };
            self.accumulate(pending, root, seed, may_free)?;
            if let Some(n) = node {
                top = Some(top.map_or(n as usize, |t: usize| t.max(n as usize)));
            }
        }

        if let Some(top) = top {
            for ni in (0..=top).rev() {
                let out = self.nodes[ni].out;
                let Some(g) = pending.get_mut(out.index as usize).and_then(Option::take) else { continue };
                if self.entry(out).is_err() {
                    continue; // the output was freed; nothing flows through it
                }
                self.deliver(sink, out, g, create_graph)?;
                let node = self.nodes[ni].clone();
                self.check_saved(&node)?;
                let inputs = node.op.inputs();
                let inputs = inputs.as_slice();
                let mut needs = [false; 64];
                let mut needs_vec;
                let needs: &mut [bool] = if inputs.len() <= 64 {
                    &mut needs[..inputs.len()]
                } else {
                    needs_vec = vec![false; inputs.len()];
                    &mut needs_vec
                };
                for (k, &t) in inputs.iter().enumerate() {
                    needs[k] = self.entry(t).map(|e| e.requires_grad).unwrap_or(false);
                }
                let mut grads = self.op_backward(&node.op, out, g, needs).map_err(|e| match e.kind() {
                    // A backward is made of ops; name the op whose backward it is.
                    crate::ErrorKind::Anomaly => err!(Anomaly, "anomaly in the backward of '{}': {}", node.op.kind().name(), e.message()),
                    _ => e,
                })?;
                // An op may hand the same tensor to two inputs (add's backward passes g to both);
                // each input must own its gradient, so later duplicates become copies.
                for k in 1..grads.len() {
                    if let Some(gk) = grads[k] {
                        if grads[..k].contains(&Some(gk)) {
                            grads[k] = Some(if create_graph { self.mul_scalar(gk, 1.0)? } else { self.detach(gk)? });
                        }
                    }
                }
                let passed_on = grads.contains(&Some(g));
                for (k, gk) in grads.iter().copied().enumerate() {
                    let Some(gk) = gk else { continue };
                    if !needs[k] {
                        continue;
                    }
                    if self.anomaly {
                        check_finite(&self.entry(gk)?.buf, node.op.kind(), "backward")?;
                    }
                    self.accumulate(pending, inputs[k], gk, may_free)?;
                }
                if may_free && !passed_on {
                    self.free(g)?;
                }
                if !retain_graph {
                    self.nodes[ni].released = true;
                }
            }
        }

        // What reached the leaves.
        for (idx, slot) in pending.iter_mut().enumerate() {
            let Some(g) = slot.take() else { continue };
            let Some(t) = self.handle_at(idx) else { continue };
            self.deliver(sink, t, g, create_graph)?;
        }
        Ok(())
    }

    /// Hands the gradient that reached `t` to the sink: into `.grad` (leaves requiring grad, and
    /// non-leaves that retain it) or into the returned list.
    fn deliver(&mut self, sink: &mut Sink, t: Tensor, g: Tensor, create_graph: bool) -> Result<()> {
        match sink {
            Sink::Return(inputs, found) => {
                for (i, &x) in inputs.iter().enumerate() {
                    if x == t {
                        found[i] = Some(g);
                    }
                }
                Ok(())
            }
            Sink::Accumulate => {
                let e = self.entry(t)?;
                let is_leaf = e.node.is_none();
                if !(e.retains_grad || is_leaf && e.requires_grad) {
                    return Ok(());
                }
                let persistent = e.persistent;
                // A non-leaf's gradient also flows on to its inputs, so it gets a copy.
                let g = if is_leaf { g } else { self.detach(g)? };
                match self.entry(t)?.grad.filter(|&old| self.entry(old).is_ok()) {
                    None => {
                        self.entry_mut(g)?.persistent = persistent;
                        self.entry_mut(t)?.grad = Some(g);
                    }
                    // A flat .grad (a view) always accumulates in place, so it stays in its buffer.
                    Some(old) if create_graph && !matches!(self.entry(old)?.buf, Buf::View(_)) => {
                        let sum = self.add(old, g)?;
                        self.entry_mut(sum)?.persistent = persistent;
                        self.entry_mut(t)?.grad = Some(sum);
                    }
                    Some(old) => {
                        self.add_in_place(old, g)?;
                        self.free(g)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// pending[t] += g, out of place (a pending gradient may also be a returned result).
    fn accumulate(&mut self, pending: &mut Vec<Option<Tensor>>, t: Tensor, g: Tensor, may_free: bool) -> Result<()> {
        let idx = t.index as usize;
        if idx >= pending.len() {
            pending.resize(idx + 1, None);
        }
        pending[idx] = Some(match pending[idx] {
            None => g,
            Some(prev) => {
                let sum = self.add(prev, g)?;
                if may_free {
                    self.free(prev)?;
                    if g != prev && self.entry(g).is_ok() {
                        self.free(g)?;
                    }
                }
                sum
            }
        });
        Ok(())
    }

    /// Fails when the node's saved state was freed by an earlier backward, a saved tensor was freed, or
    /// a saved tensor was written in place since the node was recorded.
    fn check_saved(&self, node: &crate::graph::Node) -> Result<()> {
        let saved = node.op.saved();
        if saved.inputs == 0 && !saved.output {
            return Ok(());
        }
        let name = node.op.kind().name();
        if node.released {
            bail!(
                Autograd,
                "Trying to backward through the graph a second time (or directly access saved tensors after they have already been freed): the saved values of '{}' were freed by the previous backward. Pass retain_graph=true to the first backward if you need to backward through the graph a second time.",
                name
            );
        }
        let inputs = node.op.inputs();
        for (k, &t) in inputs.as_slice().iter().enumerate().take(3) {
            if saved.inputs & (1 << k) != 0 {
                let e = self.entry(t).map_err(|_| err!(Autograd, "a tensor saved for the backward of '{}' was freed", name))?;
                if e.version != node.versions[k] {
                    bail!(
                        Autograd,
                        "one of the variables needed for gradient computation has been modified by an inplace operation: input {} of '{}' (shape {:?}) is at version {}; expected version {} instead",
                        k, name, e.shape, e.version, node.versions[k]
                    );
                }
            }
        }
        if saved.output && self.entry(node.out)?.version != node.versions[3] {
            bail!(
                Autograd,
                "one of the variables needed for gradient computation has been modified by an inplace operation: the output of '{}' is at version {}; expected version {} instead",
                name, self.entry(node.out)?.version, node.versions[3]
            );
        }
        Ok(())
    }

    /// a += b elementwise, in place (same shape), bumping a's version.
    pub(crate) fn add_in_place(&mut self, a: Tensor, b: Tensor) -> Result<()> {
        if self.shape(a)? != self.shape(b)? {
            bail!(ShapeMismatch, "in-place add: shapes {:?} and {:?} differ", self.shape(a)?, self.shape(b)?);
        }
        float_dispatch!(self.dtype(a)?, T => {
            self.with_mut_and_ref::<T, _>(a, b, |dst, src| {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            })
        })
    }
}
