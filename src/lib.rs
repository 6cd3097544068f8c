//! # backprop
//!
//! A neural-network training runtime with PyTorch's autograd semantics, for C, C++, Go and Rust programs
//! that train models in-process. Tensors live in a [`Graph`] arena and are named by small [`Tensor`]
//! handles; ops record nodes; [`Graph::backward`] and [`Graph::grad_of`] differentiate; [`Graph::reset`]
//! drops a training step's intermediates at once.
//!
//! ```
//! use bp::{Graph, DType};
//! let mut g = Graph::new();
//! let x = g.full(&[], 1.0, DType::F64).unwrap();
//! g.set_requires_grad(x, true).unwrap();
//! let y = g.pow(x, 3.0).unwrap();
//! let dy = g.grad_of(&[y], &[x], &[], false, true).unwrap()[0];
//! assert_eq!(g.item(dy).unwrap(), 3.0);
//! let d2y = g.grad_of(&[dy], &[x], &[], false, false).unwrap()[0];
//! assert_eq!(g.item(d2y).unwrap(), 6.0);
//! ```

#![warn(missing_docs)]

pub mod autograd;
pub mod data;
pub mod dot;
pub mod distributed;
pub mod dtype;
pub mod error;
pub mod ffi;
pub mod flat;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod nn;
pub mod optim;
pub mod ops;
pub mod rng;
pub mod shape;

pub use dtype::{DType, Float};
pub use error::{Error, ErrorKind, Result};
pub use flat::FlatParams;
pub use graph::{Graph, Tensor};
pub use kernels::denormals::{flush_denormal, set_flush_denormal};
pub use kernels::math::Activation;
pub use kernels::threads::{num_threads, set_num_threads};
pub use ops::loss::CrossEntropyOptions;
pub use ops::{Binary, OpKind, ReduceKind, Reduction, Unary};
pub use rng::Generator;
pub use shape::Shape;
