//! The model: its configuration, the tensors it needs and the files they come from.

mod checkpoint;
mod config;
mod query_absorb;
mod tensors;

pub use checkpoint::{Checkpoint, HfCheckpoint, Model, TensorData};
pub use config::{Gating, ModelConfig, LORA_NORM_EPS};
pub use query_absorb::{absorb_query, absorbed_type, AbsorbedQuery};
pub use tensors::expected_tensors;
