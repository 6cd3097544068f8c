//! A small timing harness that mirrors `torch_baseline.py`'s method, so that our figures and PyTorch's
//! are taken the same way: wait for a quiet machine, warm up, size an inner loop to about 2 ms, take
//! samples until a time budget is spent, and report the median, p10, p90 and min per call in µs, with
//! the share of the machine's CPU other processes used meanwhile (`foreign_cpu_frac`). A measurement
//! with too much foreign load is repeated (up to four tries) and the cleanest is kept.

use std::time::{Duration, Instant};

/// Linux reports /proc times in USER_HZ ticks, which the kernel ABI fixes at 100 per second.
const USER_HZ: f64 = 100.0;

/// CPU-seconds the whole machine spent busy, from /proc/stat (0 where it does not exist).
fn sys_busy_s() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let v: Vec<f64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return 0.0;
    }
    let idle = v[3] + v[4];
    (v[..8].iter().sum::<f64>() - idle) / USER_HZ
}

/// CPU-seconds this process used (user + system), from /proc/self/stat.
fn self_cpu_s() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the line.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / USER_HZ
}

fn ncpu() -> f64 {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64
}

/// Blocks until other processes use less than 5% of the machine for half a second (at most 180 s).
fn wait_for_quiet() -> f64 {
    let t0 = Instant::now();
    loop {
        let (b0, s0, w0) = (sys_busy_s(), self_cpu_s(), Instant::now());
        std::thread::sleep(Duration::from_millis(500));
        let (b1, s1) = (sys_busy_s(), self_cpu_s());
        let foreign = ((b1 - b0) - (s1 - s0)).max(0.0) / (w0.elapsed().as_secs_f64() * ncpu());
        if foreign < 0.05 || t0.elapsed().as_secs_f64() > 180.0 {
            return t0.elapsed().as_secs_f64();
        }
    }
}

/// One measurement's statistics (times in µs per call).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub median_us: f64,
    pub p10_us: f64,
    pub p90_us: f64,
    pub min_us: f64,
    pub samples: usize,
    pub inner: usize,
    pub foreign_cpu_frac: f64,
    pub self_cpu_per_wall: f64,
    pub attempt: usize,
    pub waited_for_quiet_s: f64,
}

fn once(f: &mut dyn FnMut(), budget_s: f64, min_samples: usize) -> Stats {
    const WARMUP_S: f64 = 0.3;
    const MAX_SAMPLES: usize = 2000;
    const TARGET_SAMPLE_S: f64 = 2e-3;
    let t0 = Instant::now();
    let mut n = 0usize;
    while n < 3 || t0.elapsed().as_secs_f64() < WARMUP_S {
        f();
        n += 1;
    }
    let est = t0.elapsed().as_secs_f64() / n as f64;
    let inner = ((TARGET_SAMPLE_S / est.max(1e-9)) as usize).max(1);
    let mut samples = Vec::with_capacity(MAX_SAMPLES);
    let (b0, s0) = (sys_busy_s(), self_cpu_s());
    let start = Instant::now();
    while samples.len() < MAX_SAMPLES {
        let a = Instant::now();
        for _ in 0..inner {
            f();
        }
        samples.push(a.elapsed().as_secs_f64() * 1e6 / inner as f64);
        if samples.len() >= min_samples && start.elapsed().as_secs_f64() > budget_s {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (b1, s1) = (sys_busy_s(), self_cpu_s());
    samples.sort_by(|a, b| a.partial_cmp(b).expect("finite times"));
    let q = |p: f64| samples[((p * samples.len() as f64) as usize).min(samples.len() - 1)];
    let len = samples.len();
    let median = if len % 2 == 1 { samples[len / 2] } else { (samples[len / 2 - 1] + samples[len / 2]) / 2.0 };
    Stats {
        median_us: median,
        p10_us: q(0.10),
        p90_us: q(0.90),
        min_us: samples[0],
        samples: len,
        inner,
        foreign_cpu_frac: ((b1 - b0) - (s1 - s0)).max(0.0) / (wall * ncpu()),
        self_cpu_per_wall: (s1 - s0) / wall,
        attempt: 0,
        waited_for_quiet_s: 0.0,
    }
}

/// Times `f` as `torch_baseline.bench` does. With `BP_BENCH_QUICK=1` in the environment it neither
/// waits for a quiet machine nor retries (for development; never for figures that get reported).
pub fn bench(mut f: impl FnMut(), budget_s: f64, min_samples: usize) -> Stats {
    let quick = std::env::var("BP_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut best: Option<Stats> = None;
    let mut waited = 0.0;
    for attempt in 1..=(if quick { 1 } else { 4 }) {
        if !quick {
            waited += wait_for_quiet();
        }
        let mut r = once(&mut f, budget_s, min_samples);
        r.attempt = attempt;
        let clean = r.foreign_cpu_frac < 0.03;
        if best.as_ref().is_none_or(|b| r.foreign_cpu_frac < b.foreign_cpu_frac) {
            best = Some(r);
        }
        if clean {
            break;
        }
    }
    let mut b = best.expect("at least one try");
    b.waited_for_quiet_s = waited;
    b
}
