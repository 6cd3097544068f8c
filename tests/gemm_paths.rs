//! Every float32 matrix-multiply path this CPU can run (our AVX-512 and AVX2 kernels, matrixmultiply)
//! against a float64 reference, on random shapes with every stride layout, edge sizes (k = 0, m or
//! n = 1, sizes that leave partial tiles and several cache blocks) and alpha/beta; and our kernels
//! against each other and across thread counts, where they must agree bit for bit.

use bp::kernels::gemm::{linear_backward_fits, sgemm, sgemm_act_grad, sgemm_layer, sgemm_linear_backward, sgemm_on, SgemmPath};
use bp::Activation;

/// A small deterministic generator (xorshift), so the test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| (self.next() % 2001) as f32 / 1000.0 - 1.0).collect()
    }
}

const PATHS: [SgemmPath; 3] = [SgemmPath::Avx512, SgemmPath::Avx2, SgemmPath::Portable];

/// One product: shapes, operand layouts and scalars.
#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    tc: bool,
    alpha: f32,
    beta: f32,
}

impl Case {
    /// (row stride, col stride) of an r×c operand stored row-major, or transposed (column-major).
    fn strides(r: usize, c: usize, t: bool) -> (isize, isize) {
        if t { (1, r.max(1) as isize) } else { (c.max(1) as isize, 1) }
    }
}

fn run(path: SgemmPath, threads: usize, cs: Case, a: &[f32], b: &[f32], c0: &[f32]) -> Vec<f32> {
    let (rsa, csa) = Case::strides(cs.m, cs.k, cs.ta);
    let (rsb, csb) = Case::strides(cs.k, cs.n, cs.tb);
    let (rsc, csc) = Case::strides(cs.m, cs.n, cs.tc);
    let mut c = c0.to_vec();
    sgemm_on(path, threads, cs.m, cs.k, cs.n, cs.alpha, a, rsa, csa, b, rsb, csb, cs.beta, &mut c, rsc, csc);
    c
}

fn reference(cs: Case, a: &[f32], b: &[f32], c0: &[f32]) -> Vec<f64> {
    let (rsa, csa) = Case::strides(cs.m, cs.k, cs.ta);
    let (rsb, csb) = Case::strides(cs.k, cs.n, cs.tb);
    let (rsc, csc) = Case::strides(cs.m, cs.n, cs.tc);
    let mut out: Vec<f64> = c0.iter().map(|&x| x as f64).collect();
    for i in 0..cs.m {
        for j in 0..cs.n {
            let mut s = 0.0f64;
            for l in 0..cs.k {
                s += a[i * rsa as usize + l * csa as usize] as f64 * b[l * rsb as usize + j * csb as usize] as f64;
            }
            let at = i * rsc as usize + j * csc as usize;
            out[at] = cs.alpha as f64 * s + if cs.beta == 0.0 { 0.0 } else { cs.beta as f64 * c0[at] as f64 };
        }
    }
    out
}

fn check(cs: Case, rng: &mut Rng) {
    let a = rng.vec(cs.m * cs.k);
    let b = rng.vec(cs.k * cs.n);
    let mut c0 = rng.vec(cs.m * cs.n);
    if cs.beta == 0.0 && !c0.is_empty() {
        c0[0] = f32::NAN; // beta = 0 must not read C
    }
    let want = reference(cs, &a, &b, &c0);
    let mut ours: Option<Vec<f32>> = None;
    for path in PATHS.into_iter().filter(|p| p.available()) {
        for threads in [1, 2, 3] {
            let got = run(path, threads, cs, &a, &b, &c0);
            for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (cs.k as f64 + 1.0) * 2.0;
                assert!((g as f64 - w).abs() <= tol, "{path:?} threads={threads} {cs:?}: element {idx} is {g}, want {w}");
            }
            if path != SgemmPath::Portable {
                // Our kernels agree bit for bit with each other, whatever the thread count.
                match &ours {
                    None => ours = Some(got),
                    Some(o) => assert!(
                        o.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{path:?} threads={threads} {cs:?} differs in bits from the first of our kernels"
                    ),
                }
            }
        }
    }
}

#[test]
fn every_path_matches_the_reference_on_edge_shapes() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let sizes = [1usize, 2, 3, 11, 12, 13, 16, 17, 31, 32, 33];
    for &m in &sizes {
        for &n in &sizes {
            for k in [0usize, 1, 5, 17] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let tc = rng.below(4) == 0;
                    let (alpha, beta) = [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)][rng.below(3)];
                    check(Case { m, k, n, ta, tb, tc, alpha, beta }, &mut rng);
                }
            }
        }
    }
}

#[test]
fn every_path_matches_the_reference_across_cache_blocks_and_threads() {
    // Sizes past KC (256), MC (96) and NC (1024 for AVX-512; AVX2's 2048 would be slow; the split over threads is exercised by
    // products above the parallel threshold of 2^20 multiply-adds).
    let mut rng = Rng(42);
    // The seed network's products (the small path on AVX-512): k past one block, narrow outputs.
    // (20, 1030, 1030) has a B of more than 2^20 floats, which the AVX-512 path packs in a separate
    // pass instead of in its first tiles.
    // Tiles of fewer than eight accumulators sum k blocks in pairs: 700 is three blocks (a pair and
    // one), 257 two of unequal depth (129 and 128).
    // Row counts leave partial last tiles of every kind: 150 = 96 + 4·12 + 6 and 200 = 16·12 + 8 (an 8-row
    // tile), 100 = 96 + 4 (a 4-row tile), 129 = 10·12 + 9 (a 12-row tile).
    // Outputs of at most five columns pack several rows to a vector: 4 rows of 3 (500×8×3), 6 of 2
    // (103 = 4·6·4 + 6 + 1), 16 of 1 (101 = 4·16 + 2·16 + 5).
    let shapes = [(300, 520, 70), (150, 300, 130), (100, 300, 200), (129, 785, 513), (10, 128, 512), (512, 128, 784), (200, 90, 2100), (20, 1030, 1030), (13, 500, 20), (500, 20, 13), (3, 500, 8), (500, 8, 3), (103, 5, 2), (101, 2, 1), (40, 700, 40), (3, 700, 8), (5, 257, 3)];
    for &(m, k, n) in &shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true)] {
            check(Case { m, k, n, ta, tb, tc: false, alpha: 1.0, beta: if ta { 1.0 } else { 0.0 } }, &mut rng);
        }
    }
}

#[test]
fn turned_products_store_c_transposed_with_every_alpha_and_beta() {
    // x·Wᵀ with W's rows not a multiple of 4 KiB apart, few rows of C and n ≥ 3m per thread: the
    // AVX-512 path computes Cᵀ = W·xᵀ and writes its tiles transposed (on one thread here; at two
    // and three threads some of these are not turned, and must agree all the same). Rows of C
    // leave partial tiles (37 = 3·12 + 1), k runs over two blocks (520), n past one column block.
    let mut rng = Rng(7);
    for &(m, k, n) in &[(60, 300, 200), (37, 520, 300), (12, 64, 1100)] {
        for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)] {
            check(Case { m, k, n, ta: false, tb: true, tc: false, alpha, beta }, &mut rng);
        }
    }
}

#[test]
fn a_bias_added_as_sums_are_stored_equals_one_filled_into_c_first() {
    // A linear layer's forward: C = x·Wᵀ + b. The small path adds b in its stores; everything
    // else fills C with b and adds the product (beta = 1). Both must give the same bits, for
    // products that take either route: narrow and deep, k up to and past the 22 that B in
    // registers holds, rows that leave a partial group of eight, and blocked-path sizes.
    let mut rng = Rng(11);
    let shapes = [(1, 1, 1), (500, 8, 3), (103, 5, 2), (500, 20, 13), (500, 13, 8), (7, 22, 16), (33, 5, 17), (9, 23, 4), (128, 64, 10), (32, 128, 10), (200, 300, 70)];
    for &(m, k, n) in &shapes {
        for tb in [true, false] {
            let (a, b, bias) = (rng.vec(m * k), rng.vec(k * n), rng.vec(n));
            let (rsb, csb) = Case::strides(k, n, tb);
            let mut stored = vec![f32::NAN; m * n];
            sgemm_layer(m, k, n, &a, k as isize, 1, &b, rsb, csb, Some(&bias), None, &mut stored);
            let mut filled: Vec<f32> = (0..m * n).map(|i| bias[i % n]).collect();
            sgemm(m, k, n, 1.0, &a, k as isize, 1, &b, rsb, csb, 1.0, &mut filled, n as isize, 1);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&stored), bits(&filled), "{m}x{k}x{n}, B transposed: {tb}");
        }
    }
}

#[test]
fn an_activation_gradient_applied_as_sums_are_stored_equals_the_pass_after_the_product() {
    // A backward through an activation: (g·W) ⊙ act'(y). The small path scales the sums as it
    // stores them; it must give the bits of the product followed by the activation's backward,
    // including at y = 0, y = 1, NaN and infinite values. Where the kernel does not take a product
    // it says so and writes nothing.
    let mut rng = Rng(12);
    let shapes = [(1, 1, 1), (500, 3, 8), (500, 8, 13), (9, 22, 16), (17, 5, 6), (8, 2, 16), (500, 8, 3), (200, 30, 70)];
    let grad = |act: Activation, gv: f32, y: f32| match act {
        Activation::Relu => gv * if y > 0.0 { 1.0 } else { 0.0 },
        Activation::Sigmoid => gv * (y * (-y + 1.0)),
        Activation::Tanh => gv * (-(y * y) + 1.0),
    };
    let mut took = 0;
    for &(m, k, n) in &shapes {
        for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
            let (a, b) = (rng.vec(m * k), rng.vec(k * n));
            let mut y = rng.vec(m * n);
            for (i, v) in [0.0, -0.0, 1.0, f32::NAN, f32::INFINITY, -1.0].into_iter().enumerate().take(m * n) {
                y[i] = v;
            }
            let mut fused = vec![f32::NAN; m * n];
            let applied = sgemm_act_grad(m, k, n, &a, k as isize, 1, &b, n as isize, 1, &y, act, &mut fused);
            if !applied {
                assert!(fused.iter().all(|v| v.is_nan()), "{m}x{k}x{n}: declined but wrote");
                continue;
            }
            took += 1;
            let mut apart = vec![0.0; m * n];
            sgemm(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut apart, n as isize, 1);
            let want: Vec<u32> = apart.iter().zip(&y).map(|(&gv, &y)| grad(act, gv, y).to_bits()).collect();
            let got: Vec<u32> = fused.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{m}x{k}x{n}, {act:?}");
        }
    }
    if SgemmPath::best() == SgemmPath::Avx512 {
        assert!(took >= 12, "the small path took only {took} of the products");
    }
}

#[test]
fn a_narrow_layers_backward_in_one_pass_equals_its_products_apart() {
    // dw = gᵀ·a over one k block of rows and gin = (g·w) ⊙ act'(a) in one pass must give the bits
    // of the two products (and of the activation's backward after the second), with a's special
    // values among the rows; where the kernel does not take a layer (too wide, more rows than one
    // k block, no AVX-512) it says so and writes nothing.
    let mut rng = Rng(13);
    let grad = |act: Option<Activation>, gv: f32, y: f32| match act {
        None => gv,
        Some(Activation::Relu) => gv * if y > 0.0 { 1.0 } else { 0.0 },
        Some(Activation::Sigmoid) => gv * (y * (-y + 1.0)),
        Some(Activation::Tanh) => gv * (-(y * y) + 1.0),
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut took = 0;
    for nout in [1, 2, 3, 5, 8, 12, 13] {
        for nin in [1, 3, 8, 13, 16, 17] {
            for m in [0, 1, 7, 256, 257] {
                for act in [None, Some(Activation::Relu), Some(Activation::Sigmoid), Some(Activation::Tanh)] {
                    let (g, w) = (rng.vec(m * nout), rng.vec(nout * nin));
                    let mut a = rng.vec(m * nin);
                    for (i, v) in [0.0, -0.0, 1.0, f32::NAN, f32::INFINITY, -1.0].into_iter().enumerate().take(m * nin) {
                        a[i] = v;
                    }
                    let (mut dw, mut gin) = (vec![f32::NAN; nout * nin], vec![f32::NAN; m * nin]);
                    if !sgemm_linear_backward(m, nin, nout, &g, &a, &w, act, &mut dw, &mut gin) {
                        assert!(!linear_backward_fits(nin, nout) || m > 256, "{m} rows, {nout}x{nin}: declined a layer it fits");
                        assert!(dw.iter().chain(&gin).all(|v| v.is_nan()), "{m} rows, {nout}x{nin}: declined but wrote");
                        continue;
                    }
                    took += 1;
                    let mut want_dw = vec![0.0; nout * nin];
                    sgemm(nout, m, nin, 1.0, &g, 1, nout as isize, &a, nin as isize, 1, 0.0, &mut want_dw, nin as isize, 1);
                    assert_eq!(bits(&dw), bits(&want_dw), "dw, {m} rows, {nout}x{nin}, {act:?}");
                    let mut product = vec![0.0; m * nin];
                    sgemm(m, nout, nin, 1.0, &g, nout as isize, 1, &w, nin as isize, 1, 0.0, &mut product, nin as isize, 1);
                    let want_gin: Vec<f32> = product.iter().zip(&a).map(|(&gv, &y)| grad(act, gv, y)).collect();
                    assert_eq!(bits(&gin), bits(&want_gin), "gin, {m} rows, {nout}x{nin}, {act:?}");
                }
            }
        }
    }
    if SgemmPath::best() == SgemmPath::Avx512 {
        assert_eq!(took, 6 * 5 * 4 * 4, "the kernel took {took} layers");
    }
}

#[test]
fn the_best_path_is_one_this_cpu_can_run() {
    assert!(SgemmPath::best().available());
    assert!(SgemmPath::Portable.available());
}
