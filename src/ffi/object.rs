//! The toolkit's opaque objects (`bp_model`, `bp_optimizer`, `bp_schedule`, `bp_dataset`,
//! `bp_loader`) share one lifecycle, the same as `bp_graph`'s: a pointer C holds points to a *shell*
//! that is never returned to the allocator. `_free` drops the object inside, marks the shell freed and
//! parks it; only after [`REUSE_DELAY`] more objects of that type have been freed may `_new` hand the
//! shell out again. So using a pointer after `_free` is answered with `BP_ERR_INVALID_HANDLE` (until the
//! shell is reused), a pointer of another type or a made-up one is rejected by a magic number, and an
//! object used by two threads at once makes one call fail (a busy flag) instead of racing.

use super::boundary::error;
use crate::error::{ErrorKind, Result};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// How many freed shells of a type wait before one is reused.
const REUSE_DELAY: usize = 64;

/// The memory behind every toolkit object pointer.
pub struct Shell<T> {
    magic: u64,
    live: AtomicBool,
    busy: AtomicBool,
    poisoned: AtomicBool,
    inner: UnsafeCell<Option<T>>,
}

// SAFETY: the object inside is only reached through `with_object` / `free_object`, which hold the busy
// flag, so one thread at a time touches it; the objects themselves are `Send`.
unsafe impl<T: Send> Sync for Shell<T> {}

/// An opaque C type wrapping a shell.
pub(crate) trait Object: Sized + 'static {
    /// What the shell holds.
    type Inner: Send;
    /// Marks memory that is a shell of this type.
    const MAGIC: u64;
    /// The C type's name, for messages.
    const NAME: &'static str;
    /// The shell.
    fn shell(&self) -> &Shell<Self::Inner>;
    /// Wraps a shell.
    fn wrap(shell: Shell<Self::Inner>) -> Self;
    /// Freed shells of this type, oldest first (addresses).
    fn parked() -> &'static Mutex<VecDeque<usize>>;
}

struct BusyGuard<'a, T>(&'a Shell<T>);

impl<T> Drop for BusyGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
        self.0.busy.store(false, Ordering::Release);
    }
}

fn lock<'a, K: Object>(p: *mut K) -> Result<BusyGuard<'a, K::Inner>> {
    if p.is_null() {
        return Err(error(ErrorKind::InvalidArgument, format!("the {} is NULL", K::NAME)));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<K>()) {
        return Err(error(ErrorKind::InvalidHandle, format!("the {} pointer is forged: it is not aligned like one", K::NAME)));
    }
    // SAFETY: the C contract is that `p` came from this type's constructor. Shells are never
    // deallocated, so after `_free` this memory is still a shell; `magic` is written before the pointer
    // is handed out and never changed. For a pointer that did not come from a constructor this read is
    // the best-effort forgery check described in the module documentation.
    let shell: &'a Shell<K::Inner> = unsafe { &*p }.shell();
    if shell.magic != K::MAGIC {
        return Err(error(ErrorKind::InvalidHandle, format!("the {} pointer is forged or of another type", K::NAME)));
    }
    if shell.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return Err(error(ErrorKind::InvalidArgument, format!("the {} is being used by another call right now; use it from one thread at a time", K::NAME)));
    }
    let guard = BusyGuard(shell);
    if !shell.live.load(Ordering::Relaxed) {
        return Err(error(ErrorKind::InvalidHandle, format!("the {} was freed", K::NAME)));
    }
    Ok(guard)
}

/// A new object; the caller owns the pointer and releases it with [`free_object`].
pub(crate) fn new_object<K: Object>(inner: K::Inner) -> *mut K {
    let reused = {
        let mut parked = K::parked().lock().unwrap_or_else(|p| p.into_inner());
        if parked.len() > REUSE_DELAY { parked.pop_front() } else { None }
    };
    if let Some(addr) = reused {
        // SAFETY: parked addresses are shells made below and never deallocated.
        let shell = unsafe { &*(addr as *const K) }.shell();
        if shell.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // SAFETY: the busy flag gives exclusive access to the cell.
            unsafe { *shell.inner.get() = Some(inner) };
            shell.poisoned.store(false, Ordering::Relaxed);
            shell.live.store(true, Ordering::Relaxed);
            shell.busy.store(false, Ordering::Release);
            return addr as *mut K;
        }
        // A stale pointer is in use this instant: leave the shell for another turn.
        K::parked().lock().unwrap_or_else(|p| p.into_inner()).push_back(addr);
    }
    Box::into_raw(Box::new(K::wrap(Shell {
        magic: K::MAGIC,
        live: AtomicBool::new(true),
        busy: AtomicBool::new(false),
        poisoned: AtomicBool::new(false),
        inner: UnsafeCell::new(Some(inner)),
    })))
}

/// Runs `f` on the object behind `p`: the only way FFI code reaches one. Fails for a NULL, forged,
/// freed, busy or poisoned object.
pub(crate) fn with_object<K: Object, R>(p: *mut K, f: impl FnOnce(&mut K::Inner) -> Result<R>) -> Result<R> {
    let guard = lock(p)?;
    if guard.0.poisoned.load(Ordering::Relaxed) {
        return Err(error(ErrorKind::Internal, format!("the {} is poisoned by an earlier internal error; free it", K::NAME)));
    }
    // SAFETY: the busy flag, held by `guard` until this function returns, gives exclusive access.
    match unsafe { &mut *guard.0.inner.get() }.as_mut() {
        Some(inner) => f(inner),
        None => Err(error(ErrorKind::InvalidHandle, format!("the {} was freed", K::NAME))),
    }
}

/// Like [`with_object`] for an optional argument: NULL gives `None`.
pub(crate) fn with_optional<K: Object, R>(p: *mut K, f: impl FnOnce(Option<&mut K::Inner>) -> Result<R>) -> Result<R> {
    if p.is_null() {
        f(None)
    } else {
        with_object(p, |o| f(Some(o)))
    }
}

/// Frees the object behind `p` (NULL does nothing). Freeing twice is `BP_ERR_INVALID_HANDLE`.
pub(crate) fn free_object<K: Object>(p: *mut K) -> Result<()> {
    if p.is_null() {
        return Ok(());
    }
    let guard = lock(p)?;
    guard.0.live.store(false, Ordering::Relaxed);
    // SAFETY: the busy flag (held by `guard`) gives exclusive access to the cell.
    let dropped = unsafe { (*guard.0.inner.get()).take() };
    drop(guard);
    drop(dropped);
    K::parked().lock().unwrap_or_else(|p| p.into_inner()).push_back(p as usize);
    Ok(())
}

/// Makes `$name` (declared as `pub struct $name(Shell<$inner>);` where cbindgen can see it) an
/// [`Object`].
macro_rules! impl_object {
    ($name:ident, $inner:ty, $magic:expr) => {
        impl crate::ffi::object::Object for $name {
            type Inner = $inner;
            const MAGIC: u64 = $magic;
            const NAME: &'static str = stringify!($name);
            fn shell(&self) -> &crate::ffi::object::Shell<$inner> {
                &self.0
            }
            fn wrap(shell: crate::ffi::object::Shell<$inner>) -> Self {
                $name(shell)
            }
            fn parked() -> &'static std::sync::Mutex<std::collections::VecDeque<usize>> {
                static PARKED: std::sync::Mutex<std::collections::VecDeque<usize>> = std::sync::Mutex::new(std::collections::VecDeque::new());
                &PARKED
            }
        }
    };
}
pub(crate) use impl_object;

/// Reads a C string argument (NUL-terminated UTF-8).
pub(crate) fn str_in<'a>(p: *const std::ffi::c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(error(ErrorKind::InvalidArgument, format!("{} is NULL", name)));
    }
    // SAFETY: non-null; the C contract is that a string argument is NUL-terminated and not written by
    // anyone during the call.
    let c = unsafe { std::ffi::CStr::from_ptr(p) };
    c.to_str().map_err(|_| error(ErrorKind::InvalidArgument, format!("{} is not valid UTF-8", name)))
}

/// An optional C string argument: NULL gives `None`.
pub(crate) fn optional_str_in<'a>(p: *const std::ffi::c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() { Ok(None) } else { str_in(p, name).map(Some) }
}
