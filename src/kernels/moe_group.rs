//! `wgsl/moe_group.wgsl`: a prefill chunk's routed slots grouped by expert.

use super::STEP;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 256;

/// `slots` routed slots per token (an appended shared expert included) over `n_mat` experts, for
/// chunks of up to `chunk` tokens; `entries` and `slot_entry` hold `chunk × slots` words each.
pub fn moe_group(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    chunk: u32,
    slots: u32,
    n_mat: u32,
    bufs: [&wgpu::Buffer; 4],
) -> Result<Dispatch> {
    let consts = [
        ("WG", Const::U32(WG)),
        ("KS", Const::U32(slots)),
        ("N_MAT", Const::U32(n_mat)),
        ("SLOTS", Const::U32(chunk * slots)),
    ];
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/moe_group.wgsl")].concat());
    let bindings = [Binding::Uniform, Binding::Read, Binding::ReadWrite, Binding::ReadWrite];
    let kernel = kc.get(ctx, "moe_group", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &bufs);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
