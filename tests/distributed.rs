//! Data-parallel training over an in-process collective (threads as ranks): startup sync, gradient
//! averaging, sharded loading, equivalence with one process at N·B, failure of a missing rank, resume
//! of every rank from rank 0's checkpoint. (The same over MPI: tests/mpi, run by ctest.)

use bp::data::{DataLoader, Dataset};
use bp::distributed::{Collective, DataParallel, InProcessGroup};
use bp::io::{self, TrainingParts, TrainingPartsMut};
use bp::nn::{Layer, Sequential};
use bp::optim::{Adam, AdamConfig, Optimizer};
use bp::{DType, ErrorKind, Graph};
use std::collections::HashSet;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A fixed synthetic 3-class problem: `n` rows of 6 features.
fn dataset(n: usize) -> Dataset {
    let mut g = Graph::new();
    g.manual_seed(42);
    let x = g.randn(&[n, 6], 0.0, 1.0, DType::F32).unwrap();
    let xs = g.to_vec_f32(x).unwrap();
    let ys = xs.chunks(6).map(|r| if r[0] + r[1] > 0.5 { 0 } else if r[2] > 0.0 { 1 } else { 2 }).collect();
    Dataset::new(xs, ys, 6).unwrap()
}

fn model(g: &mut Graph, seed: u64) -> Sequential {
    g.manual_seed(seed);
    let mut m = Sequential::new();
    m.push(Layer::linear(g, 6, 16, true).unwrap()).push(Layer::Tanh).push(Layer::linear(g, 16, 3, true).unwrap());
    m
}

/// One rank's training: a model initialised with its own seed (rank 0's wins through the startup
/// broadcast), a sharded loader, Adam; returns the final flat parameters.
fn train_rank(member: InProcessGroup, data: &Dataset, batch: usize, epochs: usize) -> bp::Result<Vec<f32>> {
    let (rank, world) = (member.rank(), member.world_size());
    let mut g = Graph::new();
    let m = model(&mut g, 1000 + rank as u64 * 7);
    let mut dp = DataParallel::new(&mut g, &m.parameters(), Box::new(member))?;
    let mut opt = Adam::new(&g, m.named_parameters(), AdamConfig::adam(1e-2))?;
    let mut loader = DataLoader::new(data.len(), batch, true, 5)?;
    loader.shard(rank, world)?;
    for _ in 0..epochs {
        loader.start_epoch();
        while let Some((x, y)) = loader.next_batch(&mut g, data)? {
            opt.zero_grad(&mut g)?;
            let out = m.forward(&mut g, x)?;
            let loss = g.cross_entropy(out, y)?;
            dp.backward(&mut g, loss)?;
            opt.step(&mut g)?;
            g.reset();
        }
    }
    Ok(g.flat_params::<f32>(dp.flat())?.to_vec())
}

fn run_world(world: usize, data: &Dataset, batch: usize, epochs: usize) -> Vec<bp::Result<Vec<f32>>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = InProcessGroup::new(world, TIMEOUT)
            .into_iter()
            .map(|member| s.spawn(move || train_rank(member, data, batch, epochs)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn two_ranks_with_batch_b_match_one_process_with_batch_2b() {
    // 50 rows: each rank sees 25 per epoch, so every epoch ends with a partial batch (1 row per rank,
    // 2 in the single process), and the averaging must still agree.
    let data = dataset(50);
    let single = run_world(1, &data, 8, 3).pop().unwrap().unwrap();
    let ranks: Vec<Vec<f32>> = run_world(2, &data, 4, 3).into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(ranks[0], ranks[1], "the ranks must hold identical parameters");
    let diff = max_abs_diff(&ranks[0], &single);
    eprintln!("max |2 ranks x batch 4 - 1 process x batch 8| = {:e}", diff);
    assert!(diff < 1e-5, "max abs diff {}", diff);
    // And the two runs did train: the parameters moved from rank 0's initialisation.
    let mut g = Graph::new();
    let init: Vec<f32> = model(&mut g, 1000).parameters().iter().flat_map(|&p| g.to_vec_f32(p).unwrap()).collect();
    assert!(max_abs_diff(&init, &single) > 1e-2);
}

#[test]
fn startup_sync_gives_every_rank_rank_0s_parameters() {
    let per_rank: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
        let hs: Vec<_> = InProcessGroup::new(3, TIMEOUT)
            .into_iter()
            .map(|member| {
                s.spawn(move || {
                    let mut g = Graph::new();
                    let m = model(&mut g, 10 + member.rank() as u64);
                    let own: Vec<f32> = m.parameters().iter().flat_map(|&p| g.to_vec_f32(p).unwrap()).collect();
                    let dp = DataParallel::new(&mut g, &m.parameters(), Box::new(member)).unwrap();
                    (own, g.flat_params::<f32>(dp.flat()).unwrap().to_vec())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(per_rank[1].0, per_rank[0].0, "the ranks initialised differently");
    for (_, synced) in &per_rank {
        assert_eq!(synced, &per_rank[0].0);
    }
}

#[test]
fn gradients_are_averaged_over_the_ranks() {
    let results: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = InProcessGroup::new(2, TIMEOUT)
            .into_iter()
            .map(|member| {
                s.spawn(move || {
                    let rank = member.rank();
                    let mut g = Graph::new();
                    let w = g.zeros(&[3], DType::F32).unwrap();
                    g.set_requires_grad(w, true).unwrap();
                    g.set_persistent(w, true).unwrap();
                    let mut dp = DataParallel::new(&mut g, &[w], Box::new(member)).unwrap();
                    // loss = sum(w * c) with c = [1, 2, 3] on rank 0 and [3, 4, 5] on rank 1.
                    let c = g.from_slice(&[1.0f32 + 2.0 * rank as f32, 2.0 + 2.0 * rank as f32, 3.0 + 2.0 * rank as f32], &[3]).unwrap();
                    let wc = g.mul(w, c).unwrap();
                    let loss = g.sum(wc, &[], false).unwrap();
                    dp.backward(&mut g, loss).unwrap();
                    assert_eq!(dp.stats().all_reduces, 1);
                    assert_eq!(dp.stats().all_reduce_bytes, 12);
                    g.flat_grads::<f32>(dp.flat()).unwrap().to_vec()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results[0], vec![2.0, 3.0, 4.0]);
    assert_eq!(results[1], results[0]);
}

#[test]
fn a_rank_that_stops_makes_the_others_fail_with_a_collective_error() {
    let data = dataset(40);
    let mut members = InProcessGroup::new(2, Duration::from_secs(2));
    let quitter = members.pop().unwrap();
    let survivor = members.pop().unwrap();
    let err = std::thread::scope(|s| {
        // Rank 1 takes part in the startup sync and one step, then its thread ends (as a crashed
        // process would stop answering).
        s.spawn(move || {
            let mut g = Graph::new();
            let m = model(&mut g, 1);
            let mut dp = DataParallel::new(&mut g, &m.parameters(), Box::new(quitter)).unwrap();
            dp.average_gradients(&mut g).unwrap();
        });
        let h = s.spawn(|| train_rank(survivor, &data, 4, 1));
        h.join().unwrap().unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::Collective);
    assert!(err.message().contains("rank 1 left the group"), "{}", err.message());
}

#[test]
fn a_rank_that_never_answers_times_out_instead_of_hanging() {
    let mut members = InProcessGroup::new(2, Duration::from_millis(300));
    let mut rank0 = members.remove(0);
    let silent = members.pop().unwrap(); // alive (not dropped) but never calls
    let mut buf = [1.0f32; 4];
    let err = rank0.all_reduce_sum(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Collective);
    assert!(err.message().contains("timed out"), "{}", err.message());
    drop(silent);
}

#[test]
fn sharded_epochs_split_the_rows_without_overlap_and_drop_none() {
    // 10 rows over 3 ranks: 4 rows each, the permutation padded with its first 2 rows.
    let world = 3;
    let mut seen: Vec<Vec<usize>> = Vec::new();
    for rank in 0..world {
        let mut l = DataLoader::new(10, 3, true, 9).unwrap();
        l.shard(rank, world).unwrap();
        assert_eq!(l.rows_per_epoch(), 4);
        assert_eq!(l.batches_per_epoch(), 2);
        l.start_epoch();
        let mut rows = Vec::new();
        while let Some(b) = l.next_indices() {
            rows.extend_from_slice(b);
        }
        seen.push(rows);
    }
    let mut all: Vec<usize> = seen.concat();
    assert_eq!(all.len(), 12);
    let distinct: HashSet<usize> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 10, "every row is seen");
    all.sort();
    all.dedup();
    // The padding repeats exactly the first two rows of the permutation.
    let mut whole = DataLoader::new(10, 10, true, 9).unwrap();
    whole.start_epoch();
    let order = whole.next_indices().unwrap().to_vec();
    let padded: Vec<usize> = order.iter().chain(&order[..2]).copied().collect();
    for (rank, rows) in seen.iter().enumerate() {
        let expect: Vec<usize> = padded.iter().skip(rank).step_by(world).copied().collect();
        assert_eq!(rows, &expect, "rank {} takes every third position from its own", rank);
    }
}

#[test]
fn the_ranks_batches_together_are_the_single_process_batch() {
    let (n, world, b) = (37, 2, 3);
    let mut single = DataLoader::new(n, world * b, true, 4).unwrap();
    let mut shards: Vec<DataLoader> = (0..world)
        .map(|r| {
            let mut l = DataLoader::new(n, b, true, 4).unwrap();
            l.shard(r, world).unwrap();
            l
        })
        .collect();
    for _epoch in 0..3 {
        single.start_epoch();
        shards.iter_mut().for_each(|l| l.start_epoch());
        let mut steps = 0;
        while let Some(big) = single.next_indices().map(|s| s.to_vec()) {
            let mut union: Vec<usize> = shards.iter_mut().flat_map(|l| l.next_indices().unwrap().to_vec()).collect();
            let mut big = big;
            union.sort();
            big.sort();
            if steps < n / (world * b) {
                assert_eq!(union, big);
            } else {
                // The last step: 37 rows are padded to 38, the extra row is the epoch's first.
                assert_eq!(union.len(), big.len() + 1);
            }
            steps += 1;
        }
        assert!(shards.iter_mut().all(|l| l.next_indices().is_none()), "the ranks end the epoch together");
    }
}

#[test]
fn a_checkpoint_written_by_rank_0_resumes_every_rank() {
    let data = dataset(48);
    let dir = std::env::temp_dir().join(format!("bp-dp-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rank0.safetensors");
    let (batch, world) = (4, 2);

    // One epoch and 3 steps straight through, then the rest in a new "job" from rank 0's checkpoint.
    let run = |steps_before_stop: Option<usize>, resume: bool| -> Vec<Vec<f32>> {
        std::thread::scope(|s| {
            let hs: Vec<_> = InProcessGroup::new(world, TIMEOUT)
                .into_iter()
                .map(|member| {
                    let (data, path) = (&data, &path);
                    s.spawn(move || {
                        let rank = member.rank();
                        let mut g = Graph::new();
                        let m = model(&mut g, 77);
                        let mut opt = Adam::new(&g, m.named_parameters(), AdamConfig::adam(1e-2)).unwrap();
                        let mut loader = DataLoader::new(data.len(), batch, true, 3).unwrap();
                        loader.shard(rank, world).unwrap();
                        if resume {
                            // Every rank reads rank 0's file: model, optimizer state and loader position.
                            let parts = TrainingPartsMut { optimizer: Some(&mut opt), schedule: None, loader: Some(&mut loader) };
                            io::load_checkpoint(path, &mut g, &m, parts).unwrap();
                        }
                        let mut dp = DataParallel::new(&mut g, &m.parameters(), Box::new(member)).unwrap();
                        let mut step = 0;
                        'outer: while loader.epoch() < 3 || loader.position().1 < loader.rows_per_epoch() {
                            if loader.position().1 >= loader.rows_per_epoch() {
                                loader.start_epoch();
                            }
                            while let Some((x, y)) = loader.next_batch(&mut g, data).unwrap() {
                                opt.zero_grad(&mut g).unwrap();
                                let out = m.forward(&mut g, x).unwrap();
                                let loss = g.cross_entropy(out, y).unwrap();
                                dp.backward(&mut g, loss).unwrap();
                                opt.step(&mut g).unwrap();
                                g.reset();
                                step += 1;
                                if Some(step) == steps_before_stop {
                                    if rank == 0 {
                                        let parts = TrainingParts { optimizer: Some(&opt), schedule: None, loader: Some(&loader), metadata: &[] };
                                        io::save_checkpoint(path, &g, &m, parts).unwrap();
                                    }
                                    break 'outer;
                                }
                            }
                        }
                        g.flat_params::<f32>(dp.flat()).unwrap().to_vec()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let straight = run(None, false);
    run(Some(6 + 3), false); // 6 steps per epoch: stops mid-epoch 2
    let resumed = run(None, true);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(straight[0], straight[1]);
    assert_eq!(resumed[0], straight[0], "rank 0 resumed exactly");
    assert_eq!(resumed[1], straight[1], "rank 1 resumed exactly from rank 0's file");
}
