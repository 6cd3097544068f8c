//! Trains an MLP on the UCI optical-digits data set (workload D): 64→128 ReLU→10, Adam lr 1e-3,
//! batch 32 reshuffled every epoch (last partial batch kept), 30 epochs, inputs standardised with the
//! training set's statistics. Prints one line per epoch, the test accuracy on the fixed split and the
//! training time, saves a checkpoint, and fails if the test accuracy is below 97%.
//!
//! cargo run --release --example digits [-- CHECKPOINT_PATH]

use bp::data::{DataLoader, Dataset};
use bp::io::{self, CsvOptions, TrainingParts};
use bp::nn::{loss, Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer};
use bp::Graph;
use std::path::{Path, PathBuf};
use std::time::Instant;

const EPOCHS: usize = 30;
const BATCH: usize = 32;

fn load_split(dir: &Path) -> bp::Result<(Dataset, Dataset)> {
    let all = io::load_csv(&dir.join("digits.csv"), CsvOptions::default())?;
    let rows_path = dir.join("digits_test_rows.txt");
    let text = std::fs::read_to_string(&rows_path).map_err(|e| bp::Error::new(bp::ErrorKind::Io, format!("{}: {}", rows_path.display(), e)))?;
    let test_rows = text
        .split_whitespace()
        .map(|s| s.parse::<usize>().map_err(|_| bp::Error::new(bp::ErrorKind::Format, format!("{}: bad row number {:?}", rows_path.display(), s))))
        .collect::<bp::Result<Vec<_>>>()?;
    let (mut train, mut test) = all.split(&test_rows)?;
    let (mean, std) = train.column_stats();
    train.standardize(&mean, &std)?;
    test.standardize(&mean, &std)?;
    Ok((train, test))
}

fn evaluate(g: &mut Graph, model: &Sequential, data: &Dataset) -> bp::Result<f64> {
    let (x, y) = data.to_tensors(g)?;
    let logits = model.predict(g, x)?;
    let acc = loss::accuracy(g, logits, y)?;
    for t in [x, y, logits] {
        g.free(t)?;
    }
    Ok(acc)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits");
    let ckpt: PathBuf = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("digits.safetensors"));
    let (train, test) = load_split(&data_dir)?;
    println!("digits: {} training rows, {} test rows, {} features, {} classes", train.len(), test.len(), train.dim(), train.num_classes());

    let mut g = Graph::new();
    g.manual_seed(0);
    let mut model = Sequential::new();
    model.push(Layer::linear(&mut g, 64, 128, true)?).push(Layer::Relu).push(Layer::linear(&mut g, 128, 10, true)?);
    let mut opt = Adam::new(&g, model.named_parameters(), AdamConfig::adam(1e-3))?;
    let mut loader = DataLoader::new(train.len(), BATCH, true, 0)?;

    let mut train_seconds = 0.0;
    let mut test_acc = 0.0;
    for epoch in 1..=EPOCHS {
        model.train(true);
        let t0 = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        loader.start_epoch();
        while let Some((x, y)) = loader.next_batch(&mut g, &train)? {
            opt.zero_grad(&mut g)?;
            let logits = model.forward(&mut g, x)?;
            let l = g.cross_entropy(logits, y)?;
            g.backward(l, None, false)?;
            opt.step(&mut g)?;
            let b = g.numel(y)?;
            loss_sum += g.item(l)? * b as f64;
            seen += b;
            g.reset();
        }
        let dt = t0.elapsed().as_secs_f64();
        train_seconds += dt;
        model.eval();
        let train_acc = evaluate(&mut g, &model, &train)?;
        test_acc = evaluate(&mut g, &model, &test)?;
        println!(
            "epoch {:2}  loss {:.4}  train acc {:6.2}%  test acc {:6.2}%  {:8.0} samples/s",
            epoch,
            loss_sum / seen as f64,
            100.0 * train_acc,
            100.0 * test_acc,
            seen as f64 / dt
        );
    }
    println!("training time {:.3} s ({} epochs, {} steps)", train_seconds, EPOCHS, EPOCHS * loader.batches_per_epoch());
    println!("final test accuracy {:.2}%", 100.0 * test_acc);
    io::save_checkpoint(&ckpt, &g, &model, TrainingParts { optimizer: Some(&opt), loader: Some(&loader), ..Default::default() })?;
    println!("checkpoint saved to {}", ckpt.display());
    if test_acc < 0.97 {
        return Err(format!("test accuracy {:.2}% is below 97%", 100.0 * test_acc).into());
    }
    Ok(())
}
