//! Every input a fuzz target ever crashed on, replayed through the same harness code the target runs
//! (`tests/harness/`), plus the committed corpora, so that a fixed crash stays fixed in the normal test
//! run. Crashing inputs live in `fuzz/regressions/<target>/`, one file each, named after the bug; the
//! test next to a replay pins the fixed behaviour at the API level.

#[path = "harness/c_abi_calls.rs"]
mod c_abi_calls;
#[path = "harness/loaders.rs"]
mod loaders;

use bp::{DType, Graph};
use std::path::{Path, PathBuf};

fn inputs(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {}", dir.display(), e))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{} holds no inputs", dir.display());
    v
}

#[test]
fn crashing_c_abi_inputs_now_return_statuses() {
    for (path, bytes) in inputs("regressions/c_abi_calls") {
        let out = c_abi_calls::run(&bytes);
        assert!(out.calls > 0, "{}", path.display());
    }
}

/// Found by the C-ABI call sequences: `bp_tensor_randint(g, INT64_MIN, INT64_MAX, …)` overflowed the
/// signed addition of the offset to `low` (a panic → `BP_ERR_INTERNAL` in debug builds). ATen adds in
/// uint64 with wraparound; so does the generator now, and every value lands in [low, high).
#[test]
fn randint_over_the_whole_i64_range_stays_in_range() {
    let mut g = Graph::new();
    for (low, high) in [(i64::MIN, i64::MAX), (i64::MIN, 0), (-5, i64::MAX), (i64::MIN + 1, i64::MIN + 3)] {
        let t = g.randint(low, high, &[256]).unwrap();
        assert!(g.data_i64(t).unwrap().iter().all(|&v| low <= v && v < high), "[{low}, {high})");
    }
    let t = g.randint(i64::MIN, i64::MAX, &[256]).unwrap();
    let v = g.data_i64(t).unwrap();
    assert!(v.iter().any(|&x| x < 0) && v.iter().any(|&x| x > 0), "the draws cover both signs");
    assert_eq!(g.dtype(t).unwrap(), DType::I64);
}

#[test]
fn the_c_abi_corpus_replays_cleanly() {
    for (_, bytes) in inputs("corpus/c_abi_calls") {
        c_abi_calls::run(&bytes);
    }
}

#[test]
fn the_checkpoint_corpus_replays_cleanly_and_a_valid_file_loads() {
    for (_, bytes) in inputs("corpus/checkpoint_load") {
        loaders::checkpoint_load(&bytes);
    }
    let valid = loaders::valid_checkpoint(&loaders::scratch_path("valid.safetensors"), 3, 2);
    let _ = std::fs::remove_file(loaders::scratch_path("valid.safetensors"));
    assert!(loaders::checkpoint_load(&valid), "the harness must reach the success path");
}

#[test]
fn the_csv_corpus_replays_cleanly_and_a_valid_file_loads() {
    for (_, bytes) in inputs("corpus/csv_load") {
        loaders::csv_load(&bytes);
    }
    assert!(loaders::csv_load(b"\x00 1,2,0\n3.5,-4,1\n"), "the harness must reach the success path");
}

/// Found by the C-ABI call sequences: `bp_slice` with a step near `INT64_MAX` overflowed computing the
/// slice's length and stride (a panic → `BP_ERR_INTERNAL` in debug builds; a wrong stride in release).
/// A step past the dimension takes one element, as in PyTorch.
#[test]
fn slice_with_a_step_near_i64_max_takes_one_element() {
    let mut g = Graph::new();
    let x = g.from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[4]).unwrap();
    for (start, step) in [(0, i64::MAX), (1, i64::MAX - 1), (-2, 1 << 62)] {
        let y = g.slice(x, 0, start, i64::MAX, step).unwrap();
        let first = g.data::<f32>(x).unwrap()[start.rem_euclid(4) as usize];
        assert_eq!(g.data::<f32>(y).unwrap(), &[first], "start {start}, step {step}");
    }
    let y = g.slice(x, 0, 1, 4, 2).unwrap();
    assert_eq!(g.data::<f32>(y).unwrap(), &[2.0, 4.0], "ordinary steps are unchanged");
}

/// Found with the slice crash: `slice_scatter` checked `start + (len - 1) * step` without overflow
/// checks, so a huge start or step from C wrapped around and passed the bounds check.
#[test]
fn slice_scatter_with_a_huge_start_or_step_is_a_shape_error() {
    let mut g = Graph::new();
    let x = g.from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    for (start, step) in [(usize::MAX, 1), (0, usize::MAX), (usize::MAX / 2, 3)] {
        let e = g.slice_scatter(x, &[4], 0, start, step).unwrap_err();
        assert_eq!(e.kind(), bp::ErrorKind::ShapeMismatch, "start {start}, step {step}");
    }
    let y = g.slice_scatter(x, &[4], 0, 1, 2).unwrap();
    assert_eq!(g.data::<f32>(y).unwrap(), &[0.0, 1.0, 0.0, 2.0]);
}
