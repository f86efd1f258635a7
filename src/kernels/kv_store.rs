//! `wgsl/kv_store.wgsl`.

use super::{mla_consts, REDUCE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{ModelConfig, LORA_NORM_EPS};
use anyhow::Result;

const WG: u32 = 64;

pub struct KvStoreArgs<'a> {
    pub step: &'a wgpu::Buffer,
    pub ckv: &'a wgpu::Buffer,
    pub norm: &'a wgpu::Buffer,
    pub rope: &'a wgpu::Buffer,
    pub cache: &'a wgpu::Buffer,
}

pub fn kv_store(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    kv_f16: bool,
    a: KvStoreArgs,
) -> Result<Dispatch> {
    let consts =
        [mla_consts(c, kv_f16).as_slice(), &[("WG", Const::U32(WG)), ("EPS", Const::F32(LORA_NORM_EPS))]].concat();
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/kv_store.wgsl"), REDUCE].concat());
    let bindings = [Binding::Uniform, Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite];
    let kernel = kc.get(ctx, "kv_store", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[a.step, a.ckv, a.norm, a.rope, a.cache]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
