//! `wgsl/kv_store.wgsl`: the latent-cache rows of a prefill chunk, stored before its attention.

use super::{mla_consts, CACHE_ROW, CACHE_STORE, KV_CACHE, REDUCE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{ModelConfig, LORA_NORM_EPS};
use anyhow::Result;

const WG: u32 = 64;

pub struct KvStoreArgs<'a> {
    /// Position of the chunk's first token, and its number of tokens.
    pub step: &'a wgpu::Buffer,
    /// kv_a's output per token: latent, then unroped key.
    pub ckv: &'a wgpu::Buffer,
    pub kv_norm: &'a wgpu::Buffer,
    pub rope: &'a wgpu::Buffer,
    pub cache: &'a wgpu::Buffer,
}

/// Rows of up to `chunk` tokens (the step uniform says how many).
pub fn kv_store(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    kv_f16: bool,
    chunk: u32,
    a: KvStoreArgs,
) -> Result<Dispatch> {
    let consts =
        [mla_consts(c, kv_f16).as_slice(), &[("WG", Const::U32(WG)), ("EPS", Const::F32(LORA_NORM_EPS))]].concat();
    let source = compose(
        &consts,
        &[STEP, include_str!("../../wgsl/kv_store.wgsl"), CACHE_ROW, KV_CACHE, CACHE_STORE, REDUCE].concat(),
    );
    let bindings = [Binding::Uniform, Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite];
    let kernel = kc.get(ctx, "kv_store", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[a.step, a.ckv, a.kv_norm, a.rope, a.cache]);
    Ok(Dispatch::new(kernel, bind_group, [chunk, 1, 1]))
}
