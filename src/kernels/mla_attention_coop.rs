//! `wgsl/mla_attention_coop.wgsl`: the decode attention's split pass on cooperative matrices, all
//! heads of a split of `SPLIT` positions in one workgroup, S = Q·Kᵀ and O = P·V as 16 × 16 × 16 f16
//! products with f32 sums, the split's cache rows loaded into registers at once and staged through
//! workgroup memory. It replaces the plain
//! split pass past `mla_attention::SHORT_CONTEXT`; the merge pass is the same.

use super::mla_attention::AttentionArgs;
use super::{mla_consts, mla_query_consts, CACHE_ROW, COOP_PRELUDE, HALF, REDUCE, ROPE_ROTATE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{ModelConfig, LORA_NORM_EPS};
use anyhow::{ensure, Result};

/// Cache positions per split workgroup.
pub const SPLIT: u32 = 64;
/// Query rows of the products: the heads, padded.
pub const ROWS: usize = 32;

/// Whether the model's shape and cache fit the kernel: an f16 cache, at most `ROWS` heads, a latent
/// of 64 to 512 columns in a power of two of 64s (one subgroup per 64), rows of whole 16s.
pub fn fits(c: &ModelConfig, kv_f16: bool) -> Result<()> {
    ensure!(kv_f16, "the cooperative decode attention reads an f16 cache (this one is f32)");
    let groups = c.kv_lora_rank / 64;
    ensure!(
        c.n_heads <= ROWS
            && c.kv_lora_rank.is_multiple_of(64)
            && groups.is_power_of_two()
            && groups <= 8
            && c.qk_rope.is_multiple_of(4)
            && c.kv_width().is_multiple_of(16),
        "cooperative decode attention needs at most {ROWS} heads, a latent of 64 to 512 in a power of two of 64s, \
         rows of whole 16s and a rope part of whole 4s (has {} heads, {} + {})",
        c.n_heads,
        c.kv_lora_rank,
        c.qk_rope
    );
    Ok(())
}

/// Splits of a context of `max_ctx` positions.
pub fn splits(max_ctx: usize) -> u32 {
    (max_ctx as u32).div_ceil(SPLIT)
}

/// Columns of one staged chunk of the rows: the most, in 16s up to 64, that divide a row. H200,
/// depth 4096 (BENCHMARKS.md): 64 columns (9 chunks of the 576-column row) 250.9 tok/s, 96 246.6,
/// 144 242.4, 48 240.5, 32 241.6.
fn chunk_columns(c: &ModelConfig) -> u32 {
    let w = c.kv_width() as u32;
    (1..=4).rev().map(|m| 16 * m).find(|dc| w.is_multiple_of(*dc)).unwrap_or(16)
}

fn source(c: &ModelConfig, n_splits: u32) -> String {
    let groups = c.kv_lora_rank as u32 / 64;
    let (wg, dc) = (32 * groups, chunk_columns(c));
    let own = [
        ("DVG", Const::U32(groups)),
        ("N_HEADS", Const::U32(c.n_heads as u32)),
        ("N_SPLITS", Const::U32(n_splits)),
        ("EPS", Const::F32(LORA_NORM_EPS)),
        ("ROUNDS", Const::U32(8 / groups)),
        ("NC", Const::U32(c.kv_width() as u32 / dc)),
        ("DC", Const::U32(dc)),
        ("KC4", Const::U32((SPLIT * dc / 8).div_ceil(wg))),
        ("QC4", Const::U32((c.n_heads as u32 * dc / 4).div_ceil(wg))),
    ];
    let consts = [mla_consts(c, true).as_slice(), &mla_query_consts(c), &own].concat();
    let kernel = include_str!("../../wgsl/mla_attention_coop.wgsl");
    COOP_PRELUDE.to_string() + &compose(&consts, &[STEP, kernel, CACHE_ROW, ROPE_ROTATE, HALF, REDUCE].concat())
}

/// The split pass over a grid of `n_splits` splits (the merge pass's partials layout, which can
/// hold more than this pass's splits: at a context of 4,161 its 66 splits ran faster in a grid of the
/// layout's 128 than in one of 66, 248.0 against 244.4 tok/s on the H200, for a reason not
/// established); the cache must hold whole splits of rows (`mla_attention::cache_rows`).
pub fn mla_attention_coop(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    n_splits: u32,
    a: &AttentionArgs,
) -> Result<Dispatch> {
    fits(c, true)?;
    let (read, rw) = (Binding::Read, Binding::ReadWrite);
    let bindings = [Binding::Uniform, read, read, read, rw, rw, read, read];
    let kernel = kc.get(ctx, "mla_attention_coop", source(c, n_splits), &bindings)?;
    let bound = kernel.bind(ctx, &[a.step, a.q_rope, a.q_lat, a.rope, a.cache, a.partials, a.ckv, a.kv_norm]);
    Ok(Dispatch::new(kernel, bound, [n_splits, 1, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid for naga and SPIR-V, for the real shape and the tiny fixture's (no adapter CI runs on
    /// has cooperative matrices).
    #[test]
    fn validates() {
        for c in [ModelConfig::fixture("glm-4.7-flash.config.json"), ModelConfig::fixture("glm-tiny/config.json")] {
            fits(&c, true).unwrap();
            assert!(fits(&c, false).is_err());
            let spirv = crate::gpu::native::spirv(&source(&c, 7)).unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(spirv.workgroup_size, [32 * c.kv_lora_rank as u32 / 64, 1, 1]);
            // Within the H200's 48 KB (its Vulkan limit; Apple GPUs have 32 KB, but wgpu offers
            // Metal no 16 × 16 f16 cooperative matrices).
            assert!(spirv.workgroup_bytes <= 48 * 1024, "{} bytes", spirv.workgroup_bytes);
        }
    }
}
