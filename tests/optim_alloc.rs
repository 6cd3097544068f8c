//! Optimizer steps allocate nothing once their state exists: the state buffers are made at the first
//! step and reused. A counting global allocator watches the heap during steady-state steps.

use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig};
use bp::{DType, Graph};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..10 {
        opt.step(&mut g).unwrap();
    }
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0, "{} allocated during steady-state steps", opt.kind());
}

#[test]
fn steady_state_optimizer_steps_allocate_nothing() {
    check(|g, m| Box::new(Sgd::new(g, m.named_parameters(), SgdConfig { momentum: 0.9, ..Default::default() }).unwrap()));
    check(|g, m| Box::new(Adam::new(g, m.named_parameters(), AdamConfig { amsgrad: true, ..AdamConfig::adamw(1e-3) }).unwrap()));
    check(|g, m| Box::new(RmsProp::new(g, m.named_parameters(), RmsPropConfig { centered: true, momentum: 0.5, ..Default::default() }).unwrap()));
}
