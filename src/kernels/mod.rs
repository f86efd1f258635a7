//! One module per kernel, each dispatching `wgsl/<same name>.wgsl`.

pub mod argmax;
pub mod capture;
pub mod embed;
pub mod format;
pub mod kv_store;
pub mod matvec;
pub mod mla_attention;
pub mod rms_norm;
pub mod router;

pub use matvec::{matvec, MatrixOf, MatvecArgs, Output};

const STEP: &str = include_str!("../../wgsl/step.wgsl");
const KV_CACHE: &str = include_str!("../../wgsl/kv_cache.wgsl");

/// The per-token uniform (`wgsl/step.wgsl`), padded to 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub pos: u32,
    pub pad: [u32; 3],
}
