//! Training gives bit-identical results at one thread and at two (and three): every element of every
//! parallel product is accumulated by one thread over k in a fixed order, whatever the split.

use bp::nn::{Layer, Sequential};
use bp::optim::{Optimizer, Sgd, SgdConfig};
use bp::{DType, Graph};

/// Trains W2 of the benchmark workloads (784→512 ReLU →512 ReLU →10, batch 128, SGD with momentum)
/// for `steps` steps on `threads` threads; returns the bits of every loss and of every parameter.
fn train_w2(threads: usize, steps: usize) -> (Vec<u32>, Vec<u32>) {
    bp::set_num_threads(threads);
    let mut g = Graph::new();
    g.manual_seed(0);
    let x = g.randn(&[128, 784], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, 10, &[128]).unwrap();
    g.set_persistent(x, true).unwrap();
    g.set_persistent(y, true).unwrap();
    let mut net = Sequential::new();
    net.push(Layer::linear(&mut g, 784, 512, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(&mut g, 512, 512, true).unwrap()).push(Layer::Relu);
    net.push(Layer::linear(&mut g, 512, 10, true).unwrap());
    let mut opt = Sgd::new(&g, net.named_parameters(), SgdConfig { lr: 0.01, momentum: 0.9, ..Default::default() }).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        opt.zero_grad(&mut g).unwrap();
        let z = net.forward(&mut g, x).unwrap();
        let loss = g.cross_entropy(z, y).unwrap();
        losses.push((g.item(loss).unwrap() as f32).to_bits());
        g.backward(loss, None, false).unwrap();
        opt.step(&mut g).unwrap();
        g.reset();
    }
    let params = net.parameters().iter().flat_map(|&p| g.data::<f32>(p).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect();
    bp::set_num_threads(1);
    (losses, params)
}

#[test]
fn training_is_bit_identical_for_one_two_and_three_threads() {
    let one = train_w2(1, 8);
    assert!(one.0.windows(2).any(|w| w[0] != w[1]), "the loss moves, so the comparison means something");
    for threads in [2, 3] {
        let many = train_w2(threads, 8);
        assert_eq!(one.0, many.0, "losses differ between 1 and {threads} threads");
        assert!(one.1 == many.1, "parameters differ between 1 and {threads} threads");
    }
}
