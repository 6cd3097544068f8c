//! A steady-state training step allocates nothing from the system: tensors come from the graph's pool,
//! gradients of every op come back without a heap list, matrix products pack into per-thread buffers
//! and the optimizer's state is made at its first step. A counting global allocator watches the heap
//! of the whole process during steps W1 (the seed network) and W2 (an MNIST-sized MLP) of the
//! benchmark workloads, built from graph ops and through `Sequential::train_step`, at one thread
//! and at two (the worker pool hands out jobs without allocating).

use bp::nn::{Layer, Loss, Sequential};
use bp::optim::{Optimizer, Sgd, SgdConfig};
use bp::{CrossEntropyOptions, DType, Graph, Tensor};

#[path = "harness/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;


struct Workload {
    /// Steps through `Sequential::train_step` instead of graph ops.
    compiled: bool,
    g: Graph,
    net: Sequential,
    opt: Sgd,
    x: Tensor,
    y: Tensor,
}

impl Workload {
    fn step(&mut self) {
        let g = &mut self.g;
        if self.compiled {
            let ce = Loss::CrossEntropy(CrossEntropyOptions::default());
            self.net.train_step(g, &mut self.opt, self.x, self.y, ce).unwrap();
            return;
        }
        self.opt.zero_grad(g).unwrap();
        let z = self.net.forward(g, self.x).unwrap();
        let loss = g.cross_entropy(z, self.y).unwrap();
        g.backward(loss, None, false).unwrap();
        self.opt.step(g).unwrap();
        g.reset();
    }
}

fn workload(seed: u64, batch: usize, dims: &[usize], classes: i64, hidden: Layer, bias_last_only: bool, momentum: f64) -> Workload {
    let mut g = Graph::new();
    g.manual_seed(seed);
    let x = g.randn(&[batch, dims[0]], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, classes, &[batch]).unwrap();
    g.set_persistent(x, true).unwrap();
    g.set_persistent(y, true).unwrap();
    let mut net = Sequential::new();
    for (i, w) in dims.windows(2).enumerate() {
        let last = i + 2 == dims.len();
        net.push(Layer::linear(&mut g, w[0], w[1], last || !bias_last_only).unwrap());
        if !last {
            net.push(if i == 0 { Layer::Relu } else { hidden.clone() });
        }
    }
    let opt = Sgd::new(&g, net.named_parameters(), SgdConfig { lr: 0.01, momentum, ..Default::default() }).unwrap();
    Workload { compiled: false, g, net, opt, x, y }
}

fn check(name: &str, mut w: Workload, threads: usize) {
    bp::set_num_threads(threads);
    for _ in 0..3 {
        w.step(); // fills the pool, the optimizer's state and the packing buffers
    }
    let n = allocations(|| {
        for _ in 0..5 {
            w.step();
        }
    });
    assert_eq!(n, 0, "{name} at {threads} thread(s): {n} allocations in 5 steady-state steps");
}

#[test]
fn steady_state_training_steps_allocate_nothing() {
    // One test function: the thread count is global, so the cases must not run concurrently.
    for threads in [1, 2] {
        // W1: 20→13 ReLU →8 sigmoid →3, no bias but on the last layer, SGD.
        check("W1", workload(212, 500, &[20, 13, 8, 3], 3, Layer::Sigmoid, true, 0.0), threads);
        // W2: 784→512 ReLU →512 ReLU →10, SGD with momentum; large enough to use the worker pool.
        check("W2", workload(0, 128, &[784, 512, 512, 10], 10, Layer::Relu, false, 0.9), threads);
        // The same steps through Sequential::train_step.
        let compiled = |w: Workload| Workload { compiled: true, ..w };
        check("W1 train_step", compiled(workload(212, 500, &[20, 13, 8, 3], 3, Layer::Sigmoid, true, 0.0)), threads);
        check("W2 train_step", compiled(workload(0, 128, &[784, 512, 512, 10], 10, Layer::Relu, false, 0.9)), threads);
    }
    bp::set_num_threads(1);
}
