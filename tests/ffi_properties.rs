//! The C ABI's per-call promises, checked over random call sequences in the normal test run: every
//! call returns a pinned status, none panics inside the library (`BP_ERR_INTERNAL`), a failed call
//! leaves its outputs untouched and leaves a message. The sequences come from the same interpreter the
//! `c_abi_calls` fuzz target drives (`tests/harness/c_abi_calls.rs`); here its bytes come from
//! `bp::Generator`, so the run is reproducible (the failing seed is in the panic message).

#[path = "harness/c_abi_calls.rs"]
mod c_abi_calls;

use bp::Generator;

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Generator::new(seed);
    (0..len).map(|_| r.next_u32() as u8).collect()
}

#[test]
fn random_c_call_sequences_return_a_status_and_never_panic() {
    let (mut calls, mut ok) = (0, 0);
    for seed in 0..2000u64 {
        let bytes = random_bytes(seed, 3000);
        let out = std::panic::catch_unwind(|| c_abi_calls::run(&bytes)).unwrap_or_else(|_| panic!("seed {seed} broke a C-ABI promise (message above)"));
        calls += out.calls;
        ok += out.ok;
    }
    // The sequences must get past the argument checks and reach the engine, not only bounce off.
    assert!(calls > 200_000, "only {calls} calls made");
    assert!(ok * 10 > calls, "only {ok} of {calls} calls succeeded");
}
