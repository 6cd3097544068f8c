//! Bytes → a sequence of C-ABI calls through the real exported `bp_*` functions (the interpreter is
//! shared with `tests/ffi_properties.rs`). A crash is a panic inside the library (libFuzzer's panic
//! hook aborts before the boundary can catch it), a broken promise the interpreter checks, or memory
//! misuse AddressSanitizer sees.
#![no_main]

#[path = "../../tests/harness/c_abi_calls.rs"]
mod c_abi_calls;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    c_abi_calls::run(data);
});
