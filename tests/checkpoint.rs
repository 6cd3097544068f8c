//! Checkpoints: the whole training state in one safetensors file; resuming is bit-identical to never
//! stopping; bad files are clear errors that leave everything untouched; PyTorch's files load here.

use bp::data::{DataLoader, Dataset};
use bp::io::{self, SafeTensors, StTensor, TrainingParts, TrainingPartsMut};
use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Schedule, Sgd, SgdConfig};
use bp::{ErrorKind, Graph};
use std::path::{Path, PathBuf};

/// A fresh directory for one test, removed when the test ends.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(name: &str) -> TmpDir {
        let dir = std::env::temp_dir().join(format!("bp-checkpoint-{}-{}", std::process::id(), name));
        std::fs::create_dir_all(&dir).unwrap();
        TmpDir(dir)
    }
    fn file(&self) -> PathBuf {
        self.0.join("state.safetensors")
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data() -> Dataset {
    let mut g = bp::rng::Generator::new(11);
    let x: Vec<f32> = (0..50 * 6).map(|_| g.uniform_f32(-1.0, 1.0)).collect();
    let y: Vec<i64> = (0..50).map(|_| g.randint(0, 3)).collect();
    Dataset::new(x, y, 6).unwrap()
}

struct Run {
    g: Graph,
    model: Sequential,
    opt: Adam,
    sched: LrSchedule,
    loader: DataLoader,
}

/// A small model with dropout (so the graph's generator matters), Adam, a cosine schedule and a
/// shuffling loader: every part of the training state is exercised.
fn setup(seed: u64) -> Run {
    let mut g = Graph::new();
    g.manual_seed(seed);
    let mut model = Sequential::new();
    model.push(Layer::linear(&mut g, 6, 8, true).unwrap()).push(Layer::Relu).push(Layer::Dropout(0.3)).push(Layer::linear(&mut g, 8, 3, true).unwrap());
    let mut opt = Adam::new(&g, model.named_parameters(), AdamConfig { weight_decay: 0.01, ..AdamConfig::adamw(0.01) }).unwrap();
    let sched = LrSchedule::new(Schedule::Cosine { t_max: 3, eta_min: 0.001 }, &mut opt).unwrap();
    let loader = DataLoader::new(50, 8, true, seed + 100).unwrap();
    Run { g, model, opt, sched, loader }
}

/// Trains `batches` steps, starting epochs as needed; returns the losses.
fn train(r: &mut Run, d: &Dataset, batches: usize) -> Vec<f32> {
    let mut losses = Vec::new();
    while losses.len() < batches {
        let Some((x, y)) = r.loader.next_batch(&mut r.g, d).unwrap() else {
            if r.loader.epoch() > 0 {
                r.sched.step(&mut r.opt);
            }
            r.loader.start_epoch();
            continue;
        };
        r.opt.zero_grad(&mut r.g).unwrap();
        let out = r.model.forward(&mut r.g, x).unwrap();
        let l = r.g.cross_entropy(out, y).unwrap();
        losses.push(r.g.item(l).unwrap() as f32);
        r.g.backward(l, None, false).unwrap();
        r.opt.step(&mut r.g).unwrap();
        r.g.reset();
    }
    losses
}

fn params(r: &Run) -> Vec<Vec<f32>> {
    r.model.parameters().iter().map(|&t| r.g.data::<f32>(t).unwrap().to_vec()).collect()
}

fn save(r: &Run, path: &Path) {
    let parts = TrainingParts { optimizer: Some(&r.opt), schedule: Some(&r.sched), loader: Some(&r.loader), metadata: &[("epoch", "2")] };
    io::save_checkpoint(path, &r.g, &r.model, parts).unwrap();
}

fn load(r: &mut Run, path: &Path) -> bp::Result<Vec<(String, String)>> {
    let parts = TrainingPartsMut { optimizer: Some(&mut r.opt), schedule: Some(&mut r.sched), loader: Some(&mut r.loader) };
    io::load_checkpoint(path, &mut r.g, &r.model, parts)
}

#[test]
fn resuming_mid_epoch_is_bit_identical_to_never_stopping() {
    let d = data();
    let mut straight = setup(1);
    let all = train(&mut straight, &d, 40);

    let dir = TmpDir::new("resume");
    let path = dir.file();
    let mut first = setup(1);
    let head = train(&mut first, &d, 17); // 2 epochs of 7 batches, then 3 into the third
    save(&first, &path);
    drop(first);
    let mut resumed = setup(999); // different initial weights, generators and order: all overwritten
    let meta = load(&mut resumed, &path).unwrap();
    assert_eq!(meta, [("epoch".to_string(), "2".to_string())]);
    let tail = train(&mut resumed, &d, 23);

    assert_eq!([head, tail].concat(), all);
    assert_eq!(params(&resumed), params(&straight));
    assert_eq!(resumed.opt.lr(), straight.opt.lr());
}

#[test]
fn checkpoint_names_follow_the_state_dict_and_the_documented_layout() {
    let d = data();
    let mut r = setup(2);
    train(&mut r, &d, 3);
    let dir = TmpDir::new("layout");
    let path = dir.file();
    save(&r, &path);
    let st = SafeTensors::read(&path).unwrap();
    let names: Vec<&str> = st.tensors.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["0.weight", "0.bias", "3.weight", "3.bias", "optim.0.weight.exp_avg", "optim.0.weight.exp_avg_sq", "optim.3.bias.step",
        "optim.lr", "schedule.last_epoch", "rng.graph", "loader.rng", "loader.order", "loader.cursor"] {
        assert!(names.contains(&want), "{} missing from {:?}", want, names);
    }
    assert_eq!(st.get("0.weight").unwrap().shape, [8, 6]);
    assert_eq!(st.get("optim.0.weight.step").unwrap().to_i64().unwrap(), [3]);
    assert_eq!(st.metadata("optim.type"), Some("adamw"));
    assert_eq!(st.metadata("format"), Some("backprop.checkpoint.v1"));
    // The weights-only file holds exactly the state_dict (what PyTorch loads strictly).
    io::save_weights(&path, &r.g, &r.model).unwrap();
    let st = SafeTensors::read(&path).unwrap();
    assert_eq!(st.tensors.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["0.weight", "0.bias", "3.weight", "3.bias"]);
}

/// Everything a failed load must leave alone: parameters, optimizer buffers and step, schedule
/// position, loader order.
type Snapshot = (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>, u64, u64, Vec<usize>);

fn snapshot(r: &Run) -> Snapshot {
    let bufs = r.opt.state().slots.iter().map(|s| s.buffers.clone()).collect();
    (params(r), bufs, r.opt.state().slots[0].step, r.sched.last_epoch, r.loader.position().0.to_vec())
}

#[test]
fn truncated_or_corrupt_files_are_format_errors_that_leave_everything_untouched() {
    let d = data();
    let mut src = setup(3);
    train(&mut src, &d, 9);
    let dir = TmpDir::new("corrupt");
    let path = dir.file();
    save(&src, &path);
    let good = std::fs::read(&path).unwrap();

    let mut r = setup(4);
    train(&mut r, &d, 2);
    let before = snapshot(&r);
    let mut cases: Vec<Vec<u8>> = [0, 7, 8, 100, good.len() / 2, good.len() - 1].iter().map(|&n| good[..n].to_vec()).collect();
    let mut bad_json = good.clone();
    bad_json[8] = b'[';
    cases.push(bad_json);
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(huge);
    let mut extra = good.clone();
    extra.push(0);
    cases.push(extra);
    for (i, bytes) in cases.iter().enumerate() {
        std::fs::write(&path, bytes).unwrap();
        let e = load(&mut r, &path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format, "case {}: {}", i, e);
        assert!(e.message().contains("state.safetensors"), "the message names the file: {}", e);
        assert!(snapshot(&r) == before, "case {} changed the training state", i);
    }
    std::fs::write(&path, &good).unwrap();
    load(&mut r, &path).unwrap();
    assert_eq!(params(&r), params(&src));
}

#[test]
fn a_checkpoint_of_another_model_or_optimizer_is_rejected_untouched() {
    let d = data();
    let mut src = setup(5);
    train(&mut src, &d, 3);
    let dir = TmpDir::new("mismatch");
    let path = dir.file();
    save(&src, &path);

    // Another architecture: 6→9 instead of 6→8.
    let mut g = Graph::new();
    let mut other = Sequential::new();
    other.push(Layer::linear(&mut g, 6, 9, true).unwrap()).push(Layer::Relu).push(Layer::Dropout(0.3)).push(Layer::linear(&mut g, 9, 3, true).unwrap());
    let before: Vec<Vec<f32>> = other.parameters().iter().map(|&t| g.data::<f32>(t).unwrap().to_vec()).collect();
    let e = io::load_checkpoint(&path, &mut g, &other, TrainingPartsMut::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(e.message().contains("0.weight") && e.message().contains("shape"), "{}", e);
    let after: Vec<Vec<f32>> = other.parameters().iter().map(|&t| g.data::<f32>(t).unwrap().to_vec()).collect();
    assert_eq!(before, after);

    // Same model, another optimizer.
    let mut r = setup(6);
    let before = params(&r);
    let mut sgd = Sgd::new(&r.g, r.model.named_parameters(), SgdConfig::default()).unwrap();
    let parts = TrainingPartsMut { optimizer: Some(&mut sgd), ..Default::default() };
    let e = io::load_checkpoint(&path, &mut r.g, &r.model, parts).unwrap_err();
    assert!(e.message().contains("adamw") && e.message().contains("sgd"), "{}", e);
    assert_eq!(params(&r), before);

    // Same optimizer with other hyperparameters.
    let mut other_betas = Adam::new(&r.g, r.model.named_parameters(), AdamConfig { beta2: 0.99, weight_decay: 0.01, ..AdamConfig::adamw(0.01) }).unwrap();
    let parts = TrainingPartsMut { optimizer: Some(&mut other_betas), ..Default::default() };
    let e = io::load_checkpoint(&path, &mut r.g, &r.model, parts).unwrap_err();
    assert!(e.message().contains("beta2=0.999") && e.message().contains("beta2=0.99 "), "{}", e);
    assert_eq!(params(&r), before);

    // A weights-only file has no optimizer state to resume from.
    io::save_weights(&path, &src.g, &src.model).unwrap();
    assert_eq!(load(&mut r, &path).unwrap_err().kind(), ErrorKind::Format);
    assert_eq!(params(&r), before);
}

#[test]
fn writes_are_atomic_and_leave_no_temporary_file() {
    let r = setup(7);
    let dir = TmpDir::new("atomic");
    let path = dir.file();
    std::fs::write(&path, b"old contents").unwrap();
    save(&r, &path);
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, [std::ffi::OsString::from("state.safetensors")]);
    assert!(SafeTensors::read(&path).is_ok());
    let e = io::save_weights(Path::new("/nonexistent-dir/x.safetensors"), &r.g, &r.model).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[test]
fn a_state_dict_saved_by_pytorch_loads_and_computes_what_pytorch_computed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit");
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 5, 4, true).unwrap()).push(Layer::Tanh).push(Layer::linear(&mut g, 4, 3, true).unwrap());
    io::load_weights(&dir.join("torch_mlp.safetensors"), &mut g, &m).unwrap();
    let r = SafeTensors::read(&dir.join("nn_ref.safetensors")).unwrap();
    let x = g.from_slice(&r.get("torch_mlp.x").unwrap().to_f32().unwrap(), &[8, 5]).unwrap();
    let y = m.predict(&mut g, x).unwrap();
    let want = r.get("torch_mlp.out").unwrap().to_f32().unwrap();
    for (a, b) in g.data::<f32>(y).unwrap().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{} vs {}", a, b);
    }
    // Strict: a tensor the model does not have is an error.
    let tmp = TmpDir::new("strict");
    let path = tmp.file();
    let mut st = SafeTensors::read(&dir.join("torch_mlp.safetensors")).unwrap();
    st.insert("extra", StTensor::from_f32(&[1], &[0.0])).unwrap();
    st.write(&path).unwrap();
    let e = io::load_weights(&path, &mut g, &m).unwrap_err();
    assert!(e.message().contains("extra"), "{}", e);
}

#[test]
fn random_corruption_never_panics_and_a_refused_file_changes_nothing() {
    let d = data();
    let mut src = setup(8);
    train(&mut src, &d, 4);
    let dir = TmpDir::new("fuzz");
    let path = dir.file();
    save(&src, &path);
    let good = std::fs::read(&path).unwrap();
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut r = setup(9);
    let before = snapshot(&r);
    let mut gen = bp::rng::Generator::new(42);
    for case in 0..600 {
        let mut bytes = good.clone();
        // Mostly the header (where the structure is), sometimes anywhere; 1 to 3 bytes each time.
        for _ in 0..1 + gen.randint(0, 3) {
            let limit = if case % 4 == 0 { bytes.len() } else { header_end };
            let at = gen.randint(0, limit as i64) as usize;
            bytes[at] = gen.next_u32() as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        match load(&mut r, &path) {
            // A flip inside tensor data (or a harmless one in the header) still loads: restore the
            // baseline for the next case.
            Ok(_) => r = setup(9),
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::Format), "case {}: {:?} {}", case, e.kind(), e);
                assert!(snapshot(&r) == before, "case {}: a refused file changed the training state", case);
            }
        }
    }
}

#[test]
fn optimizer_state_missing_a_buffer_is_refused() {
    let d = data();
    let mut src = setup(10);
    train(&mut src, &d, 2);
    let dir = TmpDir::new("incomplete");
    let path = dir.file();
    save(&src, &path);
    let mut st = SafeTensors::read(&path).unwrap();
    st.tensors.retain(|(n, _)| n != "optim.0.weight.exp_avg_sq");
    st.write(&path).unwrap();
    let mut r = setup(11);
    let before = snapshot(&r);
    let e = load(&mut r, &path).unwrap_err();
    assert!(e.message().contains("incomplete") && e.message().contains("0.weight"), "{}", e);
    assert!(snapshot(&r) == before);
    // Without its first buffer the others would be unexpected tensors: refused too.
    let mut st = SafeTensors::read(&path).unwrap();
    st.tensors.retain(|(n, _)| !n.starts_with("optim.0.weight.exp_avg"));
    st.write(&path).unwrap();
    assert_eq!(load(&mut r, &path).unwrap_err().kind(), ErrorKind::Format);
    assert!(snapshot(&r) == before);
}

#[test]
fn float64_half_and_bfloat16_state_dicts_convert_to_float32_as_pytorch_does() {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 2, 2, true).unwrap());
    let half = |v: &[u16]| StTensor { dtype: bp::io::StDtype::F16, shape: vec![v.len()], data: v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let bf16 = |v: &[u16]| StTensor { dtype: bp::io::StDtype::BF16, shape: vec![2, 2], data: v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let mut st = SafeTensors::new();
    // 0x3c00 = 1.0, 0xc000 = -2.0 in half precision; 0x3f80 = 1.0, 0x4049 = 3.140625, 0x8001 = -tiny, 0x0000 in bfloat16.
    st.insert("0.weight", bf16(&[0x3f80, 0x4049, 0x8001, 0x0000])).unwrap();
    st.insert("0.bias", half(&[0x3c00, 0xc000])).unwrap();
    let dir = TmpDir::new("dtypes");
    let path = dir.file();
    st.write(&path).unwrap();
    io::load_weights(&path, &mut g, &m).unwrap();
    let p = m.parameters();
    assert_eq!(g.data::<f32>(p[0]).unwrap(), &[1.0, 3.140625, -f32::from_bits(0x0001_0000), 0.0]);
    assert_eq!(g.data::<f32>(p[1]).unwrap(), &[1.0, -2.0]);
    let mut st = SafeTensors::new();
    st.insert("0.weight", StTensor::from_f64(&[2, 2], &[0.1, 0.2, 0.3, 0.4])).unwrap();
    st.insert("0.bias", half(&[0x0001, 0x7c00])).unwrap(); // the smallest subnormal, +inf
    st.write(&path).unwrap();
    io::load_weights(&path, &mut g, &m).unwrap();
    assert_eq!(g.data::<f32>(p[0]).unwrap(), &[0.1f32, 0.2, 0.3, 0.4]);
    assert_eq!(g.data::<f32>(p[1]).unwrap(), &[2.0f32.powi(-24), f32::INFINITY]);
    // Integer parameters are refused.
    let mut st = SafeTensors::new();
    st.insert("0.weight", StTensor::from_i64(&[2, 2], &[1, 2, 3, 4])).unwrap();
    st.insert("0.bias", StTensor::from_f32(&[2], &[0.0, 0.0])).unwrap();
    st.write(&path).unwrap();
    assert_eq!(io::load_weights(&path, &mut g, &m).unwrap_err().kind(), ErrorKind::Format);
}
