//! The Rust side of the safetensors interoperability tests (tests/python/run.sh). Subcommands:
//!
//! - `write-checkpoint PATH`: a 3→4→2 tanh MLP whose parameters hold the pattern
//!   `(k mod 17)/8 − 1` (element k of each tensor, exact in float32), one SGD step (lr 0.5, momentum
//!   0.9) on the loss Σ parameters (every gradient is 1), saved as a full checkpoint;
//! - `forward PATH`: loads a state_dict file into that MLP (strict) and prints its outputs on the
//!   fixed input `x[i][j] = (i − j)/4` (5 rows), one value per line;
//! - `dump PATH`: reads any safetensors file and prints `name dtype shape values...` per tensor and
//!   `meta key value` per metadata entry;
//! - `train IN OUT`: loads a state_dict into the MLP, trains 5 SGD steps (lr 0.1, momentum 0.9) of
//!   mean-squared error towards `t[i][k] = sin(i + k)` on the same input, saves the weights to OUT.

use bp::io::{self, SafeTensors, StDtype, TrainingParts};
use bp::nn::{Layer, Sequential};
use bp::optim::{Optimizer, Sgd, SgdConfig};
use bp::{Graph, Reduction, Tensor};
use std::path::Path;

fn mlp(g: &mut Graph) -> bp::Result<Sequential> {
    let mut m = Sequential::new();
    m.push(Layer::linear(g, 3, 4, true)?).push(Layer::Tanh).push(Layer::linear(g, 4, 2, true)?);
    Ok(m)
}

fn input(g: &mut Graph) -> bp::Result<Tensor> {
    let x: Vec<f32> = (0..5).flat_map(|i| (0..3).map(move |j| (i as f32 - j as f32) / 4.0)).collect();
    g.from_slice(&x, &[5, 3])
}

fn run(args: &[String]) -> bp::Result<()> {
    let mut g = Graph::new();
    match args {
        [cmd, path] if cmd == "write-checkpoint" => {
            let m = mlp(&mut g)?;
            for p in m.parameters() {
                let n = g.numel(p)?;
                let v: Vec<f32> = (0..n).map(|k| (k % 17) as f32 / 8.0 - 1.0).collect();
                g.write::<f32>(p, &v)?;
            }
            let mut opt = Sgd::new(&g, m.named_parameters(), SgdConfig { lr: 0.5, momentum: 0.9, ..Default::default() })?;
            let mut total = None;
            for p in m.parameters() {
                let s = g.sum(p, &[], false)?;
                total = Some(match total { None => s, Some(t) => g.add(t, s)? });
            }
            g.backward(total.expect("the MLP has parameters"), None, false)?;
            opt.step(&mut g)?;
            io::save_checkpoint(Path::new(path), &g, &m, TrainingParts { optimizer: Some(&opt), metadata: &[("note", "interop")], ..Default::default() })
        }
        [cmd, path] if cmd == "forward" => {
            let m = mlp(&mut g)?;
            io::load_weights(Path::new(path), &mut g, &m)?;
            let x = input(&mut g)?;
            let y = m.predict(&mut g, x)?;
            for v in g.data::<f32>(y)? {
                println!("{:e}", v);
            }
            Ok(())
        }
        [cmd, path] if cmd == "dump" => {
            let st = SafeTensors::read(Path::new(path))?;
            for (k, v) in &st.metadata {
                println!("meta {} {}", k, v);
            }
            for (name, t) in &st.tensors {
                let values: Vec<String> = match t.dtype {
                    StDtype::F32 => t.to_f32()?.iter().map(|v| format!("{:e}", v)).collect(),
                    StDtype::F64 => t.to_f64()?.iter().map(|v| format!("{:e}", v)).collect(),
                    StDtype::I64 => t.to_i64()?.iter().map(|v| v.to_string()).collect(),
                    StDtype::U32 => t.to_u32()?.iter().map(|v| v.to_string()).collect(),
                    _ => t.data.iter().map(|b| b.to_string()).collect(),
                };
                let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
                println!("{} {} [{}] {}", name, t.dtype.name(), shape.join(","), values.join(" "));
            }
            Ok(())
        }
        [cmd, input_path, out] if cmd == "train" => {
            let m = mlp(&mut g)?;
            io::load_weights(Path::new(input_path), &mut g, &m)?;
            let mut opt = Sgd::new(&g, m.named_parameters(), SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })?;
            let t: Vec<f32> = (0..5).flat_map(|i| (0..2).map(move |k| ((i + k) as f32).sin())).collect();
            for _ in 0..5 {
                let x = input(&mut g)?;
                let target = g.from_slice(&t, &[5, 2])?;
                opt.zero_grad(&mut g)?;
                let y = m.forward(&mut g, x)?;
                let l = g.mse_loss(y, target, Reduction::Mean)?;
                g.backward(l, None, false)?;
                opt.step(&mut g)?;
                g.reset();
            }
            io::save_weights(Path::new(out), &g, &m)
        }
        _ => Err(bp::Error::new(bp::ErrorKind::InvalidArgument, "usage: safetensors_interop write-checkpoint PATH | forward PATH | dump PATH | train IN OUT")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("error ({:?}): {}", e.kind(), e);
        std::process::exit(1);
    }
}
