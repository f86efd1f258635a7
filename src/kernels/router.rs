//! `wgsl/router.wgsl`: top-k expert choice from router logits (which `matvec` computes), plus
//! optionally the slot of a shared expert stored as expert `n_experts`; one workgroup per token.

use super::REDUCE;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{Gating, ModelConfig};
use anyhow::{ensure, Result};

pub fn router(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    shared_slot: bool,
    tokens: u32,
    [logits, bias, route]: [&wgpu::Buffer; 3],
) -> Result<Dispatch> {
    ensure!(c.n_experts_used + shared_slot as usize <= 8, "the route buffer holds at most 8 slots");
    ensure!(c.n_experts <= 256, "the router handles at most 256 experts, not {}", c.n_experts);
    let consts = [
        ("WG", Const::U32((c.n_experts as u32).next_power_of_two().max(32))),
        ("N_EXP", Const::U32(c.n_experts as u32)),
        ("TOPK", Const::U32(c.n_experts_used as u32)),
        ("SOFTMAX", Const::Bool(c.gating == Gating::Softmax)),
        ("NORM_TOPK", Const::Bool(c.norm_topk)),
        ("SCALE", Const::F32(c.routed_scale)),
        ("SHARED_SLOT", Const::Bool(shared_slot)),
    ];
    let source = compose(&consts, &[include_str!("../../wgsl/router.wgsl"), REDUCE].concat());
    let kernel = kc.get(ctx, "router", source, &[Binding::Read, Binding::Read, Binding::ReadWrite])?;
    let bind_group = kernel.bind(ctx, &[logits, bias, route]);
    Ok(Dispatch::new(kernel, bind_group, [tokens, 1, 1]))
}
