//! The C-ABI call-sequence interpreter shared by the fuzz target `fuzz/fuzz_targets/c_abi_calls.rs`
//! (libFuzzer feeds it bytes) and `tests/ffi_properties.rs` (random bytes from `bp::Generator` in the
//! normal test run), so both check exactly one mechanism.
//!
//! Bytes become a sequence of calls to the real exported `extern "C"` functions, with the argument
//! mistakes a C caller can make *within the C contract's reach*: NULL and misaligned pointers, lengths
//! that do not match the tensor, lengths whose byte size cannot exist, forged / stale / cross-graph /
//! null tensor handles, freed graphs, forged graph pointers into readable memory, huge and negative
//! dims, ranks over the maximum. What it does not do is lie about a buffer's length (a pointer to 4
//! floats passed with length 8): reading past a caller's buffer is undefined behaviour no library can
//! detect, and the header says so.
//!
//! Checks, each a documented promise of `src/ffi/mod.rs`: every call returns one of the pinned status
//! codes; `BP_ERR_INTERNAL` (a panic caught at the boundary, i.e. a bug) never happens; a failed call
//! leaves its `*_out` untouched; a failure leaves a readable message. A violation panics with the call
//! that broke it (under libFuzzer any panic is a crash; under `cargo test` a failure).

// Each including test or fuzz target uses a different part.
#![allow(dead_code)]

use bp::ffi::autograd::*;
use bp::ffi::graph::*;
use bp::ffi::ops::*;
use bp::ffi::tensor::*;
use bp::ffi::{bp_last_error_message, bp_status, BP_ERR_INTERNAL, BP_ERR_UNSUPPORTED, BP_OK};
use bp::Tensor;
use std::ffi::{c_char, CStr};

/// Reads the input as a stream of small decisions; past its end every decision is 0.
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, at: 0 }
    }

    pub fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.u8() as usize % v.len()]
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// Dimension values: mostly small, sometimes absurd (negative, past 2^31, overflowing any product).
const DIM_VALUES: [i64; 16] = [0, 1, 1, 2, 2, 3, 3, 4, 5, 7, -1, -2, 1 << 31, 1 << 40, i64::MAX, i64::MIN];
/// Scalars for op parameters: ordinary, boundary and non-finite.
const SCALARS: [f64; 12] = [0.0, 1.0, -1.0, 0.5, 2.0, -0.5, 3.0, 1e30, -1e30, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
/// Memory limits a fuzzed graph may get: never unlimited, so no input can exhaust the machine.
const LIMITS: [usize; 6] = [0, 64, 1 << 10, 1 << 14, 1 << 18, 1 << 22];
/// Graphs alive at once.
const MAX_GRAPHS: usize = 4;
/// Scratch buffer sizes (elements).
const BUF: usize = 64;
/// Readable memory that is not a graph shell: a forged `bp_graph*` points here. Eight bytes, the
/// least a forged pointer must name for the library's check to be defined (docs/RELIABILITY.md).
static NOT_A_GRAPH: [u64; 1] = [0x5eed_5eed_5eed_5eed];

/// How a buffer argument is passed.
#[derive(Clone, Copy)]
enum Ptr {
    Real,
    Null,
    Misaligned,
}

/// What one run did: calls made and how many succeeded (a harness that only bounced off argument
/// checks would prove little).
#[derive(Default, Debug, Clone, Copy)]
pub struct Outcome {
    pub calls: usize,
    pub ok: usize,
}

struct State {
    live: Vec<*mut bp_graph>,
    freed: Vec<*mut bp_graph>,
    handles: Vec<Tensor>,
    outcome: Outcome,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    i64s: Vec<i64>,
    /// Backing for misaligned pointers: one byte past an aligned start.
    raw: Vec<u64>,
}

fn check(s: &mut State, what: &str, status: bp_status) -> bool {
    s.outcome.calls += 1;
    assert!((BP_OK..=BP_ERR_UNSUPPORTED).contains(&status), "{what}: returned {status}, not a bp_status");
    if status == BP_ERR_INTERNAL {
        // SAFETY: bp_last_error_message never returns NULL; the string is valid until the next call.
        let msg = unsafe { CStr::from_ptr(bp_last_error_message()) }.to_string_lossy().into_owned();
        panic!("{what}: BP_ERR_INTERNAL (a panic inside the library): {msg}");
    }
    if status == BP_OK {
        s.outcome.ok += 1;
        true
    } else {
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(bp_last_error_message()) };
        assert!(!msg.to_bytes().is_empty(), "{what}: failed with {status} and an empty message");
        false
    }
}

/// A sentinel an output must still hold after a failed call.
const SENTINEL: Tensor = Tensor { graph: 0xdead_beef, index: 7, generation: 7 };

impl State {
    fn graph(&mut self, b: &mut Bytes) -> *mut bp_graph {
        match b.u8() % 16 {
            0 => std::ptr::null_mut(),
            1 if !self.freed.is_empty() => self.freed[b.u8() as usize % self.freed.len()],
            2 => NOT_A_GRAPH.as_ptr() as *mut bp_graph,
            3 => (NOT_A_GRAPH.as_ptr() as *const u8).wrapping_add(1) as *mut bp_graph,
            _ if !self.live.is_empty() => self.live[b.u8() as usize % self.live.len()],
            _ => std::ptr::null_mut(),
        }
    }

    fn tensor(&mut self, b: &mut Bytes) -> Tensor {
        match b.u8() % 16 {
            0 => Tensor::default(),
            1 => Tensor { graph: b.u32() % 8, index: b.u8() as u32, generation: b.u8() as u32 % 4 },
            2 => Tensor { graph: b.u32(), index: b.u32(), generation: b.u32() },
            _ if !self.handles.is_empty() => {
                let n = self.handles.len();
                // Favour recent handles: they are the likeliest to be alive and to fit together.
                let back = (b.u8() as usize % n.min(12)) + 1;
                if b.u8().is_multiple_of(4) { self.handles[b.u8() as usize % n] } else { self.handles[n - back] }
            }
            _ => Tensor::default(),
        }
    }

    /// A shape buffer and its rank: mostly 0..=4 small dims, sometimes too many or absurd values.
    fn dims(&mut self, b: &mut Bytes) -> ([i64; 9], usize, Ptr) {
        let mut d = [0i64; 9];
        for v in d.iter_mut() {
            *v = b.pick(&DIM_VALUES[..10]);
        }
        if b.u8().is_multiple_of(8) {
            let i = b.u8() as usize % 9;
            d[i] = b.pick(&DIM_VALUES);
        }
        let ndim = match b.u8() % 16 {
            0 => 8,
            1 => 9,
            2 => usize::MAX,
            n => (n % 5) as usize,
        };
        (d, ndim, self.ptr(b))
    }

    fn ptr(&mut self, b: &mut Bytes) -> Ptr {
        match b.u8() % 16 {
            0 => Ptr::Null,
            1 => Ptr::Misaligned,
            _ => Ptr::Real,
        }
    }

    /// A pointer to `buf` passed as `how`, for reading `T`s.
    fn buf_ptr<T>(&mut self, buf: *const T, how: Ptr) -> *const T {
        match how {
            Ptr::Real => buf,
            Ptr::Null => std::ptr::null(),
            Ptr::Misaligned => (self.raw.as_ptr() as *const u8).wrapping_add(1) as *const T,
        }
    }

    /// A length for a buffer of `cap` elements of `size` bytes: in range, 0, or impossibly large
    /// (rejected before the buffer is touched). Never a lie that fits in memory.
    fn len(&mut self, b: &mut Bytes, cap: usize, size: usize) -> usize {
        match b.u8() % 16 {
            0 => 0,
            1 => usize::MAX,
            2 => isize::MAX as usize / size + 1,
            n if n < 8 => (n as usize - 2).min(cap),
            _ => b.u8() as usize % (cap + 1),
        }
    }

    fn scalar(&mut self, b: &mut Bytes) -> f64 {
        b.pick(&SCALARS)
    }

    fn dim(&mut self, b: &mut Bytes) -> i64 {
        b.pick(&[0i64, 1, -1, 2, -2, 3, 8, -9, i64::MAX, i64::MIN])
    }

    /// Runs an op that makes one tensor: the output is checked and, on success, kept as a handle.
    fn op(&mut self, b: &mut Bytes, what: &str, call: impl FnOnce(*mut Tensor) -> bp_status) {
        let mut out = SENTINEL;
        let p: *mut Tensor = match b.u8() % 32 {
            0 => std::ptr::null_mut(),
            1 => (self.raw.as_mut_ptr() as *mut u8).wrapping_add(1) as *mut Tensor,
            _ => &mut out,
        };
        let ok = check(self, what, call(p));
        if !ok {
            assert!(out == SENTINEL, "{what}: a failed call wrote its output");
        } else if std::ptr::eq(p, &out) {
            self.handles.push(out);
            if self.handles.len() > 256 {
                self.handles.drain(..128);
            }
        }
    }

    /// Runs a query with a `*_out`: a failed call must leave the output as it was.
    fn query<T: Copy + PartialEq + std::fmt::Debug>(&mut self, b: &mut Bytes, what: &str, init: T, call: impl FnOnce(*mut T) -> bp_status) {
        let mut out = init;
        let p: *mut T = match b.u8() % 32 {
            0 => std::ptr::null_mut(),
            _ => &mut out,
        };
        if !check(self, what, call(p)) {
            assert!(out == init, "{what}: a failed call wrote its output ({out:?})");
        }
    }
}

/// Interprets `data` as a sequence of C-ABI calls (see the module documentation) and frees every graph
/// it made at the end.
pub fn run(data: &[u8]) -> Outcome {
    let mut s = State {
        live: Vec::new(),
        freed: Vec::new(),
        handles: Vec::new(),
        outcome: Outcome::default(),
        f32s: (0..BUF).map(|i| i as f32 * 0.25 - 3.0).collect(),
        f64s: (0..BUF).map(|i| i as f64 * 0.5 - 7.0).collect(),
        i64s: (0..BUF as i64).map(|i| i % 5 - 1).collect(),
        raw: vec![0u64; 2 * BUF + 2],
    };
    let b = &mut Bytes::new(data);
    while !b.done() {
        step(&mut s, b);
    }
    for g in std::mem::take(&mut s.live) {
        assert_eq!(bp_graph_free(g), BP_OK, "freeing a live graph at the end");
    }
    s.outcome
}

macro_rules! unary {
    ($s:ident, $b:ident, $f:ident) => {{
        let (g, x) = ($s.graph($b), $s.tensor($b));
        $s.op($b, stringify!($f), |o| $f(g, x, o))
    }};
}

macro_rules! binary {
    ($s:ident, $b:ident, $f:ident) => {{
        let (g, x, y) = ($s.graph($b), $s.tensor($b), $s.tensor($b));
        $s.op($b, stringify!($f), |o| $f(g, x, y, o))
    }};
}

macro_rules! with_scalar {
    ($s:ident, $b:ident, $f:ident) => {{
        let (g, x, c) = ($s.graph($b), $s.tensor($b), $s.scalar($b));
        $s.op($b, stringify!($f), |o| $f(g, x, c, o))
    }};
}

macro_rules! reduce {
    ($s:ident, $b:ident, $f:ident) => {{
        let (g, x, keep) = ($s.graph($b), $s.tensor($b), $b.bool());
        let dl: [i64; 9] = std::array::from_fn(|_| $b.pick(&[0i64, 1, -1, 2, -2, 5]));
        let n = $b.pick(&[0usize, 1, 1, 2, 3, 9, usize::MAX]);
        let how = $s.ptr($b);
        let p = $s.buf_ptr(dl.as_ptr(), how);
        $s.op($b, stringify!($f), |o| $f(g, x, p, n, keep, o))
    }};
}

macro_rules! shaped {
    ($s:ident, $b:ident, $f:ident) => {{
        let (g, x) = ($s.graph($b), $s.tensor($b));
        let (d, n, how) = $s.dims($b);
        let p = $s.buf_ptr(d.as_ptr(), how);
        $s.op($b, stringify!($f), |o| $f(g, x, p, n, o))
    }};
}

macro_rules! read_data {
    ($s:ident, $b:ident, $f:ident, $buf:ident, $t:ty) => {{
        let (g, x) = ($s.graph($b), $s.tensor($b));
        let how = $s.ptr($b);
        let n = $s.len($b, BUF, std::mem::size_of::<$t>());
        let mut dst: Vec<$t> = vec![<$t>::default(); BUF];
        let p: *mut $t = match how {
            Ptr::Real => dst.as_mut_ptr(),
            Ptr::Null => std::ptr::null_mut(),
            Ptr::Misaligned => ($s.raw.as_mut_ptr() as *mut u8).wrapping_add(1) as *mut $t,
        };
        let st = $f(g, x, p, n);
        if !check($s, stringify!($f), st) {
            assert!(dst.iter().all(|v| *v == <$t>::default()), "{}: a failed read wrote the buffer", stringify!($f));
        }
    }};
}

macro_rules! write_data {
    ($s:ident, $b:ident, $f:ident, $buf:ident, $t:ty) => {{
        let (g, x) = ($s.graph($b), $s.tensor($b));
        let how = $s.ptr($b);
        let n = $s.len($b, BUF, std::mem::size_of::<$t>());
        let p = $s.buf_ptr($s.$buf.as_ptr(), how);
        let st = $f(g, x, p, n);
        check($s, stringify!($f), st);
    }};
}

macro_rules! from_data {
    ($s:ident, $b:ident, $f:ident, $buf:ident, $t:ty) => {{
        let g = $s.graph($b);
        let how = $s.ptr($b);
        let n = $s.len($b, BUF, std::mem::size_of::<$t>());
        let p = $s.buf_ptr($s.$buf.as_ptr(), how);
        let (d, nd, dhow) = $s.dims($b);
        let dp = $s.buf_ptr(d.as_ptr(), dhow);
        $s.op($b, stringify!($f), |o| $f(g, p, n, dp, nd, o))
    }};
}

fn dtype(b: &mut Bytes) -> i32 {
    b.pick(&[0, 0, 1, 2, 3, -1])
}

fn reduction(b: &mut Bytes) -> i32 {
    b.pick(&[0, 1, 2, 3, -1])
}

fn step(s: &mut State, b: &mut Bytes) {
    match b.u8() % 84 {
        // ---- graphs ----
        0 | 1 => {
            if s.live.len() < MAX_GRAPHS {
                let mut g = std::ptr::null_mut();
                if check(s, "bp_graph_new", bp_graph_new(&mut g)) {
                    let lim = b.pick(&LIMITS[2..]);
                    check(s, "bp_graph_set_memory_limit", bp_graph_set_memory_limit(g, lim));
                    s.live.push(g);
                }
            } else {
                check(s, "bp_graph_new(NULL)", bp_graph_new(std::ptr::null_mut()));
            }
        }
        2 => {
            if !s.live.is_empty() && b.u8().is_multiple_of(2) {
                let g = s.live.swap_remove(b.u8() as usize % s.live.len());
                assert_eq!(bp_graph_free(g), BP_OK, "bp_graph_free of a live graph");
                s.outcome.calls += 1;
                s.freed.push(g);
                if s.freed.len() > 16 {
                    s.freed.remove(0);
                }
            } else {
                let g = s.graph(b);
                check(s, "bp_graph_free", bp_graph_free(g));
                if let Some(i) = s.live.iter().position(|&l| l == g) {
                    s.live.swap_remove(i);
                    s.freed.push(g);
                }
            }
        }
        3 | 4 => {
            let g = s.graph(b);
            check(s, "bp_graph_reset", bp_graph_reset(g));
        }
        5 => {
            let (g, lim) = (s.graph(b), b.pick(&LIMITS));
            check(s, "bp_graph_set_memory_limit", bp_graph_set_memory_limit(g, lim));
        }
        6 => {
            let g = s.graph(b);
            match b.u8() % 5 {
                0 => s.query(b, "bp_graph_memory_limit", 0usize, |o| bp_graph_memory_limit(g, o)),
                1 => s.query(b, "bp_graph_tensor_count", 0usize, |o| bp_graph_tensor_count(g, o)),
                2 => s.query(b, "bp_graph_node_count", 0usize, |o| bp_graph_node_count(g, o)),
                3 => s.query(b, "bp_graph_is_grad_enabled", false, |o| bp_graph_is_grad_enabled(g, o)),
                _ => {
                    let (mut u, mut p) = (0usize, 0usize);
                    let (pu, pp): (*mut usize, *mut usize) = if b.bool() { (&mut u, std::ptr::null_mut()) } else { (std::ptr::null_mut(), &mut p) };
                    check(s, "bp_graph_memory_used", bp_graph_memory_used(g, pu, pp));
                }
            }
        }
        7 => {
            let (g, seed) = (s.graph(b), b.u32() as u64);
            check(s, "bp_graph_manual_seed", bp_graph_manual_seed(g, seed));
        }
        8 => {
            let (g, on) = (s.graph(b), !b.u8().is_multiple_of(4));
            let mut prev = false;
            let p: *mut bool = if b.bool() { &mut prev } else { std::ptr::null_mut() };
            check(s, "bp_graph_set_grad_enabled", bp_graph_set_grad_enabled(g, on, p));
        }
        9 => {
            let (g, on) = (s.graph(b), b.bool());
            check(s, "bp_graph_set_anomaly_detection", bp_graph_set_anomaly_detection(g, on));
        }
        10 => {
            let (g, root) = (s.graph(b), s.tensor(b));
            let mut buf = vec![0u8; 1 << 16];
            let cap = b.pick(&[0usize, 1, 64, 1 << 16]);
            let p: *mut c_char = if cap == 0 && b.bool() { std::ptr::null_mut() } else { buf.as_mut_ptr() as *mut c_char };
            s.query(b, "bp_graph_to_dot", 0usize, |o| bp_graph_to_dot(g, root, p, cap, o));
        }
        // ---- tensors ----
        11 | 12 => {
            let (g, dt) = (s.graph(b), dtype(b));
            let (d, n, how) = s.dims(b);
            let p = s.buf_ptr(d.as_ptr(), how);
            s.op(b, "bp_tensor_new", |o| bp_tensor_new(g, dt, p, n, o))
        }
        13 => {
            let (g, dt, v) = (s.graph(b), dtype(b), s.scalar(b));
            let (d, n, how) = s.dims(b);
            let p = s.buf_ptr(d.as_ptr(), how);
            s.op(b, "bp_tensor_full", |o| bp_tensor_full(g, dt, p, n, v, o))
        }
        14 | 15 => from_data!(s, b, bp_tensor_from_f32, f32s, f32),
        16 => from_data!(s, b, bp_tensor_from_f64, f64s, f64),
        17 => from_data!(s, b, bp_tensor_from_i64, i64s, i64),
        18 => {
            let (g, start, end, step, dt) = (s.graph(b), s.scalar(b), s.scalar(b), s.scalar(b), dtype(b));
            s.op(b, "bp_tensor_arange", |o| bp_tensor_arange(g, start, end, step, dt, o))
        }
        19 | 20 => {
            let (g, dt, lo, hi, normal) = (s.graph(b), dtype(b), s.scalar(b), s.scalar(b), b.bool());
            let (d, n, how) = s.dims(b);
            let p = s.buf_ptr(d.as_ptr(), how);
            if normal {
                s.op(b, "bp_tensor_randn", |o| bp_tensor_randn(g, dt, p, n, lo, hi, o))
            } else {
                s.op(b, "bp_tensor_rand", |o| bp_tensor_rand(g, dt, p, n, lo, hi, o))
            }
        }
        21 => {
            let (g, lo, hi) = (s.graph(b), s.dim(b), s.dim(b));
            let (d, n, how) = s.dims(b);
            let p = s.buf_ptr(d.as_ptr(), how);
            s.op(b, "bp_tensor_randint", |o| bp_tensor_randint(g, lo, hi, p, n, o))
        }
        22 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            check(s, "bp_tensor_free", bp_tensor_free(g, x));
        }
        23 => {
            let (g, x, on) = (s.graph(b), s.tensor(b), b.bool());
            check(s, "bp_tensor_set_persistent", bp_tensor_set_persistent(g, x, on));
        }
        24 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            match b.u8() % 7 {
                0 => s.query(b, "bp_tensor_is_persistent", false, |o| bp_tensor_is_persistent(g, x, o)),
                1 => s.query(b, "bp_tensor_ndim", 77usize, |o| bp_tensor_ndim(g, x, o)),
                2 => s.query(b, "bp_tensor_numel", 77usize, |o| bp_tensor_numel(g, x, o)),
                3 => s.query(b, "bp_tensor_dtype", 77, |o| bp_tensor_dtype(g, x, o)),
                4 => s.query(b, "bp_tensor_item", 77.0f64, |o| bp_tensor_item(g, x, o)),
                5 => s.query(b, "bp_tensor_version", 77u32, |o| bp_tensor_version(g, x, o)),
                _ => {
                    let mut dims = [0i64; 9];
                    let cap = b.pick(&[0usize, 1, 2, 8, 9]);
                    let p: *mut i64 = if cap == 0 && b.bool() { std::ptr::null_mut() } else { dims.as_mut_ptr() };
                    s.query(b, "bp_tensor_shape", 77usize, |o| bp_tensor_shape(g, x, p, cap, o))
                }
            }
        }
        25 => read_data!(s, b, bp_tensor_read_f32, f32s, f32),
        26 => read_data!(s, b, bp_tensor_read_f64, f64s, f64),
        27 => read_data!(s, b, bp_tensor_read_i64, i64s, i64),
        28 => write_data!(s, b, bp_tensor_write_f32, f32s, f32),
        29 => write_data!(s, b, bp_tensor_write_f64, f64s, f64),
        30 => write_data!(s, b, bp_tensor_write_i64, i64s, i64),
        31 => {
            let (g, dst, src) = (s.graph(b), s.tensor(b), s.tensor(b));
            check(s, "bp_tensor_assign", bp_tensor_assign(g, dst, src));
        }
        // ---- autograd ----
        32 | 33 => {
            let (g, x, on) = (s.graph(b), s.tensor(b), !b.u8().is_multiple_of(4));
            check(s, "bp_tensor_set_requires_grad", bp_tensor_set_requires_grad(g, x, on));
        }
        34 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            match b.u8() % 3 {
                0 => s.query(b, "bp_tensor_requires_grad", false, |o| bp_tensor_requires_grad(g, x, o)),
                1 => s.query(b, "bp_tensor_is_leaf", false, |o| bp_tensor_is_leaf(g, x, o)),
                _ => {
                    let mut name: *const c_char = std::ptr::null();
                    if check(s, "bp_tensor_grad_fn", bp_tensor_grad_fn(g, x, &mut name)) && !name.is_null() {
                        // SAFETY: on success the name is NULL or a static NUL-terminated string.
                        let _ = unsafe { CStr::from_ptr(name) }.to_str().expect("grad_fn names are UTF-8");
                    }
                }
            }
        }
        35 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            check(s, "bp_tensor_retain_grad", bp_tensor_retain_grad(g, x));
        }
        36..=38 => {
            let (g, root, seed) = (s.graph(b), s.tensor(b), s.tensor(b));
            let (retain, create) = (b.bool(), b.u8().is_multiple_of(4));
            let gp: *const Tensor = match b.u8() % 4 {
                0 => &seed,
                1 => (s.raw.as_ptr() as *const u8).wrapping_add(1) as *const Tensor,
                _ => std::ptr::null(),
            };
            check(s, "bp_backward", bp_backward(g, root, gp, retain, create));
        }
        39 | 40 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            s.op(b, "bp_grad", |o| bp_grad(g, x, o));
        }
        41 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            check(s, "bp_zero_grad", bp_zero_grad(g, x));
        }
        42 => {
            let g = s.graph(b);
            let outs: [Tensor; 3] = [s.tensor(b), s.tensor(b), s.tensor(b)];
            let ins: [Tensor; 3] = [s.tensor(b), s.tensor(b), s.tensor(b)];
            let gos: [Tensor; 3] = [s.tensor(b), s.tensor(b), s.tensor(b)];
            let (no, ni, ng) = (b.pick(&[0usize, 1, 1, 2, 3]), b.pick(&[0usize, 1, 1, 2, 3]), b.pick(&[0usize, 0, 1, 2, 3]));
            let nd = if b.u8().is_multiple_of(8) { b.pick(&[0usize, 1, 2, 3]) } else { ni };
            let (retain, create) = (b.bool(), b.u8().is_multiple_of(4));
            let (po, pi) = (s.ptr(b), s.ptr(b));
            let (po, pi) = (s.buf_ptr(outs.as_ptr(), po), s.buf_ptr(ins.as_ptr(), pi));
            let mut grads = [SENTINEL; 3];
            let st = bp_grad_of(g, po, no, pi, ni, gos.as_ptr(), ng, retain, create, grads.as_mut_ptr(), nd);
            if check(s, "bp_grad_of", st) {
                s.handles.extend_from_slice(&grads[..nd]);
            } else {
                assert!(grads.iter().all(|t| *t == SENTINEL), "bp_grad_of: a failed call wrote grads_out");
            }
        }
        43 => unary!(s, b, bp_detach),
        // ---- ops ----
        44 => unary!(s, b, bp_neg),
        45 => unary!(s, b, bp_exp),
        46 => unary!(s, b, bp_log),
        47 => unary!(s, b, bp_sqrt),
        48 => unary!(s, b, bp_abs),
        49 => unary!(s, b, bp_relu),
        50 => unary!(s, b, bp_sigmoid),
        51 => unary!(s, b, bp_tanh),
        52 => unary!(s, b, bp_gelu),
        53 => with_scalar!(s, b, bp_leaky_relu),
        54 => with_scalar!(s, b, bp_pow),
        55 => with_scalar!(s, b, bp_add_scalar),
        56 => with_scalar!(s, b, bp_mul_scalar),
        57 | 58 => binary!(s, b, bp_add),
        59 => binary!(s, b, bp_sub),
        60 | 61 => binary!(s, b, bp_mul),
        62 => binary!(s, b, bp_div),
        63 => reduce!(s, b, bp_sum),
        64 => reduce!(s, b, bp_mean),
        65 => reduce!(s, b, bp_max),
        66 => {
            let (g, x, d, log) = (s.graph(b), s.tensor(b), s.dim(b), b.bool());
            if log {
                s.op(b, "bp_log_softmax", |o| bp_log_softmax(g, x, d, o))
            } else {
                s.op(b, "bp_softmax", |o| bp_softmax(g, x, d, o))
            }
        }
        67 => shaped!(s, b, bp_reshape),
        68 => shaped!(s, b, bp_permute),
        69 => {
            let (g, x, d0, d1) = (s.graph(b), s.tensor(b), s.dim(b), s.dim(b));
            s.op(b, "bp_transpose", |o| bp_transpose(g, x, d0, d1, o))
        }
        70 => shaped!(s, b, bp_expand),
        71 => shaped!(s, b, bp_sum_to),
        72 => {
            let g = s.graph(b);
            let xs: [Tensor; 4] = [s.tensor(b), s.tensor(b), s.tensor(b), s.tensor(b)];
            let n = b.pick(&[0usize, 1, 2, 2, 3, 4, usize::MAX / 4]);
            let (how, d) = (s.ptr(b), s.dim(b));
            let p = s.buf_ptr(xs.as_ptr(), how);
            s.op(b, "bp_concat", |o| bp_concat(g, p, n, d, o))
        }
        73 => {
            let (g, x, d, start, end, st) = (s.graph(b), s.tensor(b), s.dim(b), s.dim(b), s.dim(b), s.dim(b));
            s.op(b, "bp_slice", |o| bp_slice(g, x, d, start, end, st, o))
        }
        74 => {
            let (g, x) = (s.graph(b), s.tensor(b));
            let (d, n, how) = s.dims(b);
            let p = s.buf_ptr(d.as_ptr(), how);
            let (dim, start, st) = (s.dim(b), s.dim(b), s.dim(b));
            s.op(b, "bp_slice_scatter", |o| bp_slice_scatter(g, x, p, n, dim, start, st, o))
        }
        75 => {
            let (g, x, d, i, gather) = (s.graph(b), s.tensor(b), s.dim(b), s.tensor(b), b.bool());
            if gather {
                s.op(b, "bp_gather", |o| bp_gather(g, x, d, i, o))
            } else {
                s.op(b, "bp_index_select", |o| bp_index_select(g, x, d, i, o))
            }
        }
        76 => {
            let (g, x, d, i, size) = (s.graph(b), s.tensor(b), s.dim(b), s.tensor(b), s.dim(b));
            s.op(b, "bp_index_add", |o| bp_index_add(g, x, d, i, size, o))
        }
        77 => {
            let (g, x, d, i) = (s.graph(b), s.tensor(b), s.dim(b), s.tensor(b));
            let (dd, n, how) = s.dims(b);
            let p = s.buf_ptr(dd.as_ptr(), how);
            s.op(b, "bp_scatter_add", |o| bp_scatter_add(g, x, d, i, p, n, o))
        }
        78 => {
            let (g, x, y, ta, tb, plain) = (s.graph(b), s.tensor(b), s.tensor(b), b.bool(), b.bool(), b.bool());
            if plain {
                s.op(b, "bp_matmul", |o| bp_matmul(g, x, y, o))
            } else {
                s.op(b, "bp_matmul_t", |o| bp_matmul_t(g, x, y, ta, tb, o))
            }
        }
        79 => {
            let (g, x, w, bias) = (s.graph(b), s.tensor(b), s.tensor(b), s.tensor(b));
            let bp: *const Tensor = match b.u8() % 3 {
                0 => std::ptr::null(),
                1 => (s.raw.as_ptr() as *const u8).wrapping_add(1) as *const Tensor,
                _ => &bias,
            };
            s.op(b, "bp_linear", |o| bp_linear(g, x, w, bp, o))
        }
        80 => {
            let (g, x, y, r) = (s.graph(b), s.tensor(b), s.tensor(b), reduction(b));
            if b.bool() {
                s.op(b, "bp_mse_loss", |o| bp_mse_loss(g, x, y, r, o))
            } else {
                s.op(b, "bp_binary_cross_entropy_with_logits", |o| bp_binary_cross_entropy_with_logits(g, x, y, r, o))
            }
        }
        81 => {
            let (g, x, y) = (s.graph(b), s.tensor(b), s.tensor(b));
            if b.bool() {
                s.op(b, "bp_cross_entropy", |o| bp_cross_entropy(g, x, y, o))
            } else {
                let (r, smooth, ignore) = (reduction(b), b.pick(&[0.0, 0.1, 1.0, -0.5, 2.0, f64::NAN]), s.dim(b));
                s.op(b, "bp_cross_entropy_ex", |o| bp_cross_entropy_ex(g, x, y, r, smooth, ignore, o))
            }
        }
        82 => {
            let (g, x, p, train) = (s.graph(b), s.tensor(b), b.pick(&[0.0, 0.5, 1.0, -0.1, 1.5, f64::NAN]), b.bool());
            s.op(b, "bp_dropout", |o| bp_dropout(g, x, p, train, o))
        }
        _ => {
            // A misaligned or NULL out pointer for every kind of call, checked before any work.
            let g = s.graph(b);
            let mis = (s.raw.as_mut_ptr() as *mut u8).wrapping_add(1);
            check(s, "bp_tensor_numel(misaligned out)", bp_tensor_numel(g, Tensor::default(), mis as *mut usize));
            check(s, "bp_graph_new(misaligned out)", bp_graph_new(mis as *mut *mut bp_graph));
        }
    }
}
