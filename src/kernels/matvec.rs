//! `wgsl/matvec.wgsl`: matrix-vector products for dense layers, attention heads and routed experts.

use super::format;
use crate::gpu::{compose, grid, Binding, Const, Dispatch, GpuContext, GpuWeight, KernelCache};
use anyhow::{ensure, Result};

/// Threads per workgroup and rows per workgroup (each row gets `wg / rows` lanes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub wg: u32,
    pub rows: u32,
}

impl Tiling {
    /// The tiling for a matrix of `rows` rows applied to `slots` inputs. From the H200 sweep
    /// (`cargo bench --bench matvec`, BENCHMARKS.md): 64×4 is within ~2 % of the best for the large and
    /// routed matrices, while matrices that give fewer than ~1000 such workgroups are latency-bound and
    /// gain 15-40 % from twice as many workgroups of 128 threads, 2 rows each.
    pub fn for_shape(rows: u32, slots: u32) -> Tiling {
        if rows * slots < 4096 {
            Tiling { wg: 128, rows: 2 }
        } else {
            Tiling { wg: 64, rows: 4 }
        }
    }

    pub fn validate(self) -> Result<()> {
        ensure!(
            self.wg.is_power_of_two() && self.rows.is_power_of_two() && self.rows <= self.wg && self.wg <= 256,
            "matvec tiling {self:?}: workgroup and rows must be powers of two, rows ≤ workgroup ≤ 256"
        );
        Ok(())
    }
}

/// Which matrix of a 3-D weight a slot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixOf {
    /// A 2-D weight: one matrix.
    Single,
    /// Slot i uses matrix i (attention heads).
    Slot,
    /// Slot i uses the expert the router chose for it.
    Routed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Store,
    /// Accumulate into y (residual connections).
    Add,
    /// Add the route-weighted sum over the slots into y (the routed experts' down projection).
    AddRoutedSum,
}

pub struct MatvecArgs<'a> {
    pub w: &'a GpuWeight,
    /// The up projection of a gate/up pair: y = silu(w x) * (up x).
    pub up: Option<&'a GpuWeight>,
    pub matrix: MatrixOf,
    pub out: Output,
    pub slots: u32,
    /// Floats between consecutive slots' inputs and outputs.
    pub x_stride: u32,
    pub y_stride: u32,
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub route: &'a wgpu::Buffer,
}

fn source(a: &MatvecArgs, t: Tiling) -> String {
    let consts = [
        ("WG", Const::U32(t.wg)),
        ("ROWS", Const::U32(t.rows)),
        ("CHUNK_V4", Const::U32(format::chunk_vec4s(a.w.ggml_type))),
        ("MATRIX", Const::U32(a.matrix as u32)),
        ("GLU", Const::Bool(a.up.is_some())),
        ("OUT", Const::U32(a.out as u32)),
    ];
    let body = include_str!("../../wgsl/matvec.wgsl");
    let up_type = a.up.map_or(a.w.ggml_type, |u| u.ggml_type);
    compose(&consts, body) + &format::instantiate(a.w.ggml_type, "0") + &format::instantiate(up_type, "1")
}

pub fn matvec(ctx: &GpuContext, cache: &mut KernelCache, a: MatvecArgs) -> Result<Dispatch> {
    let tiling = Tiling::for_shape(a.w.rows() as u32, a.slots);
    matvec_tiled(ctx, cache, a, tiling)
}

/// [`matvec`] with an explicit tiling (for the sweeps in `benches/`).
pub fn matvec_tiled(ctx: &GpuContext, cache: &mut KernelCache, a: MatvecArgs, tiling: Tiling) -> Result<Dispatch> {
    tiling.validate()?;
    if let Some(up) = a.up {
        ensure!(
            up.ggml_type == a.w.ggml_type && up.shape == a.w.shape,
            "gate and up projections differ in type or shape ({} {:?} vs {} {:?})",
            a.w.ggml_type.name(),
            a.w.shape,
            up.ggml_type.name(),
            up.shape
        );
    }
    ensure!(
        !(a.up.is_some() && a.out == Output::AddRoutedSum),
        "a gate/up matvec cannot sum over routed slots (SiLU applies per expert)"
    );
    ensure!(a.x_stride.is_multiple_of(4), "matvec input stride {} is not a multiple of 4", a.x_stride);
    let bindings = [
        Binding::Uniform,
        Binding::Read,
        Binding::ReadWrite,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
    ];
    let kernel = cache.get(ctx, "matvec", source(&a, tiling), &bindings)?;
    let rows = a.w.rows() as u32;
    let [gx, gy] = grid(rows.div_ceil(tiling.rows));
    let params = [rows, a.w.chunks_per_row() as u32, a.x_stride / 4, a.y_stride, a.slots, gx, 0, 0];
    let uniform = ctx.uniform("matvec params", bytemuck::cast_slice(&params));
    let up = a.up.unwrap_or(a.w);
    let bind_group = kernel.bind(ctx, &[&uniform, a.x, a.y, a.route, &a.w.words, &a.w.scales, &up.words, &up.scales]);
    let gz = if a.out == Output::AddRoutedSum { 1 } else { a.slots };
    let per_matrix = a.w.bytes() / a.w.n_matrices() as u64;
    let matrices = if a.matrix == MatrixOf::Routed { a.slots as u64 } else { a.w.n_matrices() as u64 };
    let bytes = per_matrix * matrices * if a.up.is_some() { 2 } else { 1 };
    Ok(Dispatch::new(kernel, bind_group, [gx, gy, gz]).reading(bytes))
}
