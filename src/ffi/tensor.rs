//! Tensors: creation, queries, reading and writing data, freeing. A tensor is named by a `bp_tensor`
//! value (graph id, slot, generation); the graph owns the data.

use super::boundary::{boundary, dims_in, error, op_out, slice_in, slice_out, Out};
use super::graph::{bp_graph, with_graph};
use super::{bp_dtype, bp_status, dtype_code, dtype_of};
use crate::dtype::DType;
use crate::error::{ErrorKind, Result};
use crate::graph::{Graph, Tensor};

/// Makes a new leaf tensor of zeros with element type `dtype` (a `BP_DTYPE_*`) and shape
/// `dims[0..ndim]` (at most 8 dimensions; `ndim` 0 makes a scalar and accepts `dims` NULL).
///
/// Ownership: the graph owns the tensor. `*tensor_out` stays valid until `bp_tensor_free`, a
/// `bp_graph_reset` (unless it is persistent) or `bp_graph_free`.
#[no_mangle]
pub extern "C" fn bp_tensor_new(graph: *mut bp_graph, dtype: bp_dtype, dims: *const i64, ndim: usize, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (dt, d) = (dtype_of(dtype)?, dims_in(dims, ndim)?);
        g.zeros(&d, dt)
    })
}

/// Makes a new leaf tensor of element type `dtype` with every element equal to `value` (which must be
/// an integer for `BP_DTYPE_I64`).
///
/// Ownership: as `bp_tensor_new`.
#[no_mangle]
pub extern "C" fn bp_tensor_full(graph: *mut bp_graph, dtype: bp_dtype, dims: *const i64, ndim: usize, value: f64, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (dt, d) = (dtype_of(dtype)?, dims_in(dims, ndim)?);
        g.full(&d, value, dt)
    })
}

/// Makes a new float32 leaf tensor holding a copy of `data[0..len]`; `len` must equal the number of
/// elements of the shape.
///
/// Ownership: as `bp_tensor_new`; `data` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_tensor_from_f32(graph: *mut bp_graph, data: *const f32, len: usize, dims: *const i64, ndim: usize, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (v, d) = (slice_in(data, len, "data")?, dims_in(dims, ndim)?);
        g.from_slice(v, &d)
    })
}

/// Makes a new float64 leaf tensor holding a copy of `data[0..len]`.
///
/// Ownership: as `bp_tensor_new`; `data` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_tensor_from_f64(graph: *mut bp_graph, data: *const f64, len: usize, dims: *const i64, ndim: usize, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (v, d) = (slice_in(data, len, "data")?, dims_in(dims, ndim)?);
        g.from_slice(v, &d)
    })
}

/// Makes a new int64 leaf tensor (class indices, gather indices) holding a copy of `data[0..len]`.
///
/// Ownership: as `bp_tensor_new`; `data` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_tensor_from_i64(graph: *mut bp_graph, data: *const i64, len: usize, dims: *const i64, ndim: usize, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (v, d) = (slice_in(data, len, "data")?, dims_in(dims, ndim)?);
        g.from_i64(v, &d)
    })
}

/// Makes a 1-D leaf tensor `start, start + step, …` up to (not including) `end`, as `torch.arange`.
///
/// Ownership: as `bp_tensor_new`.
#[no_mangle]
pub extern "C" fn bp_tensor_arange(graph: *mut bp_graph, start: f64, end: f64, step: f64, dtype: bp_dtype, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let dt = dtype_of(dtype)?;
        g.arange(start, end, step, dt)
    })
}

/// Makes a floating-point leaf tensor uniform on [low, high) from the graph's generator, exactly as
/// `torch.empty(dims).uniform_(low, high)` after the same `bp_graph_manual_seed`.
///
/// Ownership: as `bp_tensor_new`.
#[no_mangle]
pub extern "C" fn bp_tensor_rand(graph: *mut bp_graph, dtype: bp_dtype, dims: *const i64, ndim: usize, low: f64, high: f64, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (dt, d) = (dtype_of(dtype)?, dims_in(dims, ndim)?);
        g.rand(&d, low, high, dt)
    })
}

/// Makes a floating-point leaf tensor of normal samples with the given mean and standard deviation,
/// as `torch.randn(dims) * std + mean`.
///
/// Ownership: as `bp_tensor_new`.
#[no_mangle]
pub extern "C" fn bp_tensor_randn(graph: *mut bp_graph, dtype: bp_dtype, dims: *const i64, ndim: usize, mean: f64, std: f64, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let (dt, d) = (dtype_of(dtype)?, dims_in(dims, ndim)?);
        g.randn(&d, mean, std, dt)
    })
}

/// Makes an int64 leaf tensor uniform on the integers [low, high), as `torch.randint(low, high, dims)`.
///
/// Ownership: as `bp_tensor_new`.
#[no_mangle]
pub extern "C" fn bp_tensor_randint(graph: *mut bp_graph, low: i64, high: i64, dims: *const i64, ndim: usize, tensor_out: *mut Tensor) -> bp_status {
    op_out(graph, tensor_out, |g| {
        let d = dims_in(dims, ndim)?;
        g.randint(low, high, &d)
    })
}

/// Frees a tensor now, and its gradient with it; every copy of the handle becomes stale. Freeing the
/// null handle (all fields 0) or passing a NULL graph does nothing and returns `BP_OK`; freeing a stale
/// handle returns `BP_ERR_INVALID_HANDLE`.
///
/// Ownership: afterwards nobody owns the tensor; a backward that needs it reports the missing tensor.
#[no_mangle]
pub extern "C" fn bp_tensor_free(graph: *mut bp_graph, tensor: Tensor) -> bp_status {
    if graph.is_null() || tensor == Tensor::default() {
        return super::BP_OK;
    }
    boundary(|| with_graph(graph, |g| g.free(tensor)))
}

/// Returns whether `tensor` is the null handle (all fields 0): what a zero-initialised `bp_tensor`
/// holds and what `bp_grad` writes for a tensor without a gradient. Never fails.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_is_null(tensor: Tensor) -> bool {
    tensor == Tensor::default()
}

/// Marks a leaf tensor persistent (it and its gradient survive `bp_graph_reset`: use it for
/// parameters and data) or step-scoped again.
///
/// Ownership: unchanged: the graph owns the tensor.
#[no_mangle]
pub extern "C" fn bp_tensor_set_persistent(graph: *mut bp_graph, tensor: Tensor, persistent: bool) -> bp_status {
    boundary(|| with_graph(graph, |g| g.set_persistent(tensor, persistent)))
}

/// Writes whether the tensor survives `bp_graph_reset` to `*persistent_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_is_persistent(graph: *mut bp_graph, tensor: Tensor, persistent_out: *mut bool) -> bp_status {
    query(graph, persistent_out, "persistent_out", |g| g.is_persistent(tensor))
}

/// Reads one value out of the graph into `*out`.
fn query<T>(graph: *mut bp_graph, out: *mut T, name: &str, f: impl FnOnce(&mut Graph) -> Result<T>) -> bp_status {
    boundary(|| {
        let out = Out::new(out, name)?;
        out.write(with_graph(graph, f)?);
        Ok(())
    })
}

/// Writes the tensor's rank (number of dimensions, 0 to 8) to `*ndim_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_ndim(graph: *mut bp_graph, tensor: Tensor, ndim_out: *mut usize) -> bp_status {
    query(graph, ndim_out, "ndim_out", |g| Ok(g.shape(tensor)?.rank()))
}

/// Writes the tensor's dimensions to `dims_out[0..ndim]` and its rank to `*ndim_out`. `capacity` is
/// the length of `dims_out`; fewer than the rank fails with `BP_ERR_INVALID_ARGUMENT` (8 always
/// suffices).
///
/// Ownership: the caller owns `dims_out`; the library keeps no pointer to it.
#[no_mangle]
pub extern "C" fn bp_tensor_shape(graph: *mut bp_graph, tensor: Tensor, dims_out: *mut i64, capacity: usize, ndim_out: *mut usize) -> bp_status {
    boundary(|| {
        let ndim = Out::new(ndim_out, "ndim_out")?;
        let shape = with_graph(graph, |g| g.shape(tensor))?;
        if capacity < shape.rank() {
            return Err(error(ErrorKind::InvalidArgument, format!("dims_out holds {} dimensions; the tensor has {}", capacity, shape.rank())));
        }
        let dst = slice_out(dims_out, shape.rank(), "dims_out")?;
        for (o, &d) in dst.iter_mut().zip(shape.dims()) {
            *o = d as i64;
        }
        ndim.write(shape.rank());
        Ok(())
    })
}

/// Writes the number of elements to `*numel_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_numel(graph: *mut bp_graph, tensor: Tensor, numel_out: *mut usize) -> bp_status {
    query(graph, numel_out, "numel_out", |g| g.numel(tensor))
}

/// Writes the element type (a `BP_DTYPE_*`) to `*dtype_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_dtype(graph: *mut bp_graph, tensor: Tensor, dtype_out: *mut bp_dtype) -> bp_status {
    query(graph, dtype_out, "dtype_out", |g| Ok(dtype_code(g.dtype(tensor)?)))
}

/// Writes the value of a one-element tensor of any element type, converted to double, to `*value_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_item(graph: *mut bp_graph, tensor: Tensor, value_out: *mut f64) -> bp_status {
    query(graph, value_out, "value_out", |g| g.item(tensor))
}

/// Writes the tensor's version counter, bumped by every in-place write, to `*version_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_tensor_version(graph: *mut bp_graph, tensor: Tensor, version_out: *mut u32) -> bp_status {
    query(graph, version_out, "version_out", |g| g.version(tensor))
}

fn read_into<T: Copy>(graph: *mut bp_graph, tensor: Tensor, out: *mut T, len: usize, want: DType, data: impl for<'g> FnOnce(&'g Graph, Tensor) -> Result<&'g [T]>) -> bp_status {
    boundary(|| {
        let dst = slice_out(out, len, "out")?;
        with_graph(graph, |g| {
            let dt = g.dtype(tensor)?;
            if dt != want {
                return Err(error(ErrorKind::DType, format!("the tensor holds {}, not {}", dt.name(), want.name())));
            }
            let src = data(g, tensor)?;
            if src.len() != len {
                return Err(error(ErrorKind::InvalidArgument, format!("the buffer holds {} values; the tensor has {} elements", len, src.len())));
            }
            dst.copy_from_slice(src);
            Ok(())
        })
    })
}

/// Copies the elements of a float32 tensor, row-major, into `out[0..len]`; `len` must equal the number
/// of elements and the tensor must be float32 (`BP_ERR_DTYPE` otherwise; no conversion happens).
///
/// Ownership: the caller owns `out`; the library keeps no pointer to it.
#[no_mangle]
pub extern "C" fn bp_tensor_read_f32(graph: *mut bp_graph, tensor: Tensor, out: *mut f32, len: usize) -> bp_status {
    read_into(graph, tensor, out, len, DType::F32, |g, t| g.data::<f32>(t))
}

/// Copies the elements of a float64 tensor into `out[0..len]` (as `bp_tensor_read_f32`).
///
/// Ownership: the caller owns `out`; the library keeps no pointer to it.
#[no_mangle]
pub extern "C" fn bp_tensor_read_f64(graph: *mut bp_graph, tensor: Tensor, out: *mut f64, len: usize) -> bp_status {
    read_into(graph, tensor, out, len, DType::F64, |g, t| g.data::<f64>(t))
}

/// Copies the elements of an int64 tensor into `out[0..len]` (as `bp_tensor_read_f32`).
///
/// Ownership: the caller owns `out`; the library keeps no pointer to it.
#[no_mangle]
pub extern "C" fn bp_tensor_read_i64(graph: *mut bp_graph, tensor: Tensor, out: *mut i64, len: usize) -> bp_status {
    read_into(graph, tensor, out, len, DType::I64, |g, t| g.data_i64(t))
}

/// Overwrites the elements of a float32 tensor in place from `data[0..len]` (`len` must equal the
/// number of elements). Like every in-place write it bumps the tensor's version, so a later backward
/// through an op that saved the old values fails with `BP_ERR_AUTOGRAD`.
///
/// Ownership: `data` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_tensor_write_f32(graph: *mut bp_graph, tensor: Tensor, data: *const f32, len: usize) -> bp_status {
    boundary(|| {
        let src = slice_in(data, len, "data")?;
        with_graph(graph, |g| g.write(tensor, src))
    })
}

/// Overwrites the elements of a float64 tensor in place (as `bp_tensor_write_f32`).
///
/// Ownership: `data` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_tensor_write_f64(graph: *mut bp_graph, tensor: Tensor, data: *const f64, len: usize) -> bp_status {
    boundary(|| {
        let src = slice_in(data, len, "data")?;
        with_graph(graph, |g| g.write(tensor, src))
    })
}

/// Overwrites the elements of an int64 tensor in place (as `bp_tensor_write_f32`).
///
/// Ownership: `data` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_tensor_write_i64(graph: *mut bp_graph, tensor: Tensor, data: *const i64, len: usize) -> bp_status {
    boundary(|| {
        let src = slice_in(data, len, "data")?;
        with_graph(graph, |g| g.write_i64(tensor, src))
    })
}

/// Copies the values of `src` into `dst` in place (same shape and element type), bumping `dst`'s
/// version; records nothing for autograd. This is how C applies an update it computed with ops
/// (`w_new = w - lr * grad` under no-grad, then `bp_tensor_assign(g, w, w_new)`).
///
/// Ownership: unchanged: the graph owns both tensors.
#[no_mangle]
pub extern "C" fn bp_tensor_assign(graph: *mut bp_graph, dst: Tensor, src: Tensor) -> bp_status {
    boundary(|| with_graph(graph, |g| {
        let (sd, ss) = (g.shape(dst)?, g.shape(src)?);
        if sd != ss {
            return Err(error(ErrorKind::ShapeMismatch, format!("assign: destination {:?} and source {:?} differ", sd, ss)));
        }
        let (td, ts) = (g.dtype(dst)?, g.dtype(src)?);
        if td != ts {
            return Err(error(ErrorKind::DType, format!("assign: destination holds {}, source {}", td.name(), ts.name())));
        }
        if dst == src {
            return Ok(());
        }
        match td {
            DType::F32 => {
                let v = g.data::<f32>(src)?.to_vec();
                g.write(dst, &v)
            }
            DType::F64 => {
                let v = g.data::<f64>(src)?.to_vec();
                g.write(dst, &v)
            }
            DType::I64 => {
                let v = g.data_i64(src)?.to_vec();
                g.write_i64(dst, &v)
            }
        }
    }))
}
