//! The seeded generator: a Mersenne Twister (mt19937) with the transformations ATen uses on the CPU, so
//! that `manual_seed(s)` followed by `rand`, `randint` and PyTorch's default layer initialisation gives
//! PyTorch's numbers bit for bit. It is plain integer arithmetic: the same on every platform and for any
//! thread count (tensors are filled in order, on the calling thread).

const N: usize = 624;
const M: usize = 397;

/// A seeded random generator, reproducible across platforms. Its whole state can be saved and restored.
#[derive(Clone, PartialEq)]
pub struct Generator {
    state: [u32; N],
    index: usize,
    seed: u64,
    /// ATen caches the second Box–Muller sample of its scalar normal path.
    next_normal: Option<f64>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Generator {{ seed: {}, index: {} }}", self.seed, self.index)
    }
}

impl Generator {
    /// A generator seeded like `torch.manual_seed(seed)`.
    pub fn new(seed: u64) -> Generator {
        let mut state = [0u32; N];
        state[0] = seed as u32;
        for i in 1..N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Generator { state, index: N, seed, next_normal: None }
    }

    /// The seed it was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut v = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The next 64 random bits (two draws, the first one high, as ATen's `random64`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// A float32 uniform on [from, to), as ATen's `uniform_real_distribution<float>`.
    pub fn uniform_f32(&mut self, from: f32, to: f32) -> f32 {
        let x = (self.next_u32() & ((1 << 24) - 1)) as f64 / (1u64 << 24) as f64;
        (x * (to - from) as f64 + from as f64) as f32
    }

    /// A float64 uniform on [from, to), as ATen's `uniform_real_distribution<double>`.
    pub fn uniform_f64(&mut self, from: f64, to: f64) -> f64 {
        let x = (self.next_u64() & ((1 << 53) - 1)) as f64 / (1u64 << 53) as f64;
        x * (to - from) + from
    }

    /// An integer uniform on [low, high), as ATen's `random_from_to` (high > low).
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        let range = (high as i128 - low as i128) as u128;
        let offset = if range >= 1u128 << 32 { self.next_u64() as u128 % range } else { self.next_u32() as u128 % range };
        // ATen adds in uint64 with wraparound: an offset past i64::MAX from a negative `low` (a range
        // wider than i64::MAX) lands in [low, high) only that way; signed addition would overflow.
        (offset as u64).wrapping_add(low as u64) as i64
    }

    /// One normal sample (ATen's scalar `normal_distribution<double>`, with its cached second sample).
    pub fn normal_f64(&mut self, mean: f64, std: f64) -> f64 {
        if let Some(v) = self.next_normal.take() {
            return v * std + mean;
        }
        let u1 = self.uniform_f64(0.0, 1.0);
        let u2 = self.uniform_f64(0.0, 1.0);
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_normal = Some(r * theta.sin());
        r * theta.cos() * std + mean
    }

    /// Fills `out` with normal float32 samples as ATen's CPU `normal_` does (its Box–Muller over blocks
    /// of 16 for 16 or more elements; the scalar path below that).
    pub fn fill_normal_f32(&mut self, out: &mut [f32], mean: f32, std: f32) {
        let n = out.len();
        if n < 16 {
            for v in out.iter_mut() {
                *v = self.normal_f64(mean as f64, std as f64) as f32;
            }
            return;
        }
        for v in out.iter_mut() {
            *v = self.uniform_f32(0.0, 1.0);
        }
        let mut i = 0;
        while i + 16 <= n {
            normal_fill_16(&mut out[i..i + 16], mean, std);
            i += 16;
        }
        if !n.is_multiple_of(16) {
            let tail = &mut out[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32(0.0, 1.0);
            }
            normal_fill_16(tail, mean, std);
        }
    }

    /// Fills `out` with normal float64 samples (ATen's scalar path).
    pub fn fill_normal_f64(&mut self, out: &mut [f64], mean: f64, std: f64) {
        for v in out.iter_mut() {
            *v = self.normal_f64(mean, std);
        }
    }

    /// Serialises the whole state (for checkpoints): seed, index, cached normal, 624 words.
    pub fn to_words(&self) -> Vec<u32> {
        let mut w = Vec::with_capacity(N + 6);
        w.push((self.seed >> 32) as u32);
        w.push(self.seed as u32);
        w.push(self.index as u32);
        let cached = self.next_normal.map(f64::to_bits);
        w.push(cached.is_some() as u32);
        let bits = cached.unwrap_or(0);
        w.push((bits >> 32) as u32);
        w.push(bits as u32);
        w.extend_from_slice(&self.state);
        w
    }

    /// Restores a state written by [`Generator::to_words`]; `None` when the words are malformed.
    pub fn from_words(w: &[u32]) -> Option<Generator> {
        if w.len() != N + 6 || w[2] as usize > N || w[3] > 1 {
            return None;
        }
        let mut state = [0u32; N];
        state.copy_from_slice(&w[6..]);
        let bits = ((w[4] as u64) << 32) | w[5] as u64;
        Some(Generator {
            state,
            index: w[2] as usize,
            seed: ((w[0] as u64) << 32) | w[1] as u64,
            next_normal: if w[3] == 1 { Some(f64::from_bits(bits)) } else { None },
        })
    }
}

fn normal_fill_16(data: &mut [f32], mean: f32, std: f32) {
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0f64 * std::f64::consts::PI * u2 as f64;
        data[j] = (radius as f64 * theta.cos() * std as f64 + mean as f64) as f32;
        data[j + 8] = (radius as f64 * theta.sin() * std as f64 + mean as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_sequence() {
        // The 10000th output of the standard mt19937 seeded with 5489 is 4123659995 (C++11 [rand.predef]).
        let mut g = Generator::new(5489);
        let mut v = 0;
        for _ in 0..10000 {
            v = g.next_u32();
        }
        assert_eq!(v, 4_123_659_995);
    }

    #[test]
    fn state_round_trips_through_words() {
        let mut g = Generator::new(7);
        g.normal_f64(0.0, 1.0);
        let h = Generator::from_words(&g.to_words()).unwrap();
        assert_eq!(g, h);
    }
}
