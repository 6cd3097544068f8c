//! Layers, containers, initialisers and losses, with PyTorch's names and default behaviour.
//!
//! ```
//! use bp::nn::{Layer, Sequential};
//! let mut g = bp::Graph::new();
//! g.manual_seed(0);
//! let mut model = Sequential::new();
//! model.push(Layer::linear(&mut g, 4, 8, true).unwrap()).push(Layer::Relu).push(Layer::linear(&mut g, 8, 2, true).unwrap());
//! let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! ```

pub mod init;
mod layer;
pub mod loss;
mod sequential;
mod step;

pub use layer::Layer;
pub use sequential::Sequential;
pub use step::Loss;
