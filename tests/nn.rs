//! Layers, initialisers, losses and the data loader against PyTorch (reference values from
//! tests/data/toolkit/gen_toolkit_ref.py, committed in nn_ref.safetensors), and the module rules:
//! state_dict names, train/eval modes, inference without a graph.

use bp::data::{DataLoader, Dataset};
use bp::io::SafeTensors;
use bp::nn::{init, loss, Layer, Sequential};
use bp::{DType, ErrorKind, Graph, Reduction};
use std::path::Path;

fn reference() -> SafeTensors {
    SafeTensors::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit/nn_ref.safetensors")).unwrap()
}

fn f32s(r: &SafeTensors, name: &str) -> Vec<f32> {
    r.get(name).unwrap_or_else(|| panic!("no {}", name)).to_f32().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{}: lengths", what);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "{} element {}: {} vs PyTorch {}", what, i, a, b);
    }
}

#[test]
fn linear_default_init_is_pytorchs_bit_for_bit() {
    let r = reference();
    let mut g = Graph::new();
    g.manual_seed(0);
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 64, 128, true).unwrap()).push(Layer::Relu).push(Layer::linear(&mut g, 128, 10, true).unwrap());
    for (name, t) in m.named_parameters() {
        assert_eq!(g.data::<f32>(t).unwrap(), &f32s(&r, &format!("linear_init.{}", name))[..], "{}", name);
    }
}

#[test]
fn embedding_default_init_is_pytorchs() {
    let r = reference();
    let mut g = Graph::new();
    g.manual_seed(5);
    let Layer::Embedding { weight } = Layer::embedding(&mut g, 7, 3).unwrap() else { unreachable!() };
    assert_close(g.data::<f32>(weight).unwrap(), &f32s(&r, "embedding.init"), 1e-6, "embedding init");
}

#[test]
fn shuffling_draws_pytorchs_randperm_epoch_after_epoch() {
    let r = reference();
    let want10 = r.get("randperm.10").unwrap().to_i64().unwrap();
    let want1437 = r.get("randperm.1437").unwrap().to_i64().unwrap();
    let mut l = DataLoader::new(10, 4, true, 0).unwrap();
    for epoch in 0..3 {
        l.start_epoch();
        let mut got = Vec::new();
        while let Some(rows) = l.next_indices() {
            got.extend(rows.iter().map(|&i| i as i64));
        }
        assert_eq!(got, &want10[epoch * 10..(epoch + 1) * 10], "epoch {}", epoch);
    }
    // The same generator continues into a permutation of another size, as torch.randperm does.
    let mut order = vec![0usize; 1437];
    let mut gen = l.generator().clone();
    bp::data::randperm(&mut gen, &mut order);
    assert_eq!(order.iter().map(|&i| i as i64).collect::<Vec<_>>(), want1437);
}

#[test]
fn loader_keeps_the_last_partial_batch_unless_told_to_drop_it() {
    let d = Dataset::new((0..20).map(|v| v as f32).collect(), (0..10).collect(), 2).unwrap();
    let mut g = Graph::new();
    let mut l = DataLoader::new(10, 4, false, 0).unwrap();
    l.start_epoch();
    let mut sizes = Vec::new();
    while let Some((x, y)) = l.next_batch(&mut g, &d).unwrap() {
        assert_eq!(g.dims(x).unwrap()[1], 2);
        sizes.push(g.numel(y).unwrap());
    }
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(l.batches_per_epoch(), 3);
    l.set_drop_last(true);
    l.start_epoch();
    let mut n = 0;
    while l.next_batch(&mut g, &d).unwrap().is_some() {
        n += 1;
    }
    assert_eq!((n, l.batches_per_epoch()), (2, 2));
}

fn loss_inputs(g: &mut Graph, r: &SafeTensors) -> (bp::Tensor, bp::Tensor) {
    let logits = g.from_slice(&f32s(r, "loss.logits"), &[6, 5]).unwrap();
    g.set_requires_grad(logits, true).unwrap();
    let t = r.get("loss.target").unwrap().to_i64().unwrap();
    let target = g.from_i64(&t, &[6]).unwrap();
    (logits, target)
}

fn reductions() -> [(Reduction, &'static str); 3] {
    [(Reduction::Mean, "mean"), (Reduction::Sum, "sum"), (Reduction::None, "none")]
}

#[test]
fn nll_loss_with_ignore_index_matches_pytorch_values_and_gradients() {
    let r = reference();
    for (red, name) in reductions() {
        let mut g = Graph::new();
        let (logits, target) = loss_inputs(&mut g, &r);
        let logp = g.log_softmax(logits, 1).unwrap();
        let l = loss::nll_loss(&mut g, logp, target, red, -100).unwrap();
        assert_close(&g.to_vec_f32(l).unwrap(), &f32s(&r, &format!("nll.{}", name)), 1e-6, name);
        let s = g.sum(l, &[], false).unwrap();
        let gr = g.grad_of(&[s], &[logits], &[], false, false).unwrap()[0];
        assert_close(&g.to_vec_f32(gr).unwrap(), &f32s(&r, &format!("nll.{}.grad", name)), 1e-6, name);
    }
}

#[test]
fn l1_and_smooth_l1_match_pytorch_values_and_gradients() {
    let r = reference();
    for (red, name) in reductions() {
        for which in ["l1", "smooth_l1"] {
            let mut g = Graph::new();
            let p = g.from_slice(&f32s(&r, "reg.input"), &[4, 3]).unwrap();
            g.set_requires_grad(p, true).unwrap();
            let q = g.from_slice(&f32s(&r, "reg.target"), &[4, 3]).unwrap();
            let l = if which == "l1" { loss::l1_loss(&mut g, p, q, red) } else { loss::smooth_l1_loss(&mut g, p, q, red, 0.7) }.unwrap();
            let what = format!("{}.{}", which, name);
            assert_close(&g.to_vec_f32(l).unwrap(), &f32s(&r, &what), 1e-6, &what);
            let s = g.sum(l, &[], false).unwrap();
            let gr = g.grad_of(&[s], &[p], &[], false, false).unwrap()[0];
            assert_close(&g.to_vec_f32(gr).unwrap(), &f32s(&r, &format!("{}.grad", what)), 1e-6, &what);
        }
    }
}

#[test]
fn layer_norm_matches_pytorch_forward_and_backward() {
    let r = reference();
    let mut g = Graph::new();
    let ln = Layer::layer_norm(&mut g, &[3, 4], 1e-5, true).unwrap();
    let Layer::LayerNorm { weight: Some(w), bias: Some(b), .. } = ln else { unreachable!() };
    g.write::<f32>(w, &f32s(&r, "layer_norm.weight")).unwrap();
    g.write::<f32>(b, &f32s(&r, "layer_norm.bias")).unwrap();
    let x = g.from_slice(&f32s(&r, "layer_norm.x"), &[2, 3, 4]).unwrap();
    g.set_requires_grad(x, true).unwrap();
    let y = ln.forward(&mut g, x, true).unwrap();
    assert_close(&g.to_vec_f32(y).unwrap(), &f32s(&r, "layer_norm.y"), 1e-5, "layer_norm forward");
    let wt = g.from_slice(&f32s(&r, "layer_norm.w"), &[2, 3, 4]).unwrap();
    let yw = g.mul(y, wt).unwrap();
    let s = g.sum(yw, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    let gx = g.grad(x).unwrap().unwrap();
    assert_close(&g.to_vec_f32(gx).unwrap(), &f32s(&r, "layer_norm.x.grad"), 1e-5, "layer_norm dx");
    let gw = g.grad(w).unwrap().unwrap();
    assert_close(&g.to_vec_f32(gw).unwrap(), &f32s(&r, "layer_norm.weight.grad"), 1e-5, "layer_norm dweight");
}

#[test]
fn embedding_looks_up_rows_and_accumulates_gradients_for_repeated_indices() {
    let mut g = Graph::new();
    let emb = Layer::embedding(&mut g, 4, 2).unwrap();
    let Layer::Embedding { weight } = emb else { unreachable!() };
    g.write::<f32>(weight, &[0., 1., 10., 11., 20., 21., 30., 31.]).unwrap();
    let idx = g.from_i64(&[3, 1, 3, 0, 2, 3], &[2, 3]).unwrap();
    let out = emb.forward(&mut g, idx, true).unwrap();
    assert_eq!(g.dims(out).unwrap(), [2, 3, 2]);
    assert_eq!(g.data::<f32>(out).unwrap(), &[30., 31., 10., 11., 30., 31., 0., 1., 20., 21., 30., 31.]);
    let s = g.sum(out, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    let gw = g.grad(weight).unwrap().unwrap();
    assert_eq!(g.data::<f32>(gw).unwrap(), &[1., 1., 1., 1., 1., 1., 3., 3.]);
}

#[test]
fn parameters_carry_state_dict_names_positional_or_given() {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 3, 4, false).unwrap()).push(Layer::Tanh).push(Layer::layer_norm(&mut g, &[4], 1e-5, true).unwrap());
    m.push_named("head", Layer::linear(&mut g, 4, 2, true).unwrap()).unwrap();
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "2.weight", "2.bias", "head.weight", "head.bias"]);
    assert_eq!(m.push_named("head", Layer::Relu).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(m.push_named("a.b", Layer::Relu).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(m.parameter_count(&g).unwrap(), 12 + 8 + 10);
}

#[test]
fn parameters_survive_reset_and_intermediates_do_not() {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 3, 2, true).unwrap());
    let before = g.tensor_count();
    let x = g.ones(&[5, 3], DType::F32).unwrap();
    let y = m.forward(&mut g, x).unwrap();
    let s = g.sum(y, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    g.reset();
    // Two parameters and their two gradients.
    assert_eq!(g.tensor_count(), before + 2);
    for p in m.parameters() {
        assert!(g.grad(p).unwrap().is_some());
    }
}

#[test]
fn dropout_is_active_in_training_mode_only() {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::Dropout(0.5));
    let x = g.ones(&[1000], DType::F32).unwrap();
    let y = m.forward(&mut g, x).unwrap();
    let v = g.data::<f32>(y).unwrap();
    let zeros = v.iter().filter(|&&e| e == 0.0).count();
    assert!(v.iter().all(|&e| e == 0.0 || e == 2.0));
    assert!((400..600).contains(&zeros), "{} zeros", zeros);
    m.eval();
    let y = m.forward(&mut g, x).unwrap();
    assert!(g.data::<f32>(y).unwrap().iter().all(|&e| e == 1.0));
}

#[test]
fn predict_records_no_graph_and_ignores_training_mode() {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 3, 3, true).unwrap()).push(Layer::Dropout(0.9)).push(Layer::Relu);
    assert!(m.is_training());
    let x = g.ones(&[2, 3], DType::F32).unwrap();
    let nodes = g.node_count();
    let y = m.predict(&mut g, x).unwrap();
    assert_eq!(g.node_count(), nodes);
    assert!(!g.requires_grad(y).unwrap());
    assert!(g.is_grad_enabled());
    m.eval();
    let z = m.forward(&mut g, x).unwrap();
    assert_eq!(g.data::<f32>(y).unwrap(), g.data::<f32>(z).unwrap());
}

#[test]
fn initialisers_follow_pytorchs_bounds() {
    let mut g = Graph::new();
    let w = g.zeros(&[200, 300], DType::F32).unwrap();
    init::xavier_uniform_(&mut g, w, 1.0).unwrap();
    let a = (6.0f32 / 500.0).sqrt();
    let v = g.data::<f32>(w).unwrap();
    assert!(v.iter().all(|x| x.abs() <= a) && v.iter().any(|x| x.abs() > 0.9 * a));
    init::kaiming_normal_(&mut g, w, init::FanMode::FanIn, init::Nonlinearity::Relu).unwrap();
    let v = g.data::<f32>(w).unwrap();
    let var = v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len() as f64;
    assert!((var - 2.0 / 300.0).abs() < 0.1 * 2.0 / 300.0, "variance {}", var);
    init::kaiming_uniform_(&mut g, w, init::FanMode::FanOut, init::Nonlinearity::Linear).unwrap();
    let b = (3.0f32 / 200.0).sqrt();
    assert!(g.data::<f32>(w).unwrap().iter().all(|x| x.abs() <= b));
    let v1 = g.zeros(&[3], DType::F32).unwrap();
    assert_eq!(init::xavier_normal_(&mut g, v1, 1.0).unwrap_err().kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn accuracy_counts_rows_whose_argmax_is_the_target() {
    let mut g = Graph::new();
    let l = g.from_slice(&[0.1f32, 0.9, 0.8, 0.2, 0.5, 0.5], &[3, 2]).unwrap();
    let y = g.from_i64(&[1, 1, 0], &[3]).unwrap();
    assert!((loss::accuracy(&g, l, y).unwrap() - 2.0 / 3.0).abs() < 1e-12);
}
