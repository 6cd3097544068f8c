//! Reliability of the engine under load: threads, long runs, memory limits.

use bp::{DType, ErrorKind, Graph, Tensor};

/// Trains a small MLP for `steps` SGD steps in its own graph and returns the loss history's bits.
fn train(seed: u64, steps: usize) -> Vec<u32> {
    let mut g = Graph::new();
    g.manual_seed(seed);
    let x = g.randn(&[64, 16], 0.0, 1.0, DType::F32).unwrap();
    let y = g.randint(0, 4, &[64]).unwrap();
    let w1 = g.rand(&[32, 16], -0.25, 0.25, DType::F32).unwrap();
    let b1 = g.zeros(&[32], DType::F32).unwrap();
    let w2 = g.rand(&[4, 32], -0.18, 0.18, DType::F32).unwrap();
    let params = [w1, b1, w2];
    for t in [x, y].iter().chain(&params) {
        g.set_persistent(*t, true).unwrap();
    }
    for p in params {
        g.set_requires_grad(p, true).unwrap();
    }
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        for p in params {
            g.zero_grad(p).unwrap();
        }
        let h = g.linear(x, w1, Some(b1)).unwrap();
        let h = g.tanh(h).unwrap();
        let z = g.linear(h, w2, None).unwrap();
        let loss = g.cross_entropy(z, y).unwrap();
        losses.push((g.item(loss).unwrap() as f32).to_bits());
        g.backward(loss, None, false).unwrap();
        sgd(&mut g, &params, 0.1);
        g.reset();
    }
    losses
}

fn sgd(g: &mut Graph, params: &[Tensor], lr: f32) {
    for &p in params {
        let gr = g.grad(p).unwrap().unwrap();
        let upd: Vec<f32> = g.data::<f32>(p).unwrap().iter().zip(g.data::<f32>(gr).unwrap()).map(|(w, d)| w - lr * d).collect();
        g.no_grad(|g| g.write(p, &upd).unwrap());
    }
}

#[test]
fn threads_training_their_own_graphs_match_the_single_thread_results_bit_for_bit() {
    let expected: Vec<Vec<u32>> = (0..6).map(|s| train(s, 40)).collect();
    assert!(f32::from_bits(expected[0][39]) < f32::from_bits(expected[0][0]), "the loss falls");
    std::thread::scope(|scope| {
        let trainers: Vec<_> = (0..6).map(|s| scope.spawn(move || train(s, 40))).collect();
        // Meanwhile, other threads create, use and drop graphs.
        let churn: Vec<_> = (0..2)
            .map(|k| {
                scope.spawn(move || {
                    for i in 0..300 {
                        let mut g = Graph::new();
                        let a = g.ones(&[i % 17 + 1, 3], DType::F64).unwrap();
                        let s = g.sum(a, &[], false).unwrap();
                        assert_eq!(g.item(s).unwrap(), ((i % 17 + 1) * 3) as f64, "churn thread {k}");
                    }
                })
            })
            .collect();
        for (s, t) in trainers.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), expected[s], "trainer {s}");
        }
        for c in churn {
            c.join().unwrap();
        }
    });
}

#[test]
fn a_long_training_run_keeps_memory_flat() {
    let mut g = Graph::new();
    g.manual_seed(3);
    let x = g.randn(&[32, 8], 0.0, 1.0, DType::F32).unwrap();
    let w = g.rand(&[8, 8], -0.3, 0.3, DType::F32).unwrap();
    for t in [x, w] {
        g.set_persistent(t, true).unwrap();
    }
    g.set_requires_grad(w, true).unwrap();
    let mut after_warmup = None;
    for step in 0..3000 {
        g.zero_grad(w).unwrap();
        let h = g.matmul(x, w).unwrap();
        let h = g.relu(h).unwrap();
        let l = g.mean(h, &[], false).unwrap();
        g.backward(l, None, false).unwrap();
        g.reset();
        let held = (g.memory_used(), g.memory_pooled(), g.tensor_count());
        if step == 10 {
            after_warmup = Some(held);
        } else if step > 10 {
            assert_eq!(Some(held), after_warmup, "step {step}: memory grew");
        }
    }
}

#[test]
fn a_step_that_exceeds_the_memory_limit_fails_cleanly_and_the_graph_stays_usable() {
    let mut g = Graph::new();
    let w = g.ones(&[64, 64], DType::F32).unwrap();
    g.set_persistent(w, true).unwrap();
    g.set_requires_grad(w, true).unwrap();
    g.set_memory_limit(g.memory_used() + 64 * 64 * 4 * 3).unwrap();
    let mut failed = false;
    let mut h = w;
    for _ in 0..10 {
        match g.matmul(h, w) {
            Ok(t) => h = t,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::OutOfMemory);
                assert!(e.message().contains("memory limit"), "{e}");
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the limit was reached");
    g.reset();
    let s = g.sum(w, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    assert_eq!(g.item(s).unwrap(), 4096.0);
}
