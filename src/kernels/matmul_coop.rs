//! `wgsl/matmul_coop.wgsl`: the prefill products of `matmul` on cooperative matrices (f16 × f16 →
//! f32 tiles of 16 × 16 × 16, the adapter's tensor cores or simdgroup matrices), on f32 input rows.

use super::format;
use super::matmul::{MatmulArgs, MatmulInput, Tiles};
use super::STEP;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::quant::{self, GgmlType};
use anyhow::{bail, ensure, Result};

/// Workgroups of `gm` × `gn` subgroups of 32, each owning 32 rows × 32 inputs, stepping `bk` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopTiling {
    pub gm: u32,
    pub gn: u32,
    pub bk: u32,
}

impl CoopTiling {
    /// Token and per-head tiles: 64 rows × 64 inputs.
    pub const TOKENS: Self = Self { gm: 2, gn: 2, bk: 64 };
    /// Expert tiles (about 32 entries per expert in a 512-token chunk of GLM-4.7-Flash): 128 rows ×
    /// 32 inputs, 32 columns a step to keep the gate and up tiles in 48 KiB of workgroup memory.
    pub const GROUPED: Self = Self { gm: 4, gn: 1, bk: 32 };

    /// Inputs per tile (the expert tiles' size is also `moe_group`'s tile size).
    pub fn inputs(self) -> u32 {
        32 * self.gn
    }

    pub fn rows(self) -> u32 {
        32 * self.gm
    }

    pub fn for_tiles(tiles: Tiles) -> Self {
        match tiles {
            Tiles::Grouped { .. } => Self::GROUPED,
            Tiles::Tokens | Tiles::Heads(_) => Self::TOKENS,
        }
    }
}

/// The 16 × 16 × 16 f16 → f32 configuration the kernel needs, with subgroups of 32.
pub fn supported(ctx: &GpuContext) -> Result<()> {
    let f = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
    ensure!(ctx.features.contains(f), "{} has no cooperative matrices (or f16, subgroups) in wgpu", ctx.describe());
    ensure!(ctx.fixed_subgroup_size() == Some(32), "{}: cooperative matmul needs subgroups of 32", ctx.describe());
    ensure!(
        ctx.adapter_info.backend != wgpu::Backend::Vulkan || ctx.features.contains(wgpu::Features::PASSTHROUGH_SHADERS),
        "{}: the cooperative matmul is loaded as SPIR-V through passthrough on Vulkan, which it lacks",
        ctx.describe()
    );
    let fits = ctx.coop_matrix.iter().any(|c| {
        (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
            && c.ab_type == wgpu::CooperativeScalarType::F16
            && c.cr_type == wgpu::CooperativeScalarType::F32
    });
    ensure!(fits, "{} has no 16x16x16 f16 -> f32 cooperative matrices", ctx.describe());
    Ok(())
}

/// What a product does beyond W·x (see `wgsl/matmul_coop.wgsl`).
#[derive(Debug, Clone, Copy)]
struct Variant {
    glu: bool,
    add: bool,
    grouped: u32,
    heads: u32,
    scaled: bool,
}

fn source(t: GgmlType, tiling: CoopTiling, v: Variant) -> String {
    let chunk = quant::gpu_chunk_elems(t) as u32;
    let consts = [
        ("GM", Const::U32(tiling.gm)),
        ("GN", Const::U32(tiling.gn)),
        ("BK", Const::U32(tiling.bk)),
        ("CHUNK", Const::U32(chunk)),
        ("CHUNK_V4", Const::U32(chunk / 4)),
        ("W1_LEN", Const::U32(if v.glu { tiling.rows() * (tiling.bk + 8) } else { 8 })),
        ("GLU", Const::Bool(v.glu)),
        ("ADD", Const::Bool(v.add)),
        ("GROUPED", Const::U32(v.grouped)),
        ("HEADS", Const::U32(v.heads)),
        ("SCALED", Const::Bool(v.scaled)),
    ];
    // Enable directives come before everything else.
    "enable f16;\nenable wgpu_cooperative_matrix;\n".to_string()
        + &compose(&consts, &[STEP, include_str!("../../wgsl/matmul_coop.wgsl")].concat())
        + &format::instantiate(t, "0")
        + &format::instantiate(t, "1")
}

pub fn matmul_coop(ctx: &GpuContext, kc: &mut KernelCache, a: MatmulArgs, t: CoopTiling) -> Result<Dispatch> {
    let (xf, s, x_stride, scaled) = match a.x {
        MatmulInput::F32 { x, stride } => (x, x, stride, false),
        MatmulInput::F32Scaled(r, stride) => (&r.xq, &r.s, stride, true),
        MatmulInput::Int8(_) => bail!("cooperative matmul takes f32 input rows"),
    };
    ensure!(x_stride.is_multiple_of(4), "matmul input stride {x_stride} is not a multiple of 4");
    let up = a.up.unwrap_or(a.w);
    ensure!(up.ggml_type == a.w.ggml_type && up.shape == a.w.shape, "gate and up projections differ");
    ensure!(a.max_tiles <= 65535, "{} tiles exceed one grid dimension", a.max_tiles);
    let chunk = quant::gpu_chunk_elems(a.w.ggml_type) as u32;
    let cols = a.w.row_len() as u32;
    ensure!(
        t.bk.is_multiple_of(16) && t.bk.is_multiple_of(chunk) && cols.is_multiple_of(t.bk),
        "cooperative matmul steps of {} columns do not fit rows of {cols} ({} chunks of {chunk})",
        t.bk,
        a.w.ggml_type.name()
    );
    ensure!(t.gm * t.gn == 4, "cooperative matmul tiling {t:?} is not 4 subgroups");
    let v = Variant {
        glu: a.up.is_some(),
        add: a.add,
        grouped: match a.tiles {
            Tiles::Tokens | Tiles::Heads(_) => 0,
            Tiles::Grouped { of_token: true, .. } => 1,
            Tiles::Grouped { of_token: false, .. } => 2,
        },
        heads: if let Tiles::Heads(h) = a.tiles { h } else { 0 },
        scaled,
    };
    let source = source(a.w.ggml_type, t, v);
    let read = Binding::Read;
    let bindings =
        [Binding::Uniform, Binding::Uniform, read, read, Binding::ReadWrite, read, read, read, read, read, read];
    let kernel = kc.get(ctx, "matmul_coop", source, &bindings)?;
    let rows = a.w.rows() as u32;
    let (tiles, entries) = match a.tiles {
        Tiles::Grouped { tiles, entries, .. } => (tiles, entries),
        _ => (xf, xf),
    };
    let params = [rows, a.w.chunks_per_row() as u32, a.y_stride, x_stride / 4];
    let uniform = ctx.uniform("matmul_coop params", bytemuck::cast_slice(&params));
    let bind_group = kernel
        .bind(ctx, &[&uniform, a.step, xf, s, a.y, tiles, entries, &a.w.words, &a.w.scales, &up.words, &up.scales]);
    let bytes = a.w.bytes() * if v.glu { 2 } else { 1 };
    let heads = if let Tiles::Heads(h) = a.tiles { h } else { 1 };
    Ok(Dispatch::new(kernel, bind_group, [rows.div_ceil(t.rows()), a.max_tiles, heads]).reading(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant of every format is valid WGSL for naga and becomes SPIR-V under the GLSL450
    /// memory model (the adapters CI runs on have no cooperative matrices; the kernel itself is
    /// checked at start-up where they exist).
    #[test]
    fn every_variant_validates() {
        for t in GgmlType::SUPPORTED {
            for tiling in [CoopTiling::TOKENS, CoopTiling::GROUPED] {
                for (glu, add, grouped, heads, scaled) in [
                    (false, false, 0, 0, true),
                    (false, true, 0, 0, false),
                    (false, false, 0, 4, false),
                    (true, false, 1, 0, true),
                    (false, false, 2, 0, false),
                ] {
                    let v = Variant { glu, add, grouped, heads, scaled };
                    let (words, size) = crate::gpu::native::spirv(&source(t, tiling, v))
                        .unwrap_or_else(|e| panic!("{} {v:?}: {e:#}", t.name()));
                    assert_eq!(size, [128, 1, 1]);
                    // OpMemoryModel Logical GLSL450, and no VulkanMemoryModel capability.
                    assert!(words.windows(3).any(|w| w == [3 << 16 | 14, 0, 1]), "{} {v:?}", t.name());
                    assert!(!words.windows(2).any(|w| w == [2 << 16 | 17, 5345]), "{} {v:?}", t.name());
                }
            }
        }
    }
}
