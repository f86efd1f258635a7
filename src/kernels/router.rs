//! `wgsl/router.wgsl`.

use super::format;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, GpuWeight, KernelCache};
use crate::model::{Gating, ModelConfig};
use anyhow::Result;

const WG: u32 = 64;

pub fn router(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    gate: &GpuWeight,
    bias: &wgpu::Buffer,
    x: &wgpu::Buffer,
    route: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (source, bindings) = {
        let consts = [
            ("WG", Const::U32(WG)),
            ("N_EXP", Const::U32(c.n_experts as u32)),
            ("TOPK", Const::U32(c.n_experts_used as u32)),
            ("CHUNKS", Const::U32(gate.chunks_per_row() as u32)),
            ("CHUNK_V4", Const::U32(format::chunk_vec4s(gate.ggml_type))),
            ("SOFTMAX", Const::Bool(c.gating == Gating::Softmax)),
            ("NORM_TOPK", Const::Bool(c.norm_topk)),
            ("SCALE", Const::F32(c.routed_scale)),
        ];
        let src = compose(&consts, include_str!("../../wgsl/router.wgsl")) + &format::instantiate(gate.ggml_type, "0");
        (src, vec![Binding::Read, Binding::Read, Binding::ReadWrite, Binding::Read, Binding::Read])
    };
    let kernel = kc.get(ctx, "router", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[x, bias, route, &gate.words, &gate.scales]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]).reading(gate.bytes()))
}
