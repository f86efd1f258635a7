//! `wgsl/router.wgsl`: top-k expert choice from router logits (which `matvec` computes).

use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{Gating, ModelConfig};
use anyhow::Result;

pub fn router(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    logits: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    route: &wgpu::Buffer,
) -> Result<Dispatch> {
    let consts = [
        ("N_EXP", Const::U32(c.n_experts as u32)),
        ("TOPK", Const::U32(c.n_experts_used as u32)),
        ("SOFTMAX", Const::Bool(c.gating == Gating::Softmax)),
        ("NORM_TOPK", Const::Bool(c.norm_topk)),
        ("SCALE", Const::F32(c.routed_scale)),
    ];
    let source = compose(&consts, include_str!("../../wgsl/router.wgsl"));
    let kernel = kc.get(ctx, "router", source, &[Binding::Read, Binding::Read, Binding::ReadWrite])?;
    let bind_group = kernel.bind(ctx, &[logits, bias, route]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
