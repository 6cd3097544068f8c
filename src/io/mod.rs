//! Files: safetensors (read and written here, no dependency), training checkpoints built on it, and
//! numeric CSV data sets.

pub mod checkpoint;
pub mod csv;
mod json;
pub mod safetensors;

pub use checkpoint::{load_checkpoint, load_weights, save_checkpoint, save_weights, TrainingParts, TrainingPartsMut};
pub use csv::{load_csv, parse_csv, CsvOptions};
pub use safetensors::{SafeTensors, StDtype, StTensor};
