//! The run-time version. The compile-time `BP_VERSION_*` macros are written into the header from
//! Cargo.toml when it is generated (`tests/header.rs`), so both come from the same place.

use std::ffi::c_char;

const fn parse(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0u32;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

/// The major version of the library.
pub(crate) const MAJOR: u32 = parse(env!("CARGO_PKG_VERSION_MAJOR"));
/// The minor version.
pub(crate) const MINOR: u32 = parse(env!("CARGO_PKG_VERSION_MINOR"));
/// The patch version.
pub(crate) const PATCH: u32 = parse(env!("CARGO_PKG_VERSION_PATCH"));

/// The version of the library that is running, as major·10000 + minor·100 + patch (0.1.0 is 100).
/// Compare it with `BP_VERSION_NUMBER`, the version of the header you compiled against.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_version() -> u32 {
    MAJOR * 10000 + MINOR * 100 + PATCH
}

/// The version of the library that is running, as "major.minor.patch".
///
/// Ownership: a static string, valid for the life of the process; never free it.
#[no_mangle]
pub extern "C" fn bp_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}
