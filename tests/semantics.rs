//! Each of PyTorch's autograd rules, pinned by a test named after it.

use bp::{DType, ErrorKind, Graph, Tensor};

fn scalar(g: &mut Graph, v: f64, requires_grad: bool) -> Tensor {
    let t = g.full(&[], v, DType::F64).unwrap();
    g.set_requires_grad(t, requires_grad).unwrap();
    t
}

fn vec64(g: &mut Graph, v: &[f64], requires_grad: bool) -> Tensor {
    let t = g.from_slice(v, &[v.len()]).unwrap();
    g.set_requires_grad(t, requires_grad).unwrap();
    t
}

fn grad_values(g: &Graph, t: Tensor) -> Vec<f64> {
    let gr = g.grad(t).unwrap().expect("a .grad");
    g.to_vec_f64(gr).unwrap()
}

#[test]
fn requires_grad_defaults_to_false_and_tensors_made_by_the_caller_are_leaves() {
    let mut g = Graph::new();
    let a = g.zeros(&[2], DType::F32).unwrap();
    assert!(!g.requires_grad(a).unwrap());
    assert!(g.is_leaf(a).unwrap());
    assert_eq!(g.grad_fn(a).unwrap(), None);
}

#[test]
fn an_ops_result_requires_grad_when_any_input_does() {
    let mut g = Graph::new();
    let a = scalar(&mut g, 2.0, true);
    let b = scalar(&mut g, 3.0, false);
    let c = g.mul(a, b).unwrap();
    assert!(g.requires_grad(c).unwrap());
    assert!(!g.is_leaf(c).unwrap());
    assert_eq!(g.grad_fn(c).unwrap(), Some("mul"));
    let d = g.mul(b, b).unwrap();
    assert!(!g.requires_grad(d).unwrap());
    assert!(g.is_leaf(d).unwrap(), "a result that needs no grad records no node");
}

#[test]
fn backward_computes_gradients_only_for_leaves_that_require_them() {
    let mut g = Graph::new();
    let a = scalar(&mut g, 2.0, true);
    let b = scalar(&mut g, 3.0, false);
    let c = g.mul(a, b).unwrap();
    g.backward(c, None, false).unwrap();
    assert_eq!(grad_values(&g, a), vec![3.0]);
    assert_eq!(g.grad(b).unwrap(), None);
}

#[test]
fn backward_of_a_scalar_seeds_with_one() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 4.0, true);
    let y = g.mul_scalar(x, 5.0).unwrap();
    g.backward(y, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![5.0]);
}

#[test]
fn backward_of_a_non_scalar_without_a_gradient_fails() {
    let mut g = Graph::new();
    let x = vec64(&mut g, &[1.0, 2.0], true);
    let y = g.mul_scalar(x, 2.0).unwrap();
    let e = g.backward(y, None, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("only for scalar outputs"), "{}", e);
}

#[test]
fn backward_of_a_non_scalar_takes_a_gradient_of_the_same_shape() {
    let mut g = Graph::new();
    let x = vec64(&mut g, &[1.0, 2.0], true);
    let y = g.mul(x, x).unwrap();
    let wrong = g.from_slice(&[1.0f64, 1.0, 1.0], &[3]).unwrap();
    assert_eq!(g.backward(y, Some(wrong), true).unwrap_err().kind(), ErrorKind::ShapeMismatch);
    let v = g.from_slice(&[1.0f64, 10.0], &[2]).unwrap();
    g.backward(y, Some(v), false).unwrap();
    assert_eq!(grad_values(&g, x), vec![2.0, 40.0]);
    assert_eq!(g.to_vec_f64(v).unwrap(), vec![1.0, 10.0], "the caller's gradient is not modified");
}

#[test]
fn backward_of_a_tensor_that_does_not_require_grad_fails() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 1.0, false);
    let y = g.exp(x).unwrap();
    let e = g.backward(y, None, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("does not require grad"));
}

#[test]
fn gradients_accumulate_across_backward_calls_until_zeroed() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 3.0, true);
    for _ in 0..3 {
        let y = g.mul(x, x).unwrap();
        g.backward(y, None, false).unwrap();
    }
    assert_eq!(grad_values(&g, x), vec![18.0]);
    g.zero_grad(x).unwrap();
    assert_eq!(g.grad(x).unwrap(), None);
    let y = g.mul(x, x).unwrap();
    g.backward(y, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![6.0]);
}

#[test]
fn gradients_of_a_tensor_used_twice_add_up() {
    let mut g = Graph::new();
    let x = vec64(&mut g, &[1.0, 2.0], true);
    let a = g.add(x, x).unwrap();
    let b = g.mul(a, x).unwrap(); // 2x²
    let s = g.sum(b, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![4.0, 8.0]);
}

#[test]
fn leaves_sharing_one_upstream_gradient_get_independent_grads() {
    // add's backward hands the same gradient to both inputs; each leaf must own its .grad.
    let mut g = Graph::new();
    let a = vec64(&mut g, &[1.0], true);
    let b = vec64(&mut g, &[2.0], true);
    let c = g.add(a, b).unwrap();
    let s = g.sum(c, &[], false).unwrap();
    g.backward(s, None, false).unwrap();
    let c2 = g.mul_scalar(a, 5.0).unwrap();
    let s2 = g.sum(c2, &[], false).unwrap();
    g.backward(s2, None, false).unwrap();
    assert_eq!(grad_values(&g, a), vec![6.0]);
    assert_eq!(grad_values(&g, b), vec![1.0]);
}

#[test]
fn non_leaves_keep_no_grad_unless_retain_grad_was_asked() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let h = g.mul_scalar(x, 3.0).unwrap();
    let kept = g.mul_scalar(x, 4.0).unwrap();
    g.retain_grad(kept).unwrap();
    let y = g.mul(h, kept).unwrap();
    g.backward(y, None, false).unwrap();
    let e = g.grad(h).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("retain_grad"), "{}", e);
    assert_eq!(grad_values(&g, kept), vec![6.0]); // dy/dkept = h = 6
    assert_eq!(grad_values(&g, x), vec![48.0]); // y = 12 x², dy/dx = 24 x
}

#[test]
fn backward_twice_without_retain_graph_fails() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let y = g.mul(x, x).unwrap();
    g.backward(y, None, false).unwrap();
    let e = g.backward(y, None, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("backward through the graph a second time"), "{}", e);
}

#[test]
fn backward_twice_with_retain_graph_accumulates() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let y = g.mul(x, x).unwrap();
    g.backward(y, None, true).unwrap();
    g.backward(y, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![8.0]);
}

#[test]
fn backward_twice_through_ops_that_save_nothing_succeeds() {
    // As in PyTorch: add and scalar multiplication keep no saved tensors, so nothing was freed.
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let y = g.mul_scalar(x, 3.0).unwrap();
    let y = g.add_scalar(y, 1.0).unwrap();
    g.backward(y, None, false).unwrap();
    g.backward(y, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![6.0]);
}

#[test]
fn functional_grad_returns_gradients_without_touching_dot_grad() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 1.0, true);
    let y = g.pow(x, 3.0).unwrap();
    let d = g.grad_of(&[y], &[x], &[], false, false).unwrap();
    assert_eq!(g.item(d[0]).unwrap(), 3.0);
    assert_eq!(g.grad(x).unwrap(), None);
}

#[test]
fn functional_grad_with_create_graph_is_differentiable() {
    // The seed document's example: y = x³ at x = 1, dy/dx = 3, d²y/dx² = 6.
    let mut g = Graph::new();
    let x = scalar(&mut g, 1.0, true);
    let y = g.pow(x, 3.0).unwrap();
    let dy = g.grad_of(&[y], &[x], &[], false, true).unwrap()[0];
    assert_eq!(g.item(dy).unwrap(), 3.0);
    assert!(g.requires_grad(dy).unwrap());
    let d2y = g.grad_of(&[dy], &[x], &[], false, false).unwrap()[0];
    assert_eq!(g.item(d2y).unwrap(), 6.0);
    // Third derivative through backward(): 6 at any x.
    let dy2 = g.grad_of(&[y], &[x], &[], true, true).unwrap()[0];
    let d2 = g.grad_of(&[dy2], &[x], &[], true, true).unwrap()[0];
    g.backward(d2, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![6.0]);
}

#[test]
fn functional_grad_of_an_unused_input_fails() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 1.0, true);
    let z = scalar(&mut g, 1.0, true);
    let y = g.exp(x).unwrap();
    let e = g.grad_of(&[y], &[z], &[], false, false).unwrap_err();
    assert!(e.message().contains("not have been used"), "{}", e);
}

#[test]
fn functional_grad_with_respect_to_a_non_leaf() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let h = g.mul_scalar(x, 3.0).unwrap();
    let y = g.mul(h, h).unwrap();
    let d = g.grad_of(&[y], &[h, x], &[], false, false).unwrap();
    assert_eq!(g.item(d[0]).unwrap(), 12.0);
    assert_eq!(g.item(d[1]).unwrap(), 36.0);
}

#[test]
fn backward_with_create_graph_makes_dot_grad_differentiable() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let y = g.pow(x, 3.0).unwrap();
    g.backward_create_graph(y, None).unwrap();
    let gx = g.grad(x).unwrap().unwrap();
    assert_eq!(g.item(gx).unwrap(), 12.0);
    assert!(g.requires_grad(gx).unwrap());
    let d2 = g.grad_of(&[gx], &[x], &[], false, false).unwrap()[0];
    assert_eq!(g.item(d2).unwrap(), 12.0);
}

#[test]
fn no_grad_mode_records_nothing() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let y = g.no_grad(|g| g.mul(x, x).unwrap());
    assert!(!g.requires_grad(y).unwrap());
    assert!(g.is_leaf(y).unwrap());
    assert!(g.is_grad_enabled());
    let prev = g.set_grad_enabled(false);
    assert!(prev);
    let z = g.exp(x).unwrap();
    assert!(!g.requires_grad(z).unwrap());
    g.set_grad_enabled(true);
}

#[test]
fn detach_cuts_the_history() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 2.0, true);
    let y = g.mul(x, x).unwrap();
    let d = g.detach(y).unwrap();
    assert!(g.is_leaf(d).unwrap());
    assert!(!g.requires_grad(d).unwrap());
    assert_eq!(g.item(d).unwrap(), 4.0);
    let z = g.mul(d, x).unwrap(); // d is a constant: dz/dx = d
    g.backward(z, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![4.0]);
}

#[test]
fn writing_a_tensor_saved_for_backward_makes_backward_fail() {
    let mut g = Graph::new();
    let x = vec64(&mut g, &[1.0, 2.0], true);
    let w = vec64(&mut g, &[3.0, 4.0], false);
    let y = g.mul(x, w).unwrap();
    let s = g.sum(y, &[], false).unwrap();
    g.write_f64(w, &[5.0, 6.0]).unwrap();
    let e = g.backward(s, None, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("modified by an inplace operation"), "{}", e);
}

#[test]
fn writing_a_tensor_that_was_not_saved_does_not_break_backward() {
    let mut g = Graph::new();
    let x = vec64(&mut g, &[1.0, 2.0], true);
    let y = g.exp(x).unwrap(); // exp saves its output, not its input
    let s = g.sum(y, &[], false).unwrap();
    g.no_grad(|g| g.write_f64(x, &[0.0, 0.0]).unwrap());
    g.backward(s, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![1f64.exp(), 2f64.exp()]);
}

#[test]
fn backward_through_an_op_without_a_gradient_fails_naming_the_op() {
    let mut g = Graph::new();
    let logits = g.from_slice(&[0.1f64, 0.2, 0.7, 0.3, 0.3, 0.4], &[2, 3]).unwrap();
    g.set_requires_grad(logits, true).unwrap();
    let t = g.from_i64(&[2, 0], &[2]).unwrap();
    let loss = g.cross_entropy(logits, t).unwrap();
    let d = g.grad_of(&[loss], &[logits], &[], false, true).unwrap()[0];
    let s = g.sum(d, &[], false).unwrap();
    let e = g.backward(s, None, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("cross_entropy_backward"), "{}", e);
}

#[test]
fn requires_grad_can_only_be_set_on_floating_point_leaves() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 1.0, true);
    let y = g.exp(x).unwrap();
    assert_eq!(g.set_requires_grad(y, false).unwrap_err().kind(), ErrorKind::Autograd);
    let i = g.from_i64(&[1], &[1]).unwrap();
    assert_eq!(g.set_requires_grad(i, true).unwrap_err().kind(), ErrorKind::DType);
}

#[test]
fn reset_drops_intermediates_and_keeps_parameters_and_their_grads() {
    let mut g = Graph::new();
    let w = vec64(&mut g, &[1.0, 2.0], true);
    g.set_persistent(w, true).unwrap();
    for step in 1..=3 {
        let x = g.from_slice(&[3.0f64, 4.0], &[2]).unwrap();
        let y = g.mul(w, x).unwrap();
        let s = g.sum(y, &[], false).unwrap();
        g.backward(s, None, false).unwrap();
        g.reset();
        assert_eq!(g.shape(x).unwrap_err().kind(), ErrorKind::InvalidHandle);
        assert_eq!(grad_values(&g, w), vec![3.0 * step as f64, 4.0 * step as f64]);
        assert_eq!(g.node_count(), 0);
    }
    assert_eq!(g.tensor_count(), 2, "the parameter and its .grad");
}

#[test]
fn a_deep_graph_does_not_overflow_the_stack() {
    let mut g = Graph::new();
    let x = scalar(&mut g, 1.0, true);
    let mut y = x;
    for _ in 0..200_000 {
        y = g.add_scalar(y, 1e-6).unwrap();
    }
    g.backward(y, None, false).unwrap();
    assert_eq!(grad_values(&g, x), vec![1.0]);
}

#[test]
fn anomaly_mode_names_the_op_that_produced_a_nan() {
    let mut g = Graph::new();
    g.set_anomaly_detection(true);
    let x = vec64(&mut g, &[-1.0], true);
    let e = g.log(x).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Anomaly);
    assert!(e.message().contains("'log'") && e.message().contains("forward"), "{}", e);
    // In backward: sqrt(0) is fine forward, its gradient is infinite.
    let z = vec64(&mut g, &[0.0], true);
    let r = g.sqrt(z).unwrap();
    let s = g_sum(&mut g, r);
    let e = g.backward(s, None, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Anomaly);
    assert!(e.message().contains("backward of 'sqrt'"), "{}", e);
}

fn g_sum(g: &mut Graph, t: Tensor) -> Tensor {
    g.sum(t, &[], false).unwrap()
}

#[test]
fn dot_export_names_ops_shapes_and_requires_grad() {
    let mut g = Graph::new();
    let x = vec64(&mut g, &[1.0, 2.0], true);
    let y = g.exp(x).unwrap();
    let s = g.sum(y, &[], false).unwrap();
    let dot = g.to_dot(s).unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("\"exp\"") && dot.contains("\"sum\""), "{}", dot);
    assert!(dot.contains("[2] float64\\nrequires_grad"), "{}", dot);
}

#[test]
fn weight_gradients_accumulate_in_place_into_an_existing_grad() {
    // linear and matmul add dW straight into an existing .grad (gemm with beta = 1): the .grad stays
    // the same tensor, its version moves, and the values equal the sum of the separate gradients.
    let mut g = Graph::new();
    g.manual_seed(9);
    let x = g.randn(&[5, 4], 0.0, 1.0, DType::F64).unwrap();
    let w = g.randn(&[3, 4], 0.0, 1.0, DType::F64).unwrap();
    let v = g.randn(&[4, 2], 0.0, 1.0, DType::F64).unwrap();
    for p in [w, v] {
        g.set_requires_grad(p, true).unwrap();
    }
    let step = |g: &mut Graph| {
        let h = g.linear(x, w, None).unwrap(); // x·wᵀ: dW = Gᵀ·x
        let z = g.matmul(x, v).unwrap(); // x·v: dV = xᵀ·G
        let h = g.tanh(h).unwrap();
        let z = g.tanh(z).unwrap();
        let a = g.sum(h, &[], false).unwrap();
        let b = g.sum(z, &[], false).unwrap();
        let s = g.add(a, b).unwrap();
        g.backward(s, None, false).unwrap();
    };
    step(&mut g);
    let (gw, gv) = (g.grad(w).unwrap().unwrap(), g.grad(v).unwrap().unwrap());
    let (once_w, once_v) = (g.to_vec_f64(gw).unwrap(), g.to_vec_f64(gv).unwrap());
    let version = g.version(gw).unwrap();
    step(&mut g);
    assert_eq!(g.grad(w).unwrap(), Some(gw), "the same .grad tensor");
    assert_eq!(g.grad(v).unwrap(), Some(gv));
    assert!(g.version(gw).unwrap() > version, "written in place");
    for (got, once) in [(g.to_vec_f64(gw).unwrap(), once_w), (g.to_vec_f64(gv).unwrap(), once_v)] {
        for (a, b) in got.iter().zip(&once) {
            assert!((a - 2.0 * b).abs() < 1e-12, "{a} vs 2 × {b}");
        }
    }
}

#[test]
fn an_activations_backward_may_reuse_the_incoming_gradient_but_never_one_the_caller_holds() {
    // relu, sigmoid and tanh write their backward over the incoming gradient when the sweep owns it;
    // a retained .grad, a seed the caller passed and a gradient `grad` returns must keep their values.
    let xs = [-1.5, -0.25, 0.5, 2.0];
    let cs = [0.5, -2.0, 3.0, 1.25];
    for act in ["relu", "sigmoid", "tanh"] {
        let apply = |g: &mut Graph, t: Tensor| match act {
            "relu" => g.relu(t),
            "sigmoid" => g.sigmoid(t),
            _ => g.tanh(t),
        }
        .unwrap();
        let derivative = |x: f64| match act {
            "relu" => f64::from(x > 0.0),
            "sigmoid" => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            }
            _ => 1.0 - x.tanh() * x.tanh(),
        };
        let expected: Vec<f64> = xs.iter().zip(&cs).map(|(&x, &c)| c * derivative(x)).collect();
        let close = |got: &[f64], want: &[f64]| got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12);

        // Into .grad, through a retained activation.
        let mut g = Graph::new();
        let x = vec64(&mut g, &xs, true);
        let c = vec64(&mut g, &cs, false);
        let s = apply(&mut g, x);
        g.retain_grad(s).unwrap();
        let y = g.mul(s, c).unwrap();
        let y = g.sum(y, &[], false).unwrap();
        g.backward(y, None, false).unwrap();
        assert_eq!(grad_values(&g, s), cs, "{act}: the retained gradient of its output");
        assert!(close(&grad_values(&g, x), &expected), "{act}: {:?}", grad_values(&g, x));

        // A seed passed by the caller.
        let mut g = Graph::new();
        let x = vec64(&mut g, &xs, true);
        let seed = vec64(&mut g, &cs, false);
        let s = apply(&mut g, x);
        g.backward(s, Some(seed), false).unwrap();
        assert_eq!(g.to_vec_f64(seed).unwrap(), cs, "{act}: the caller's seed");
        assert!(close(&grad_values(&g, x), &expected), "{act}");

        // The functional form, returning the activation's gradient as well.
        let mut g = Graph::new();
        let x = vec64(&mut g, &xs, true);
        let c = vec64(&mut g, &cs, false);
        let s = apply(&mut g, x);
        let y = g.mul(s, c).unwrap();
        let y = g.sum(y, &[], false).unwrap();
        let found = g.grad_of(&[y], &[s, x], &[], false, false).unwrap();
        assert_eq!(g.to_vec_f64(found[0]).unwrap(), cs, "{act}: the returned gradient of its output");
        assert!(close(&g.to_vec_f64(found[1]).unwrap(), &expected), "{act}");
    }
}
