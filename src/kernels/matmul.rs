//! `wgsl/matmul.wgsl`: prefill products over a chunk's input rows, each weight chunk loaded once
//! for a tile of inputs: int8 rows (`input_rows`) for the formats that take them, f32 rows else.

use super::format;
use super::input_rows::InputRows;
use super::team_reduce::Reduce;
use super::STEP;
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
    /// Inputs per tile (also `moe_group`'s tile size).
    pub const INPUTS: u32 = 8;

    /// For rows of `chunks` format chunks: lanes enough for about 16 chunks each (at most 16), in
    /// workgroups of 64 threads, 3 rows × 8 inputs per team. From an H200 sweep of the whole prefill
    /// (synthetic Q4_K_M, pp512, tok/s): chunks per lane 4: 3,357, 8: 3,630, 16: 3,641, 32: 3,153;
    /// with 16, 3 rows per team: 3,752 (2 rows: 3,641; with 8 chunks per lane, 1 row: 2,698, 4 rows: 3,606).
    pub fn for_rows(ctx: &GpuContext, chunks: u32) -> Self {
        let lanes = 1 << (chunks / 16).max(1).ilog2().min(4);
        Self { lanes, teams: 64 / lanes, rows: 3, inputs: Self::INPUTS, reduce: Reduce::for_adapter(ctx) }
    }
}

/// Which inputs a workgroup row of tiles takes.
#[derive(Clone, Copy)]
pub enum Tiles<'a> {
    /// Tile j: token rows [j·inputs, (j + 1)·inputs) of the chunk.
    Tokens,
    /// Per-head matrices: head h (grid z) of token t is input and output row t·heads + h.
    Heads(u32),
    /// `moe_group`'s tiles of expert entries: input row = the entry's token (`of_token`) or the entry.
    Grouped { tiles: &'a wgpu::Buffer, entries: &'a wgpu::Buffer, of_token: bool },
}

impl<'a> Tiles<'a> {
    /// The kernels' GROUPED constant: 0 token or head rows, 1 expert tiles by token, 2 by entry.
    pub fn grouped(self) -> u32 {
        match self {
            Tiles::Tokens | Tiles::Heads(_) => 0,
            Tiles::Grouped { of_token: true, .. } => 1,
            Tiles::Grouped { of_token: false, .. } => 2,
        }
    }

    /// The kernels' HEADS constant: heads per token, 0 unless per-head.
    pub fn heads(self) -> u32 {
        if let Tiles::Heads(h) = self {
            h
        } else {
            0
        }
    }

    /// The tile list and its entries where grouped, else `other` for both (bindings never read).
    pub fn lists(self, other: &'a wgpu::Buffer) -> (&'a wgpu::Buffer, &'a wgpu::Buffer) {
        match self {
            Tiles::Grouped { tiles, entries, .. } => (tiles, entries),
            _ => (other, other),
        }
    }
}

/// The input rows.
#[derive(Clone, Copy)]
pub enum MatmulInput<'a> {
    /// Rounded by `input_rows` (the weight's format must take int8 inputs).
    Int8(&'a InputRows),
    /// f32 rows `stride` floats apart.
    F32 { x: &'a wgpu::Buffer, stride: u32 },
    /// f32 rows from `input_rows` (a folded norm: x ⊙ g, with the RMS scales applied after).
    F32Scaled(&'a InputRows, u32),
}

pub struct MatmulArgs<'a> {
    pub w: &'a GpuWeight,
    /// The up projection of a gate/up pair: out = silu(w x) * (up x).
    pub up: Option<&'a GpuWeight>,
    pub step: &'a wgpu::Buffer,
    pub x: MatmulInput<'a>,
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
    let int8 = matches!(a.x, MatmulInput::Int8(_));
    ensure!(
        !int8 || activations::takes_int8_input(a.w.ggml_type),
        "{} weights take f32 inputs, not int8 rows",
        a.w.ggml_type.name()
    );
    let up = a.up.unwrap_or(a.w);
    ensure!(up.ggml_type == a.w.ggml_type && up.shape == a.w.shape, "gate and up projections differ");
    ensure!(a.max_tiles <= 65535, "{} tiles exceed one grid dimension", a.max_tiles);
    let glu = a.up.is_some();
    let mut consts = vec![
        ("LANES", Const::U32(t.lanes)),
        ("TEAMS", Const::U32(t.teams)),
        ("ROWS", Const::U32(t.rows)),
        ("NT", Const::U32(t.inputs)),
        ("NV", Const::U32(t.rows * t.inputs * if glu { 2 } else { 1 })),
        ("CHUNK_V4", Const::U32(format::chunk_vec4s(a.w.ggml_type))),
        ("GLU", Const::Bool(glu)),
        ("ADD", Const::Bool(a.add)),
        ("GROUPED", Const::U32(a.tiles.grouped())),
        ("HEADS", Const::U32(a.tiles.heads())),
        ("INT8", Const::Bool(int8)),
        ("SCALED", Const::Bool(!matches!(a.x, MatmulInput::F32 { .. }))),
    ];
    let (reduce, reduce_consts) = t.reduce.source();
    consts.extend(reduce_consts);
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/matmul.wgsl"), reduce].concat())
        + &format::instantiate_tile(a.w.ggml_type, "0", int8)
        + &format::instantiate_tile(up.ggml_type, "1", int8);
    let read = Binding::Read;
    let bindings = [
        Binding::Uniform,
        Binding::Uniform,
        read,
        read,
        read,
        Binding::ReadWrite,
        read,
        read,
        read,
        read,
        read,
        read,
        read,
    ];
    let kernel = kc.get(ctx, "matmul", source, &bindings)?;
    let rows = a.w.rows() as u32;
    let gx = rows.div_ceil(t.rows * t.teams);
    // Bindings a variant never reads get any other read-only buffer.
    let (xq, xd, s, xf, x_stride) = match a.x {
        MatmulInput::Int8(r) => (&r.xq, &r.xd, &r.s, &r.s, 0),
        MatmulInput::F32 { x, stride } => {
            ensure!(stride.is_multiple_of(4), "matmul input stride {stride} is not a multiple of 4");
            (x, x, x, x, stride / 4)
        }
        MatmulInput::F32Scaled(r, stride) => {
            ensure!(stride.is_multiple_of(4), "matmul input stride {stride} is not a multiple of 4");
            (&r.s, &r.s, &r.s, &r.xq, stride / 4)
        }
    };
    let (tiles, entries) = a.tiles.lists(xq);
    let params = [rows, a.w.chunks_per_row() as u32, a.y_stride, x_stride];
    let uniform = ctx.uniform("matmul params", bytemuck::cast_slice(&params));
    let bind_group = kernel.bind(
        ctx,
        &[&uniform, a.step, xq, xd, s, a.y, tiles, entries, &a.w.words, &a.w.scales, &up.words, &up.scales, xf],
    );
    let bytes = a.w.bytes() * if glu { 2 } else { 1 };
    let heads = a.tiles.heads().max(1);
    Ok(Dispatch::new(kernel, bind_group, [gx, a.max_tiles, heads]).reading(bytes))
}
