//! `wgsl/mla_attention_prefill.wgsl`: causal attention of a prefill chunk, one workgroup per token
//! and group of heads (which share each cache row's load), online softmax over blocks of the cache.

use super::{mla_consts, mla_query_consts, Reduce, KV_CACHE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::ModelConfig;
use anyhow::{ensure, Result};

const WG: u32 = 256;
const LANES: u32 = 32;
const BLOCK: u32 = 32;

/// Heads per workgroup: the largest divisor of `n_heads` up to 5 (the queries of 5 heads take
/// 11.5 KB of workgroup memory; each cache row load then serves 5 heads).
fn head_group(n_heads: usize) -> u32 {
    (1..=5).rev().find(|&g| n_heads.is_multiple_of(g)).unwrap_or(1) as u32
}

pub struct PrefillAttentionArgs<'a> {
    pub step: &'a wgpu::Buffer,
    /// Per token and head: the query's rope part before rotation (qk_rope floats) and q_lat (kv_lora floats).
    pub q_rope: &'a wgpu::Buffer,
    pub q_lat: &'a wgpu::Buffer,
    pub rope: &'a wgpu::Buffer,
    /// Holds the chunk's rows already (`kv_store`).
    pub cache: &'a wgpu::Buffer,
    /// Per token and head: kv_lora context floats.
    pub out: &'a wgpu::Buffer,
}

pub fn mla_attention_prefill(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    kv_f16: bool,
    chunk: u32,
    a: PrefillAttentionArgs,
) -> Result<Dispatch> {
    ensure!(chunk <= 65535, "prefill chunks hold at most 65535 tokens");
    let (reduce, reduce_consts) = Reduce::for_adapter(ctx).source();
    let own = [
        ("WG", Const::U32(WG)),
        ("LANES", Const::U32(LANES)),
        ("NV", Const::U32(head_group(c.n_heads))),
        ("HG", Const::U32(head_group(c.n_heads))),
        ("BLOCK", Const::U32(BLOCK)),
        ("N_HEADS", Const::U32(c.n_heads as u32)),
    ];
    let consts = [mla_consts(c, kv_f16).as_slice(), &mla_query_consts(c), &own, &reduce_consts].concat();
    let source =
        compose(&consts, &[STEP, include_str!("../../wgsl/mla_attention_prefill.wgsl"), KV_CACHE, reduce].concat());
    let read = Binding::Read;
    let bindings = [Binding::Uniform, read, read, read, read, Binding::ReadWrite];
    let kernel = kc.get(ctx, "mla_attention_prefill", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[a.step, a.q_rope, a.q_lat, a.rope, a.cache, a.out]);
    Ok(Dispatch::new(kernel, bind_group, [c.n_heads as u32 / head_group(c.n_heads), chunk, 1]))
}
