//! `wgsl/mla_attention.wgsl` (attention split over the context, which also stores the current
//! position's cache row, `wgsl/mla_cache_row.wgsl`) and `wgsl/mla_attention_combine.wgsl` (the
//! merge of the splits). From COOP_CONTEXT, where the engine runs them, the splits are
//! `mla_attention_coop`'s, on cooperative matrices.

use super::mla_attention_coop::{self as coop, mla_attention_coop};
use super::{mla_consts, mla_query_consts, Reduce, CACHE_ROW, CACHE_STORE, KV_CACHE, REDUCE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{ModelConfig, LORA_NORM_EPS};
use anyhow::Result;

const WG: u32 = 256;
/// Threads that score one cached position together.
const LANES: u32 = 32;
/// Positions per split workgroup (at least MIN_SPLIT, one per team): enough splits to fill the
/// GPU (SPLITS_AIM), splits of at most SPLIT_LONG positions, until that would take more than
/// MAX_SPLITS; beyond, MAX_SPLITS splits of up to SPLIT_MAX positions. Measured on the H200
/// (BENCHMARKS.md): 24 positions beat 16 at depth 1024, 40 beat 24 at 2048 and 72 or 48 at 4096.
const MIN_SPLIT: u32 = WG / LANES;
const SPLITS_AIM: u32 = 64;
const SPLIT_LONG: u32 = 40;
const MAX_SPLITS: u32 = 128;
const SPLIT_MAX: u32 = 256;
/// The most heads one split workgroup serves (each lane holds its share of their queries in
/// registers, 9 pairs per head at the real shape; at most the workgroup's teams, which reduce one
/// head each), in two variants of the split pass: 2 while the splits are MIN_SPLIT positions
/// (contexts up to SHORT_CONTEXT), so a short context's few positions spread over more workgroups,
/// and 4 beyond, so each cache row is read by fewer workgroups. H200 (BENCHMARKS.md), 2 against 4:
/// +1.2 % tok/s at depth 0, +1.0 % at 192, +0.6 % at 384, -0.3 % at 640, -0.8 % at 1024, -2 % at 4096.
const MAX_HEADS_SHORT: u32 = 2;
const MAX_HEADS_LONG: u32 = 4;
/// The decode positions the short-context split pass serves.
pub const SHORT_CONTEXT: usize = (SPLITS_AIM * MIN_SPLIT) as usize;
/// The first decode position the cooperative split pass serves, where the engine runs it.
pub const COOP_CONTEXT: usize = 2048;
/// The decode positions whose splits (at most 24 of MIN_SPLIT) the per-head value product merges
/// itself (`MatvecArgs::merge`) instead of a merge pass: each of its workgroups reads all of its
/// head's splits, so the L2 traffic grows 16x faster than the merge pass's. H200 (BENCHMARKS.md),
/// tok/s against the merge pass: +2.4 % at depth 0, +1.1 % at 128, even at 192, -0.8 % at 256 and
/// -3 % at 384.
pub const MERGED_CONTEXT: usize = (24 * MIN_SPLIT) as usize;
/// Threads of the merge pass, one per context float.
const COMBINE_WG: u32 = 256;
/// Context floats per merge workgroup (a subgroup's worth where subgroups are 32).
const COMBINE_DIMS: u32 = 32;
/// Splits whose loads one merging thread keeps in flight together.
const COMBINE_UNROLL: u32 = 4;

pub struct AttentionArgs<'a> {
    pub step: &'a wgpu::Buffer,
    /// Per head: the query's rope part before rotation (qk_rope floats), and q_lat (kv_lora floats).
    pub q_rope: &'a wgpu::Buffer,
    pub q_lat: &'a wgpu::Buffer,
    pub rope: &'a wgpu::Buffer,
    /// The latent cache; the split pass stores the current position's row into it.
    pub cache: &'a wgpu::Buffer,
    /// The current position's kv_a output (latent, then unroped key) and the latent's norm weight.
    pub ckv: &'a wgpu::Buffer,
    pub kv_norm: &'a wgpu::Buffer,
    /// Per head and split: max, sum, 2 pad floats, kv_lora context floats ([`partials_len`]).
    pub partials: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// Heads per split workgroup: the most, up to `max`, that divide the head count.
fn heads_per_group(n_heads: usize, max: u32) -> u32 {
    (1..=max).rev().find(|g| (n_heads as u32).is_multiple_of(*g)).unwrap_or(1)
}

/// The split length at position `pos`, a multiple of the positions a split scores at once; `coop`:
/// the cooperative split pass serves the positions from COOP_CONTEXT.
pub fn split_len(pos: usize, coop: bool) -> u32 {
    if coop && pos >= COOP_CONTEXT {
        return coop::SPLIT;
    }
    let n = pos as u32 + 1;
    let len = |splits: u32| n.div_ceil(splits).next_multiple_of(MIN_SPLIT);
    len(SPLITS_AIM).min(SPLIT_LONG).max(len(MAX_SPLITS)).min(SPLIT_MAX)
}

/// The most splits any position below `max_ctx` needs (the split passes' grid, the partials' layout).
fn splits(max_ctx: usize, coop: bool) -> u32 {
    let ctx = max_ctx as u32;
    let plain = ctx.div_ceil(MIN_SPLIT).min(MAX_SPLITS).max(ctx.div_ceil(SPLIT_MAX));
    if coop {
        plain.max(coop::splits(max_ctx))
    } else {
        plain
    }
}

/// Floats of the partials buffer for a context of `max_ctx`.
pub fn partials_len(c: &ModelConfig, max_ctx: usize, coop: bool) -> usize {
    c.n_heads * partials_head_floats(c, max_ctx, coop)
}

/// Floats between consecutive heads' partials (the merge pass's, or a merging product's, input).
pub fn partials_head_floats(c: &ModelConfig, max_ctx: usize, coop: bool) -> usize {
    splits(max_ctx, coop) as usize * (c.kv_lora_rank + 4)
}

/// Rows the latent cache of a context of `max_ctx` holds: whole cooperative splits, whose products
/// read past the context (the padding rows stay zero).
pub fn cache_rows(max_ctx: usize) -> usize {
    max_ctx.next_multiple_of(coop::SPLIT as usize)
}

/// The split pass variants, each serving its decode positions (short contexts, long ones, and with
/// `coop` the longest on cooperative matrices), and the merge pass (from MERGED_CONTEXT).
pub struct Attention {
    pub splits: Vec<Dispatch>,
    pub combine: Dispatch,
}

/// What the decode attention's passes are built for: the longest context, the cache's element type,
/// and whether the cooperative split pass serves from COOP_CONTEXT.
#[derive(Debug, Clone, Copy)]
pub struct DecodeAttention {
    pub max_ctx: usize,
    pub kv_f16: bool,
    pub coop: bool,
}

/// The decode attention's passes.
pub fn mla_attention(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    d: DecodeAttention,
    a: AttentionArgs,
) -> Result<Attention> {
    mla_attention_reducing(ctx, kc, c, d, Reduce::for_adapter(ctx), a)
}

/// [`mla_attention`] with the split pass's team reductions by `reduce` (the tests run both kinds:
/// an adapter uses one).
pub fn mla_attention_reducing(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    d: DecodeAttention,
    reduce: Reduce,
    a: AttentionArgs,
) -> Result<Attention> {
    let DecodeAttention { max_ctx, kv_f16, coop } = d;
    let (read, rw) = (Binding::Read, Binding::ReadWrite);
    let n_splits = splits(max_ctx, coop);
    // The split pass with up to `max_heads` heads per workgroup.
    let split = |kc: &mut KernelCache, max_heads: u32| -> Result<Dispatch> {
        let (reduce, reduce_consts) = reduce.source();
        let hg = heads_per_group(c.n_heads, max_heads);
        let split_consts = [
            ("WG", Const::U32(WG)),
            ("LANES", Const::U32(LANES)),
            ("HG", Const::U32(hg)),
            ("NV", Const::U32(hg)),
            ("PAIRS_PER_LANE", Const::U32((c.kv_width() as u32 / 2).div_ceil(LANES))),
            ("SPLIT_MAX", Const::U32(SPLIT_MAX)),
            ("N_SPLITS", Const::U32(n_splits)),
            ("EPS", Const::F32(LORA_NORM_EPS)),
        ];
        let consts = [mla_consts(c, kv_f16).as_slice(), &mla_query_consts(c), &split_consts, &reduce_consts].concat();
        let source = compose(
            &consts,
            &[STEP, include_str!("../../wgsl/mla_attention.wgsl"), CACHE_ROW, KV_CACHE, CACHE_STORE, REDUCE, reduce]
                .concat(),
        );
        let bindings = [Binding::Uniform, read, read, read, rw, rw, read, read];
        let kernel = kc.get(ctx, "mla_attention", source, &bindings)?;
        let bind_group = kernel.bind(ctx, &[a.step, a.q_rope, a.q_lat, a.rope, a.cache, a.partials, a.ckv, a.kv_norm]);
        // Its own splits' grid (the partials' layout may hold more, for the cooperative pass).
        Ok(Dispatch::new(kernel, bind_group, [c.n_heads as u32 / hg, splits(max_ctx, false), 1]))
    };
    let mut splits = vec![split(kc, MAX_HEADS_SHORT)?.serving(0..SHORT_CONTEXT)];
    if coop {
        splits.push(split(kc, MAX_HEADS_LONG)?.serving(SHORT_CONTEXT..COOP_CONTEXT));
        splits.push(mla_attention_coop(ctx, kc, c, n_splits, &a)?.serving(COOP_CONTEXT..usize::MAX));
    } else {
        splits.push(split(kc, MAX_HEADS_LONG)?.serving(SHORT_CONTEXT..usize::MAX));
    }
    let combine_consts = [
        ("WG", Const::U32(COMBINE_WG)),
        ("DIMS", Const::U32(COMBINE_DIMS)),
        ("N_SPLITS", Const::U32(n_splits)),
        ("KV_LORA", Const::U32(c.kv_lora_rank as u32)),
        ("UNROLL", Const::U32(COMBINE_UNROLL)),
    ];
    let source = compose(&combine_consts, &[STEP, include_str!("../../wgsl/mla_attention_combine.wgsl")].concat());
    let bindings = [Binding::Uniform, read, rw];
    let kernel = kc.get(ctx, "mla_attention_combine", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[a.step, a.partials, a.out]);
    let groups = (c.kv_lora_rank as u32).div_ceil(COMBINE_DIMS);
    let combine = Dispatch::new(kernel, bind_group, [c.n_heads as u32, groups, 1]).serving(MERGED_CONTEXT..usize::MAX);
    Ok(Attention { splits, combine })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position's splits fit the grid and the partials of its context; splits are whole
    /// rounds of positions, at most SPLIT_MAX, and the rule gives the measured lengths.
    #[test]
    fn split_lengths_fit_the_grid() {
        for max_ctx in [1usize, 7, 8, 9, 300, 513, 4096, 5121, 32_768, 33_000, 202_752] {
            for coop in [false, true] {
                let layout = splits(max_ctx, coop);
                for pos in 0..max_ctx {
                    let len = split_len(pos, coop);
                    assert!(len.is_multiple_of(MIN_SPLIT) && len <= SPLIT_MAX, "pos {pos}: split of {len}");
                    let needed = (pos as u32 + 1).div_ceil(len);
                    // The serving variant's own grid, within the partials' layout.
                    let grid = if coop && pos >= COOP_CONTEXT { coop::splits(max_ctx) } else { splits(max_ctx, false) };
                    assert!(grid <= layout, "max_ctx {max_ctx}: grid {grid} > layout {layout}");
                    assert!(needed <= grid, "pos {pos} of {max_ctx}: {needed} splits of {len} > grid {grid}");
                    // The cooperative splits' products read whole splits of rows.
                    assert!(!coop || needed as usize * len as usize <= cache_rows(max_ctx));
                }
            }
        }
        let lens: Vec<u32> = [0, 511, 512, 1024, 2048, 4096, 8192, 32_767].map(|p| split_len(p, false)).to_vec();
        assert_eq!(lens, [8, 8, 16, 24, 40, 40, 72, 256]);
        let lens: Vec<u32> = [0, 511, 512, 2047, 2048, 4096, 32_767].map(|p| split_len(p, true)).to_vec();
        assert_eq!(lens, [8, 8, 16, 32, 64, 64, 64]);
        assert_eq!([heads_per_group(20, MAX_HEADS_SHORT), heads_per_group(20, MAX_HEADS_LONG)], [2, 4]);
        assert_eq!([heads_per_group(3, MAX_HEADS_SHORT), heads_per_group(3, MAX_HEADS_LONG)], [1, 3]);
        assert_eq!(split_len(SHORT_CONTEXT - 1, false), MIN_SPLIT, "the short split pass serves splits of MIN_SPLIT");
    }
}
