//! Flat parameter storage (`Graph::flatten_parameters`): the parameters and their gradients each in one
//! contiguous buffer, with every engine rule (backward, zero_grad, reset, versions, optimizers,
//! checkpoints' in-place writes) unchanged.

use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig};
use bp::{DType, ErrorKind, Graph, Tensor};

/// A 4→5 ReLU→3 MLP seeded with `seed`, its parameters, a fixed batch of 6 rows and labels.
fn mlp(g: &mut Graph, seed: u64) -> (Sequential, Tensor, Tensor) {
    g.manual_seed(seed);
    let mut m = Sequential::new();
    m.push(Layer::linear(g, 4, 5, true).unwrap()).push(Layer::Relu).push(Layer::linear(g, 5, 3, true).unwrap());
    let x = g.randn(&[6, 4], 0.0, 1.0, DType::F32).unwrap();
    let y = g.from_i64(&[0, 1, 2, 1, 0, 2], &[6]).unwrap();
    (m, x, y)
}

fn loss_of(g: &mut Graph, m: &Sequential, x: Tensor, y: Tensor) -> Tensor {
    let out = m.forward(g, x).unwrap();
    g.cross_entropy(out, y).unwrap()
}

fn concat(g: &Graph, ts: &[Tensor]) -> Vec<f32> {
    ts.iter().flat_map(|&t| g.data::<f32>(t).unwrap().to_vec()).collect()
}

#[test]
fn flattening_keeps_values_shapes_flags_versions_and_handles() {
    let mut g = Graph::new();
    let (m, _, _) = mlp(&mut g, 1);
    let params = m.parameters();
    let before: Vec<_> = params.iter().map(|&p| (g.dims(p).unwrap(), g.version(p).unwrap(), g.to_vec_f32(p).unwrap())).collect();
    let flat = g.flatten_parameters(&params).unwrap();
    assert_eq!(flat.len(), 4 * 5 + 5 + 5 * 3 + 3);
    assert_eq!(flat.offsets(), &[0, 20, 25, 40]);
    for (&p, (dims, version, values)) in params.iter().zip(&before) {
        assert_eq!(&g.dims(p).unwrap(), dims);
        assert_eq!(g.version(p).unwrap(), *version);
        assert_eq!(&g.to_vec_f32(p).unwrap(), values);
        assert!(g.requires_grad(p).unwrap() && g.is_leaf(p).unwrap() && g.is_persistent(p).unwrap());
    }
    let all: Vec<f32> = before.iter().flat_map(|b| b.2.clone()).collect();
    assert_eq!(g.flat_params::<f32>(&flat).unwrap(), &all[..]);
    assert!(g.flat_grads::<f32>(&flat).unwrap().iter().all(|&x| x == 0.0));
    for (&p, &gt) in params.iter().zip(flat.grads()) {
        assert_eq!(g.grad(p).unwrap(), Some(gt));
        assert_eq!(g.dims(gt).unwrap(), g.dims(p).unwrap());
    }
}

#[test]
fn backward_accumulates_into_the_flat_gradient_in_place_as_into_separate_grads() {
    let (mut g, mut h) = (Graph::new(), Graph::new());
    let (mg, xg, yg) = mlp(&mut g, 7);
    let (mh, xh, yh) = mlp(&mut h, 7);
    let flat = g.flatten_parameters(&mg.parameters()).unwrap();
    let at = g.flat_grads::<f32>(&flat).unwrap().as_ptr();
    for _ in 0..2 {
        // Two backwards without zeroing: both sides accumulate.
        let l = loss_of(&mut g, &mg, xg, yg);
        g.backward(l, None, false).unwrap();
        let l = loss_of(&mut h, &mh, xh, yh);
        h.backward(l, None, false).unwrap();
    }
    let separate: Vec<Tensor> = mh.parameters().iter().map(|&p| h.grad(p).unwrap().unwrap()).collect();
    assert_eq!(g.flat_grads::<f32>(&flat).unwrap(), &concat(&h, &separate)[..]);
    assert_eq!(g.flat_grads::<f32>(&flat).unwrap().as_ptr(), at, "the gradient buffer was not replaced");
    assert_eq!(mg.parameters().iter().map(|&p| g.grad(p).unwrap()).collect::<Vec<_>>(), flat.grads().iter().map(|&t| Some(t)).collect::<Vec<_>>());
}

#[test]
fn zero_grad_zeroes_a_flat_gradient_in_place_and_keeps_it() {
    let mut g = Graph::new();
    let (m, x, y) = mlp(&mut g, 3);
    let flat = g.flatten_parameters(&m.parameters()).unwrap();
    let l = loss_of(&mut g, &m, x, y);
    g.backward(l, None, false).unwrap();
    assert!(g.flat_grads::<f32>(&flat).unwrap().iter().any(|&v| v != 0.0));
    m.zero_grad(&mut g).unwrap();
    assert!(g.flat_grads::<f32>(&flat).unwrap().iter().all(|&v| v == 0.0));
    for (&p, &gt) in flat.params().iter().zip(flat.grads()) {
        assert_eq!(g.grad(p).unwrap(), Some(gt));
    }
}

#[test]
fn reset_keeps_the_flat_buffers_and_counts_them_once() {
    let mut g = Graph::new();
    let (m, x, _) = mlp(&mut g, 2);
    g.free(x).unwrap();
    let params_bytes = 43 * 4;
    assert_eq!(g.memory_used(), params_bytes + 6 * 8, "parameters plus the labels");
    let flat = g.flatten_parameters(&m.parameters()).unwrap();
    assert_eq!(g.memory_used(), 2 * params_bytes + 6 * 8, "one value buffer and one gradient buffer, views count nothing");
    let values = g.flat_params::<f32>(&flat).unwrap().to_vec();
    g.reset();
    assert_eq!(g.memory_used(), 2 * params_bytes);
    assert_eq!(g.flat_params::<f32>(&flat).unwrap(), &values[..]);
    assert_eq!(g.flat_grads::<f32>(&flat).unwrap().len(), 43);
}

#[test]
fn writing_the_flat_parameters_is_an_in_place_write_to_each_parameter() {
    let mut g = Graph::new();
    let (m, x, y) = mlp(&mut g, 4);
    let flat = g.flatten_parameters(&m.parameters()).unwrap();
    let l = loss_of(&mut g, &m, x, y);
    g.flat_params_mut::<f32>(&flat).unwrap()[0] += 1.0;
    assert_eq!(g.backward(l, None, false).unwrap_err().kind(), ErrorKind::Autograd, "the saved weight was modified");
    // And the write is visible through the parameter tensor.
    let w = flat.params()[0];
    assert_eq!(g.data::<f32>(w).unwrap()[0], g.flat_params::<f32>(&flat).unwrap()[0]);
}

#[test]
fn writes_to_a_parameter_land_in_the_flat_buffer() {
    let mut g = Graph::new();
    let (m, _, _) = mlp(&mut g, 5);
    let flat = g.flatten_parameters(&m.parameters()).unwrap();
    let b = flat.params()[1]; // the first bias, 5 elements at offset 20
    g.write::<f32>(b, &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    assert_eq!(&g.flat_params::<f32>(&flat).unwrap()[20..25], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    g.write_f64(b, &[0.5; 5]).unwrap();
    assert_eq!(&g.flat_params::<f32>(&flat).unwrap()[20..25], &[0.5; 5]);
    assert_eq!(g.to_vec_f64(b).unwrap(), vec![0.5; 5]);
}

#[test]
fn flattening_refuses_what_cannot_be_a_flat_parameter() {
    let mut g = Graph::new();
    let (m, x, _) = mlp(&mut g, 6);
    let p = m.parameters();
    assert_eq!(g.flatten_parameters(&[]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(g.flatten_parameters(&[p[0], p[0]]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(g.flatten_parameters(&[x]).unwrap_err().kind(), ErrorKind::InvalidArgument, "not persistent, no grad");
    let d = g.zeros(&[2], DType::F64).unwrap();
    g.set_requires_grad(d, true).unwrap();
    g.set_persistent(d, true).unwrap();
    assert_eq!(g.flatten_parameters(&[p[0], d]).unwrap_err().kind(), ErrorKind::DType);
    g.flatten_parameters(&p).unwrap();
    assert_eq!(g.flatten_parameters(&p[..1]).unwrap_err().kind(), ErrorKind::InvalidArgument, "already flattened");
}

#[test]
fn an_existing_gradient_is_carried_into_the_flat_buffer() {
    let mut g = Graph::new();
    let (m, x, y) = mlp(&mut g, 8);
    let l = loss_of(&mut g, &m, x, y);
    g.backward(l, None, false).unwrap();
    let grads: Vec<Tensor> = m.parameters().iter().map(|&p| g.grad(p).unwrap().unwrap()).collect();
    let expect = concat(&g, &grads);
    let flat = g.flatten_parameters(&m.parameters()).unwrap();
    assert_eq!(g.flat_grads::<f32>(&flat).unwrap(), &expect[..]);
    assert_eq!(g.shape(grads[0]).unwrap_err().kind(), ErrorKind::InvalidHandle, "the old .grad was freed");
}

#[test]
fn a_freed_parameter_invalidates_its_group() {
    let mut g = Graph::new();
    let (m, _, _) = mlp(&mut g, 9);
    let flat = g.flatten_parameters(&m.parameters()).unwrap();
    g.free(flat.params()[2]).unwrap();
    assert_eq!(g.flat_params::<f32>(&flat).unwrap_err().kind(), ErrorKind::InvalidHandle);
    let mut other = Graph::new();
    assert_eq!(other.flat_grads_mut::<f32>(&flat).unwrap_err().kind(), ErrorKind::InvalidHandle);
}

/// Trains the same model with and without flattening for a few steps; the optimizer's trajectory must
/// be bit-identical (the optimizers read and write through the views).
fn same_trajectory(make: impl Fn(&Graph, &Sequential) -> Box<dyn Optimizer>) {
    let (mut g, mut h) = (Graph::new(), Graph::new());
    let (mg, xg, yg) = mlp(&mut g, 11);
    let (mh, xh, yh) = mlp(&mut h, 11);
    let flat = g.flatten_parameters(&mg.parameters()).unwrap();
    let (mut og, mut oh) = (make(&g, &mg), make(&h, &mh));
    for _ in 0..5 {
        for (g, m, x, y, o) in [(&mut g, &mg, xg, yg, &mut og), (&mut h, &mh, xh, yh, &mut oh)] {
            o.zero_grad(g).unwrap();
            let l = loss_of(g, m, x, y);
            g.backward(l, None, false).unwrap();
            o.step(g).unwrap();
        }
    }
    assert_eq!(g.flat_params::<f32>(&flat).unwrap(), &concat(&h, &mh.parameters())[..]);
}

#[test]
fn sgd_with_momentum_follows_the_same_trajectory_on_flat_parameters() {
    same_trajectory(|g, m| {
        Box::new(Sgd::new(g, m.named_parameters(), SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 1e-3, ..Default::default() }).unwrap())
    });
}

#[test]
fn adam_follows_the_same_trajectory_on_flat_parameters() {
    same_trajectory(|g, m| Box::new(Adam::new(g, m.named_parameters(), AdamConfig::adam(1e-2)).unwrap()));
}

#[test]
fn rmsprop_follows_the_same_trajectory_on_flat_parameters() {
    same_trajectory(|g, m| Box::new(RmsProp::new(g, m.named_parameters(), RmsPropConfig { lr: 1e-2, ..Default::default() }).unwrap()));
}

#[test]
fn flattening_past_the_memory_limit_fails_and_leaves_the_parameters_as_they_were() {
    let mut g = Graph::new();
    let (m, x, y) = mlp(&mut g, 12);
    let params = m.parameters();
    let before: Vec<Vec<f32>> = params.iter().map(|&p| g.to_vec_f32(p).unwrap()).collect();
    // Room for the value buffer (43 floats) but not also for the gradient buffer.
    g.set_memory_limit(g.memory_used() + 43 * 4 + 10).unwrap();
    let used = g.memory_used();
    assert_eq!(g.flatten_parameters(&params).unwrap_err().kind(), ErrorKind::OutOfMemory);
    assert_eq!(g.memory_used(), used, "the value buffer allocated first was given back");
    for (&p, b) in params.iter().zip(&before) {
        assert_eq!(&g.to_vec_f32(p).unwrap(), b);
        assert_eq!(g.grad(p).unwrap(), None, "no gradient was attached");
    }
    // With room, training goes on unflattened, and flattening works.
    g.set_memory_limit(usize::MAX).unwrap();
    let l = loss_of(&mut g, &m, x, y);
    g.backward(l, None, false).unwrap();
    let flat = g.flatten_parameters(&params).unwrap();
    assert!(g.flat_grads::<f32>(&flat).unwrap().iter().any(|&v| v != 0.0));
}
