//! # The C ABI
//!
//! Everything C (and C++, Go, any language with a C FFI) can call. `include/bp.h` is generated from
//! this module by cbindgen (`BP_BLESS=1 cargo test --test header` regenerates it; `cargo test` fails
//! when the committed header differs). Doc comments on the items below become the header's comments.
//!
//! ## Conventions every exported function follows (new files under `src/ffi/` must too)
//!
//! 1. **Names.** Everything starts with `bp_`; functions read `bp_<object>_<verb>` (`bp_tensor_read_f32`,
//!    `bp_graph_reset`) except ops, which are `bp_<op>` (`bp_matmul`). Constants are `BP_<GROUP>_<NAME>`.
//!    What has `_new` has `_free`, and `_free(NULL)` does nothing.
//! 2. **Signature.** `#[no_mangle] pub extern "C" fn`, written out in full (cbindgen cannot see through
//!    macros). A fallible function returns [`bp_status`]; results go through trailing `*_out` pointers.
//!    Only infallible queries that cannot fail (`bp_version`) return a value directly.
//! 3. **Body.** The whole body runs inside `boundary::boundary` (or `boundary::op_out` for "graph op
//!    that makes one tensor"), which catches panics (→ `BP_ERR_INTERNAL`), turns a `bp::Error` into its
//!    status and stores the message for [`bp_last_error_message`]. Nothing may unwind into C.
//! 4. **Pointers.** Every pointer argument is checked before any work is done: `*_out` pointers with
//!    `boundary::Out::new` (null / misaligned → `BP_ERR_INVALID_ARGUMENT`), input buffers with
//!    `boundary::slice_in` / `boundary::slice_out` (a buffer is always followed by its length; a
//!    length of 0 accepts NULL), shapes with `boundary::dims_in`. Outputs are written last, only on
//!    success, so a failed call leaves every `*_out` untouched.
//! 5. **Graphs.** A `bp_graph*` is only ever turned into `&mut Graph` by `graph::with_graph`, which
//!    rejects NULL, forged and freed graphs and a graph that another thread is using right now.
//!    Tensor handles (`bp_tensor`) are values; the engine itself rejects stale, forged and cross-graph
//!    handles with `BP_ERR_INVALID_HANDLE`, so FFI code just passes them on.
//! 6. **Integers for enums.** C passes element types, reductions and flags as plain integers
//!    ([`bp_dtype`], [`bp_reduction`]) that are validated here: a Rust enum built from an unchecked C
//!    integer would be undefined behaviour.
//! 7. **Docs.** Every exported function's doc comment ends with an `Ownership:` line saying what the caller
//!    owns afterwards and how long any returned pointer stays valid (see `docs/C_API.md`).
//! 8. **`unsafe`** appears only in this module, each block with a `SAFETY:` comment.

#![allow(non_camel_case_types)]

pub mod autograd;
pub mod boundary;
pub mod data;
pub mod distributed;
pub mod graph;
pub mod io;
pub mod nn;
pub(crate) mod object;
pub mod optim;
pub mod ops;
pub mod tensor;
pub mod version;

pub use boundary::{bp_debug_trigger_panic, bp_last_error_message, bp_status_name};
pub use graph::bp_graph;

use crate::ErrorKind;

/// The result of every fallible call: `BP_OK` (0) or one of the `BP_ERR_*` codes. The numbers are
/// pinned forever and never reused.
pub type bp_status = i32;

/// Success.
pub const BP_OK: bp_status = 0;
/// An argument is invalid: a null pointer, a wrong length, a bad option, a graph used by two threads at once.
pub const BP_ERR_INVALID_ARGUMENT: bp_status = 1;
/// Shapes do not fit the operation (no broadcast, wrong rank, matmul mismatch).
pub const BP_ERR_SHAPE_MISMATCH: bp_status = 2;
/// A handle is stale, freed, forged, or belongs to another graph; or a graph pointer was freed.
pub const BP_ERR_INVALID_HANDLE: bp_status = 3;
/// The graph's memory limit (or the system allocator) refused an allocation.
pub const BP_ERR_OUT_OF_MEMORY: bp_status = 4;
/// Autograd refuses: a second backward without retain_graph, a missing gradient, a modified saved tensor.
pub const BP_ERR_AUTOGRAD: bp_status = 5;
/// The element type does not fit the operation.
pub const BP_ERR_DTYPE: bp_status = 6;
/// A file could not be read or written.
pub const BP_ERR_IO: bp_status = 7;
/// A file or buffer is malformed.
pub const BP_ERR_FORMAT: bp_status = 8;
/// A NaN or infinity appeared while anomaly detection was on.
pub const BP_ERR_ANOMALY: bp_status = 9;
/// A panic inside the library was caught at the boundary: a bug in backprop. The graph it happened in is
/// poisoned: every later call on it fails with this code; free it.
pub const BP_ERR_INTERNAL: bp_status = 10;
/// The operation is not supported (yet).
pub const BP_ERR_UNSUPPORTED: bp_status = 11;
/// A collective operation (all-reduce, broadcast) of data-parallel training failed: a callback returned
/// an error, a peer rank died, or a timeout expired.
pub const BP_ERR_COLLECTIVE: bp_status = 12;

/// The status code of an engine error kind. The match is exhaustive: a new kind needs a new code.
pub(crate) fn status_of(kind: ErrorKind) -> bp_status {
    match kind {
        ErrorKind::InvalidArgument => BP_ERR_INVALID_ARGUMENT,
        ErrorKind::ShapeMismatch => BP_ERR_SHAPE_MISMATCH,
        ErrorKind::InvalidHandle => BP_ERR_INVALID_HANDLE,
        ErrorKind::OutOfMemory => BP_ERR_OUT_OF_MEMORY,
        ErrorKind::Autograd => BP_ERR_AUTOGRAD,
        ErrorKind::DType => BP_ERR_DTYPE,
        ErrorKind::Io => BP_ERR_IO,
        ErrorKind::Format => BP_ERR_FORMAT,
        ErrorKind::Anomaly => BP_ERR_ANOMALY,
        ErrorKind::Internal => BP_ERR_INTERNAL,
        ErrorKind::Unsupported => BP_ERR_UNSUPPORTED,
        ErrorKind::Collective => BP_ERR_COLLECTIVE,
    }
}

/// An element type, passed as a plain integer: one of `BP_DTYPE_*`.
pub type bp_dtype = i32;
/// IEEE float32, the training type.
pub const BP_DTYPE_F32: bp_dtype = 0;
/// IEEE float64, for gradient checks and precise work.
pub const BP_DTYPE_F64: bp_dtype = 1;
/// int64, for class indices and gather/index_select indices.
pub const BP_DTYPE_I64: bp_dtype = 2;

/// How a loss reduces its per-element values, passed as a plain integer: one of `BP_REDUCTION_*`.
pub type bp_reduction = i32;
/// One value per element (or per sample).
pub const BP_REDUCTION_NONE: bp_reduction = 0;
/// The mean (over non-ignored samples for cross-entropy).
pub const BP_REDUCTION_MEAN: bp_reduction = 1;
/// The sum.
pub const BP_REDUCTION_SUM: bp_reduction = 2;

/// The activation [`bp_linear_act`](ops::bp_linear_act) applies, passed as a plain integer: one of
/// `BP_ACTIVATION_*`.
pub type bp_activation = i32;
/// max(x, 0)
pub const BP_ACTIVATION_RELU: bp_activation = 0;
/// 1 / (1 + e^-x)
pub const BP_ACTIVATION_SIGMOID: bp_activation = 1;
/// tanh x
pub const BP_ACTIVATION_TANH: bp_activation = 2;

/// The activation named by a C integer.
pub(crate) fn activation_of(a: bp_activation) -> crate::Result<crate::Activation> {
    match a {
        BP_ACTIVATION_RELU => Ok(crate::Activation::Relu),
        BP_ACTIVATION_SIGMOID => Ok(crate::Activation::Sigmoid),
        BP_ACTIVATION_TANH => Ok(crate::Activation::Tanh),
        _ => Err(crate::Error::new(ErrorKind::InvalidArgument, format!("{} is not a bp_activation (0 = relu, 1 = sigmoid, 2 = tanh)", a))),
    }
}

/// The dtype named by a C integer.
pub(crate) fn dtype_of(d: bp_dtype) -> crate::Result<crate::DType> {
    match d {
        BP_DTYPE_F32 => Ok(crate::DType::F32),
        BP_DTYPE_F64 => Ok(crate::DType::F64),
        BP_DTYPE_I64 => Ok(crate::DType::I64),
        _ => Err(crate::Error::new(ErrorKind::InvalidArgument, format!("{} is not a bp_dtype (0 = f32, 1 = f64, 2 = i64)", d))),
    }
}

/// The C integer of a dtype.
pub(crate) fn dtype_code(d: crate::DType) -> bp_dtype {
    match d {
        crate::DType::F32 => BP_DTYPE_F32,
        crate::DType::F64 => BP_DTYPE_F64,
        crate::DType::I64 => BP_DTYPE_I64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_equal_error_kind_values() {
        let kinds = [
            ErrorKind::InvalidArgument, ErrorKind::ShapeMismatch, ErrorKind::InvalidHandle, ErrorKind::OutOfMemory,
            ErrorKind::Autograd, ErrorKind::DType, ErrorKind::Io, ErrorKind::Format, ErrorKind::Anomaly,
            ErrorKind::Internal, ErrorKind::Unsupported, ErrorKind::Collective,
        ];
        for k in kinds {
            assert_eq!(status_of(k), k.code(), "{:?}", k);
        }
    }

    #[test]
    fn dtype_codes_equal_engine_values() {
        for d in [crate::DType::F32, crate::DType::F64, crate::DType::I64] {
            assert_eq!(dtype_code(d), d as i32);
            assert_eq!(dtype_of(dtype_code(d)).unwrap(), d);
        }
        assert!(dtype_of(3).is_err());
    }
}
