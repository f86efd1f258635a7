//! glm-wgpu: GLM-4.7-Flash inference on the GPU through wgpu/WGSL.

pub mod chat;
pub mod cli;
pub mod engine;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod reference;
pub mod sampling;
pub mod server;
pub mod tokenizer;
