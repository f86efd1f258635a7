//! `wgsl/matmul.wgsl`: prefill products of int8-format weights with a chunk's int8 input rows
//! (`quantize_rows`), each weight chunk unpacked once for a tile of inputs.

use super::format;
use super::quantize_rows::Int8Rows;
use super::team_reduce::Reduce;
use super::{INT8_INPUT, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, GpuWeight, KernelCache};
use crate::quant::activations;
use anyhow::{ensure, Result};

/// Teams of `lanes` threads, each owning `rows` output rows for a tile of `inputs` input rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulTiling {
    pub lanes: u32,
    pub teams: u32,
    pub rows: u32,
    pub inputs: u32,
    pub reduce: Reduce,
}

impl MatmulTiling {
    pub fn for_adapter(ctx: &GpuContext) -> Self {
        Self { lanes: 16, teams: 4, rows: 2, inputs: 8, reduce: Reduce::for_adapter(ctx) }
    }
}

/// Which inputs a workgroup row of tiles takes.
#[derive(Clone, Copy)]
pub enum Tiles<'a> {
    /// Tile j: token rows [j·inputs, (j + 1)·inputs) of the chunk.
    Tokens,
    /// `moe_group`'s tiles of expert entries: input row = the entry's token (`of_token`) or the entry.
    Grouped { tiles: &'a wgpu::Buffer, entries: &'a wgpu::Buffer, of_token: bool },
}

pub struct MatmulArgs<'a> {
    pub w: &'a GpuWeight,
    /// The up projection of a gate/up pair: out = silu(w x) * (up x).
    pub up: Option<&'a GpuWeight>,
    pub step: &'a wgpu::Buffer,
    pub x: &'a Int8Rows,
    pub y: &'a wgpu::Buffer,
    /// Floats between output rows.
    pub y_stride: u32,
    /// Accumulate into y (residual connections).
    pub add: bool,
    pub tiles: Tiles<'a>,
    /// Tiles the grid covers (those past the step's tokens or `moe_group`'s count exit at once).
    pub max_tiles: u32,
}

pub fn matmul(ctx: &GpuContext, kc: &mut KernelCache, a: MatmulArgs, t: MatmulTiling) -> Result<Dispatch> {
    ensure!(
        activations::takes_int8_input(a.w.ggml_type),
        "the prefill matmul takes int8 formats, not {}",
        a.w.ggml_type.name()
    );
    let up = a.up.unwrap_or(a.w);
    ensure!(up.ggml_type == a.w.ggml_type && up.shape == a.w.shape, "gate and up projections differ");
    ensure!(a.max_tiles <= 65535, "{} tiles exceed one grid dimension", a.max_tiles);
    let grouped = match a.tiles {
        Tiles::Tokens => 0,
        Tiles::Grouped { of_token: true, .. } => 1,
        Tiles::Grouped { of_token: false, .. } => 2,
    };
    let glu = a.up.is_some();
    let mut consts = vec![
        ("LANES", Const::U32(t.lanes)),
        ("TEAMS", Const::U32(t.teams)),
        ("ROWS", Const::U32(t.rows)),
        ("NT", Const::U32(t.inputs)),
        ("NV", Const::U32(t.rows * t.inputs * if glu { 2 } else { 1 })),
        ("CHUNK_V4", Const::U32(8)),
        ("GLU", Const::Bool(glu)),
        ("ADD", Const::Bool(a.add)),
        ("GROUPED", Const::U32(grouped)),
    ];
    let (reduce, reduce_consts) = t.reduce.source();
    consts.extend(reduce_consts);
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/matmul.wgsl"), INT8_INPUT, reduce].concat())
        + &format::instantiate(a.w.ggml_type, "0")
        + &format::instantiate(up.ggml_type, "1");
    let read = Binding::Read;
    let bindings =
        [Binding::Uniform, Binding::Uniform, read, read, read, Binding::ReadWrite, read, read, read, read, read, read];
    let kernel = kc.get(ctx, "matmul", source, &bindings)?;
    let rows = a.w.rows() as u32;
    let gx = rows.div_ceil(t.rows * t.teams);
    let params = [rows, a.w.chunks_per_row() as u32, a.y_stride, gx];
    let uniform = ctx.uniform("matmul params", bytemuck::cast_slice(&params));
    // Without grouping the tile buffers are never read; any buffer will do.
    let (tiles, entries) = match a.tiles {
        Tiles::Tokens => (&a.x.s, &a.x.s),
        Tiles::Grouped { tiles, entries, .. } => (tiles, entries),
    };
    let bind_group = kernel.bind(
        ctx,
        &[
            &uniform,
            a.step,
            &a.x.xq,
            &a.x.xd,
            &a.x.s,
            a.y,
            tiles,
            entries,
            &a.w.words,
            &a.w.scales,
            &up.words,
            &up.scales,
        ],
    );
    let bytes = a.w.bytes() * if glu { 2 } else { 1 };
    Ok(Dispatch::new(kernel, bind_group, [gx, a.max_tiles, 1]).reading(bytes))
}
