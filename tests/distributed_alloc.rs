//! A data-parallel step adds no allocation to a training step: the gradients are all-reduced in the
//! flat buffer where backward left them, and the optimizers update the flat parameters in place. A
//! counting global allocator watches the heap during steady-state steps.

use bp::distributed::{DataParallel, InProcessGroup};
use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer};
use bp::{DType, Graph};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..10 {
        opt.zero_grad(&mut g).unwrap();
        dp.average_gradients(&mut g).unwrap();
        opt.step(&mut g).unwrap();
    }
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0, "allocated during steady-state data-parallel steps");
}
