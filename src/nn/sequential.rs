//! A chain of layers whose parameters carry PyTorch's state_dict names.

use super::Layer;
use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// Layers applied in order, as `nn.Sequential`. Each layer has a name: its position (`"0"`, `"1"`, …)
/// unless the caller gives one, so parameter names are `0.weight`, `2.bias`, or `encoder.weight`,
/// exactly as in the equivalent PyTorch module's state_dict.
#[derive(Clone, Debug, Default)]
pub struct Sequential {
    pub(super) layers: Vec<(String, Layer)>,
    pub(super) training: bool,
    /// The buffers of [`Sequential::train_step`], kept between steps.
    pub(super) step: super::step::StepState,
}

impl Sequential {
    /// An empty container, in training mode (as a new PyTorch module).
    pub fn new() -> Sequential {
        Sequential { layers: Vec::new(), training: true, step: Default::default() }
    }

    /// Appends a layer named by its position.
    pub fn push(&mut self, layer: Layer) -> &mut Sequential {
        let name = self.layers.len().to_string();
        self.layers.push((name, layer));
        self
    }

    /// Appends a layer with a name of the caller's (unique, non-empty, without '.').
    pub fn push_named(&mut self, name: &str, layer: Layer) -> Result<&mut Sequential> {
        if name.is_empty() || name.contains('.') {
            bail!(InvalidArgument, "a layer name must be non-empty and contain no '.', got {:?}", name);
        }
        if self.layers.iter().any(|(n, _)| n == name) {
            bail!(InvalidArgument, "the layer name {:?} is already used", name);
        }
        self.layers.push((name.to_string(), layer));
        Ok(self)
    }

    /// The layers with their names.
    pub fn layers(&self) -> &[(String, Layer)] {
        &self.layers
    }

    /// Every parameter with its state_dict name, in PyTorch's order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, layer) in &self.layers {
            for (suffix, t) in layer.parameters() {
                out.push((format!("{}.{}", name, suffix), t));
            }
        }
        out
    }

    /// Every parameter, in PyTorch's order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }

    /// Switches training mode (dropout active) on or off (`model.train()` / `model.eval()`).
    pub fn train(&mut self, on: bool) {
        self.training = on;
    }

    /// Eval mode (`model.eval()`).
    pub fn eval(&mut self) {
        self.training = false;
    }

    /// Whether the model is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The forward pass in the current mode, recording a graph when grad mode is on.
    ///
    /// A Linear layer followed by a Relu, Sigmoid or Tanh layer runs as one op
    /// ([`Graph::linear_act`]): the same values and gradients, without the pre-activation tensor
    /// (the output's grad_fn is then `linear_relu`, say, where PyTorch's is `ReluBackward0`).
    pub fn forward(&self, g: &mut Graph, x: Tensor) -> Result<Tensor> {
        self.run(g, x, self.training)
    }

    /// Inference: the forward pass in eval mode with no graph recorded, whatever the current mode, for
    /// deploying a trained model. The result does not require grad.
    pub fn predict(&self, g: &mut Graph, x: Tensor) -> Result<Tensor> {
        g.no_grad(|g| self.run(g, x, false))
    }

    fn run(&self, g: &mut Graph, x: Tensor, training: bool) -> Result<Tensor> {
        let mut h = x;
        let mut layers = self.layers.iter().map(|(_, layer)| layer).peekable();
        while let Some(layer) = layers.next() {
            h = match (layer, layers.peek().and_then(|next| next.activation())) {
                (Layer::Linear { weight, bias }, Some(act)) => {
                    layers.next();
                    g.linear_act(h, *weight, *bias, act)?
                }
                _ => layer.forward(g, h, training)?,
            };
        }
        Ok(h)
    }

    /// Drops the `.grad` of every parameter (`zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self, g: &mut Graph) -> Result<()> {
        for t in self.parameters() {
            g.zero_grad(t)?;
        }
        Ok(())
    }

    /// The number of scalar parameters.
    pub fn parameter_count(&self, g: &Graph) -> Result<usize> {
        self.parameters().iter().map(|&t| g.numel(t)).sum()
    }
}
