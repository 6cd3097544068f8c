//! The error type of every fallible call. Its kinds map one-to-one onto the C ABI's `bp_status` codes.

use std::fmt;

/// What went wrong. The numeric value is the C ABI's status code and is pinned forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    /// An argument is invalid (a null pointer, a wrong length, a bad option).
    InvalidArgument = 1,
    /// Shapes do not fit the operation (no broadcast, wrong rank, matmul mismatch).
    ShapeMismatch = 2,
    /// A handle is stale, freed, forged, or belongs to another graph.
    InvalidHandle = 3,
    /// The graph's memory limit (or the system allocator) refused an allocation.
    OutOfMemory = 4,
    /// Autograd refuses: second backward without retain_graph, a missing gradient, a modified saved tensor.
    Autograd = 5,
    /// The element type does not fit the operation.
    DType = 6,
    /// A file could not be read or written.
    Io = 7,
    /// A file or buffer is malformed (a truncated checkpoint, a bad CSV row).
    Format = 8,
    /// A NaN or infinity appeared while anomaly detection was on.
    Anomaly = 9,
    /// A panic inside the library was caught at the boundary: a bug in backprop.
    Internal = 10,
    /// The operation is not supported (yet).
    Unsupported = 11,
    /// A collective operation (all-reduce, broadcast) failed: a peer rank died, or did not take part
    /// before the timeout.
    Collective = 12,
}

impl ErrorKind {
    /// The C status code of this kind.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// An error: a kind for programs and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    /// The kind, which matches the C ABI's status code.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result of every fallible call.
pub type Result<T> = std::result::Result<T, Error>;

macro_rules! bail {
    ($kind:ident, $($fmt:tt)+) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($fmt)+)))
    };
}
pub(crate) use bail;

macro_rules! err {
    ($kind:ident, $($fmt:tt)+) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($fmt)+))
    };
}
pub(crate) use err;
