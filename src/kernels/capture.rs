//! `wgsl/capture.wgsl`.

use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 64;

pub fn capture(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    n: usize,
    offset: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (source, bindings) = {
        let consts = [("WG", Const::U32(WG)), ("N", Const::U32(n as u32)), ("OFFSET", Const::U32(offset as u32))];
        (compose(&consts, include_str!("../../wgsl/capture.wgsl")), vec![Binding::Read, Binding::ReadWrite])
    };
    let kernel = kc.get(ctx, "capture", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[src, dst]);
    Ok(Dispatch::new(kernel, bind_group, [(n as u32).div_ceil(WG), 1, 1]))
}
