//! One generic finite-difference gradient check, in float64, over every op kind. `cases` matches on
//! `OpKind` without a catch-all arm: a new op does not compile until it has cases here. Each case is
//! checked to first order (backward against central differences) and, unless the op's backward is
//! documented as not differentiable, to second order (the gradient of a create_graph gradient against
//! central differences of the first gradient).

use bp::{Activation, CrossEntropyOptions, DType, ErrorKind, Generator, Graph, OpKind, Reduction, Tensor};

/// How an input is made.
#[derive(Clone)]
enum In {
    /// A differentiable float64 tensor with values uniform in ±[lo, hi] (sign random when `signed`).
    F { dims: Vec<usize>, lo: f64, hi: f64, signed: bool },
    /// A constant int64 tensor.
    I { values: Vec<i64>, dims: Vec<usize> },
}

fn f(dims: &[usize]) -> In {
    In::F { dims: dims.to_vec(), lo: 0.1, hi: 1.5, signed: true }
}
fn pos(dims: &[usize]) -> In {
    In::F { dims: dims.to_vec(), lo: 0.5, hi: 2.0, signed: false }
}
fn idx(values: &[i64], dims: &[usize]) -> In {
    In::I { values: values.to_vec(), dims: dims.to_vec() }
}

type OpFn = Box<dyn Fn(&mut Graph, &[Tensor]) -> bp::Result<Tensor>>;

struct Case {
    name: String,
    inputs: Vec<In>,
    op: OpFn,
    second_order: bool,
}

fn case(name: impl Into<String>, inputs: Vec<In>, op: impl Fn(&mut Graph, &[Tensor]) -> bp::Result<Tensor> + 'static) -> Case {
    Case { name: name.into(), inputs, op: Box::new(op), second_order: true }
}

/// Shapes that broadcast against each other, edge cases included (scalars, ones, zero-size).
const BROADCAST_PAIRS: &[(&[usize], &[usize])] = &[
    (&[2, 3], &[2, 3]),
    (&[2, 3], &[3]),
    (&[3], &[2, 3]),
    (&[2, 1, 3], &[4, 1]),
    (&[], &[2, 2]),
    (&[2, 2], &[]),
    (&[1, 3], &[2, 1]),
    (&[0, 3], &[3]),
];

/// A linear layer fused with its activation, with and without a bias.
fn linear_act(name: &str, act: Activation) -> Vec<Case> {
    vec![
        case(format!("{name} with bias"), vec![f(&[3, 4]), f(&[2, 4]), f(&[2])], move |g, t| g.linear_act(t[0], t[1], Some(t[2]), act)),
        case(format!("{name} 3-d input, no bias"), vec![f(&[2, 3, 4]), f(&[5, 4])], move |g, t| g.linear_act(t[0], t[1], None, act)),
    ]
}

fn cases(kind: OpKind) -> Vec<Case> {
    use OpKind as K;
    let unary_shapes: &[&[usize]] = &[&[], &[5], &[2, 3], &[2, 0]];
    let unary = |name: &str, pos_only: bool, op: fn(&mut Graph, Tensor) -> bp::Result<Tensor>| -> Vec<Case> {
        unary_shapes
            .iter()
            .map(|s| case(format!("{name}{s:?}"), vec![if pos_only { pos(s) } else { f(s) }], move |g, t| op(g, t[0])))
            .collect()
    };
    let binary = |name: &str, op: fn(&mut Graph, Tensor, Tensor) -> bp::Result<Tensor>, pos_b: bool| -> Vec<Case> {
        BROADCAST_PAIRS
            .iter()
            .map(|(a, b)| case(format!("{name}{a:?}{b:?}"), vec![f(a), if pos_b { pos(b) } else { f(b) }], move |g, t| op(g, t[0], t[1])))
            .collect()
    };
    let reduce = |name: &str, op: fn(&mut Graph, Tensor, &[i64], bool) -> bp::Result<Tensor>| -> Vec<Case> {
        let dims: &[&[i64]] = &[&[], &[0], &[1, 2], &[-1]];
        let mut v = Vec::new();
        for d in dims {
            for keep in [false, true] {
                let d = d.to_vec();
                v.push(case(format!("{name}{d:?} keepdim={keep}"), vec![f(&[3, 4, 2])], move |g, t| op(g, t[0], &d, keep)));
            }
        }
        v.push(case(format!("{name} of a scalar"), vec![f(&[])], move |g, t| op(g, t[0], &[], false)));
        v
    };
    match kind {
        K::Neg => unary("neg", false, |g, x| g.neg(x)),
        K::Exp => unary("exp", false, |g, x| g.exp(x)),
        K::Log => unary("log", true, |g, x| g.log(x)),
        K::Sqrt => unary("sqrt", true, |g, x| g.sqrt(x)),
        K::Abs => unary("abs", false, |g, x| g.abs(x)),
        K::Relu => unary("relu", false, |g, x| g.relu(x)),
        K::LeakyRelu => unary("leaky_relu", false, |g, x| g.leaky_relu(x, 0.2)),
        K::Sigmoid => unary("sigmoid", false, |g, x| g.sigmoid(x)),
        K::Tanh => unary("tanh", false, |g, x| g.tanh(x)),
        K::Gelu => unary("gelu", false, |g, x| g.gelu(x)),
        K::Pow => {
            let mut v = unary("pow 2.5", true, |g, x| g.pow(x, 2.5));
            v.extend(unary("pow 3", false, |g, x| g.pow(x, 3.0)));
            v.extend(unary("pow -1.5", true, |g, x| g.pow(x, -1.5)));
            v.extend(unary("pow 0", false, |g, x| g.pow(x, 0.0)));
            v
        }
        K::AddScalar => unary("add_scalar", false, |g, x| g.add_scalar(x, 0.7)),
        K::MulScalar => unary("mul_scalar", false, |g, x| g.mul_scalar(x, -1.3)),
        K::Add => binary("add", |g, a, b| g.add(a, b), false),
        K::Sub => binary("sub", |g, a, b| g.sub(a, b), false),
        K::Mul => binary("mul", |g, a, b| g.mul(a, b), false),
        K::Div => binary("div", |g, a, b| g.div(a, b), true),
        K::Sum => reduce("sum", |g, x, d, k| g.sum(x, d, k)),
        K::Mean => reduce("mean", |g, x, d, k| g.mean(x, d, k)),
        K::Max => reduce("max", |g, x, d, k| g.max(x, d, k)),
        K::Softmax | K::LogSoftmax => {
            let log = kind == K::LogSoftmax;
            let mut v = Vec::new();
            for (dims, dim) in [(vec![3, 4], 0i64), (vec![3, 4], 1), (vec![2, 3, 4], 1), (vec![5], -1)] {
                v.push(case(format!("{} {dims:?} dim {dim}", kind.name()), vec![f(&dims)], move |g, t| {
                    if log { g.log_softmax(t[0], dim) } else { g.softmax(t[0], dim) }
                }));
            }
            v
        }
        K::Reshape => vec![
            case("reshape [2,3]->[3,2]", vec![f(&[2, 3])], |g, t| g.reshape(t[0], &[3, 2])),
            case("view [2,3,2]->[-1,4]", vec![f(&[2, 3, 2])], |g, t| g.view(t[0], &[-1, 4])),
            case("reshape []->[1,1]", vec![f(&[])], |g, t| g.reshape(t[0], &[1, 1])),
        ],
        K::Permute => vec![
            case("permute [2,3,4] (2,0,1)", vec![f(&[2, 3, 4])], |g, t| g.permute(t[0], &[2, 0, 1])),
            case("transpose [3,4]", vec![f(&[3, 4])], |g, t| g.transpose(t[0], 0, 1)),
        ],
        K::Expand => vec![
            case("expand [3,1]->[2,3,4]", vec![f(&[3, 1])], |g, t| g.expand(t[0], &[2, 3, 4])),
            case("expand []->[2,2]", vec![f(&[])], |g, t| g.expand(t[0], &[2, 2])),
        ],
        K::SumTo => vec![
            case("sum_to [2,3,4]->[3,1]", vec![f(&[2, 3, 4])], |g, t| g.sum_to(t[0], &[3, 1])),
            case("sum_to [2,3]->[]", vec![f(&[2, 3])], |g, t| g.sum_to(t[0], &[])),
        ],
        K::Concat => vec![
            case("concat dim 1", vec![f(&[2, 3]), f(&[2, 1])], |g, t| g.concat(&[t[0], t[1]], 1)),
            case("concat dim 0 of three", vec![f(&[1, 3]), f(&[2, 3]), f(&[0, 3])], |g, t| g.concat(&[t[0], t[1], t[2]], 0)),
        ],
        K::Slice => vec![
            case("slice dim 0 1:5:2", vec![f(&[5, 4])], |g, t| g.slice(t[0], 0, 1, 5, 2)),
            case("slice dim 1 -3:-1", vec![f(&[5, 4])], |g, t| g.slice(t[0], 1, -3, -1, 1)),
            case("slice empty", vec![f(&[5, 4])], |g, t| g.slice(t[0], 1, 3, 2, 1)),
        ],
        K::SliceScatter => vec![case("slice_scatter [2,4] into [5,4]", vec![f(&[2, 4])], |g, t| g.slice_scatter(t[0], &[5, 4], 0, 1, 2))],
        K::IndexSelect => vec![
            case("index_select dim 0", vec![f(&[4, 3]), idx(&[3, 0, 3], &[3])], |g, t| g.index_select(t[0], 0, t[1])),
            case("index_select dim 1", vec![f(&[2, 4]), idx(&[1, 1], &[2])], |g, t| g.index_select(t[0], -1, t[1])),
        ],
        K::IndexAdd => vec![case("index_add", vec![f(&[3, 2]), idx(&[1, 1, 3], &[3])], |g, t| g.index_add_into(t[0], 0, t[1], 4))],
        K::Gather => vec![
            case("gather dim 1", vec![f(&[3, 4]), idx(&[0, 3, 1, 1, 2, 0], &[3, 2])], |g, t| g.gather(t[0], 1, t[1])),
            case("gather dim 0", vec![f(&[3, 4]), idx(&[2, 0, 0, 1], &[1, 4])], |g, t| g.gather(t[0], 0, t[1])),
        ],
        K::ScatterAdd => vec![case("scatter_add", vec![f(&[3, 2]), idx(&[0, 3, 1, 1, 2, 0], &[3, 2])], |g, t| g.scatter_add_into(t[0], 1, t[1], &[3, 4]))],
        K::Matmul => {
            let mut v = vec![
                case("matmul 2d", vec![f(&[3, 4]), f(&[4, 2])], |g, t| g.matmul(t[0], t[1])),
                case("matmul batched", vec![f(&[2, 3, 4]), f(&[2, 4, 5])], |g, t| g.matmul(t[0], t[1])),
                case("matmul batched x 2d", vec![f(&[2, 3, 4]), f(&[4, 5])], |g, t| g.matmul(t[0], t[1])),
                case("matmul 2d x batched", vec![f(&[3, 4]), f(&[2, 4, 5])], |g, t| g.matmul(t[0], t[1])),
                case("matmul k = 0", vec![f(&[3, 0]), f(&[0, 2])], |g, t| g.matmul(t[0], t[1])),
            ];
            for (ta, tb) in [(true, false), (false, true), (true, true)] {
                let a = if ta { [4, 3] } else { [3, 4] };
                let b = if tb { [2, 4] } else { [4, 2] };
                v.push(case(format!("matmul_t {ta} {tb}"), vec![f(&a), f(&b)], move |g, t| g.matmul_t(t[0], t[1], ta, tb)));
                v.push(case(format!("matmul_t batched {ta} {tb}"), vec![f(&[2, a[0], a[1]]), f(&b)], move |g, t| g.matmul_t(t[0], t[1], ta, tb)));
            }
            v
        }
        K::Linear => vec![
            case("linear with bias", vec![f(&[3, 4]), f(&[2, 4]), f(&[2])], |g, t| g.linear(t[0], t[1], Some(t[2]))),
            case("linear 3-d input, no bias", vec![f(&[2, 3, 4]), f(&[5, 4])], |g, t| g.linear(t[0], t[1], None)),
        ],
        K::LinearRelu => linear_act("linear_relu", Activation::Relu),
        K::LinearSigmoid => linear_act("linear_sigmoid", Activation::Sigmoid),
        K::LinearTanh => linear_act("linear_tanh", Activation::Tanh),
        K::MseLoss => [Reduction::None, Reduction::Mean, Reduction::Sum]
            .into_iter()
            .map(|r| case(format!("mse_loss {r:?}"), vec![f(&[3, 4]), f(&[3, 4])], move |g, t| g.mse_loss(t[0], t[1], r)))
            .collect(),
        K::CrossEntropy => {
            let mut v = Vec::new();
            for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                for (ls, ii) in [(0.0, -100), (0.1, 2)] {
                    let mut c = case(format!("cross_entropy {r:?} smoothing {ls} ignore {ii}"), vec![f(&[4, 5]), idx(&[1, 2, 4, 0], &[4])], move |g, t| {
                        g.cross_entropy_with(t[0], t[1], CrossEntropyOptions { reduction: r, label_smoothing: ls, ignore_index: ii })
                    });
                    c.second_order = false; // its backward, cross_entropy_backward, has no gradient (tested below)
                    v.push(c);
                }
            }
            v
        }
        // Checked by `ops_without_a_gradient_fail_by_name`: its forward is cross_entropy's gradient,
        // verified above; differentiating it is an error that names it.
        K::CrossEntropyBackward => vec![],
        K::BceWithLogits => [Reduction::None, Reduction::Mean, Reduction::Sum]
            .into_iter()
            .map(|r| {
                case(format!("bce_with_logits {r:?}"), vec![f(&[3, 4]), In::F { dims: vec![3, 4], lo: 0.0, hi: 1.0, signed: false }], move |g, t| {
                    g.binary_cross_entropy_with_logits(t[0], t[1], r)
                })
            })
            .collect(),
        K::GeluBackward => vec![case("gelu_backward", vec![f(&[2, 3]), f(&[2, 3])], |g, t| {
            // Reached through the create_graph gradient of gelu; here checked directly as a function of
            // (upstream gradient, x).
            let y = g.gelu(t[1])?;
            let d = g.grad_of(&[y], &[t[1]], &[Some(t[0])], true, true)?;
            Ok(d[0])
        })],
    }
}

struct Setup {
    g: Graph,
    inputs: Vec<Tensor>,
    diff: Vec<usize>,
}

fn setup(c: &Case, rng: &mut Generator) -> Setup {
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let mut diff = Vec::new();
    for (i, spec) in c.inputs.iter().enumerate() {
        let t = match spec {
            In::F { dims, lo, hi, signed } => {
                let n: usize = dims.iter().product();
                let v: Vec<f64> = (0..n)
                    .map(|_| {
                        let m = rng.uniform_f64(*lo, *hi);
                        if *signed && rng.next_u32().is_multiple_of(2) { -m } else { m }
                    })
                    .collect();
                let t = g.from_slice(&v, dims).unwrap();
                g.set_requires_grad(t, true).unwrap();
                diff.push(i);
                t
            }
            In::I { values, dims } => g.from_i64(values, dims).unwrap(),
        };
        g.set_persistent(t, true).unwrap();
        inputs.push(t);
    }
    Setup { g, inputs, diff }
}

/// Σ w·op(inputs) for fixed random weights w: a scalar whose gradient exercises every output element.
fn objective(s: &mut Setup, c: &Case, w: &[f64]) -> bp::Result<Tensor> {
    let out = (c.op)(&mut s.g, &s.inputs)?;
    let dims = s.g.dims(out)?;
    let wt = s.g.from_slice(w, &dims)?;
    let p = s.g.mul(out, wt)?;
    s.g.sum(p, &[], false)
}

fn assert_close(what: &str, analytic: f64, numeric: f64) {
    let tol = 1e-6 + 1e-5 * numeric.abs();
    assert!((analytic - numeric).abs() <= tol, "{what}: analytic {analytic} vs numeric {numeric}");
}

/// Central differences of `eval` with respect to every element of every differentiable input.
fn numeric(s: &mut Setup, eval: &dyn Fn(&mut Setup) -> f64) -> Vec<Vec<f64>> {
    const EPS: f64 = 1e-6;
    let mut out = Vec::new();
    for &i in &s.diff.clone() {
        let t = s.inputs[i];
        let base = s.g.to_vec_f64(t).unwrap();
        let mut d = Vec::with_capacity(base.len());
        for j in 0..base.len() {
            let mut v = base.clone();
            v[j] = base[j] + EPS;
            s.g.write_f64(t, &v).unwrap();
            let fp = eval(s);
            v[j] = base[j] - EPS;
            s.g.write_f64(t, &v).unwrap();
            let fm = eval(s);
            d.push((fp - fm) / (2.0 * EPS));
        }
        s.g.write_f64(t, &base).unwrap();
        out.push(d);
    }
    out
}

fn check_case(kind: OpKind, c: &Case, rng: &mut Generator) {
    let mut s = setup(c, rng);
    let out_dims = {
        let out = (c.op)(&mut s.g, &s.inputs).unwrap_or_else(|e| panic!("{}: forward failed: {}", c.name, e));
        if kind != OpKind::GeluBackward && s.g.numel(out).unwrap() > 0 && !s.g.is_leaf(out).unwrap() {
            assert_eq!(s.g.grad_fn(out).unwrap(), Some(kind.name()), "{}: the case must exercise its op", c.name);
        }
        s.g.dims(out).unwrap()
    };
    s.g.reset();
    let n: usize = out_dims.iter().product();
    let w: Vec<f64> = (0..n).map(|_| rng.uniform_f64(-1.0, 1.0)).collect();

    // First order.
    let diff_inputs: Vec<Tensor> = s.diff.iter().map(|&i| s.inputs[i]).collect();
    let obj = objective(&mut s, c, &w).unwrap();
    let analytic: Vec<Vec<f64>> = match s.g.grad_of(&[obj], &diff_inputs, &[], false, false) {
        Ok(gs) => gs.iter().map(|&t| s.g.to_vec_f64(t).unwrap()).collect(),
        // An input the output does not reach (a zero-size output) has no gradient at all.
        Err(e) if n == 0 || e.message().contains("not have been used") => diff_inputs.iter().map(|&t| vec![0.0; s.g.numel(t).unwrap()]).collect(),
        Err(e) => panic!("{}: backward failed: {}", c.name, e),
    };
    s.g.reset();
    let eval = |s: &mut Setup| -> f64 {
        let r = objective(s, c, &w).and_then(|t| s.g.item(t));
        s.g.reset();
        r.unwrap()
    };
    let num = numeric(&mut s, &eval);
    for (k, (a, nm)) in analytic.iter().zip(&num).enumerate() {
        for (j, (&x, &y)) in a.iter().zip(nm).enumerate() {
            assert_close(&format!("{} d/dinput{}[{}]", c.name, s.diff[k], j), x, y);
        }
    }

    // Second order: h = Σ v·(∂obj/∂x₀) for the first differentiable input; compare ∂h/∂inputs.
    if !c.second_order || n == 0 || s.diff.is_empty() {
        return;
    }
    let x0 = s.inputs[s.diff[0]];
    let v: Vec<f64> = (0..s.g.numel(x0).unwrap()).map(|_| rng.uniform_f64(-1.0, 1.0)).collect();
    let h_of = |s: &mut Setup, create: bool| -> bp::Result<Tensor> {
        let obj = objective(s, c, &w)?;
        let d = s.g.grad_of(&[obj], &[x0], &[], create, create)?[0];
        let dims = s.g.dims(d)?;
        let vt = s.g.from_slice(&v, &dims)?;
        let p = s.g.mul(d, vt)?;
        s.g.sum(p, &[], false)
    };
    let h = h_of(&mut s, true).unwrap();
    if !s.g.requires_grad(h).unwrap() {
        return; // the first derivative is constant in every input (linear ops): nothing to check
    }
    let analytic2: Vec<Vec<f64>> = match s.g.grad_of(&[h], &diff_inputs, &[], true, false) {
        Ok(gs) => gs.iter().map(|&t| s.g.to_vec_f64(t).unwrap()).collect(),
        Err(e) if e.message().contains("not have been used") => {
            // Some inputs do not reach the first derivative: compare input by input.
            diff_inputs
                .iter()
                .map(|&t| match s.g.grad_of(&[h], &[t], &[], true, false) {
                    Ok(gs) => s.g.to_vec_f64(gs[0]).unwrap(),
                    Err(_) => vec![0.0; s.g.numel(t).unwrap()],
                })
                .collect()
        }
        Err(e) => panic!("{}: second-order backward failed: {}", c.name, e),
    };
    s.g.reset();
    let eval2 = |s: &mut Setup| -> f64 {
        let r = h_of(s, false).and_then(|t| s.g.item(t));
        s.g.reset();
        r.unwrap()
    };
    let num2 = numeric(&mut s, &eval2);
    for (k, (a, nm)) in analytic2.iter().zip(&num2).enumerate() {
        for (j, (&x, &y)) in a.iter().zip(nm).enumerate() {
            assert_close(&format!("{} d²/dinput0 dinput{}[{}]", c.name, s.diff[k], j), x, y);
        }
    }
}

#[test]
fn every_op_passes_the_finite_difference_gradient_check() {
    let mut rng = Generator::new(20261128);
    let mut checked = 0;
    for &kind in OpKind::ALL {
        for c in cases(kind) {
            check_case(kind, &c, &mut rng);
            checked += 1;
        }
    }
    eprintln!("{checked} cases checked");
    assert!(checked > 100, "only {checked} cases ran");
}

#[test]
fn every_op_kind_has_a_gradient_check_or_a_named_refusal() {
    for &kind in OpKind::ALL {
        assert!(!cases(kind).is_empty() || kind == OpKind::CrossEntropyBackward, "{} has no gradient check", kind.name());
    }
}

#[test]
fn ops_without_a_gradient_fail_by_name() {
    let mut g = Graph::new();
    let x = g.randn(&[3, 4], 0.0, 1.0, DType::F64).unwrap();
    g.set_requires_grad(x, true).unwrap();
    let t = g.from_i64(&[0, 1, 3], &[3]).unwrap();
    let l = g.cross_entropy(x, t).unwrap();
    let d = g.grad_of(&[l], &[x], &[], true, true).unwrap()[0];
    assert_eq!(g.grad_fn(d).unwrap(), Some("cross_entropy_backward"));
    let s = g.sum(d, &[], false).unwrap();
    let e = g.grad_of(&[s], &[x], &[], false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autograd);
    assert!(e.message().contains("'cross_entropy_backward' has no gradient"), "{}", e);
}
