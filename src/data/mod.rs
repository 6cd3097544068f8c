//! In-memory data sets and a seeded, shuffling mini-batch iterator.

mod dataset;
mod loader;

pub use dataset::Dataset;
pub use loader::{randperm, DataLoader};
