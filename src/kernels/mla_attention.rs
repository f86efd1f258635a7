//! `wgsl/mla_attention.wgsl`.

use super::{mla_consts, KV_CACHE, REDUCE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::ModelConfig;
use anyhow::Result;

const WG: u32 = 64;

pub struct AttentionArgs<'a> {
    pub step: &'a wgpu::Buffer,
    pub q: &'a wgpu::Buffer,
    pub q_lat: &'a wgpu::Buffer,
    pub rope: &'a wgpu::Buffer,
    pub cache: &'a wgpu::Buffer,
    pub scores: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

pub fn mla_attention(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    max_ctx: usize,
    kv_f16: bool,
    a: AttentionArgs,
) -> Result<Dispatch> {
    let shape = [
        ("WG", Const::U32(WG)),
        ("NOPE", Const::U32(c.qk_nope as u32)),
        ("QK", Const::U32(c.qk_head() as u32)),
        ("MAX_CTX", Const::U32(max_ctx as u32)),
        ("SCALE", Const::F32(1.0 / (c.qk_head() as f32).sqrt())),
    ];
    let consts = [mla_consts(c, kv_f16).as_slice(), &shape].concat();
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/mla_attention.wgsl"), KV_CACHE, REDUCE].concat());
    let read = Binding::Read;
    let bindings = [Binding::Uniform, read, read, read, read, Binding::ReadWrite, Binding::ReadWrite];
    let kernel = kc.get(ctx, "mla_attention", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[a.step, a.q, a.q_lat, a.rope, a.cache, a.scores, a.out]);
    Ok(Dispatch::new(kernel, bind_group, [c.n_heads as u32, 1, 1]))
}
