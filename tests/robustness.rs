//! No input from a caller makes the library panic: random call sequences with random shapes, dims,
//! indices and handles (forged, stale, of another graph) must each return Ok or an error.

use bp::{DType, Generator, Graph, Reduction, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn pick<T: Copy>(r: &mut Generator, v: &[T]) -> T {
    v[(r.next_u32() as usize) % v.len()]
}

fn random_dims(r: &mut Generator) -> Vec<usize> {
    let rank = (r.next_u32() % 5) as usize;
    (0..rank).map(|_| pick(r, &[0usize, 1, 1, 2, 3, 4, 5])).collect()
}

fn random_handle(r: &mut Generator, live: &[Tensor], g: &Graph) -> Tensor {
    match r.next_u32() % 10 {
        0 => Tensor { graph: g.id(), index: r.next_u32() % 64, generation: r.next_u32() % 4 },
        1 => Tensor { graph: r.next_u32(), index: 0, generation: 1 },
        2 => Tensor::default(),
        _ if !live.is_empty() => live[(r.next_u32() as usize) % live.len()],
        _ => Tensor::default(),
    }
}

fn step(r: &mut Generator, g: &mut Graph, other: &mut Graph, live: &mut Vec<Tensor>) -> bool {
    let a = random_handle(r, live, g);
    let b = random_handle(r, live, g);
    let d = pick(r, &[-3i64, -1, 0, 1, 2, 7]);
    let dims = random_dims(r);
    let res: bp::Result<Tensor> = match r.next_u32() % 40 {
        0 => g.zeros(&dims, pick(r, &[DType::F32, DType::F64, DType::I64])),
        1 => g.rand(&dims, -1.0, 1.0, pick(r, &[DType::F32, DType::F64])),
        2 => g.randint(0, 3, &dims),
        3 => g.from_slice(&[1.0f32, 2.0, 3.0], &dims),
        4 => g.add(a, b),
        5 => g.mul(a, b),
        6 => g.div(a, b),
        7 => g.matmul(a, b),
        8 => g.linear(a, b, None),
        9 => g.sum(a, &[d], r.next_u32().is_multiple_of(2)),
        10 => g.max(a, &[d, 0], false),
        11 => g.softmax(a, d),
        12 => g.log_softmax(a, d),
        13 => g.reshape(a, &dims),
        14 => g.view(a, &[-1, d]),
        15 => g.permute(a, &[d, 0]),
        16 => g.expand(a, &dims),
        17 => g.sum_to(a, &dims),
        18 => g.concat(&[a, b], d),
        19 => g.slice(a, d, -2, 9, pick(r, &[0i64, 1, 2])),
        20 => g.index_select(a, d, b),
        21 => g.gather(a, d, b),
        22 => g.cross_entropy(a, b),
        23 => g.mse_loss(a, b, Reduction::Sum),
        24 => g.binary_cross_entropy_with_logits(a, b, Reduction::Mean),
        25 => g.pow(a, -0.5),
        26 => g.gelu(a),
        27 => g.dropout(a, pick(r, &[-1.0, 0.5, 2.0]), true),
        28 => g.set_requires_grad(a, true).map(|_| a),
        29 => g.backward(a, if r.next_u32().is_multiple_of(2) { Some(b) } else { None }, r.next_u32().is_multiple_of(2)).map(|_| a),
        30 => g.grad_of(&[a], &[b], &[], r.next_u32().is_multiple_of(2), r.next_u32().is_multiple_of(2)).map(|v| v[0]),
        31 => g.grad(a).map(|o| o.unwrap_or(a)),
        32 => g.free(a).map(|_| a),
        33 => {
            if r.next_u32().is_multiple_of(8) {
                g.reset();
                live.clear();
            }
            Ok(a)
        }
        34 => g.detach(a),
        35 => g.write_f64(a, &[1.0, 2.0]).map(|_| a),
        36 => other.add(a, a),
        37 => g.set_persistent(a, true).map(|_| a),
        38 => g.slice_scatter(a, &dims, d.unsigned_abs() as usize, 1, 1),
        _ => g.scatter_add_into(a, d.unsigned_abs() as usize, b, &dims),
    };
    match res {
        Ok(t) => {
            live.push(t);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn random_call_sequences_never_panic() {
    let (mut ok, mut total) = (0, 0);
    for graph in 0..1000 {
        let mut r = Generator::new(graph);
        let mut g = Graph::new();
        let mut other = Graph::new();
        g.set_memory_limit(1 << 20).unwrap();
        let mut live = Vec::new();
        for _ in 0..200 {
            let outcome = catch_unwind(AssertUnwindSafe(|| step(&mut r, &mut g, &mut other, &mut live)));
            assert!(outcome.is_ok(), "a call panicked");
            ok += outcome.unwrap() as usize;
            total += 1;
        }
    }
    // The sequences must reach the ops, not only bounce off handle checks.
    assert!(ok * 6 > total, "only {ok} of {total} calls succeeded");
}

#[test]
fn huge_shape_requests_are_rejected_before_any_allocation() {
    let mut g = Graph::new();
    assert!(g.zeros(&[usize::MAX, 2], DType::F32).is_err());
    assert!(g.zeros(&[1 << 20, 1 << 20, 1 << 20], DType::F32).is_err());
    let x = g.zeros(&[2], DType::F32).unwrap();
    assert!(g.expand(x, &[1 << 30, 1 << 30, 2]).is_err());
    assert!(g.arange(0.0, 1e300, 1.0, DType::F32).is_err());
}
