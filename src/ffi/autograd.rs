//! Autograd from C: requires_grad, backward, `.grad`, the functional gradient, detach.

use super::boundary::{boundary, error, op_out, slice_in, slice_out, Out};
use super::graph::{bp_graph, with_graph};
use super::bp_status;
use crate::error::ErrorKind;
use crate::graph::Tensor;
use std::ffi::c_char;

/// Sets whether a leaf tensor takes part in differentiation (`requires_grad_`). Only floating-point
/// leaves can require grad (`BP_ERR_DTYPE` for int64); on a non-leaf it fails with `BP_ERR_AUTOGRAD`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_set_requires_grad(graph: *mut bp_graph, tensor: Tensor, requires_grad: bool) -> bp_status {
    boundary(|| with_graph(graph, |g| g.set_requires_grad(tensor, requires_grad)))
}

/// Writes whether the tensor requires grad (a leaf that asked, or the result of a recorded op on one)
/// to `*requires_grad_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_requires_grad(graph: *mut bp_graph, tensor: Tensor, requires_grad_out: *mut bool) -> bp_status {
    boundary(|| {
        let out = Out::new(requires_grad_out, "requires_grad_out")?;
        out.write(with_graph(graph, |g| g.requires_grad(tensor))?);
        Ok(())
    })
}

/// Writes whether the tensor is a leaf (made by the caller or under no-grad, not by a recorded op) to
/// `*is_leaf_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_is_leaf(graph: *mut bp_graph, tensor: Tensor, is_leaf_out: *mut bool) -> bp_status {
    boundary(|| {
        let out = Out::new(is_leaf_out, "is_leaf_out")?;
        out.write(with_graph(graph, |g| g.is_leaf(tensor))?);
        Ok(())
    })
}

/// Writes the name of the op that made the tensor (PyTorch's `grad_fn`, e.g. "matmul") to `*name_out`,
/// or NULL for a leaf.
///
/// Ownership: `*name_out` is a static string, valid for the life of the process; never free it.
#[no_mangle]
pub extern "C" fn bp_tensor_grad_fn(graph: *mut bp_graph, tensor: Tensor, name_out: *mut *const c_char) -> bp_status {
    boundary(|| {
        let out = Out::new(name_out, "name_out")?;
        let name = with_graph(graph, |g| g.grad_fn(tensor))?;
        out.write(match name {
            None => std::ptr::null(),
            Some(n) => static_c_name(n),
        });
        Ok(())
    })
}

/// The NUL-terminated copy of an op name: a table built once from every op kind, read without a lock.
/// (A plain list: a few dozen names, and valgrind sees its memory as reachable, unlike a hash table's.)
fn static_c_name(name: &'static str) -> *const c_char {
    use once_cell::sync::Lazy;
    use std::ffi::CString;
    static NAMES: Lazy<Vec<(&'static str, CString)>> = Lazy::new(|| {
        crate::OpKind::ALL.iter().map(|k| (k.name(), CString::new(k.name()).unwrap_or_default())).collect()
    });
    NAMES.iter().find(|(n, _)| *n == name).map_or(c"?".as_ptr(), |(_, c)| c.as_ptr())
}

/// Asks a non-leaf tensor to keep its gradient during backward (`retain_grad`; a no-op on leaves).
/// Fails with `BP_ERR_AUTOGRAD` for a tensor that does not require grad.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_retain_grad(graph: *mut bp_graph, tensor: Tensor) -> bp_status {
    boundary(|| with_graph(graph, |g| g.retain_grad(tensor)))
}

/// Computes the gradient of `root` with respect to every leaf that requires grad and accumulates it
/// into their gradients (read them with `bp_grad`). A one-element root is seeded with 1; any other root
/// needs `gradient` (a tensor of the root's shape), otherwise `gradient` may be NULL. Unless
/// `retain_graph`, the values the recorded ops saved are freed and a second backward through them fails
/// with `BP_ERR_AUTOGRAD`. With `create_graph` the accumulated gradients are themselves differentiable
/// (and the graph is retained).
///
/// Ownership: gradients are owned by the graph (see `bp_grad`); `gradient` is only read.
#[no_mangle]
pub extern "C" fn bp_backward(graph: *mut bp_graph, root: Tensor, gradient: *const Tensor, retain_graph: bool, create_graph: bool) -> bp_status {
    boundary(|| {
        let gradient = slice_in(gradient, usize::from(!gradient.is_null()), "gradient")?.first().copied();
        with_graph(graph, |g| {
            if create_graph {
                g.backward_create_graph(root, gradient)
            } else {
                g.backward(root, gradient, retain_graph)
            }
        })
    })
}

/// Writes the accumulated gradient of `tensor` (PyTorch's `.grad`) to `*grad_out`: the null handle
/// (test with `bp_tensor_is_null`) for a leaf without one yet. For a non-leaf that did not call
/// `bp_tensor_retain_grad` before backward it fails with `BP_ERR_AUTOGRAD` (PyTorch warns and returns
/// None).
///
/// Ownership: the graph owns the gradient; it stays valid until `bp_zero_grad` on `tensor`, freeing
/// `tensor`, `bp_graph_reset` (unless `tensor` is persistent) or `bp_graph_free`. Do not free it
/// yourself. A later backward accumulates into it in place.
#[no_mangle]
pub extern "C" fn bp_grad(graph: *mut bp_graph, tensor: Tensor, grad_out: *mut Tensor) -> bp_status {
    boundary(|| {
        let out = Out::new(grad_out, "grad_out")?;
        let grad = with_graph(graph, |g| g.grad(tensor))?;
        out.write(grad.unwrap_or_default());
        Ok(())
    })
}

/// Drops the tensor's gradient (PyTorch's `zero_grad(set_to_none=True)`); the next backward starts
/// from scratch. A parameter of a `bp_data_parallel` keeps its gradient, a view of the flat gradient
/// buffer: it is zeroed in place instead (`set_to_none=False`).
///
/// Ownership: the old gradient handle becomes stale (except a flat gradient's, which stays valid).
#[no_mangle]
pub extern "C" fn bp_zero_grad(graph: *mut bp_graph, tensor: Tensor) -> bp_status {
    boundary(|| with_graph(graph, |g| g.zero_grad(tensor)))
}

/// The functional gradient, as `torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph,
/// create_graph)`: writes d(Σ outputs·grad_outputs)/d `inputs[i]` to `grads_out[i]` without touching any
/// `.grad`. `grad_outputs` may be NULL (with `n_grad_outputs` 0) when every output has one element;
/// otherwise it has one entry per output, the null handle meaning "seed with 1". `grads_len` must
/// equal `n_inputs`. An input the outputs do not depend on is an error (`BP_ERR_AUTOGRAD`), never a
/// silent zero. With `create_graph` the gradients are differentiable (and the graph is retained).
///
/// Ownership: the graph owns the gradients written to `grads_out`, as any op result (stale after
/// `bp_tensor_free`, `bp_graph_reset` or `bp_graph_free`); the input arrays are only read.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn bp_grad_of(
    graph: *mut bp_graph,
    outputs: *const Tensor,
    n_outputs: usize,
    inputs: *const Tensor,
    n_inputs: usize,
    grad_outputs: *const Tensor,
    n_grad_outputs: usize,
    retain_graph: bool,
    create_graph: bool,
    grads_out: *mut Tensor,
    grads_len: usize,
) -> bp_status {
    boundary(|| {
        let outs = slice_in(outputs, n_outputs, "outputs")?;
        let ins = slice_in(inputs, n_inputs, "inputs")?;
        let gos: Vec<Option<Tensor>> = slice_in(grad_outputs, n_grad_outputs, "grad_outputs")?
            .iter()
            .map(|&t| if t == Tensor::default() { None } else { Some(t) })
            .collect();
        if grads_len != n_inputs {
            return Err(error(ErrorKind::InvalidArgument, format!("grads_out holds {} handles for {} inputs", grads_len, n_inputs)));
        }
        let dst = slice_out(grads_out, grads_len, "grads_out")?;
        let grads = with_graph(graph, |g| g.grad_of(outs, ins, &gos, retain_graph, create_graph))?;
        dst.copy_from_slice(&grads);
        Ok(())
    })
}

/// Makes a new leaf holding a copy of the tensor's values, cut from its history; it never requires
/// grad. (PyTorch's detach shares storage; this one copies, so writes to either side stay separate.)
///
/// Ownership: as any op result: the graph owns `*tensor_out`.
#[no_mangle]
pub extern "C" fn bp_detach(graph: *mut bp_graph, tensor: Tensor, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| g.detach(tensor))
}
