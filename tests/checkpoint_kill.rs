//! Nothing is lost: a checkpoint writer killed (SIGKILL) at any moment of a save never damages the
//! previous checkpoint, and no half-written temporary file takes a checkpoint's place; every truncation
//! of a valid checkpoint is rejected with a clear error and leaves the training state untouched.
//!
//! The writer is this test binary itself, re-executed with `BP_CHECKPOINT_KILL_DIR` set to run the
//! ignored `checkpoint_writer_child_entry`, which saves checkpoints in a loop (without the variable it
//! returns at once). Kill moments are random; no assertion depends on when the kill lands.

#[path = "harness/loaders.rs"]
mod loaders;

use bp::io::{self, TrainingParts, TrainingPartsMut};
use bp::{ErrorKind, Generator};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "BP_CHECKPOINT_KILL_DIR";
const START_ENV: &str = "BP_CHECKPOINT_KILL_START";
const FILE: &str = "state.safetensors";

/// The parameter values of checkpoint version `v` (computed identically by writer and checker).
fn version_values(v: u64, param: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| v as f32 + (param * 1000 + i) as f32 * 1e-3).collect()
}

fn set_version(t: &mut loaders::Training, v: u64) {
    for (j, p) in t.model.parameters().into_iter().enumerate() {
        let n = t.g.numel(p).unwrap();
        t.g.write::<f32>(p, &version_values(v, j, n)).unwrap();
    }
}

/// The version whose values the parameters hold, if any.
fn version_of(t: &loaders::Training, candidates: &[u64]) -> Option<u64> {
    candidates.iter().copied().find(|&v| {
        t.model.parameters().into_iter().enumerate().all(|(j, p)| {
            let d = t.g.data::<f32>(p).unwrap();
            d.iter().map(|x| x.to_bits()).eq(version_values(v, j, d.len()).iter().map(|x| x.to_bits()))
        })
    })
}

/// The child's entry point, not a test of its own (hence ignored; the parent runs it with
/// `--ignored`): saves versions START, START+1, … to `$BP_CHECKPOINT_KILL_DIR/state.safetensors`
/// forever, printing each version once its save returned.
#[test]
#[ignore = "the child process of a_writer_killed_mid_save_never_damages_the_previous_checkpoint"]
fn checkpoint_writer_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let path = Path::new(&dir).join(FILE);
    let mut t = loaders::training(9, 2);
    for v in start.. {
        set_version(&mut t, v);
        let parts = TrainingParts { optimizer: Some(&t.opt), schedule: Some(&t.sched), loader: Some(&t.loader), metadata: &[] };
        io::save_checkpoint(&path, &t.g, &t.model, parts).unwrap();
        println!("saved {}", v);
    }
}

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_writer_killed_mid_save_never_damages_the_previous_checkpoint() {
    let dir = TmpDir(std::env::temp_dir().join(format!("bp-checkpoint-kill-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join(FILE);
    let mut r = Generator::new(2024);
    let mut mid_save_kills = 0;
    for run in 0..40u64 {
        let start = run * 10_000; // f32 tells versions apart up to 2^24
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "checkpoint_writer_child_entry", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir.0)
            .env(START_ENV, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let 1..=4 saves complete, then kill after a random pause (often inside the next save).
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let want = 1 + r.next_u32() as u64 % 4;
        let mut last = None;
        while last.is_none_or(|l| l < start + want - 1) {
            let line = lines.next().expect("the writer died on its own").unwrap();
            if let Some(v) = line.strip_prefix("saved ") {
                last = Some(v.trim().parse::<u64>().unwrap());
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(r.next_u32() as u64 % 3000));
        child.kill().unwrap(); // SIGKILL: no destructor, no flush, no cleanup runs in the writer
        child.wait().unwrap();
        // Versions reported after the ones waited for are still in the pipe.
        for line in lines {
            if let Some(v) = line.unwrap().strip_prefix("saved ") {
                last = Some(v.trim().parse::<u64>().unwrap());
            }
        }
        let last = last.unwrap();

        // The checkpoint is the last version reported saved, or the next one if its rename had
        // happened when the kill landed; anything else (or a failure to load) is a lost checkpoint.
        let mut t = loaders::training(1, 2);
        let parts = TrainingPartsMut { optimizer: Some(&mut t.opt), schedule: Some(&mut t.sched), loader: Some(&mut t.loader) };
        io::load_checkpoint(&path, &mut t.g, &t.model, parts).unwrap_or_else(|e| panic!("run {run}: the checkpoint does not load: {e}"));
        let v = version_of(&t, &[last, last + 1]).unwrap_or_else(|| panic!("run {run}: the checkpoint holds neither version {last} nor {}", last + 1));
        if v == last {
            mid_save_kills += 1;
        }

        // Only the checkpoint has the checkpoint's name; what a kill leaves behind is a hidden
        // temporary file of the writer's pid, which no loader is ever pointed at.
        for entry in std::fs::read_dir(&dir.0).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(name == FILE || (name.starts_with(".state.safetensors.tmp-")), "run {run}: unexpected file {name}");
        }
    }
    // How many kills beat the next rename is up to the scheduler; it is reported, never asserted.
    eprintln!("{mid_save_kills} of 40 kills left the previous version in place");
}

#[test]
fn every_truncation_of_a_valid_checkpoint_is_rejected_and_leaves_the_state_untouched() {
    let dir = TmpDir(std::env::temp_dir().join(format!("bp-checkpoint-truncate-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join(FILE);
    let good = loaders::valid_checkpoint(&path, 7, 2);
    let mut t = loaders::training(1, 2);
    let before = loaders::snapshot(&t);
    for n in 0..good.len() {
        std::fs::write(&path, &good[..n]).unwrap();
        let parts = TrainingPartsMut { optimizer: Some(&mut t.opt), schedule: Some(&mut t.sched), loader: Some(&mut t.loader) };
        let e = io::load_checkpoint(&path, &mut t.g, &t.model, parts).expect_err(&format!("a file cut to {n} bytes loaded"));
        assert_eq!(e.kind(), ErrorKind::Format, "{n} bytes: {e}");
        assert!(e.message().contains(FILE), "{n} bytes: the message names the file: {e}");
        assert!(loaders::snapshot(&t) == before, "{n} bytes: a failed load changed the training state");
    }
    std::fs::write(&path, &good).unwrap();
    let parts = TrainingPartsMut { optimizer: Some(&mut t.opt), schedule: Some(&mut t.sched), loader: Some(&mut t.loader) };
    io::load_checkpoint(&path, &mut t.g, &t.model, parts).unwrap();
    assert!(loaders::snapshot(&t) != before, "the whole file loads and changes the state");
}
