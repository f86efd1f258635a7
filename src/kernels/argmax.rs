//! `wgsl/argmax.wgsl`.

use super::{REDUCE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 256;
/// Logits per thread of the first launch.
const PER: u32 = 4;

/// The two launches that write `tokens[pos + 1] = argmax(logits[..n])`.
pub fn argmax(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    n: usize,
    step: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
) -> Result<[Dispatch; 2]> {
    let groups = (n as u32).div_ceil(WG * PER);
    let group_best = ctx.storage("argmax group_best", groups as u64 * 8)?;
    let launch = |kc: &mut KernelCache, last: bool| -> Result<Dispatch> {
        let consts = [
            ("WG", Const::U32(WG)),
            ("N", Const::U32(n as u32)),
            ("PER", Const::U32(PER)),
            ("GROUPS", Const::U32(groups)),
            ("FINAL", Const::Bool(last)),
        ];
        let src = compose(&consts, &[STEP, include_str!("../../wgsl/argmax.wgsl"), REDUCE].concat());
        let kernel =
            kc.get(ctx, "argmax", src, &[Binding::Uniform, Binding::Read, Binding::ReadWrite, Binding::ReadWrite])?;
        let bind_group = kernel.bind(ctx, &[step, logits, tokens, &group_best]);
        Ok(Dispatch::new(kernel, bind_group, [if last { 1 } else { groups }, 1, 1]).labeled("argmax"))
    };
    Ok([launch(kc, false)?, launch(kc, true)?])
}
