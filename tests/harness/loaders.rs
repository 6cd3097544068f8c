//! The file-loader harnesses shared by the fuzz targets `checkpoint_load` and `csv_load` and by
//! `tests/fuzz_regressions.rs` (which replays inputs the fuzzer found and the committed corpora).
//!
//! Promise checked: whatever bytes a file holds, loading it returns `Ok` or `Err` (never a panic, never
//! unbounded allocation), and a failed load leaves the model, optimizer, schedule, loader and the
//! graph's generator bit-identical to what they were.

// Each including test or fuzz target uses a different part.
#![allow(dead_code)]

use bp::data::DataLoader;
use bp::io::{self, CsvOptions, TrainingParts, TrainingPartsMut};
use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Schedule};
use bp::Graph;
use std::path::{Path, PathBuf};

/// A small training state with every part a checkpoint holds: a model with dropout, AdamW with state,
/// a cosine schedule and a shuffling loader.
pub struct Training {
    pub g: Graph,
    pub model: Sequential,
    pub opt: Adam,
    pub sched: LrSchedule,
    pub loader: DataLoader,
}

/// The training state `seed` makes; `steps` optimizer steps give the optimizer buffers to save.
pub fn training(seed: u64, steps: usize) -> Training {
    let mut g = Graph::new();
    g.manual_seed(seed);
    let mut model = Sequential::new();
    model.push(Layer::linear(&mut g, 3, 4, true).unwrap()).push(Layer::Relu).push(Layer::Dropout(0.25)).push(Layer::linear(&mut g, 4, 2, true).unwrap());
    let mut opt = Adam::new(&g, model.named_parameters(), AdamConfig::adamw(0.01)).unwrap();
    let sched = LrSchedule::new(Schedule::Cosine { t_max: 4, eta_min: 0.0 }, &mut opt).unwrap();
    let mut loader = DataLoader::new(6, 4, true, seed).unwrap();
    loader.start_epoch();
    let mut t = Training { g, model, opt, sched, loader };
    for i in 0..steps {
        let x = t.g.rand(&[2, 3], -1.0, 1.0, bp::DType::F32).unwrap();
        let y = t.g.from_i64(&[(i % 2) as i64, 1], &[2]).unwrap();
        t.opt.zero_grad(&mut t.g).unwrap();
        let out = t.model.forward(&mut t.g, x).unwrap();
        let l = t.g.cross_entropy(out, y).unwrap();
        t.g.backward(l, None, false).unwrap();
        t.opt.step(&mut t.g).unwrap();
        t.g.reset();
    }
    t
}

/// Every bit of the training state a load may change, flattened for comparison.
pub fn snapshot(t: &Training) -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    for p in t.model.parameters() {
        v.extend(t.g.data::<f32>(p).unwrap().iter().map(|x| x.to_bits() as u64));
    }
    v.extend(t.g.generator().to_words().iter().map(|&w| w as u64));
    v.push(t.opt.lr().to_bits());
    for s in &t.opt.state().slots {
        v.push(s.step);
        for b in &s.buffers {
            v.push(b.len() as u64);
            v.extend(b.iter().map(|x| x.to_bits() as u64));
        }
    }
    v.extend([t.sched.last_epoch, t.sched.base_lr.to_bits(), t.sched.last_lr.to_bits()]);
    let (order, cursor) = t.loader.position();
    v.extend(order.iter().map(|&i| i as u64));
    v.extend([cursor as u64, t.loader.epoch()]);
    v.extend(t.loader.generator().to_words().iter().map(|&w| w as u64));
    v
}

/// The bytes of a valid checkpoint of [`training`]`(seed, steps)`: the seed corpus of the fuzz target.
pub fn valid_checkpoint(path: &Path, seed: u64, steps: usize) -> Vec<u8> {
    let t = training(seed, steps);
    let parts = TrainingParts { optimizer: Some(&t.opt), schedule: Some(&t.sched), loader: Some(&t.loader), metadata: &[("note", "seed")] };
    io::save_checkpoint(path, &t.g, &t.model, parts).unwrap();
    std::fs::read(path).unwrap()
}

/// A file path private to this process (the fuzzer and parallel tests each get their own).
pub fn scratch_path(what: &str) -> PathBuf {
    let tid = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    std::env::temp_dir().join(format!("bp-harness-{}-{}-{}", std::process::id(), tid, what))
}

/// Writes `data` to a file and loads it as a checkpoint (every part) and as bare weights. Returns
/// whether the checkpoint load succeeded. Panics if a failed load changed any state.
pub fn checkpoint_load(data: &[u8]) -> bool {
    let path = scratch_path("checkpoint.safetensors");
    std::fs::write(&path, data).unwrap();
    let mut t = training(1, 2);
    let before = snapshot(&t);
    let parts = TrainingPartsMut { optimizer: Some(&mut t.opt), schedule: Some(&mut t.sched), loader: Some(&mut t.loader) };
    let ok = match io::load_checkpoint(&path, &mut t.g, &t.model, parts) {
        Ok(_) => true,
        Err(e) => {
            assert!(!e.message().is_empty(), "an error without a message");
            assert!(snapshot(&t) == before, "a failed checkpoint load changed the training state: {e}");
            false
        }
    };
    let mut w = training(2, 0);
    let before = snapshot(&w);
    if let Err(e) = io::load_weights(&path, &mut w.g, &w.model) {
        assert!(snapshot(&w) == before, "a failed weights load changed the model: {e}");
    }
    let _ = std::fs::remove_file(&path);
    ok
}

/// Writes `data[1..]` to a file and loads it as CSV with options chosen by `data[0]`. Returns whether
/// it loaded. A data set that loads must be consistent (rows × width = features, one label per row).
pub fn csv_load(data: &[u8]) -> bool {
    let (opt_byte, text) = data.split_first().map_or((0, &[][..]), |(o, t)| (*o, t));
    let opt = CsvOptions {
        label_column: [-1i64, 0, 1, -2, 2, i64::MIN, i64::MAX, 5][(opt_byte & 7) as usize],
        has_header: opt_byte & 8 != 0,
        delimiter: [b',', b';', b'\t', b' '][((opt_byte >> 4) & 3) as usize],
    };
    let path = scratch_path("data.csv");
    std::fs::write(&path, text).unwrap();
    let result = io::load_csv(&path, opt);
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(d) => {
            assert_eq!(d.features().len(), d.len() * d.dim(), "features do not tile rows × width");
            assert_eq!(d.labels().len(), d.len());
            assert!(d.features().iter().all(|v| v.is_finite()));
            assert!(d.labels().iter().all(|&l| l >= 0));
            true
        }
        Err(e) => {
            assert!(!e.message().is_empty(), "an error without a message");
            false
        }
    }
}
