//! Bytes → options (first byte) and a file → `load_csv`: Ok with a consistent data set, or Err; never a
//! panic (the harness is shared with `tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../../tests/harness/loaders.rs"]
mod loaders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    loaders::csv_load(data);
});
