//! `Sequential::train_step` is the step built from graph ops (zero_grad, forward, loss, backward,
//! optimizer step), bit for bit, without recording a graph; what it does not take is an error that
//! leaves the graph and the parameters as they were.

use bp::nn::{Layer, Loss, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use bp::{CrossEntropyOptions, DType, ErrorKind, Graph, Reduction, Tensor};

/// A model, its optimizer and a batch, made the same way in a graph of their own.
struct Setup {
    g: Graph,
    net: Sequential,
    opt: Box<dyn Optimizer>,
    x: Tensor,
    y: Tensor,
}

#[derive(Clone, Copy)]
enum Opt {
    Sgd,
    Momentum,
    Adam,
}

/// Targets for `loss`: classes in 0..classes, or values of shape [batch, classes] for MSE.
fn targets(g: &mut Graph, loss: Loss, batch: usize, classes: i64) -> Tensor {
    match loss {
        Loss::CrossEntropy(_) => g.randint(0, classes, &[batch]).unwrap(),
        Loss::Mse(_) => g.randn(&[batch, classes as usize], 0.0, 1.0, DType::F32).unwrap(),
    }
}

fn setup(layers: &dyn Fn(&mut Graph) -> Vec<Layer>, batch: usize, features: usize, classes: i64, opt: Opt, flat: bool, loss: Loss) -> Setup {
    let mut g = Graph::new();
    g.manual_seed(7);
    let x = g.randn(&[batch, features], 0.0, 3.0, DType::F32).unwrap();
    let y = targets(&mut g, loss, batch, classes);
    g.set_persistent(x, true).unwrap();
    g.set_persistent(y, true).unwrap();
    let mut net = Sequential::new();
    for layer in layers(&mut g) {
        net.push(layer);
    }
    if flat {
        g.flatten_parameters(&net.parameters()).unwrap();
    }
    let named = net.named_parameters();
    let opt: Box<dyn Optimizer> = match opt {
        Opt::Sgd => Box::new(Sgd::new(&g, named, SgdConfig { lr: 0.05, ..Default::default() }).unwrap()),
        Opt::Momentum => Box::new(Sgd::new(&g, named, SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 1e-3, ..Default::default() }).unwrap()),
        Opt::Adam => Box::new(Adam::new(&g, named, AdamConfig::adam(1e-2)).unwrap()),
    };
    Setup { g, net, opt, x, y }
}

impl Setup {
    /// The step built from graph ops, as PyTorch's loop.
    fn graph_step(&mut self, loss: Loss) -> f64 {
        let g = &mut self.g;
        self.opt.zero_grad(g).unwrap();
        let z = self.net.forward(g, self.x).unwrap();
        let l = match loss {
            Loss::CrossEntropy(ce) => g.cross_entropy_with(z, self.y, ce).unwrap(),
            Loss::Mse(r) => g.mse_loss(z, self.y, r).unwrap(),
        };
        let v = g.item(l).unwrap();
        g.backward(l, None, false).unwrap();
        self.opt.step(g).unwrap();
        g.reset();
        v
    }

    fn compiled_step(&mut self, loss: Loss) -> f64 {
        self.net.train_step(&mut self.g, self.opt.as_mut(), self.x, self.y, loss).unwrap()
    }

    fn bits(&self, t: Tensor) -> Vec<u32> {
        self.g.to_vec_f32(t).unwrap().iter().map(|v| v.to_bits()).collect()
    }

    /// Every parameter's value and `.grad` (absent for a frozen one), as bits.
    fn state(&self) -> Vec<(Vec<u32>, Option<Vec<u32>>)> {
        self.net.parameters().iter().map(|&p| (self.bits(p), self.g.grad(p).unwrap().map(|gt| self.bits(gt)))).collect()
    }
}

/// Runs `steps` steps both ways on twin setups and checks the losses, parameters and gradients bit
/// for bit after each.
#[allow(clippy::too_many_arguments)]
fn same_as_graph(name: &str, layers: &dyn Fn(&mut Graph) -> Vec<Layer>, batch: usize, features: usize, classes: i64, opt: Opt, flat: bool, loss: Loss, freeze_first: bool) {
    let (mut a, mut b) = (setup(layers, batch, features, classes, opt, flat, loss), setup(layers, batch, features, classes, opt, flat, loss));
    if freeze_first {
        for s in [&mut a, &mut b] {
            let w = s.net.parameters()[0];
            s.g.set_requires_grad(w, false).unwrap();
        }
    }
    for step in 0..6 {
        let (la, lb) = (a.graph_step(loss), b.compiled_step(loss));
        assert_eq!(la.to_bits(), lb.to_bits(), "{name}, step {step}: loss {la} from ops, {lb} compiled");
        assert!(a.state() == b.state(), "{name}, step {step}: parameters or gradients differ");
    }
    assert_eq!(b.g.node_count(), 0, "{name}: the compiled step recorded nodes");
}

fn linear(g: &mut Graph, i: usize, o: usize, bias: bool) -> Layer {
    Layer::linear(g, i, o, bias).unwrap()
}

#[test]
fn train_step_is_bit_identical_to_the_step_built_from_graph_ops() {
    let mean = Loss::CrossEntropy(CrossEntropyOptions::default());
    let seed_net = |g: &mut Graph| vec![linear(g, 20, 13, false), Layer::Relu, linear(g, 13, 8, false), Layer::Sigmoid, linear(g, 8, 3, true)];
    same_as_graph("seed network", &seed_net, 500, 20, 3, Opt::Sgd, false, mean, false);
    same_as_graph("seed network, batch 1", &seed_net, 1, 20, 3, Opt::Sgd, false, mean, false);
    same_as_graph("seed network, momentum", &seed_net, 37, 20, 3, Opt::Momentum, false, mean, false);
    same_as_graph("seed network, flat parameters", &seed_net, 64, 20, 3, Opt::Adam, true, mean, false);
    same_as_graph("seed network, first layer frozen", &seed_net, 64, 20, 3, Opt::Sgd, false, mean, true);
    // Tanh fused; activations alone (after Flatten, after another activation); eval-mode dropout.
    let odd = |g: &mut Graph| vec![Layer::Flatten, Layer::Tanh, linear(g, 12, 40, true), Layer::Tanh, Layer::Relu, linear(g, 40, 40, true), Layer::Sigmoid, Layer::Sigmoid, linear(g, 40, 5, true)];
    same_as_graph("activations alone", &odd, 33, 12, 5, Opt::Adam, false, mean, false);
    // Leaky relu and GELU (their gradients from their inputs), after a Linear layer and after another activation.
    let leaky = |g: &mut Graph| vec![linear(g, 20, 16, true), Layer::LeakyRelu(0.1), linear(g, 16, 9, false), Layer::Gelu, Layer::LeakyRelu(0.01), linear(g, 9, 3, true)];
    same_as_graph("leaky relu and GELU", &leaky, 40, 20, 3, Opt::Momentum, false, mean, false);
    // Products on the blocked path, and more classes than the vectorised cross-entropy takes.
    let wide = |g: &mut Graph| vec![linear(g, 300, 256, true), Layer::Relu, linear(g, 256, 40, true)];
    same_as_graph("wide layers, 40 classes", &wide, 96, 300, 40, Opt::Momentum, false, mean, false);
    // The cross-entropy's options.
    let opts = Loss::CrossEntropy(CrossEntropyOptions { reduction: Reduction::Sum, label_smoothing: 0.1, ignore_index: 2 });
    same_as_graph("sum, label smoothing, ignore_index", &seed_net, 50, 20, 3, Opt::Sgd, false, opts, false);
    let all_ignored = Loss::CrossEntropy(CrossEntropyOptions { ignore_index: 0, ..CrossEntropyOptions::default() });
    same_as_graph("every target ignored (a NaN loss)", &seed_net, 4, 20, 1, Opt::Sgd, false, all_ignored, false);
    // Mean squared error, mean and sum, on a small net and on the blocked path.
    same_as_graph("mse, mean", &seed_net, 50, 20, 3, Opt::Momentum, false, Loss::Mse(Reduction::Mean), false);
    same_as_graph("mse, sum", &odd, 21, 12, 5, Opt::Adam, false, Loss::Mse(Reduction::Sum), false);
    same_as_graph("mse, wide", &wide, 96, 300, 40, Opt::Sgd, false, Loss::Mse(Reduction::Mean), false);
}

#[test]
fn train_step_split_over_threads_is_bit_identical_to_the_unsplit_step() {
    // Batches of two k blocks or more (over 256 rows) and small products (each under 2^20
    // multiply-adds, with at least 2^17 in the forward): the compiled step runs
    // its rows in parts on the threads, each k block's weight gradients apart. The step from ops
    // (whose small products stay on one thread) is the reference.
    let mean = Loss::CrossEntropy(CrossEntropyOptions::default());
    let seed_net = |g: &mut Graph| vec![linear(g, 20, 13, false), Layer::Relu, linear(g, 13, 8, false), Layer::Sigmoid, linear(g, 8, 3, true)];
    let leaky = |g: &mut Graph| vec![linear(g, 20, 16, true), Layer::LeakyRelu(0.1), linear(g, 16, 9, false), Layer::Gelu, Layer::Tanh, linear(g, 9, 3, true)];
    let many_classes = |g: &mut Graph| vec![linear(g, 20, 16, true), Layer::Relu, linear(g, 16, 40, true)];
    let opts = Loss::CrossEntropy(CrossEntropyOptions { reduction: Reduction::Sum, label_smoothing: 0.1, ignore_index: 2 });
    for threads in [2, 3] {
        bp::set_num_threads(threads);
        // Two blocks; three (over 2 threads: one and two); four with a shorter last; five.
        for batch in [500, 513, 777, 1100] {
            same_as_graph(&format!("seed network, {threads} threads, batch {batch}"), &seed_net, batch, 20, 3, Opt::Sgd, false, mean, false);
        }
        same_as_graph("flat parameters", &seed_net, 500, 20, 3, Opt::Adam, true, mean, false);
        same_as_graph("first layer frozen", &seed_net, 700, 20, 3, Opt::Momentum, false, mean, true);
        same_as_graph("leaky relu, GELU, an activation alone", &leaky, 520, 20, 3, Opt::Momentum, false, mean, false);
        same_as_graph("general cross-entropy (40 classes)", &many_classes, 600, 20, 40, Opt::Sgd, false, mean, false);
        same_as_graph("sum, label smoothing, ignore_index", &seed_net, 513, 20, 3, Opt::Sgd, false, opts, false);
        same_as_graph("mse", &leaky, 800, 20, 3, Opt::Adam, false, Loss::Mse(Reduction::Mean), false);
    }
    bp::set_num_threads(1);
}

#[test]
fn train_step_keeps_its_buffers_across_batch_sizes() {
    let net = |g: &mut Graph| vec![linear(g, 6, 9, true), Layer::Relu, linear(g, 9, 4, true)];
    let ce = Loss::CrossEntropy(CrossEntropyOptions::default());
    let (mut a, mut b) = (setup(&net, 40, 6, 4, Opt::Sgd, false, ce), setup(&net, 40, 6, 4, Opt::Sgd, false, ce));
    for batch in [40, 3, 100, 1, 0, 40] {
        for s in [&mut a, &mut b] {
            s.g.manual_seed(batch as u64);
            s.x = s.g.randn(&[batch, 6], 0.0, 1.0, DType::F32).unwrap();
            s.y = s.g.randint(0, 4, &[batch]).unwrap();
            s.g.set_persistent(s.x, true).unwrap();
            s.g.set_persistent(s.y, true).unwrap();
        }
        assert_eq!(a.graph_step(ce).to_bits(), b.compiled_step(ce).to_bits(), "batch {batch}");
        assert!(a.state() == b.state(), "batch {batch}: parameters or gradients differ");
    }
}

#[test]
fn train_step_refuses_what_it_does_not_take_and_changes_nothing() {
    let net = |g: &mut Graph| vec![linear(g, 4, 5, true), Layer::Relu, linear(g, 5, 3, true)];
    let ce = Loss::CrossEntropy(CrossEntropyOptions::default());
    let mut s = setup(&net, 8, 4, 3, Opt::Sgd, false, ce);
    let before = s.state();
    let refused = |s: &mut Setup, x: Tensor, y: Tensor, loss: Loss, kind: ErrorKind, what: &str| {
        let e = s.net.train_step(&mut s.g, s.opt.as_mut(), x, y, loss).expect_err(what);
        assert_eq!(e.kind(), kind, "{what}: {e}");
    };
    let (x, y) = (s.x, s.y);
    // Reduction none: not a scalar loss.
    let none = Loss::CrossEntropy(CrossEntropyOptions { reduction: Reduction::None, ..Default::default() });
    refused(&mut s, x, y, none, ErrorKind::InvalidArgument, "reduction none");
    let smoothing = Loss::CrossEntropy(CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() });
    refused(&mut s, x, y, smoothing, ErrorKind::InvalidArgument, "label smoothing past 1");
    // Inputs of the wrong shape, dtype, or requiring grad.
    let x3 = s.g.randn(&[8, 4, 1], 0.0, 1.0, DType::F32).unwrap();
    refused(&mut s, x3, y, ce, ErrorKind::ShapeMismatch, "a 3-d input");
    let x6 = s.g.randn(&[8, 6], 0.0, 1.0, DType::F32).unwrap();
    refused(&mut s, x6, y, ce, ErrorKind::ShapeMismatch, "too many features");
    let x64 = s.g.randn(&[8, 4], 0.0, 1.0, DType::F64).unwrap();
    refused(&mut s, x64, y, ce, ErrorKind::DType, "a float64 input");
    let xg = s.g.randn(&[8, 4], 0.0, 1.0, DType::F32).unwrap();
    s.g.set_requires_grad(xg, true).unwrap();
    refused(&mut s, xg, y, ce, ErrorKind::Unsupported, "an input that requires grad");
    // Targets of the wrong shape, dtype or range.
    let y7 = s.g.randint(0, 3, &[7]).unwrap();
    refused(&mut s, x, y7, ce, ErrorKind::ShapeMismatch, "7 targets for 8 rows");
    let yf = s.g.zeros(&[8], DType::F32).unwrap();
    refused(&mut s, x, yf, ce, ErrorKind::ShapeMismatch, "float targets");
    let yb = s.g.from_i64(&[0, 1, 2, 3, 0, 1, 2, 0], &[8]).unwrap();
    refused(&mut s, x, yb, ce, ErrorKind::InvalidArgument, "a target out of range");
    // MSE: targets of the output's shape, float32; a scalar reduction.
    refused(&mut s, x, y, Loss::Mse(Reduction::Mean), ErrorKind::ShapeMismatch, "class targets for mse");
    let y3 = s.g.randn(&[8, 3], 0.0, 1.0, DType::F32).unwrap();
    refused(&mut s, x, y3, Loss::Mse(Reduction::None), ErrorKind::InvalidArgument, "mse without reduction");
    let y2 = s.g.randn(&[8, 2], 0.0, 1.0, DType::F32).unwrap();
    refused(&mut s, x, y2, Loss::Mse(Reduction::Mean), ErrorKind::ShapeMismatch, "mse targets of another width");
    // Inside no_grad.
    s.g.set_grad_enabled(false);
    refused(&mut s, x, y, ce, ErrorKind::Autograd, "gradients disabled");
    s.g.set_grad_enabled(true);
    // Anomaly detection: a NaN loss is an error before any gradient is written.
    let xn = s.g.full(&[8, 4], f64::NAN, DType::F32).unwrap();
    s.g.set_anomaly_detection(true);
    refused(&mut s, xn, y, ce, ErrorKind::Anomaly, "a NaN loss with anomaly detection on");
    s.g.set_anomaly_detection(false);
    // A freed input.
    let xf = s.g.randn(&[8, 4], 0.0, 1.0, DType::F32).unwrap();
    s.g.free(xf).unwrap();
    refused(&mut s, xf, y, ce, ErrorKind::InvalidHandle, "a freed input");
    assert!(s.state() == before, "a refused step changed a parameter or a gradient");
    // The input is a parameter's .grad, which the step writes as it reads the input.
    s.net.train_step(&mut s.g, s.opt.as_mut(), x, y, ce).unwrap();
    let before = s.state();
    let gw = s.g.grad(s.net.parameters()[0]).unwrap().expect("a .grad after a step");
    let y5 = s.g.randint(0, 3, &[5]).unwrap();
    refused(&mut s, gw, y5, ce, ErrorKind::InvalidArgument, "the input is the first weight's .grad");
    assert!(s.state() == before, "a refused step changed a parameter or a gradient");

    // Layers it does not take: LayerNorm, training-mode Dropout, and a weight used twice.
    let mut ln = setup(&|g: &mut Graph| vec![linear(g, 4, 3, true), Layer::layer_norm(g, &[3], 1e-5, true).unwrap()], 8, 4, 3, Opt::Sgd, false, ce);
    let e = ln.net.train_step(&mut ln.g, ln.opt.as_mut(), ln.x, ln.y, ce).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let mut drop = setup(&|g: &mut Graph| vec![linear(g, 4, 3, true), Layer::Dropout(0.5)], 8, 4, 3, Opt::Sgd, false, ce);
    let e = drop.net.train_step(&mut drop.g, drop.opt.as_mut(), drop.x, drop.y, ce).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let mut g = Graph::new();
    let l = linear(&mut g, 3, 3, false);
    let mut shared = Sequential::new();
    shared.push(l.clone()).push(Layer::Tanh).push(l);
    let x = g.randn(&[2, 3], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, 3, &[2]).unwrap();
    let mut opt = Sgd::new(&g, shared.named_parameters()[..1].to_vec(), SgdConfig { lr: 0.1, ..Default::default() }).unwrap();
    let e = shared.train_step(&mut g, &mut opt, x, y, ce).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // A float64 model.
    let mut g = Graph::new();
    let w = g.randn(&[3, 4], 0.0, 1.0, DType::F64).unwrap();
    g.set_requires_grad(w, true).unwrap();
    let mut m = Sequential::new();
    m.push(Layer::Linear { weight: w, bias: None });
    let x = g.randn(&[2, 4], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, 3, &[2]).unwrap();
    let e = m.train_step(&mut g, &mut opt, x, y, ce).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DType, "{e}");
}
