//! Layers: what a [`Sequential`](super::Sequential) is made of. A layer with parameters holds handles
//! to persistent tensors of the graph it was made in; its forward pass is ops on that graph.

use super::init::{self, FanMode, Nonlinearity};
use crate::dtype::DType;
use crate::kernels::math::Activation;
use crate::ops::Unary;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// One layer of a [`Sequential`](super::Sequential).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// y = x·Wᵀ + b with W of shape `[out, in]` (PyTorch's layout) and an optional bias `[out]`.
    Linear {
        /// `[out_features, in_features]`
        weight: Tensor,
        /// `[out_features]`, if the layer has a bias.
        bias: Option<Tensor>,
    },
    /// Looks up rows of `weight` `[num_embeddings, dim]` for int64 indices of any shape.
    Embedding {
        /// `[num_embeddings, embedding_dim]`
        weight: Tensor,
    },
    /// Normalises over the last `normalized_dims` dimensions (biased variance, as PyTorch), then scales
    /// and shifts when affine.
    LayerNorm {
        /// The scale (shape = normalized_shape), if affine.
        weight: Option<Tensor>,
        /// The shift, if affine.
        bias: Option<Tensor>,
        /// How many trailing dimensions are normalised.
        normalized_dims: usize,
        /// Added to the variance (PyTorch's default 1e-5).
        eps: f64,
    },
    /// max(x, 0)
    Relu,
    /// Leaky ReLU with a negative slope.
    LeakyRelu(f64),
    /// The logistic sigmoid.
    Sigmoid,
    /// tanh
    Tanh,
    /// GELU (exact form).
    Gelu,
    /// Zeroes elements with probability p in training mode (scaling the rest by 1/(1−p)); identity in eval.
    Dropout(f64),
    /// Flattens every dimension after the first: [N, ...] → [N, rest].
    Flatten,
}

/// A new trainable parameter: float32, requires grad, persistent (survives [`Graph::reset`]).
fn parameter(g: &mut Graph, dims: &[usize]) -> Result<Tensor> {
    let t = g.zeros(dims, DType::F32)?;
    g.set_requires_grad(t, true)?;
    g.set_persistent(t, true)?;
    Ok(t)
}

impl Layer {
    /// `nn.Linear(in, out, bias)` with PyTorch's default initialisation from the graph's generator:
    /// W ~ U(−1/√in, 1/√in) through kaiming_uniform_(a=√5), then b ~ U(−1/√in, 1/√in).
    pub fn linear(g: &mut Graph, in_features: usize, out_features: usize, bias: bool) -> Result<Layer> {
        let weight = parameter(g, &[out_features, in_features])?;
        if in_features > 0 {
            init::kaiming_uniform_(g, weight, FanMode::FanIn, Nonlinearity::LeakyRelu(5.0f64.sqrt()))?;
        }
        let bias = if bias {
            let b = parameter(g, &[out_features])?;
            let bound = if in_features > 0 { 1.0 / (in_features as f64).sqrt() } else { 0.0 };
            init::uniform_(g, b, -bound, bound)?;
            Some(b)
        } else {
            None
        };
        Ok(Layer::Linear { weight, bias })
    }

    /// `nn.Embedding(num, dim)`: weights ~ N(0, 1).
    pub fn embedding(g: &mut Graph, num_embeddings: usize, embedding_dim: usize) -> Result<Layer> {
        let weight = parameter(g, &[num_embeddings, embedding_dim])?;
        init::normal_(g, weight, 0.0, 1.0)?;
        Ok(Layer::Embedding { weight })
    }

    /// `nn.LayerNorm(normalized_shape, eps, elementwise_affine)`: weight ones, bias zeros.
    pub fn layer_norm(g: &mut Graph, normalized_shape: &[usize], eps: f64, affine: bool) -> Result<Layer> {
        if normalized_shape.is_empty() {
            bail!(InvalidArgument, "layer_norm needs a non-empty normalized_shape");
        }
        let (weight, bias) = if affine {
            let w = parameter(g, normalized_shape)?;
            init::ones_(g, w)?;
            (Some(w), Some(parameter(g, normalized_shape)?))
        } else {
            (None, None)
        };
        Ok(Layer::LayerNorm { weight, bias, normalized_dims: normalized_shape.len(), eps })
    }

    /// The layer's parameters with their state_dict suffixes (`weight`, `bias`), in PyTorch's order.
    pub fn parameters(&self) -> Vec<(&'static str, Tensor)> {
        let mut out = Vec::new();
        match self {
            Layer::Linear { weight, bias } => {
                out.push(("weight", *weight));
                out.extend(bias.map(|b| ("bias", b)));
            }
            Layer::Embedding { weight } => out.push(("weight", *weight)),
            Layer::LayerNorm { weight, bias, .. } => {
                out.extend(weight.map(|w| ("weight", w)));
                out.extend(bias.map(|b| ("bias", b)));
            }
            Layer::Relu | Layer::LeakyRelu(_) | Layer::Sigmoid | Layer::Tanh | Layer::Gelu | Layer::Dropout(_) | Layer::Flatten => {}
        }
        out
    }

    /// The activation this layer is, if a Linear layer before it can apply it in the same op
    /// ([`Graph::linear_act`]).
    pub fn activation(&self) -> Option<Activation> {
        self.unary().and_then(Unary::activation)
    }

    /// The elementwise function this layer applies, if it is an activation.
    pub(crate) fn unary(&self) -> Option<Unary> {
        match self {
            Layer::Relu => Some(Unary::Relu),
            Layer::LeakyRelu(slope) => Some(Unary::LeakyRelu(*slope)),
            Layer::Sigmoid => Some(Unary::Sigmoid),
            Layer::Tanh => Some(Unary::Tanh),
            Layer::Gelu => Some(Unary::Gelu),
            _ => None,
        }
    }

    /// The forward pass; `training` switches dropout on.
    pub fn forward(&self, g: &mut Graph, x: Tensor, training: bool) -> Result<Tensor> {
        match self {
            Layer::Linear { weight, bias } => g.linear(x, *weight, *bias),
            Layer::Embedding { weight } => {
                let dims = g.dims(x)?;
                if g.dtype(x)? != DType::I64 {
                    bail!(DType, "embedding: the input must hold int64 indices");
                }
                let flat = g.data_i64(x)?.to_vec();
                let idx = g.from_i64(&flat, &[flat.len()])?;
                let rows = g.index_select(*weight, 0, idx)?;
                let mut out = dims;
                out.push(g.shape(*weight)?.dim(1));
                g.reshape(rows, &out)
            }
            Layer::LayerNorm { weight, bias, normalized_dims, eps } => {
                let r = g.shape(x)?.rank();
                if r < *normalized_dims {
                    bail!(ShapeMismatch, "layer_norm over {} dimensions of a tensor of rank {}", normalized_dims, r);
                }
                let dims: Vec<i64> = (r - normalized_dims..r).map(|d| d as i64).collect();
                let mean = g.mean(x, &dims, true)?;
                let centred = g.sub(x, mean)?;
                let sq = g.pow(centred, 2.0)?;
                let var = g.mean(sq, &dims, true)?;
                let var = g.add_scalar(var, *eps)?;
                let std = g.sqrt(var)?;
                let mut y = g.div(centred, std)?;
                if let Some(w) = weight {
                    y = g.mul(y, *w)?;
                }
                if let Some(b) = bias {
                    y = g.add(y, *b)?;
                }
                Ok(y)
            }
            Layer::Relu | Layer::LeakyRelu(_) | Layer::Sigmoid | Layer::Tanh | Layer::Gelu => {
                g.unary(self.unary().expect("an activation layer"), x)
            }
            Layer::Dropout(p) => g.dropout(x, *p, training),
            Layer::Flatten => {
                let dims = g.dims(x)?;
                if dims.is_empty() {
                    bail!(ShapeMismatch, "flatten needs a tensor of rank 1 or more");
                }
                let rest: usize = dims[1..].iter().product();
                g.reshape(x, &[dims[0], rest])
            }
        }
    }
}
