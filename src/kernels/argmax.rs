//! `wgsl/argmax.wgsl`.

use super::{REDUCE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 256;

pub fn argmax(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    n: usize,
    step: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (source, bindings) = {
        let consts = [("WG", Const::U32(WG)), ("N", Const::U32(n as u32))];
        let src = compose(&consts, &[STEP, include_str!("../../wgsl/argmax.wgsl"), REDUCE].concat());
        (src, vec![Binding::Uniform, Binding::Read, Binding::ReadWrite])
    };
    let kernel = kc.get(ctx, "argmax", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[step, logits, tokens]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
