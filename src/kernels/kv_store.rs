//! `wgsl/kv_store.wgsl`.

use super::STEP;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::ModelConfig;
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
    let (source, bindings) = {
        let consts = [
            ("WG", Const::U32(WG)),
            ("KV_LORA", Const::U32(c.kv_lora_rank as u32)),
            ("ROPE", Const::U32(c.qk_rope as u32)),
            ("KV_W", Const::U32(c.kv_width() as u32)),
            ("EPS", Const::F32(c.rms_eps)),
            ("KV_F16", Const::Bool(kv_f16)),
        ];
        let src = compose(&consts, &(STEP.to_string() + include_str!("../../wgsl/kv_store.wgsl")));
        (src, vec![Binding::Uniform, Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite])
    };
    let kernel = kc.get(ctx, "kv_store", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[a.step, a.ckv, a.norm, a.rope, a.cache]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
