//! Parity with PyTorch 2.15 on the seed network (reference values in tests/data/seed, copied from the
//! project's shared reference set; tolerances from its manifest).

use bp::{DType, Graph, Tensor};

fn read_f32(name: &str) -> Vec<f32> {
    let p = format!("{}/tests/data/seed/{}.f32", env!("CARGO_MANIFEST_DIR"), name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}")).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn read_i64(name: &str) -> Vec<i64> {
    let p = format!("{}/tests/data/seed/{}.i64", env!("CARGO_MANIFEST_DIR"), name);
    std::fs::read(&p).unwrap().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn assert_allclose(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= atol + rtol * b.abs(), "{what}[{i}]: {a} vs PyTorch {b}");
    }
}

/// PyTorch's default Linear initialisation bound for the weight (kaiming_uniform_ with a = √5).
fn kaiming_bound(fan_in: usize) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    3f64.sqrt() * (gain / (fan_in as f64).sqrt())
}

struct Seed {
    g: Graph,
    x: Tensor,
    y: Tensor,
    params: [Tensor; 4], // W1, W2, W3, b3
}

/// torch.manual_seed(212); X = rand(500, 20) * 100; y = randint(0, 3, (500,)); then the three layers.
fn seed_setup() -> Seed {
    let mut g = Graph::new();
    g.manual_seed(212);
    let x = g.rand(&[500, 20], 0.0, 1.0, DType::F32).unwrap();
    let x = g.mul_scalar(x, 100.0).unwrap();
    let y = g.randint(0, 3, &[500]).unwrap();
    let w1 = g.rand(&[13, 20], -kaiming_bound(20), kaiming_bound(20), DType::F32).unwrap();
    let w2 = g.rand(&[8, 13], -kaiming_bound(13), kaiming_bound(13), DType::F32).unwrap();
    let w3 = g.rand(&[3, 8], -kaiming_bound(8), kaiming_bound(8), DType::F32).unwrap();
    let b = 1.0 / 8f64.sqrt();
    let b3 = g.rand(&[3], -b, b, DType::F32).unwrap();
    let params = [w1, w2, w3, b3];
    for t in [x, y].into_iter().chain(params) {
        g.set_persistent(t, true).unwrap();
    }
    for p in params {
        g.set_requires_grad(p, true).unwrap();
    }
    Seed { g, x, y, params }
}

fn forward(s: &mut Seed) -> (Tensor, Tensor, Tensor, Tensor) {
    let g = &mut s.g;
    let [w1, w2, w3, b3] = s.params;
    let h1 = g.linear(s.x, w1, None).unwrap();
    let h1 = g.relu(h1).unwrap();
    let h2 = g.linear(h1, w2, None).unwrap();
    let h2 = g.sigmoid(h2).unwrap();
    let z = g.linear(h2, w3, Some(b3)).unwrap();
    let loss = g.cross_entropy(z, s.y).unwrap();
    (h1, h2, z, loss)
}

#[test]
fn seeded_generator_reproduces_pytorchs_data_and_initial_weights_bit_for_bit() {
    let s = seed_setup();
    assert_eq!(s.g.data::<f32>(s.x).unwrap(), &read_f32("seed_X")[..]);
    assert_eq!(s.g.data_i64(s.y).unwrap(), &read_i64("seed_y")[..]);
    for (t, name) in s.params.iter().zip(["seed_W1_init", "seed_W2_init", "seed_W3_init", "seed_b3_init"]) {
        assert_eq!(s.g.data::<f32>(*t).unwrap(), &read_f32(name)[..], "{name}");
    }
}

#[test]
fn seed_network_forward_loss_and_gradients_match_pytorch() {
    let mut s = seed_setup();
    let (h1, h2, z, loss) = forward(&mut s);
    assert_allclose("h1", s.g.data(h1).unwrap(), &read_f32("seed_h1_relu"), 1e-5, 1e-4);
    assert_allclose("h2", s.g.data(h2).unwrap(), &read_f32("seed_h2_sigmoid"), 1e-5, 1e-4);
    assert_allclose("zhat", s.g.data(z).unwrap(), &read_f32("seed_zhat"), 1e-5, 1e-4);
    assert!((s.g.item(loss).unwrap() - 1.128248691558838).abs() <= 1e-5);
    s.g.backward(loss, None, false).unwrap();
    for (p, name) in s.params.iter().zip(["seed_grad_W1", "seed_grad_W2", "seed_grad_W3", "seed_grad_b3"]) {
        let gr = s.g.grad(*p).unwrap().unwrap();
        assert_allclose(name, s.g.data(gr).unwrap(), &read_f32(name), 1e-4, 1e-6);
    }
}

#[test]
fn seed_network_after_ten_sgd_steps_matches_pytorch() {
    let want_losses = [
        1.128248691558838, 1.1266995668411255, 1.125299096107483, 1.1240160465240479, 1.122865915298462,
        1.1218043565750122, 1.1208298206329346, 1.1199214458465576, 1.1191012859344482, 1.1183180809020996,
    ];
    let mut s = seed_setup();
    for want in want_losses {
        for p in s.params {
            s.g.zero_grad(p).unwrap();
        }
        let (_, _, _, loss) = forward(&mut s);
        assert!((s.g.item(loss).unwrap() - want).abs() <= 1e-5, "loss {} vs {}", s.g.item(loss).unwrap(), want);
        s.g.backward(loss, None, false).unwrap();
        for p in s.params {
            let gr = s.g.grad(p).unwrap().unwrap();
            let upd: Vec<f32> = s.g.data::<f32>(p).unwrap().iter().zip(s.g.data::<f32>(gr).unwrap()).map(|(w, d)| w - 0.01 * d).collect();
            s.g.write(p, &upd).unwrap();
        }
        s.g.reset();
    }
    for (p, name) in s.params.iter().zip(["seed_W1_after10", "seed_W2_after10", "seed_W3_after10", "seed_b3_after10"]) {
        assert_allclose(name, s.g.data(*p).unwrap(), &read_f32(name), 1e-5, 1e-6);
    }
    let (_, _, _, loss) = forward(&mut s);
    assert!((s.g.item(loss).unwrap() - 1.1175808906555176).abs() <= 1e-5);
}
