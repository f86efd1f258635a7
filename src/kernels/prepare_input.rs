//! `wgsl/prepare_input.wgsl`: an input vector normalised and rounded to int8 once, for a product
//! over it as a prepared input (`MatvecArgs::prepared`) instead of one that rounds it in each of its
//! workgroups.

use super::matvec::{prepared_bytes, PREP_CHUNK, PREP_WORDS};
use super::{InputNorm, INT8_INPUT, REDUCE};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::{ensure, Result};

const WG: u32 = 64;

/// `x` (`n` values, whole 32-value chunks) times the norm's weights, rounded to int8 by 32 values,
/// and the norm's 1 / rms, into `out` ([`prepared_bytes`] of `n`).
pub fn prepare_input(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    n: usize,
    norm: InputNorm,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    ensure!(n.is_multiple_of(PREP_CHUNK), "a prepared input is whole chunks of {PREP_CHUNK}, not {n} values");
    ensure!(out.size() >= prepared_bytes(n), "prepared input buffer of {} bytes for {n} values", out.size());
    let consts = [
        ("WG", Const::U32(WG)),
        ("CHUNKS", Const::U32((n / PREP_CHUNK) as u32)),
        // int8_input.wgsl's chunk of 32 values.
        ("CHUNK_V4", Const::U32(8)),
        ("PREP_WORDS", Const::U32(PREP_WORDS as u32)),
        ("EPS", Const::F32(norm.eps)),
    ];
    let source = compose(&consts, &[include_str!("../../wgsl/prepare_input.wgsl"), INT8_INPUT, REDUCE].concat());
    let kernel = kc.get(ctx, "prepare_input", source, &[Binding::Read, Binding::Read, Binding::ReadWrite])?;
    let bind_group = kernel.bind(ctx, &[x, norm.weight, out]);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
