//! GGUF: the single-file model format written by llama.cpp's converter.
//!
//! Layout (little endian): magic "GGUF", version (2 or 3), tensor count, metadata count, metadata
//! key/values, tensor infos (name, dims in ggml `ne` order, type, offset), padding to `general.alignment`
//! (32 by default), then the tensor data.

mod reader;
mod value;
mod writer;

pub use reader::{GgufFile, TensorInfo};
pub use value::MetaValue;
pub use writer::GgufWriter;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
