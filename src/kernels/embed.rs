//! `wgsl/embed.wgsl`.

use super::{format, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, GpuWeight, KernelCache};
use anyhow::Result;

const WG: u32 = 64;

pub fn embed(
    ctx: &GpuContext,
    cache: &mut KernelCache,
    table: &GpuWeight,
    tokens_per_step: u32,
    step: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
    x: &wgpu::Buffer,
) -> Result<Dispatch> {
    let chunks = table.chunks_per_row() as u32;
    let (source, bindings) = {
        let consts = [
            ("WG", Const::U32(WG)),
            ("CHUNKS", Const::U32(chunks)),
            ("CHUNK_V4", Const::U32(format::chunk_vec4s(table.ggml_type))),
        ];
        let src = compose(&consts, &(STEP.to_string() + include_str!("../../wgsl/embed.wgsl")))
            + &format::instantiate(table.ggml_type, "0");
        (src, vec![Binding::Uniform, Binding::Read, Binding::ReadWrite, Binding::Read, Binding::Read])
    };
    let kernel = cache.get(ctx, "embed", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &[step, tokens, x, &table.words, &table.scales]);
    let row_bytes = table.bytes() / table.rows() as u64;
    Ok(Dispatch::new(kernel, bind_group, [chunks.div_ceil(WG), tokens_per_step, 1])
        .reading(row_bytes * tokens_per_step as u64))
}
