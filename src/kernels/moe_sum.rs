//! `wgsl/moe_sum.wgsl`: a prefill chunk's expert outputs, route-weighted, added into the residual.

use super::STEP;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 64;

/// Buffers: step, route, slot_entry, per-entry outputs, x.
pub fn moe_sum(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    hidden: u32,
    chunk: u32,
    slots: u32,
    bufs: [&wgpu::Buffer; 5],
) -> Result<Dispatch> {
    let h4 = hidden / 4;
    let consts = [("WG", Const::U32(WG)), ("H4", Const::U32(h4)), ("KS", Const::U32(slots))];
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/moe_sum.wgsl")].concat());
    let read = Binding::Read;
    let kernel = kc.get(ctx, "moe_sum", source, &[Binding::Uniform, read, read, read, Binding::ReadWrite])?;
    let bind_group = kernel.bind(ctx, &bufs);
    Ok(Dispatch::new(kernel, bind_group, [h4.div_ceil(WG), chunk, 1]))
}
