//! A linear layer fused with the activation after it (`Graph::linear_act`, which `Sequential` uses)
//! is the two ops in one: the same bits forward, the same bits in every gradient, on every product
//! path (the small path's stores, its other orientations, the blocked kernels, float64).

use bp::nn::{Layer, Sequential};
use bp::{Activation, DType, Graph, Tensor};

const ACTS: [Activation; 3] = [Activation::Relu, Activation::Sigmoid, Activation::Tanh];

fn bits(g: &Graph, t: Tensor) -> Vec<u64> {
    g.to_vec_f64(t).unwrap().iter().map(|v| v.to_bits()).collect()
}

fn unfused(g: &mut Graph, act: Activation, x: Tensor) -> Tensor {
    match act {
        Activation::Relu => g.relu(x),
        Activation::Sigmoid => g.sigmoid(x),
        Activation::Tanh => g.tanh(x),
    }
    .unwrap()
}

/// The output and the gradients of x, W and b of Σ act(x·Wᵀ + b)·weights, fused or not, through
/// `.grad` (create_graph false) or `grad_of` with create_graph; identical graphs otherwise.
fn run(dtype: DType, dims: &[usize], n: usize, bias: bool, act: Activation, fused: bool, create_graph: bool) -> Vec<Vec<u64>> {
    let mut g = Graph::new();
    g.manual_seed(7);
    let k = dims[dims.len() - 1];
    let x = g.randn(dims, 0.0, 1.5, dtype).unwrap();
    let w = g.randn(&[n, k], 0.0, 0.5, dtype).unwrap();
    let b = g.randn(&[n], 0.0, 0.5, dtype).unwrap();
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().unwrap() = n;
    let weights = g.randn(&out_dims, 0.0, 1.0, dtype).unwrap();
    let leaves = if bias { vec![x, w, b] } else { vec![x, w] };
    for &t in &leaves {
        g.set_requires_grad(t, true).unwrap();
    }
    let b = bias.then_some(b);
    let y = if fused {
        g.linear_act(x, w, b, act).unwrap()
    } else {
        let z = g.linear(x, w, b).unwrap();
        unfused(&mut g, act, z)
    };
    let weighted = g.mul(y, weights).unwrap();
    let loss = g.sum(weighted, &[], false).unwrap();
    let mut got = vec![bits(&g, y)];
    if create_graph {
        let grads = g.grad_of(&[loss], &leaves, &[], true, true).unwrap();
        got.extend(grads.iter().map(|&t| bits(&g, t)));
        // And through the gradient once more: the activation's backward is itself differentiable.
        let s = g.sum(grads[0], &[], false).unwrap();
        let second = g.grad_of(&[s], &[w], &[], false, false).unwrap();
        got.push(bits(&g, second[0]));
    } else {
        g.backward(loss, None, false).unwrap();
        got.extend(leaves.iter().map(|&t| bits(&g, g.grad(t).unwrap().unwrap())));
    }
    got
}

#[test]
fn linear_act_is_linear_then_the_activation_bit_for_bit_with_the_same_gradients() {
    // float32 shapes on every route of a layer's forward: B in registers with the activation in its
    // stores (500×20×13, 500×13×8, depth 22, a partial last group of rows), rows packed to a vector
    // (500×8×3, 37×4×2), products the small path turns (3 rows) or leaves (depth 23, wide outputs)
    // to other kernels, the blocked path (64×300×70), a 3-d input, one element, no rows, and a
    // depth of 0 (the output is the bias alone, or zeros, through the activation).
    let shapes: &[(&[usize], usize)] = &[
        (&[500, 20], 13),
        (&[500, 13], 8),
        (&[500, 8], 3),
        (&[37, 4], 2),
        (&[9, 22], 16),
        (&[7, 23], 5),
        (&[3, 20], 13),
        (&[32, 64], 128),
        (&[64, 300], 70),
        (&[2, 5, 6], 4),
        (&[1, 1], 1),
        (&[0, 5], 3),
        (&[4, 0], 3),
    ];
    for &(dims, n) in shapes {
        for act in ACTS {
            for bias in [true, false] {
                let want = run(DType::F32, dims, n, bias, act, false, false);
                let got = run(DType::F32, dims, n, bias, act, true, false);
                assert!(want == got, "float32 {dims:?}·{n}, {act:?}, bias {bias}");
            }
        }
    }
    for &(dims, n) in &[(&[500usize, 20][..], 13), (&[9, 22], 16), (&[2, 5, 6], 4)] {
        for act in ACTS {
            for bias in [true, false] {
                assert!(run(DType::F64, dims, n, bias, act, false, false) == run(DType::F64, dims, n, bias, act, true, false), "float64 {dims:?}·{n}, {act:?}, bias {bias}");
            }
        }
    }
}

#[test]
fn linear_act_gradients_with_create_graph_match_the_two_ops_to_second_order() {
    for dtype in [DType::F32, DType::F64] {
        for act in ACTS {
            for &(dims, n) in &[(&[50usize, 20][..], 13), (&[6, 3], 2)] {
                assert!(run(dtype, dims, n, true, act, false, true) == run(dtype, dims, n, true, act, true, true), "{dtype:?} {dims:?}·{n}, {act:?}");
            }
        }
    }
}

#[test]
fn relu_in_the_product_stores_keeps_nan_and_sends_zero_and_negatives_to_plus_zero() {
    // Pre-activations of NaN, ±0, ±inf, and values either side of zero, on the small path (the
    // relu is applied in the product's stores there) and through a 3-wide packed output.
    let mut g = Graph::new();
    for n in [13, 3] {
        let rows = 40;
        let mut x = vec![0.0f32; rows];
        let specials = [f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::INFINITY, -1e-30, 1e-30, -3.5, 2.5];
        for (i, v) in x.iter_mut().enumerate() {
            *v = specials[i % specials.len()];
        }
        let xt = g.from_slice(&x, &[rows, 1]).unwrap();
        let w = g.from_slice(&vec![1.0f32; n], &[n, 1]).unwrap();
        let fused = g.linear_act(xt, w, None, Activation::Relu).unwrap();
        let got = g.to_vec_f32(fused).unwrap();
        for (i, &v) in x.iter().enumerate() {
            let want = if v.is_nan() { f32::NAN } else if v > 0.0 { v } else { 0.0 };
            for j in 0..n {
                let o = got[i * n + j];
                assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "relu({v}) gave {o}");
            }
        }
    }
}

#[test]
fn sequential_fuses_each_linear_layer_with_the_activation_after_it() {
    let mut g = Graph::new();
    g.manual_seed(3);
    let mut net = Sequential::new();
    net.push(Layer::linear(&mut g, 6, 5, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(&mut g, 5, 4, false).unwrap()).push(Layer::Sigmoid);
    net.push(Layer::linear(&mut g, 4, 3, true).unwrap()).push(Layer::Tanh);
    net.push(Layer::Relu).push(Layer::linear(&mut g, 3, 2, true).unwrap());
    let x = g.randn(&[10, 6], 0.0, 1.0, DType::F32).unwrap();
    g.set_persistent(x, true).unwrap();

    // The same layers as separate ops.
    let by_hand = |g: &mut Graph| {
        let mut h = x;
        for (_, layer) in net.layers() {
            h = layer.forward(g, h, true).unwrap();
        }
        h
    };
    let run = |g: &mut Graph, fused: bool| {
        let y = if fused { net.forward(g, x).unwrap() } else { by_hand(g) };
        let s = g.sum(y, &[], false).unwrap();
        for p in net.parameters() {
            g.zero_grad(p).unwrap();
        }
        g.backward(s, None, false).unwrap();
        let mut out = vec![bits(g, y)];
        out.extend(net.parameters().iter().map(|&p| bits(g, g.grad(p).unwrap().unwrap())));
        g.reset();
        out
    };
    assert!(run(&mut g, true) == run(&mut g, false));

    // The Tanh after the third Linear is fused; the Relu after it stays an op of its own.
    let mut short = Sequential::new();
    for (_, layer) in &net.layers()[..6] {
        short.push(layer.clone());
    }
    let y = short.forward(&mut g, x).unwrap();
    assert_eq!(g.grad_fn(y).unwrap(), Some("linear_tanh"));
    let y = net.forward(&mut g, x).unwrap();
    assert_eq!(g.grad_fn(y).unwrap(), Some("linear"));
    let p = net.predict(&mut g, x).unwrap();
    assert_eq!(bits(&g, p), bits(&g, y));
}
