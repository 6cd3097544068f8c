//! Bytes → a file → `load_checkpoint` (every part) and `load_weights`: Ok or Err, never a panic, and a
//! failed load leaves the training state bit-identical (the harness is shared with
//! `tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../../tests/harness/loaders.rs"]
mod loaders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    loaders::checkpoint_load(data);
});
