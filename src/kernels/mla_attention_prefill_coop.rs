//! `wgsl/mla_attention_prefill_coop.wgsl`: the prefill's causal attention on cooperative matrices:
//! the chunk's (token, head) rows in tiles of 32 against blocks of 64 cache positions, S = Q·Kᵀ and
//! O = P·V as 16 × 16 × 16 f16 products with f32 sums, two passes (row maxima and sums, then P·V).

use super::mla_attention_prefill::PrefillAttentionArgs;
use super::{mla_consts, mla_query_consts, COOP_PRELUDE, KV_CACHE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::ModelConfig;
use anyhow::{ensure, Result};

/// Rows per workgroup; the output buffer holds whole tiles of rows.
pub const ROWS: usize = 32;

/// Whether the model's shape fits the kernel: latent columns in groups of 64 (one per pair of
/// subgroups, at most 16 subgroups) and query/key rows in steps of 32.
pub fn fits(c: &ModelConfig) -> Result<()> {
    ensure!(
        c.kv_lora_rank.is_multiple_of(64) && (256..=512).contains(&c.kv_lora_rank) && c.kv_width().is_multiple_of(32),
        "cooperative prefill attention needs a latent of 256 to 512 in steps of 64 and rows of whole 32s (has {} + {})",
        c.kv_lora_rank,
        c.qk_rope
    );
    Ok(())
}

fn source(c: &ModelConfig, kv_f16: bool) -> String {
    let own = [
        ("DVG", Const::U32(c.kv_lora_rank as u32 / 64)),
        ("DC", Const::U32(if c.kv_width().is_multiple_of(64) { 64 } else { 32 })),
        ("N_HEADS", Const::U32(c.n_heads as u32)),
    ];
    let consts = [mla_consts(c, kv_f16).as_slice(), &mla_query_consts(c), &own].concat();
    COOP_PRELUDE.to_string()
        + &compose(&consts, &[STEP, include_str!("../../wgsl/mla_attention_prefill_coop.wgsl"), KV_CACHE].concat())
}

pub fn mla_attention_prefill_coop(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    kv_f16: bool,
    chunk: u32,
    a: PrefillAttentionArgs,
) -> Result<Dispatch> {
    fits(c)?;
    let rows = chunk as usize * c.n_heads;
    ensure!(
        a.out.size() as usize >= rows.next_multiple_of(ROWS) * c.kv_lora_rank * 4,
        "the prefill attention output must hold whole tiles of {ROWS} rows"
    );
    let read = Binding::Read;
    let bindings = [Binding::Uniform, read, read, read, read, Binding::ReadWrite];
    let kernel = kc.get(ctx, "mla_attention_prefill_coop", source(c, kv_f16), &bindings)?;
    let bound = kernel.bind(ctx, &[a.step, a.q_rope, a.q_lat, a.rope, a.cache, a.out]);
    Ok(Dispatch::new(kernel, bound, [rows.div_ceil(ROWS) as u32, 1, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid for naga and SPIR-V under the GLSL450 memory model, for the real shape and the tiny
    /// fixture's (no adapter CI runs on has cooperative matrices).
    #[test]
    fn validates() {
        for c in [ModelConfig::fixture("glm-4.7-flash.config.json"), ModelConfig::fixture("glm-tiny/config.json")] {
            fits(&c).unwrap();
            for kv_f16 in [true, false] {
                let spirv = crate::gpu::native::spirv(&source(&c, kv_f16)).unwrap_or_else(|e| panic!("{e:#}"));
                assert_eq!(spirv.workgroup_size, [c.kv_lora_rank as u32, 1, 1]);
                assert!(spirv.workgroup_bytes <= 48 * 1024, "{} bytes", spirv.workgroup_bytes);
            }
        }
    }
}
