//! Training checkpoints: the whole training state in one safetensors file.
//!
//! Layout (every name is a safetensors tensor unless marked metadata):
//! - each parameter under its state_dict name (`0.weight`, float32), so that PyTorch's
//!   `model.load_state_dict({k: v for k, v in load_file(path).items() if k in model.state_dict()})` works;
//! - `optim.<param>.<buffer>` (float32, the parameter's shape: `exp_avg`, `exp_avg_sq`,
//!   `momentum_buffer`, …) and `optim.<param>.step` (int64 scalar); `optim.lr` (float64 scalar);
//!   metadata `optim.type` ("sgd", "adam", "adamw", "rmsprop") and `optim.config` (the other
//!   hyperparameters as text; a checkpoint made with other values is refused);
//! - `schedule.last_epoch` (int64), `schedule.base_lr` and `schedule.last_lr` (float64); metadata
//!   `schedule.type`;
//! - `rng.graph`: the graph's generator (int64 words, each holding 32 bits) — dropout draws from it;
//! - `loader.rng`, `loader.order` (int64), `loader.cursor`, `loader.epoch` (int64 scalars);
//! - metadata `format` = `backprop.checkpoint.v1`, plus whatever the caller adds.
//!
//! Loading reads and validates everything into temporaries first — every tensor's presence, dtype and
//! shape, every state against the objects it will go into — and only then writes; a truncated,
//! corrupt or mismatched file is an error that leaves the model, optimizer, schedule and loader as
//! they were.

use super::safetensors::{SafeTensors, StDtype, StTensor};
use crate::data::DataLoader;
use crate::error::{bail, err, Result};
use crate::graph::Graph;
use crate::nn::Sequential;
use crate::optim::{LrSchedule, Optimizer, Schedule};
use crate::rng::Generator;
use std::path::Path;

const FORMAT: &str = "backprop.checkpoint.v1";
const RESERVED: [&str; 4] = ["optim.", "schedule.", "rng.", "loader."];

/// What goes into a checkpoint besides the model (each part optional).
#[derive(Default)]
pub struct TrainingParts<'a> {
    /// The optimizer: its per-parameter buffers, step counts and learning rate.
    pub optimizer: Option<&'a dyn Optimizer>,
    /// The learning-rate schedule's position.
    pub schedule: Option<&'a LrSchedule>,
    /// The mini-batch iterator: generator, order, position.
    pub loader: Option<&'a DataLoader>,
    /// Extra string metadata (an epoch number, a note).
    pub metadata: &'a [(&'a str, &'a str)],
}

/// What a checkpoint is restored into besides the model (each part optional; a part asked for must
/// be in the file).
#[derive(Default)]
pub struct TrainingPartsMut<'a> {
    /// The optimizer.
    pub optimizer: Option<&'a mut dyn Optimizer>,
    /// The learning-rate schedule.
    pub schedule: Option<&'a mut LrSchedule>,
    /// The mini-batch iterator.
    pub loader: Option<&'a mut DataLoader>,
}

fn scalar_i64(v: i64) -> StTensor {
    StTensor::from_i64(&[], &[v])
}

fn scalar_f64(v: f64) -> StTensor {
    StTensor::from_f64(&[], &[v])
}

fn words(gen: &Generator) -> StTensor {
    let w: Vec<i64> = gen.to_words().into_iter().map(|x| x as i64).collect();
    StTensor::from_i64(&[w.len()], &w)
}

fn model_tensors(g: &Graph, model: &Sequential, out: &mut SafeTensors) -> Result<()> {
    for (name, t) in model.named_parameters() {
        let data = g.data::<f32>(t)?;
        out.insert(&name, StTensor::from_f32(&g.dims(t)?, data))?;
    }
    Ok(())
}

/// Writes the model's parameters only, by state_dict name: a file `safetensors.torch.load_file` +
/// `load_state_dict` takes as it is (strict).
pub fn save_weights(path: &Path, g: &Graph, model: &Sequential) -> Result<()> {
    let mut st = SafeTensors::new();
    model_tensors(g, model, &mut st)?;
    st.write(path)
}

/// Writes the whole training state atomically (see the module documentation for the layout).
pub fn save_checkpoint(path: &Path, g: &Graph, model: &Sequential, parts: TrainingParts) -> Result<()> {
    let mut st = SafeTensors::new();
    st.set_metadata("format", FORMAT);
    model_tensors(g, model, &mut st)?;
    st.insert("rng.graph", words(g.generator()))?;
    if let Some(opt) = parts.optimizer {
        st.set_metadata("optim.type", opt.kind());
        st.set_metadata("optim.config", &opt.config_text());
        st.insert("optim.lr", scalar_f64(opt.lr()))?;
        let state = opt.state();
        for s in &state.slots {
            if s.buffers.is_empty() && s.step == 0 {
                continue; // never stepped: no state, as in PyTorch
            }
            st.insert(&format!("optim.{}.step", s.name), scalar_i64(s.step as i64))?;
            for (bname, buf) in state.buffer_names.iter().zip(&s.buffers) {
                st.insert(&format!("optim.{}.{}", s.name, bname), StTensor::from_f32(&s.dims, buf))?;
            }
        }
    }
    if let Some(s) = parts.schedule {
        st.set_metadata("schedule.type", &schedule_name(&s.schedule));
        st.insert("schedule.last_epoch", scalar_i64(s.last_epoch as i64))?;
        st.insert("schedule.base_lr", scalar_f64(s.base_lr))?;
        st.insert("schedule.last_lr", scalar_f64(s.last_lr))?;
    }
    if let Some(l) = parts.loader {
        let (order, cursor) = l.position();
        let order: Vec<i64> = order.iter().map(|&i| i as i64).collect();
        st.insert("loader.rng", words(l.generator()))?;
        st.insert("loader.order", StTensor::from_i64(&[order.len()], &order))?;
        st.insert("loader.cursor", scalar_i64(cursor as i64))?;
        st.insert("loader.epoch", scalar_i64(l.epoch() as i64))?;
    }
    for (k, v) in parts.metadata {
        if *k == "format" || RESERVED.iter().any(|p| k.starts_with(p)) {
            bail!(InvalidArgument, "the metadata key {:?} is reserved", k);
        }
        st.set_metadata(k, v);
    }
    st.write(path)
}

/// A schedule's kind and parameters, as recorded in metadata and compared on load.
fn schedule_name(s: &Schedule) -> String {
    match *s {
        Schedule::Step { step_size, gamma } => format!("step(step_size={}, gamma={:?})", step_size, gamma),
        Schedule::Exponential { gamma } => format!("exponential(gamma={:?})", gamma),
        Schedule::Cosine { t_max, eta_min } => format!("cosine(t_max={}, eta_min={:?})", t_max, eta_min),
        Schedule::Linear { start_factor, end_factor, total_iters } => {
            format!("linear(start_factor={:?}, end_factor={:?}, total_iters={})", start_factor, end_factor, total_iters)
        }
    }
}

/// The tensor `name`, checked for dtype and shape.
fn take<'a>(st: &'a SafeTensors, name: &str, dtype: StDtype, shape: &[usize]) -> Result<&'a StTensor> {
    let t = st.get(name).ok_or_else(|| err!(Format, "the checkpoint has no tensor {:?}", name))?;
    if t.dtype != dtype {
        bail!(Format, "checkpoint tensor {:?} is {}, expected {}", name, t.dtype.name(), dtype.name());
    }
    if t.shape != shape {
        bail!(Format, "checkpoint tensor {:?} has shape {:?}, expected {:?}", name, t.shape, shape);
    }
    Ok(t)
}

fn get_i64(st: &SafeTensors, name: &str) -> Result<i64> {
    Ok(take(st, name, StDtype::I64, &[])?.to_i64()?[0])
}

fn get_u64(st: &SafeTensors, name: &str) -> Result<u64> {
    let v = get_i64(st, name)?;
    u64::try_from(v).map_err(|_| err!(Format, "checkpoint value {:?} is negative ({})", name, v))
}

fn get_f64(st: &SafeTensors, name: &str) -> Result<f64> {
    let v = take(st, name, StDtype::F64, &[])?.to_f64()?[0];
    if !v.is_finite() {
        bail!(Format, "checkpoint value {:?} is not finite", name);
    }
    Ok(v)
}

fn get_generator(st: &SafeTensors, name: &str) -> Result<Generator> {
    let t = st.get(name).ok_or_else(|| err!(Format, "the checkpoint has no tensor {:?}", name))?;
    let w = take(st, name, StDtype::I64, &t.shape.clone())?.to_i64()?;
    let w: Option<Vec<u32>> = w.iter().map(|&x| u32::try_from(x).ok()).collect();
    w.as_deref().and_then(Generator::from_words).ok_or_else(|| err!(Format, "checkpoint tensor {:?} is not a generator state", name))
}

/// Loads parameters by state_dict name into the model: every parameter must be present with its
/// shape, and no other tensor may be (PyTorch's `strict=True`); F64, F16 and BF16 values are converted
/// to float32 as PyTorch's `load_state_dict` converts them. Files written by PyTorch
/// (`safetensors.torch.save_file(model.state_dict(), path)`) load here.
pub fn load_weights(path: &Path, g: &mut Graph, model: &Sequential) -> Result<()> {
    let st = SafeTensors::read(path)?;
    let params = check_params(&st, g, model)?;
    if let Some((name, _)) = st.tensors.iter().find(|(n, _)| !params.iter().any(|(p, _)| p == n)) {
        bail!(Format, "{}: unexpected tensor {:?}: the file does not match the model", path.display(), name);
    }
    for (name, data) in params {
        let t = model.named_parameters().into_iter().find(|(n, _)| *n == name).expect("checked").1;
        g.write::<f32>(t, &data)?;
    }
    Ok(())
}

fn check_params(st: &SafeTensors, g: &Graph, model: &Sequential) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = Vec::new();
    for (name, t) in model.named_parameters() {
        let dims = g.dims(t)?;
        let src = st.get(&name).ok_or_else(|| err!(Format, "missing parameter {:?}: the file does not match the model", name))?;
        if src.shape != dims {
            bail!(Format, "parameter {:?} has shape {:?} in the file, {:?} in the model", name, src.shape, dims);
        }
        // Other float types convert, as PyTorch's load_state_dict copies into the parameter's dtype.
        let data = match src.dtype {
            StDtype::F32 => src.to_f32()?,
            StDtype::F64 => src.to_f64()?.into_iter().map(|v| v as f32).collect(),
            StDtype::F16 => src.data.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            StDtype::BF16 => src.data.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
            d => bail!(Format, "parameter {:?} is {} in the file; parameters must be floating-point", name, d.name()),
        };
        if g.dtype(t)? != crate::DType::F32 {
            bail!(DType, "parameter {:?} of the model is not float32", name);
        }
        out.push((name, data));
    }
    Ok(out)
}

/// IEEE half precision to single (exact: every half value is a float).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: value = man · 2^-24, exact in f32.
        (0, m) => {
            let v = m as f32 * 2.0f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Restores a checkpoint written by [`save_checkpoint`] into the model, the graph's generator and
/// each part given. Returns the caller's metadata. Nothing is written unless everything checks out.
pub fn load_checkpoint(path: &Path, g: &mut Graph, model: &Sequential, parts: TrainingPartsMut) -> Result<Vec<(String, String)>> {
    let st = SafeTensors::read(path)?;
    let ctx = |e: crate::Error| err!(Format, "{}: {}", path.display(), e.message());
    validate_and_restore(&st, g, model, parts).map_err(|e| if e.kind() == crate::ErrorKind::Format { ctx(e) } else { e })?;
    Ok(st
        .metadata
        .iter()
        .filter(|(k, _)| *k != "format" && !RESERVED.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect())
}

fn validate_and_restore(st: &SafeTensors, g: &mut Graph, model: &Sequential, parts: TrainingPartsMut) -> Result<()> {
    if st.metadata("format") != Some(FORMAT) {
        bail!(Format, "not a backprop checkpoint (metadata format is {:?}); use load_weights for a bare state_dict", st.metadata("format"));
    }
    // ---- validate into temporaries ----
    let params = check_params(st, g, model)?;
    for (name, _) in &st.tensors {
        if !RESERVED.iter().any(|p| name.starts_with(p)) && !params.iter().any(|(p, _)| p == name) {
            bail!(Format, "unexpected tensor {:?}: the checkpoint does not match the model", name);
        }
    }
    let graph_rng = get_generator(st, "rng.graph")?;

    type OptState = (f64, Vec<(u64, Vec<Vec<f32>>)>);
    let opt_state: Option<OptState> = match &parts.optimizer {
        None => None,
        Some(opt) => {
            let kind = st.metadata("optim.type").ok_or_else(|| err!(Format, "the checkpoint holds no optimizer state"))?;
            if kind != opt.kind() {
                bail!(Format, "the checkpoint's optimizer is {:?}, this one is {:?}", kind, opt.kind());
            }
            let config = st.metadata("optim.config").ok_or_else(|| err!(Format, "the checkpoint's optimizer has no recorded configuration"))?;
            if config != opt.config_text() {
                bail!(Format, "the checkpoint's {} was configured with {}, this one with {}", kind, config, opt.config_text());
            }
            let lr = get_f64(st, "optim.lr")?;
            let state = opt.state();
            let mut known: Vec<String> = vec!["optim.lr".into()];
            let mut slots = Vec::new();
            for s in &state.slots {
                let step_name = format!("optim.{}.step", s.name);
                if st.get(&step_name).is_none() {
                    slots.push((0, Vec::new()));
                    continue;
                }
                let step = get_u64(st, &step_name)?;
                known.push(step_name);
                let mut bufs = Vec::new();
                for b in state.buffer_names {
                    let name = format!("optim.{}.{}", s.name, b);
                    if st.get(&name).is_none() {
                        break; // SGD without momentum keeps no buffer
                    }
                    bufs.push(take(st, &name, StDtype::F32, &s.dims)?.to_f32()?);
                    known.push(name);
                }
                let required = step > 0 && opt.stepped_state_has_buffers();
                if (required || !bufs.is_empty()) && bufs.len() != state.buffer_names.len() {
                    bail!(Format, "optimizer state of {:?} is incomplete: {} of its buffers {:?}", s.name, bufs.len(), state.buffer_names);
                }
                slots.push((step, bufs));
            }
            if let Some((name, _)) = st.tensors.iter().find(|(n, _)| n.starts_with("optim.") && !known.contains(n)) {
                bail!(Format, "unexpected optimizer tensor {:?}: the checkpoint does not match the optimizer", name);
            }
            Some((lr, slots))
        }
    };
    let sched_state = match &parts.schedule {
        None => None,
        Some(s) => {
            let kind = st.metadata("schedule.type").ok_or_else(|| err!(Format, "the checkpoint holds no schedule"))?;
            if kind != schedule_name(&s.schedule) {
                bail!(Format, "the checkpoint's schedule is {}, this one is {}", kind, schedule_name(&s.schedule));
            }
            Some((get_u64(st, "schedule.last_epoch")?, get_f64(st, "schedule.base_lr")?, get_f64(st, "schedule.last_lr")?))
        }
    };
    let loader_state = match &parts.loader {
        None => None,
        Some(l) => {
            let gen = get_generator(st, "loader.rng")?;
            let order = take(st, "loader.order", StDtype::I64, &[l.len()])?.to_i64()?;
            let order: Vec<usize> = order.iter().map(|&i| usize::try_from(i).unwrap_or(usize::MAX)).collect();
            let cursor = get_u64(st, "loader.cursor")? as usize;
            DataLoader::check_restore(l.len(), &order, cursor)?;
            Some((gen, order, cursor, get_u64(st, "loader.epoch")?))
        }
    };

    // ---- commit: nothing below can fail on file contents ----
    let named = model.named_parameters();
    for ((_, t), (_, data)) in named.iter().zip(&params) {
        g.write::<f32>(*t, data)?;
    }
    g.set_generator(graph_rng);
    if let (Some(opt), Some((lr, slots))) = (parts.optimizer, opt_state) {
        opt.set_lr(lr);
        for (s, (step, bufs)) in opt.state_mut().slots.iter_mut().zip(slots) {
            s.step = step;
            s.buffers = bufs;
        }
    }
    if let (Some(s), Some((e, base, last))) = (parts.schedule, sched_state) {
        s.last_epoch = e;
        s.base_lr = base;
        s.last_lr = last;
    }
    if let (Some(l), Some((gen, order, cursor, epoch))) = (parts.loader, loader_state) {
        l.restore(gen, &order, cursor, epoch)?;
    }
    Ok(())
}
