//! `wgsl/input_rows.wgsl`: a prefill product's input rows prepared once: rounded to int8, or (for
//! f32 products with a folded norm) scaled by the norm weight, with the per-row RMS scale apart.

use super::{InputNorm, INT8_INPUT, REDUCE};
use crate::gpu::{compose, grid, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::quant::activations::Q8_BLOCK as BLOCK;
use anyhow::Result;

const WG: u32 = 64;

/// Prepared input rows: int8 quants (or f32 values), per-chunk (scale, sum) of the int8 ones, and a
/// per-row scale applied after the product.
pub struct InputRows {
    pub xq: wgpu::Buffer,
    pub xd: wgpu::Buffer,
    pub s: wgpu::Buffer,
}

impl InputRows {
    /// Room for up to `rows` rows of up to `values` values in all (f32 ones included).
    pub fn new(ctx: &GpuContext, rows: usize, values: usize) -> Result<Self> {
        Ok(Self {
            xq: ctx.storage("input rows", values as u64 * 4)?,
            xd: ctx.storage("int8 row scales", (values.div_ceil(BLOCK) * 8) as u64)?,
            s: ctx.storage("int8 row norms", (rows * 4) as u64)?,
        })
    }
}

/// The first `cols` values of `rows` rows of `x`, `stride` floats apart (times the norm weight, with
/// a norm), rounded to int8 if `int8`, into `out`.
#[allow(clippy::too_many_arguments)]
pub fn input_rows(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    rows: u32,
    cols: u32,
    stride: u32,
    norm: Option<InputNorm>,
    int8: bool,
    x: &wgpu::Buffer,
    out: &InputRows,
) -> Result<Dispatch> {
    // int8 rows go by rounding block, f32 rows by vec4.
    let chunk = if int8 { BLOCK as u32 } else { 4 };
    anyhow::ensure!(cols.is_multiple_of(chunk), "input rows of {cols} values are not whole chunks of {chunk}");
    anyhow::ensure!(stride >= cols && stride.is_multiple_of(4), "input rows {stride} floats apart for {cols} values");
    let consts = [
        ("WG", Const::U32(WG)),
        ("CHUNK_V4", Const::U32(chunk / 4)),
        ("CHUNKS", Const::U32(cols / chunk)),
        ("NORM", Const::Bool(norm.is_some())),
        ("EPS", Const::F32(norm.map_or(0.0, |n| n.eps))),
        ("INT8", Const::Bool(int8)),
    ];
    let source = compose(&consts, &[include_str!("../../wgsl/input_rows.wgsl"), INT8_INPUT, REDUCE].concat());
    let rw = Binding::ReadWrite;
    let bindings = [Binding::Uniform, Binding::Read, Binding::Read, rw, rw, rw];
    let kernel = kc.get(ctx, "input_rows", source, &bindings)?;
    let [gx, gy] = grid(rows);
    let uniform = ctx.uniform("input_rows params", bytemuck::cast_slice(&[rows, gx, stride / 4, 0]));
    let gnorm = norm.map_or(x, |n| n.weight);
    let bind_group = kernel.bind(ctx, &[&uniform, x, gnorm, &out.xq, &out.xd, &out.s]);
    Ok(Dispatch::new(kernel, bind_group, [gx, gy, 1]))
}
