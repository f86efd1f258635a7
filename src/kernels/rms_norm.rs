//! `wgsl/rms_norm.wgsl`.

use super::REDUCE;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 256;

pub fn rms_norm(
    ctx: &GpuContext,
    cache: &mut KernelCache,
    n: usize,
    eps: f32,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Dispatch> {
    let (source, bindings) = {
        let consts = [("WG", Const::U32(WG)), ("N", Const::U32(n as u32)), ("EPS", Const::F32(eps))];
        (
            compose(&consts, &(include_str!("../../wgsl/rms_norm.wgsl").to_string() + REDUCE)),
            vec![Binding::Read, Binding::Read, Binding::ReadWrite],
        )
    };
    let kernel = cache.get(ctx, "rms_norm", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[x, w, y]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
