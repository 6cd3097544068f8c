//! Optimizer steps allocate nothing once their state exists: the state buffers are made at the first
//! step and reused. A counting global allocator watches the heap during steady-state steps.

use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig};
use bp::{DType, Graph};
use counting_alloc::allocations_on_this_thread;

#[path = "harness/counting_alloc.rs"]
mod counting_alloc;


fn check(make: impl Fn(&Graph, &Sequential) -> Box<dyn Optimizer>) {
    let mut g = Graph::new();
    let mut m = Sequential::new();
    m.push(Layer::linear(&mut g, 8, 16, true).unwrap()).push(Layer::Relu).push(Layer::linear(&mut g, 16, 4, true).unwrap());
    let mut opt = make(&g, &m);
    let x = g.ones(&[3, 8], DType::F32).unwrap();
    g.set_persistent(x, true).unwrap();
    let y = m.forward(&mut g, x).unwrap();
    let s = g.sum(y, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    opt.step(&mut g).unwrap(); // allocates the state
    let n = allocations_on_this_thread(|| {
        for _ in 0..10 {
            opt.step(&mut g).unwrap();
        }
    });
    assert_eq!(n, 0, "{} allocated during steady-state steps", opt.kind());
}

#[test]
fn steady_state_optimizer_steps_allocate_nothing() {
    check(|g, m| Box::new(Sgd::new(g, m.named_parameters(), SgdConfig { momentum: 0.9, ..Default::default() }).unwrap()));
    check(|g, m| Box::new(Adam::new(g, m.named_parameters(), AdamConfig { amsgrad: true, ..AdamConfig::adamw(1e-3) }).unwrap()));
    check(|g, m| Box::new(RmsProp::new(g, m.named_parameters(), RmsPropConfig { centered: true, momentum: 0.5, ..Default::default() }).unwrap()));
}
