//! A data-parallel step adds no allocation to a training step: the gradients are all-reduced in the
//! flat buffer where backward left them, and the optimizers update the flat parameters in place. A
//! counting global allocator watches the heap during steady-state steps.

use bp::distributed::{DataParallel, InProcessGroup};
use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer};
use bp::{DType, Graph};
use counting_alloc::allocations_on_this_thread;
use std::time::Duration;

#[path = "harness/counting_alloc.rs"]
mod counting_alloc;


#[test]
fn steady_state_gradient_averaging_and_optimizer_steps_allocate_nothing() {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 8, 16, true).unwrap()).push(Layer::Relu).push(Layer::linear(&mut g, 16, 4, true).unwrap());
    let member = InProcessGroup::new(1, Duration::from_secs(30)).pop().unwrap();
    let mut dp = DataParallel::new(&mut g, &m.parameters(), Box::new(member)).unwrap();
    let mut opt = Adam::new(&g, m.named_parameters(), AdamConfig::adam(1e-3)).unwrap();
    let x = g.ones(&[3, 8], DType::F32).unwrap();
    g.set_persistent(x, true).unwrap();
    let y = m.forward(&mut g, x).unwrap();
    let s = g.sum(y, &[], false).unwrap();
    dp.backward(&mut g, s).unwrap();
    opt.step(&mut g).unwrap(); // allocates Adam's state and the collective's scratch
    dp.average_gradients(&mut g).unwrap();
    let n = allocations_on_this_thread(|| {
        for _ in 0..10 {
            opt.zero_grad(&mut g).unwrap();
            dp.average_gradients(&mut g).unwrap();
            opt.step(&mut g).unwrap();
        }
    });
    assert_eq!(n, 0, "allocated during steady-state data-parallel steps");
}
