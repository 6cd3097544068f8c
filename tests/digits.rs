//! The main job, pinned: workload D on the shipped digits data reaches at least 97% test accuracy on
//! the fixed split, and follows PyTorch's own run of the same recipe (same initial weights, same batch
//! order) epoch by epoch — reference from tests/data/toolkit/gen_digits_ref.py.

use bp::data::{DataLoader, Dataset};
use bp::io::{self, CsvOptions, SafeTensors};
use bp::nn::{loss, Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer};
use bp::Graph;
use std::path::Path;

fn split() -> (Dataset, Dataset) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits");
    let all = io::load_csv(&dir.join("digits.csv"), CsvOptions::default()).unwrap();
    assert_eq!((all.len(), all.dim(), all.num_classes()), (1797, 64, 10));
    let rows: Vec<usize> = std::fs::read_to_string(dir.join("digits_test_rows.txt")).unwrap().split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (mut train, mut test) = all.split(&rows).unwrap();
    let (mean, std) = train.column_stats();
    train.standardize(&mean, &std).unwrap();
    test.standardize(&mean, &std).unwrap();
    (train, test)
}

#[test]
fn digits_mlp_reaches_97_percent_and_tracks_pytorchs_loss_curve() {
    let r = SafeTensors::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit/digits_ref.safetensors")).unwrap();
    let torch_loss = r.get("epoch_loss").unwrap().to_f64().unwrap();
    let (train, test) = split();
    assert_eq!((train.len(), test.len()), (1437, 360));

    let mut g = Graph::new();
    g.manual_seed(0);
    let mut model = Sequential::new();
    model.push(Layer::linear(&mut g, 64, 128, true).unwrap()).push(Layer::Relu).push(Layer::linear(&mut g, 128, 10, true).unwrap());
    let mut opt = Adam::new(&g, model.named_parameters(), AdamConfig::adam(1e-3)).unwrap();
    let mut loader = DataLoader::new(train.len(), 32, true, 0).unwrap();
    for (epoch, &want) in torch_loss.iter().enumerate() {
        loader.start_epoch();
        let mut total = 0.0;
        while let Some((x, y)) = loader.next_batch(&mut g, &train).unwrap() {
            opt.zero_grad(&mut g).unwrap();
            let out = model.forward(&mut g, x).unwrap();
            let l = g.cross_entropy(out, y).unwrap();
            total += g.item(l).unwrap() * g.numel(y).unwrap() as f64;
            g.backward(l, None, false).unwrap();
            opt.step(&mut g).unwrap();
            g.reset();
        }
        let mean = total / train.len() as f64;
        // Agrees within 1e-5 on the development machine; the margin covers other CPUs' gemm kernels,
        // whose different rounding compounds over 1,350 steps.
        assert!((mean - want).abs() <= 1e-3 * want, "epoch {}: mean loss {} vs PyTorch {}", epoch + 1, mean, want);
    }
    let (x, y) = test.to_tensors(&mut g).unwrap();
    let logits = model.predict(&mut g, x).unwrap();
    let acc = loss::accuracy(&g, logits, y).unwrap();
    assert!(acc >= 0.97, "test accuracy {}", acc);
    assert_eq!(acc, r.get("test_accuracy").unwrap().to_f64().unwrap()[0], "PyTorch's run classifies the same test rows right");
}
