//! The boundary every exported function runs inside: panics become `BP_ERR_INTERNAL`, errors become
//! their status code with the message kept for `bp_last_error_message`, and pointers from C are checked
//! before use.

use super::graph::with_graph;
use super::{bp_status, status_of, BP_ERR_INTERNAL, BP_OK};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, Tensor};
use crate::shape::MAX_RANK;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// The message of the last failed call on this thread. Per thread, so no lock is taken.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // An interior NUL would truncate the C string; make it visible instead.
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; losing a message then is harmless.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// An error of `kind` (a shorthand for FFI code).
pub(crate) fn error(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

/// Runs `f`, catching any panic. Returns `BP_OK`, the status of the error `f` returned, or
/// `BP_ERR_INTERNAL` for a panic; on failure the message is stored for `bp_last_error_message`.
pub(crate) fn boundary(f: impl FnOnce() -> Result<()>) -> bp_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => BP_OK,
        Ok(Err(e)) => {
            set_last_error(e.message());
            status_of(e.kind())
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_string());
            set_last_error(&format!("internal error (a bug in backprop, please report it): {}", what));
            BP_ERR_INTERNAL
        }
    }
}

/// The common shape of an op: check the output pointer, run `f` on the graph, write the tensor it made.
pub(crate) fn op_out(g: *mut super::bp_graph, out: *mut Tensor, f: impl FnOnce(&mut Graph) -> Result<Tensor>) -> bp_status {
    boundary(|| {
        let out = Out::new(out, "out")?;
        let t = with_graph(g, f)?;
        out.write(t);
        Ok(())
    })
}

/// A checked `*_out` pointer: not null and aligned. Writing happens last, only on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Checks `p` (named `name` in the error message).
    pub(crate) fn new(p: *mut T, name: &str) -> Result<Out<T>> {
        if p.is_null() {
            return Err(error(ErrorKind::InvalidArgument, format!("{} is NULL", name)));
        }
        if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(error(ErrorKind::InvalidArgument, format!("{} is not aligned for its type", name)));
        }
        Ok(Out(p))
    }

    /// Like [`Out::new`], but NULL means "the caller does not want this output".
    pub(crate) fn optional(p: *mut T, name: &str) -> Result<Option<Out<T>>> {
        if p.is_null() { Ok(None) } else { Out::new(p, name).map(Some) }
    }

    /// Writes the value.
    pub(crate) fn write(self, v: T) {
        // SAFETY: the pointer is non-null and aligned (checked in `new`); the C contract (documented in
        // the header) is that an `*_out` pointer points to writable memory for one T during the call.
        unsafe { self.0.write(v) }
    }
}

fn check_buffer<T>(p: *const T, len: usize, name: &str) -> Result<()> {
    if p.is_null() {
        return Err(error(ErrorKind::InvalidArgument, format!("{} is NULL but its length is {}", name, len)));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(error(ErrorKind::InvalidArgument, format!("{} is not aligned for its element type", name)));
    }
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(error(ErrorKind::InvalidArgument, format!("{} has an impossible length {}", name, len)));
    }
    Ok(())
}

/// Borrows a caller's input buffer of `len` elements (NULL is accepted when `len` is 0).
pub(crate) fn slice_in<'a, T>(p: *const T, len: usize, name: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_buffer(p, len, name)?;
    // SAFETY: non-null, aligned, and len·size fits isize (checked above); the C contract is that the
    // buffer holds `len` initialised elements and is not written by anyone during the call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrows a caller's output buffer of `len` elements (NULL is accepted when `len` is 0).
pub(crate) fn slice_out<'a, T>(p: *mut T, len: usize, name: &str) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_buffer(p, len, name)?;
    // SAFETY: as in `slice_in`; the C contract is that the buffer is writable and not accessed by anyone
    // else during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A shape passed from C (`const int64_t* dims, size_t ndim`), converted without allocating.
pub(crate) struct Dims {
    dims: [usize; MAX_RANK],
    len: usize,
}

impl std::ops::Deref for Dims {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.dims[..self.len]
    }
}

/// Reads a shape: at most 8 dimensions, none negative.
pub(crate) fn dims_in(p: *const i64, ndim: usize) -> Result<Dims> {
    if ndim > MAX_RANK {
        return Err(error(ErrorKind::ShapeMismatch, format!("rank {} exceeds the maximum rank {}", ndim, MAX_RANK)));
    }
    let src = slice_in(p, ndim, "dims")?;
    let mut d = Dims { dims: [0; MAX_RANK], len: ndim };
    for (o, &v) in d.dims.iter_mut().zip(src) {
        *o = usize::try_from(v).map_err(|_| error(ErrorKind::InvalidArgument, format!("dimension {} in {:?} is negative", v, src)))?;
    }
    Ok(d)
}

/// Reads a list of dimension indices (negative ones count from the end): at most 8 of them.
pub(crate) fn dim_list_in<'a>(p: *const i64, n: usize) -> Result<&'a [i64]> {
    if n > MAX_RANK {
        return Err(error(ErrorKind::InvalidArgument, format!("{} dimensions given; a tensor has at most {}", n, MAX_RANK)));
    }
    slice_in(p, n, "dims")
}

/// The message of the last call on this thread that failed, as a NUL-terminated UTF-8 string; the empty
/// string when none has failed yet. Never NULL.
///
/// Ownership: borrowed from the library; valid until the next `bp_` call on the same thread. Copy it
/// if you need it longer. Each thread has its own message, so threads never see each other's errors.
#[no_mangle]
pub extern "C" fn bp_last_error_message() -> *const c_char {
    // Reading a thread-local cannot panic except during thread teardown, where a static "" is returned.
    LAST_ERROR.try_with(|e| e.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// The name of a status code ("BP_OK", "BP_ERR_SHAPE_MISMATCH", …; "BP_ERR_UNKNOWN" for any other
/// number). Never NULL.
///
/// Ownership: a static string, valid for the life of the process; never free it.
#[no_mangle]
pub extern "C" fn bp_status_name(status: bp_status) -> *const c_char {
    let name: &[u8] = match status {
        super::BP_OK => b"BP_OK\0",
        super::BP_ERR_INVALID_ARGUMENT => b"BP_ERR_INVALID_ARGUMENT\0",
        super::BP_ERR_SHAPE_MISMATCH => b"BP_ERR_SHAPE_MISMATCH\0",
        super::BP_ERR_INVALID_HANDLE => b"BP_ERR_INVALID_HANDLE\0",
        super::BP_ERR_OUT_OF_MEMORY => b"BP_ERR_OUT_OF_MEMORY\0",
        super::BP_ERR_AUTOGRAD => b"BP_ERR_AUTOGRAD\0",
        super::BP_ERR_DTYPE => b"BP_ERR_DTYPE\0",
        super::BP_ERR_IO => b"BP_ERR_IO\0",
        super::BP_ERR_FORMAT => b"BP_ERR_FORMAT\0",
        super::BP_ERR_ANOMALY => b"BP_ERR_ANOMALY\0",
        super::BP_ERR_INTERNAL => b"BP_ERR_INTERNAL\0",
        super::BP_ERR_UNSUPPORTED => b"BP_ERR_UNSUPPORTED\0",
        super::BP_ERR_COLLECTIVE => b"BP_ERR_COLLECTIVE\0",
        _ => b"BP_ERR_UNKNOWN\0",
    };
    name.as_ptr() as *const c_char
}

/// Panics inside the library on purpose and returns what the boundary makes of it: always
/// `BP_ERR_INTERNAL`, with a message. It exists so that programs and bindings can test their handling
/// of internal errors; it touches no graph.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_debug_trigger_panic() -> bp_status {
    boundary(|| panic!("bp_debug_trigger_panic was called"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn a_panic_becomes_internal_with_a_message() {
        assert_eq!(bp_debug_trigger_panic(), BP_ERR_INTERNAL);
        // SAFETY: the pointer is valid until the next bp_ call on this thread.
        let msg = unsafe { CStr::from_ptr(bp_last_error_message()) }.to_str().unwrap().to_owned();
        assert!(msg.contains("bp_debug_trigger_panic"), "{}", msg);
    }

    #[test]
    fn dims_reject_negative_and_too_many() {
        assert!(dims_in([2i64, -1].as_ptr(), 2).is_err());
        assert!(dims_in([1i64; 9].as_ptr(), 9).is_err());
        assert!(dims_in(std::ptr::null(), 1).is_err());
        assert_eq!(&*dims_in(std::ptr::null(), 0).unwrap(), &[] as &[usize]);
    }
}
