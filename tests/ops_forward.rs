//! Forward values of each op family against values computed by hand (or by PyTorch, where noted).

use bp::{CrossEntropyOptions, DType, ErrorKind, Graph, Reduction, Tensor};

fn t(g: &mut Graph, v: &[f64], dims: &[usize]) -> Tensor {
    g.from_slice(v, dims).unwrap()
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-12 + 1e-9 * y.abs(), "{a:?} vs {b:?}");
    }
}

#[test]
fn binary_ops_broadcast_like_pytorch() {
    let mut g = Graph::new();
    let a = t(&mut g, &[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let b = t(&mut g, &[10., 20., 30.], &[3]);
    let c = t(&mut g, &[100., 200.], &[2, 1]);
    let r = g.add(a, b).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[11., 22., 33., 14., 25., 36.]);
    let r = g.sub(a, c).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[-99., -98., -97., -196., -195., -194.]);
    let r = g.mul(b, c).unwrap();
    assert_eq!(g.dims(r).unwrap(), vec![2, 3]);
    close(&g.to_vec_f64(r).unwrap(), &[1000., 2000., 3000., 2000., 4000., 6000.]);
    let r = g.div(a, b).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
    let bad = t(&mut g, &[1., 2.], &[2]);
    assert_eq!(g.add(a, bad).unwrap_err().kind(), ErrorKind::ShapeMismatch);
    let f32t = g.zeros(&[3], DType::F32).unwrap();
    assert_eq!(g.add(a, f32t).unwrap_err().kind(), ErrorKind::DType);
}

#[test]
fn relu_keeps_nan_and_sends_every_other_nonpositive_value_to_plus_zero() {
    // Past one vector of sixteen float32 (and a tail), so that the vectorised loop runs too.
    let specials = [f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::INFINITY, -1e-45, 1e-45, -3.5, 2.5];
    let x: Vec<f32> = (0..40).map(|i| specials[i % specials.len()]).collect();
    let mut g = Graph::new();
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for dt in [DType::F32, DType::F64] {
        let t = if dt == DType::F32 { g.from_slice(&x, &[40]) } else { g.from_slice(&x64, &[40]) }.unwrap();
        let r = g.relu(t).unwrap();
        for (i, (&v, got)) in x.iter().zip(g.to_vec_f32(r).unwrap()).enumerate() {
            let want = if v.is_nan() || v > 0.0 { v } else { 0.0 };
            assert!(got.to_bits() == want.to_bits() || (v.is_nan() && got.is_nan()), "{dt:?} element {i}: relu({v}) = {got}, want {want}");
        }
    }
}

#[test]
fn unary_ops_compute_their_functions() {
    let mut g = Graph::new();
    let x = t(&mut g, &[-2.0, -0.5, 0.0, 1.0], &[4]);
    let cases: Vec<(Tensor, Vec<f64>)> = vec![
        (g.relu(x).unwrap(), vec![0., 0., 0., 1.]),
        (g.leaky_relu(x, 0.1).unwrap(), vec![-0.2, -0.05, 0., 1.]),
        (g.abs(x).unwrap(), vec![2., 0.5, 0., 1.]),
        (g.neg(x).unwrap(), vec![2., 0.5, -0., -1.]),
        (g.sigmoid(x).unwrap(), [-2.0f64, -0.5, 0.0, 1.0].iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()),
        (g.tanh(x).unwrap(), [-2.0f64, -0.5, 0.0, 1.0].iter().map(|v| v.tanh()).collect()),
        // torch.nn.functional.gelu(torch.tensor([-2., -.5, 0., 1.], dtype=torch.float64))
        (g.gelu(x).unwrap(), vec![-0.04550026389635842, -0.15426876936299347, 0.0, 0.8413447460685429]),
        (g.pow(x, 2.0).unwrap(), vec![4., 0.25, 0., 1.]),
        (g.add_scalar(x, 1.5).unwrap(), vec![-0.5, 1.0, 1.5, 2.5]),
        (g.mul_scalar(x, 2.0).unwrap(), vec![-4., -1., 0., 2.]),
    ];
    for (r, want) in cases {
        close(&g.to_vec_f64(r).unwrap(), &want);
    }
    let p = t(&mut g, &[1.0, 4.0], &[2]);
    let r = g.sqrt(p).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[1., 2.]);
    let r = g.log(p).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[0., 4f64.ln()]);
    let r = g.exp(p).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[1f64.exp(), 4f64.exp()]);
}

#[test]
fn reductions_over_any_dims_with_and_without_keepdim() {
    let mut g = Graph::new();
    let x = t(&mut g, &(0..24).map(|v| v as f64).collect::<Vec<_>>(), &[2, 3, 4]);
    let s = g.sum(x, &[], false).unwrap();
    assert_eq!(g.item(s).unwrap(), 276.0);
    let s = g.sum(x, &[1], false).unwrap();
    assert_eq!(g.dims(s).unwrap(), vec![2, 4]);
    close(&g.to_vec_f64(s).unwrap(), &[12., 15., 18., 21., 48., 51., 54., 57.]);
    let s = g.sum(x, &[0, 2], true).unwrap();
    assert_eq!(g.dims(s).unwrap(), vec![1, 3, 1]);
    close(&g.to_vec_f64(s).unwrap(), &[60., 92., 124.]);
    let m = g.mean(x, &[-1], false).unwrap();
    close(&g.to_vec_f64(m).unwrap(), &[1.5, 5.5, 9.5, 13.5, 17.5, 21.5]);
    let m = g.max(x, &[0], false).unwrap();
    close(&g.to_vec_f64(m).unwrap(), &(12..24).map(|v| v as f64).collect::<Vec<_>>());
    assert!(g.sum(x, &[3], false).is_err());
    assert!(g.sum(x, &[1, 1], false).is_err());
    // Zero-size: sum is 0, mean is NaN (as PyTorch), max is an error.
    let z = g.zeros(&[0, 3], DType::F64).unwrap();
    let s = g.sum(z, &[0], false).unwrap();
    close(&g.to_vec_f64(s).unwrap(), &[0., 0., 0.]);
    let m = g.mean(z, &[], false).unwrap();
    assert!(g.item(m).unwrap().is_nan());
    assert_eq!(g.max(z, &[0], false).unwrap_err().kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn softmax_and_log_softmax_over_any_dim() {
    let mut g = Graph::new();
    let x = t(&mut g, &[1., 2., 3., 1000., 1000., 1000.], &[2, 3]);
    let s = g.softmax(x, 1).unwrap();
    let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
    let z: f64 = e.iter().sum();
    close(&g.to_vec_f64(s).unwrap(), &[e[0] / z, e[1] / z, e[2] / z, 1. / 3., 1. / 3., 1. / 3.]);
    let l = g.log_softmax(x, -1).unwrap();
    let v = g.to_vec_f64(l).unwrap();
    close(&v[..3], &[1. - z.ln(), 2. - z.ln(), 3. - z.ln()]);
    close(&v[3..], &[-(3f64.ln()); 3]);
    let s0 = g.softmax(x, 0).unwrap();
    let v = g.to_vec_f64(s0).unwrap();
    assert!(v[0] < 1e-300 && (v[3] - 1.0).abs() < 1e-12);
}

#[test]
fn shape_ops_move_data_as_pytorch_does() {
    let mut g = Graph::new();
    let x = t(&mut g, &(0..6).map(|v| v as f64).collect::<Vec<_>>(), &[2, 3]);
    let p = g.transpose(x, 0, 1).unwrap();
    assert_eq!(g.dims(p).unwrap(), vec![3, 2]);
    close(&g.to_vec_f64(p).unwrap(), &[0., 3., 1., 4., 2., 5.]);
    let r = g.view(x, &[3, -1]).unwrap();
    assert_eq!(g.dims(r).unwrap(), vec![3, 2]);
    let c = g.concat(&[x, x], 1).unwrap();
    close(&g.to_vec_f64(c).unwrap(), &[0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.]);
    let sl = g.slice(x, 1, 0, 3, 2).unwrap();
    close(&g.to_vec_f64(sl).unwrap(), &[0., 2., 3., 5.]);
    let sl = g.slice(x, 1, -1, 100, 1).unwrap();
    close(&g.to_vec_f64(sl).unwrap(), &[2., 5.]);
    let e = g.expand(sl, &[2, 2, 1]).unwrap();
    close(&g.to_vec_f64(e).unwrap(), &[2., 5., 2., 5.]);
    let st = g.sum_to(x, &[1, 3]).unwrap();
    close(&g.to_vec_f64(st).unwrap(), &[3., 5., 7.]);
    let ss = g.slice_scatter(sl, &[2, 4], 1, 1, 2).unwrap();
    close(&g.to_vec_f64(ss).unwrap(), &[0., 2., 0., 0., 0., 5., 0., 0.]);
    assert_eq!(g.reshape(x, &[4]).unwrap_err().kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn index_select_and_gather_pick_elements() {
    let mut g = Graph::new();
    let x = t(&mut g, &(0..12).map(|v| v as f64).collect::<Vec<_>>(), &[4, 3]);
    let i = g.from_i64(&[3, 0], &[2]).unwrap();
    let r = g.index_select(x, 0, i).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[9., 10., 11., 0., 1., 2.]);
    let gi = g.from_i64(&[2, 0, 1, 1], &[4, 1]).unwrap();
    let r = g.gather(x, 1, gi).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[2., 3., 7., 10.]);
    let bad = g.from_i64(&[4], &[1]).unwrap();
    let e = g.index_select(x, 0, bad).unwrap_err();
    assert!(e.message().contains("out of range"), "{e}");
    let r = g.scatter_add_into(r, 1, gi, &[4, 3]).unwrap();
    close(&g.to_vec_f64(r).unwrap(), &[0., 0., 2., 3., 0., 0., 0., 7., 0., 0., 10., 0.]);
}

#[test]
fn matmul_and_linear_compute_products() {
    let mut g = Graph::new();
    let a = t(&mut g, &[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let b = t(&mut g, &[1., 0., 0., 1., 1., 1.], &[3, 2]);
    let c = g.matmul(a, b).unwrap();
    close(&g.to_vec_f64(c).unwrap(), &[4., 5., 10., 11.]);
    let ct = g.matmul_t(a, a, false, true).unwrap(); // a·aᵀ
    close(&g.to_vec_f64(ct).unwrap(), &[14., 32., 32., 77.]);
    let ab = g.expand(a, &[2, 2, 3]).unwrap();
    let bb = g.matmul(ab, b).unwrap();
    close(&g.to_vec_f64(bb).unwrap(), &[4., 5., 10., 11., 4., 5., 10., 11.]);
    let w = t(&mut g, &[1., 0., 0., 0., 1., 0.], &[2, 3]);
    let bias = t(&mut g, &[0.5, -0.5], &[2]);
    let l = g.linear(a, w, Some(bias)).unwrap();
    close(&g.to_vec_f64(l).unwrap(), &[1.5, 1.5, 4.5, 4.5]);
    assert_eq!(g.matmul(a, a).unwrap_err().kind(), ErrorKind::ShapeMismatch);
}

#[test]
fn losses_match_their_definitions() {
    let mut g = Graph::new();
    let a = t(&mut g, &[1., 2., 3., 4.], &[2, 2]);
    let b = t(&mut g, &[1., 0., 0., 4.], &[2, 2]);
    let m = g.mse_loss(a, b, Reduction::Mean).unwrap();
    assert_eq!(g.item(m).unwrap(), (4. + 9.) / 4.);
    let m = g.mse_loss(a, b, Reduction::None).unwrap();
    close(&g.to_vec_f64(m).unwrap(), &[0., 4., 9., 0.]);
    // F.cross_entropy(torch.tensor([[1.,2.,3.],[1.,1.,1.]]), torch.tensor([2,0]), label_smoothing=0.1)
    let z = t(&mut g, &[1., 2., 3., 1., 1., 1.], &[2, 3]);
    let y = g.from_i64(&[2, 0], &[2]).unwrap();
    let ce = g.cross_entropy_with(z, y, CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() }).unwrap();
    let lse1 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let l1 = 0.9 * (lse1 - 3.) + 0.1 * (3. * lse1 - 6.) / 3.;
    let l2 = 3f64.ln();
    assert!((g.item(ce).unwrap() - (l1 + l2) / 2.).abs() < 1e-12);
    let y2 = g.from_i64(&[2, -100], &[2]).unwrap();
    let ce = g.cross_entropy(z, y2).unwrap();
    assert!((g.item(ce).unwrap() - (lse1 - 3.)).abs() < 1e-12, "ignored rows leave the mean");
    let bad = g.from_i64(&[3, 0], &[2]).unwrap();
    assert_eq!(g.cross_entropy(z, bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let negative = g.from_i64(&[0, -5], &[2]).unwrap();
    let e = g.cross_entropy(z, negative).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("target -5"), "the error names the target: {}", e.message());
    let x = t(&mut g, &[0., 100., -100.], &[3]);
    let tt = t(&mut g, &[1., 1., 0.], &[3]);
    let l = g.binary_cross_entropy_with_logits(x, tt, Reduction::Sum).unwrap();
    assert!((g.item(l).unwrap() - 2f64.ln()).abs() < 1e-12, "stable for large logits");
}

#[test]
fn dropout_is_seeded_and_scales_kept_elements() {
    let mut g = Graph::new();
    g.manual_seed(5);
    let x = g.ones(&[1000], DType::F32).unwrap();
    let d = g.dropout(x, 0.25, true).unwrap();
    let v = g.to_vec_f64(d).unwrap();
    let kept = v.iter().filter(|&&e| e != 0.0).count();
    assert!(v.iter().all(|&e| e == 0.0 || (e - 1.0 / 0.75).abs() < 1e-6));
    assert!((650..850).contains(&kept), "{kept} kept");
    g.manual_seed(5);
    let d2 = g.dropout(x, 0.25, true).unwrap();
    assert_eq!(g.to_vec_f64(d2).unwrap(), v);
    assert_eq!(g.dropout(x, 0.25, false).unwrap(), x);
}

#[test]
fn creation_functions_and_the_seeded_generator() {
    let mut g = Graph::new();
    let a = g.arange(0.0, 1.0, 0.25, DType::F32).unwrap();
    assert_eq!(g.to_vec_f64(a).unwrap(), vec![0.0, 0.25, 0.5, 0.75]);
    let z = g.zeros(&[2, 0, 3], DType::F32).unwrap();
    assert_eq!(g.numel(z).unwrap(), 0);
    g.manual_seed(0);
    let r = g.randn(&[10000], 0.0, 1.0, DType::F32).unwrap();
    let v = g.to_vec_f64(r).unwrap();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64;
    assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    // torch.manual_seed(0); torch.rand(3)
    g.manual_seed(0);
    let r = g.rand(&[3], 0.0, 1.0, DType::F32).unwrap();
    assert_eq!(g.to_vec_f32(r).unwrap(), vec![0.496_256_6, 0.768_221_8, 0.08847743]);
    assert!(g.full(&[1 << 31, 1 << 31], 0.0, DType::F32).is_err(), "overflowing sizes are refused");
}

#[test]
fn column_sums_of_narrow_and_wide_rows_add_every_row() {
    // Narrow rows take the interleaved partial sums (rows in groups of four plus a remainder);
    // wide rows the row-by-row path. Both must add every row exactly once.
    let mut g = Graph::new();
    for (rows, cols) in [(1usize, 3usize), (4, 3), (11, 3), (501, 16), (9, 17), (7, 1)] {
        let v: Vec<f64> = (0..rows * cols).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
        let x = t(&mut g, &v, &[rows, cols]);
        let s = g.sum(x, &[0], false).unwrap();
        let want: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| v[i * cols + j]).sum()).collect();
        close(&g.to_vec_f64(s).unwrap(), &want);
        let v32: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        let x32 = g.from_slice(&v32, &[rows, cols]).unwrap();
        let s32 = g.sum(x32, &[0], false).unwrap();
        close(&g.to_vec_f64(s32).unwrap(), &want);
    }
}

#[test]
fn cross_entropy_in_float32_matches_float64_in_value_and_gradient() {
    // float32 takes the vectorised kernels (with AVX-512), float64 the general loops: every option
    // must agree to float32 precision, over more rows than one sixteen-row block.
    let (n, c) = (37usize, 5usize);
    let logits: Vec<f64> = (0..n * c).map(|i| ((i * 29) % 97) as f64 * 0.37 - 18.0).collect();
    let targets: Vec<i64> = (0..n).map(|i| if i % 6 == 2 { -100 } else { ((i * 7) % c) as i64 }).collect();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for label_smoothing in [0.0, 0.2] {
            let opt = CrossEntropyOptions { reduction, label_smoothing, ignore_index: -100 };
            let run = |f32_: bool| -> (Vec<f64>, Vec<f64>) {
                let mut g = Graph::new();
                let x = if f32_ {
                    let v: Vec<f32> = logits.iter().map(|&a| a as f32).collect();
                    g.from_slice(&v, &[n, c]).unwrap()
                } else {
                    g.from_slice(&logits, &[n, c]).unwrap()
                };
                g.set_requires_grad(x, true).unwrap();
                let y = g.from_i64(&targets, &[n]).unwrap();
                let l = g.cross_entropy_with(x, y, opt).unwrap();
                let total = g.sum(l, &[], false).unwrap();
                g.backward(total, None, false).unwrap();
                let gx = g.grad(x).unwrap().unwrap();
                (g.to_vec_f64(l).unwrap(), g.to_vec_f64(gx).unwrap())
            };
            let ((l32, g32), (l64, g64)) = (run(true), run(false));
            for (a, b) in l32.iter().zip(&l64).chain(g32.iter().zip(&g64)) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{reduction:?} smoothing {label_smoothing}: {a} vs {b}");
            }
        }
    }
}
