//! `wgsl/quantize_rows.wgsl`: a prefill chunk's input rows rounded to int8 once per product input.

use super::{InputNorm, INT8_INPUT, REDUCE};
use crate::gpu::{compose, grid, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::quant::activations::Q8_BLOCK as BLOCK;
use anyhow::Result;

const WG: u32 = 64;

/// Rows of int8 inputs: quants, per-chunk (scale, sum) and a per-row scale applied after the product.
pub struct Int8Rows {
    pub xq: wgpu::Buffer,
    pub xd: wgpu::Buffer,
    pub s: wgpu::Buffer,
}

impl Int8Rows {
    /// Room for up to `rows` rows of up to `values` values in all.
    pub fn new(ctx: &GpuContext, rows: usize, values: usize) -> Result<Self> {
        Ok(Self {
            xq: ctx.storage("int8 rows", values as u64)?,
            xd: ctx.storage("int8 row scales", (values.div_ceil(BLOCK) * 8) as u64)?,
            s: ctx.storage("int8 row norms", (rows * 4) as u64)?,
        })
    }
}

/// Rounds the first `cols` values of `rows` rows of `x`, `stride` floats apart (times the norm
/// weight, with a norm), into `out`.
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    rows: u32,
    cols: u32,
    stride: u32,
    norm: Option<InputNorm>,
    x: &wgpu::Buffer,
    out: &Int8Rows,
) -> Result<Dispatch> {
    anyhow::ensure!(cols.is_multiple_of(BLOCK as u32), "int8 rows of {cols} values are not whole blocks of {BLOCK}");
    anyhow::ensure!(stride >= cols && stride.is_multiple_of(4), "int8 rows {stride} floats apart for {cols} values");
    let consts = [
        ("WG", Const::U32(WG)),
        ("CHUNK_V4", Const::U32(BLOCK as u32 / 4)),
        ("CHUNKS", Const::U32(cols / BLOCK as u32)),
        ("NORM", Const::Bool(norm.is_some())),
        ("EPS", Const::F32(norm.map_or(0.0, |n| n.eps))),
    ];
    let source = compose(&consts, &[include_str!("../../wgsl/quantize_rows.wgsl"), INT8_INPUT, REDUCE].concat());
    let rw = Binding::ReadWrite;
    let bindings = [Binding::Uniform, Binding::Read, Binding::Read, rw, rw, rw];
    let kernel = kc.get(ctx, "quantize_rows", source, &bindings)?;
    let [gx, gy] = grid(rows);
    let uniform = ctx.uniform("quantize_rows params", bytemuck::cast_slice(&[rows, gx, stride / 4, 0]));
    let gnorm = norm.map_or(x, |n| n.weight);
    let bind_group = kernel.bind(ctx, &[&uniform, x, gnorm, &out.xq, &out.xd, &out.s]);
    Ok(Dispatch::new(kernel, bind_group, [gx, gy, 1]))
}
