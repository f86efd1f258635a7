//! One module per kernel, each dispatching `wgsl/<same name>.wgsl`.

pub mod argmax;
pub mod capture;
pub mod embed;
pub mod format;
pub mod input_rows;
pub mod kv_store;
pub mod matmul;
pub mod matmul_coop;
pub mod matvec;
pub mod mla_attention;
pub mod mla_attention_coop;
pub mod mla_attention_prefill;
pub mod mla_attention_prefill_coop;
pub mod moe_group;
pub mod moe_sum;
pub mod prepare_input;
pub mod random_weight;
pub mod rms_norm;
pub mod router;
pub mod stream;
pub mod team_reduce;

pub use matvec::{
    matvec, matvec_tiled, prepared_bytes, prepared_floats, router_partials_bytes, router_partials_fit, ChooseRoute,
    InputNorm, MatrixOf, MatvecArgs, Output, RouterPartials, Stacked, Tiling, PARTIAL_ROWS,
};
pub use prepare_input::prepare_input;
pub use team_reduce::Reduce;

const STEP: &str = include_str!("../../wgsl/step.wgsl");
const HALF: &str = include_str!("../../wgsl/half.wgsl");
const ROPE_ROTATE: &str = include_str!("../../wgsl/rope.wgsl");
const KV_CACHE: &str = concat!(
    include_str!("../../wgsl/kv_cache.wgsl"),
    include_str!("../../wgsl/rope.wgsl"),
    include_str!("../../wgsl/half.wgsl")
);
const REDUCE: &str = include_str!("../../wgsl/reduce.wgsl");
const INT8_INPUT: &str = include_str!("../../wgsl/int8_input.wgsl");
const CACHE_ROW: &str = include_str!("../../wgsl/mla_cache_row.wgsl");
const CACHE_STORE: &str = include_str!("../../wgsl/kv_cache_store.wgsl");
/// What every cooperative-matrix kernel starts with: the directives, which come before everything
/// else, and the 16×16 tile types (f16 operands, f32 sums).
const COOP_PRELUDE: &str = "enable f16;
enable wgpu_cooperative_matrix;
alias A16 = coop_mat16x16<f16, A>;
alias B16 = coop_mat16x16<f16, B>;
alias C32 = coop_mat16x16<f32, C>;
";

/// The latent-cache shape constants the MLA kernels share.
fn mla_consts(c: &crate::model::ModelConfig, kv_f16: bool) -> [(&'static str, crate::gpu::Const); 4] {
    use crate::gpu::Const;
    [
        ("KV_LORA", Const::U32(c.kv_lora_rank as u32)),
        ("ROPE", Const::U32(c.qk_rope as u32)),
        ("KV_W", Const::U32(c.kv_width() as u32)),
        ("KV_F16", Const::Bool(kv_f16)),
    ]
}

/// The query constant the MLA attention kernels share: the softmax scale 1 / sqrt(head), the head
/// being the nope and rope parts of the query as the model has them (before absorption).
fn mla_query_consts(c: &crate::model::ModelConfig) -> [(&'static str, crate::gpu::Const); 1] {
    [("SCALE", crate::gpu::Const::F32(1.0 / (c.qk_head() as f32).sqrt()))]
}

/// The per-step uniform (`wgsl/step.wgsl`), padded to 16 bytes: the (first) position, the tokens
/// of a prefill chunk (1 for a decode step), and a decode step's attention split length.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub pos: u32,
    pub n: u32,
    pub split: u32,
    pub pad: u32,
}

impl Step {
    /// A decode step at `pos`; `coop`: its attention splits from COOP_CONTEXT are the cooperative
    /// pass's.
    pub fn at(pos: usize, coop: bool) -> Self {
        Self { pos: pos as u32, n: 1, split: mla_attention::split_len(pos, coop), pad: 0 }
    }

    pub fn chunk(pos: usize, n: usize) -> Self {
        Self { pos: pos as u32, n: n as u32, split: 0, pad: 0 }
    }
}
