//! glm-wgpu: GLM-4.7-Flash inference on the GPU through wgpu/WGSL.

pub mod gguf;
pub mod model;
pub mod quant;
pub mod reference;
pub mod tokenizer;
pub mod gpu;
pub mod kernels;
pub mod engine;
pub mod cli;
pub mod generate;
pub mod sampling;
