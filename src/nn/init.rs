//! Parameter initialisers with PyTorch's formulas (`torch.nn.init`), drawing from the graph's seeded
//! generator so that `manual_seed(s)` followed by the same initialisations gives PyTorch's values.

use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// Which fan Kaiming initialisation scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Preserves the variance of activations in the forward pass (PyTorch's default).
    FanIn,
    /// Preserves the variance of gradients in the backward pass.
    FanOut,
}

/// The non-linearity a gain is computed for (`torch.nn.init.calculate_gain`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Linear or identity (gain 1).
    Linear,
    /// Sigmoid (gain 1).
    Sigmoid,
    /// tanh (gain 5/3).
    Tanh,
    /// ReLU (gain √2).
    Relu,
    /// Leaky ReLU with the given negative slope (gain √(2 / (1 + slope²))).
    LeakyRelu(f64),
}

/// The recommended gain for a non-linearity, as `torch.nn.init.calculate_gain`.
pub fn calculate_gain(nl: Nonlinearity) -> f64 {
    match nl {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2.0f64.sqrt(),
        Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a.powi(2))).sqrt(),
    }
}

/// (fan_in, fan_out) of a weight of shape [out, in, *kernel], as `_calculate_fan_in_and_fan_out`.
pub fn fan_in_and_fan_out(dims: &[usize]) -> Result<(usize, usize)> {
    if dims.len() < 2 {
        bail!(ShapeMismatch, "fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (shape {:?})", dims);
    }
    let receptive: usize = dims[2..].iter().product();
    Ok((dims[1] * receptive, dims[0] * receptive))
}

/// Overwrites `t` with samples uniform on [low, high) (`uniform_`).
pub fn uniform_(g: &mut Graph, t: Tensor, low: f64, high: f64) -> Result<()> {
    let (dims, dt) = (g.dims(t)?, g.dtype(t)?);
    let tmp = g.rand(&dims, low, high, dt)?;
    copy_and_free(g, tmp, t)
}

/// Overwrites `t` with normal samples (`normal_`).
pub fn normal_(g: &mut Graph, t: Tensor, mean: f64, std: f64) -> Result<()> {
    let (dims, dt) = (g.dims(t)?, g.dtype(t)?);
    let tmp = g.randn(&dims, mean, std, dt)?;
    copy_and_free(g, tmp, t)
}

/// Overwrites `t` with `value` (`constant_`).
pub fn constant_(g: &mut Graph, t: Tensor, value: f64) -> Result<()> {
    let n = g.numel(t)?;
    g.write_f64(t, &vec![value; n])
}

/// Overwrites `t` with zeros.
pub fn zeros_(g: &mut Graph, t: Tensor) -> Result<()> {
    constant_(g, t, 0.0)
}

/// Overwrites `t` with ones.
pub fn ones_(g: &mut Graph, t: Tensor) -> Result<()> {
    constant_(g, t, 1.0)
}

/// Glorot/Xavier uniform: U(−a, a) with a = gain·√(6 / (fan_in + fan_out)).
pub fn xavier_uniform_(g: &mut Graph, t: Tensor, gain: f64) -> Result<()> {
    let (fi, fo) = fan_in_and_fan_out(&g.dims(t)?)?;
    let std = gain * (2.0 / (fi + fo) as f64).sqrt();
    let a = 3.0f64.sqrt() * std;
    uniform_(g, t, -a, a)
}

/// Glorot/Xavier normal: N(0, std²) with std = gain·√(2 / (fan_in + fan_out)).
pub fn xavier_normal_(g: &mut Graph, t: Tensor, gain: f64) -> Result<()> {
    let (fi, fo) = fan_in_and_fan_out(&g.dims(t)?)?;
    let std = gain * (2.0 / (fi + fo) as f64).sqrt();
    normal_(g, t, 0.0, std)
}

fn kaiming_std(g: &Graph, t: Tensor, mode: FanMode, nl: Nonlinearity) -> Result<f64> {
    let (fi, fo) = fan_in_and_fan_out(&g.dims(t)?)?;
    let fan = match mode {
        FanMode::FanIn => fi,
        FanMode::FanOut => fo,
    };
    if fan == 0 {
        bail!(InvalidArgument, "Kaiming initialisation of a tensor with a zero fan (shape {:?})", g.dims(t)?);
    }
    Ok(calculate_gain(nl) / (fan as f64).sqrt())
}

/// He/Kaiming uniform: U(−b, b) with b = gain·√(3 / fan).
pub fn kaiming_uniform_(g: &mut Graph, t: Tensor, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    let bound = 3.0f64.sqrt() * kaiming_std(g, t, mode, nl)?;
    uniform_(g, t, -bound, bound)
}

/// He/Kaiming normal: N(0, std²) with std = gain / √fan.
pub fn kaiming_normal_(g: &mut Graph, t: Tensor, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    let std = kaiming_std(g, t, mode, nl)?;
    normal_(g, t, 0.0, std)
}

fn copy_and_free(g: &mut Graph, from: Tensor, to: Tensor) -> Result<()> {
    // Through f64: exact for both float types.
    let v = g.to_vec_f64(from)?;
    g.free(from)?;
    g.write_f64(to, &v)
}
