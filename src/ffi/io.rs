//! Checkpoints and weights files (safetensors): the whole training state in one file, or a model's
//! state_dict alone. See docs/TRAINING.md for the layout and PyTorch interoperability.

use super::boundary::boundary;
use super::data::bp_loader;
use super::graph::{bp_graph, with_graph};
use super::nn::bp_model;
use super::object::{str_in, with_object, with_optional};
use super::optim::{bp_optimizer, bp_schedule};
use super::bp_status;
use crate::io::{self, TrainingParts, TrainingPartsMut};
use crate::optim::Optimizer;
use std::ffi::c_char;
use std::path::Path;

/// Saves the training state to `path` atomically (temporary file, fsync, rename): the model's
/// parameters by state_dict name, the graph's generator, and — each when not NULL — the optimizer's
/// state (moments, step counts, learning rate), the schedule's position and the loader's generator,
/// order and position. Resuming from it with `bp_checkpoint_load` gives bit-identical results to never
/// having stopped. A file that cannot be written fails with `BP_ERR_IO`.
///
/// Ownership: nothing to own; every argument is only read during the call.
#[no_mangle]
pub extern "C" fn bp_checkpoint_save(path: *const c_char, graph: *mut bp_graph, model: *mut bp_model, optimizer: *mut bp_optimizer, schedule: *mut bp_schedule, loader: *mut bp_loader) -> bp_status {
    boundary(|| {
        let p = str_in(path, "path")?;
        with_graph(graph, |g| with_object(model, |m| with_optional(optimizer, |o| with_optional(schedule, |s| with_optional(loader, |l| {
            let parts = TrainingParts {
                optimizer: o.map(|o| &**o as &dyn Optimizer),
                schedule: s.map(|s| &*s),
                loader: l.map(|l| &*l),
                metadata: &[],
            };
            io::save_checkpoint(Path::new(p), g, m, parts)
        })))))
    })
}

/// Restores a checkpoint written by `bp_checkpoint_save` into the model and the graph's generator, and
/// into each of optimizer, schedule and loader that is not NULL (each must be in the file). Everything
/// is validated first: a truncated, corrupt or mismatched file (another architecture, optimizer or
/// schedule) fails with `BP_ERR_FORMAT`, naming the file and the problem, and changes nothing.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_checkpoint_load(path: *const c_char, graph: *mut bp_graph, model: *mut bp_model, optimizer: *mut bp_optimizer, schedule: *mut bp_schedule, loader: *mut bp_loader) -> bp_status {
    boundary(|| {
        let p = str_in(path, "path")?;
        with_graph(graph, |g| with_object(model, |m| with_optional(optimizer, |o| with_optional(schedule, |s| with_optional(loader, |l| {
            let parts = TrainingPartsMut {
                optimizer: o.map(|o| &mut **o as &mut dyn Optimizer),
                schedule: s,
                loader: l,
            };
            io::load_checkpoint(Path::new(p), g, m, parts).map(|_| ())
        })))))
    })
}

/// Saves the model's parameters only, by state_dict name (float32): exactly what PyTorch's
/// `model.load_state_dict(safetensors.torch.load_file(path))` takes. Atomic, as `bp_checkpoint_save`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_weights_save(path: *const c_char, graph: *mut bp_graph, model: *mut bp_model) -> bp_status {
    boundary(|| {
        let p = str_in(path, "path")?;
        with_graph(graph, |g| with_object(model, |m| io::save_weights(Path::new(p), g, m)))
    })
}

/// Loads parameters by state_dict name from a safetensors file (ours, or one written by
/// `safetensors.torch.save_file(model.state_dict(), path)`): every parameter must be there with its
/// shape, and nothing else (strict); F64, F16 and BF16 values are converted to float32, as PyTorch's
/// `load_state_dict` does. On any error nothing is changed.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_weights_load(path: *const c_char, graph: *mut bp_graph, model: *mut bp_model) -> bp_status {
    boundary(|| {
        let p = str_in(path, "path")?;
        with_graph(graph, |g| with_object(model, |m| io::load_weights(Path::new(p), g, m)))
    })
}
