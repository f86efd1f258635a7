//! `wgsl/matmul_coop.wgsl`: the prefill products of `matmul` on cooperative matrices (f16 × f16 →
//! f32 tiles of 16 × 16 × 16, the adapter's tensor cores or simdgroup matrices), on f32 input rows.

use super::format;
use super::matmul::{MatmulArgs, MatmulInput};
use super::{COOP_PRELUDE, STEP};
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::quant::{self, GgmlType};
use anyhow::{bail, ensure, Result};

/// Workgroups of `gm` × `gn` subgroups of 32, each owning 32 rows × 16·`sn` inputs, stepping `bk`
/// columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopTiling {
    pub gm: u32,
    pub gn: u32,
    pub sn: u32,
    pub bk: u32,
}

impl CoopTiling {
    /// The engine's tiling for every product: 64 rows × 64 inputs, 64 columns a step. From an H200
    /// sweep (`cargo bench --bench matmul`, 512-token chunk, Q4_K/Q6_K, µs per product): q_b 592
    /// (64 × 32: 569, 128 × 32 / 32 columns: 580); attn_output 1,298 (64 × 32: 1,346); expert
    /// gate+up 846 (64 × 32: 997, 128 × 32 / 32: 1,099); expert down 527 (64 × 32: 399, 128 × 32 /
    /// 32: 402). One tile size serves both expert passes (one `moe_group` list), and 64 wins their
    /// sum; the plain int8 matmul's best: 794, 2,043, 783, 490.
    pub const ENGINE: Self = Self { gm: 2, gn: 2, sn: 2, bk: 64 };

    /// Inputs per tile (for the expert passes also `moe_group`'s tile size).
    pub fn inputs(self) -> u32 {
        16 * self.sn * self.gn
    }

    pub fn rows(self) -> u32 {
        32 * self.gm
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

/// f16s of the up projection's tile (a placeholder of 16 bytes without one).
fn w1_len(t: CoopTiling, glu: bool) -> u32 {
    if glu {
        t.rows() * (t.bk + 8) / 4
    } else {
        2
    }
}

/// Threads per workgroup: 4 subgroups of 32.
const WG: u32 = 128;

fn source(t: GgmlType, tiling: CoopTiling, v: Variant) -> String {
    let chunk = quant::gpu_chunk_elems(t) as u32;
    let consts = [
        ("GM", Const::U32(tiling.gm)),
        ("GN", Const::U32(tiling.gn)),
        ("SN", Const::U32(tiling.sn)),
        ("BK", Const::U32(tiling.bk)),
        ("WL", Const::U32(tiling.rows() * tiling.bk / chunk / WG)),
        ("XL", Const::U32(tiling.inputs() * tiling.bk / 4 / WG)),
        ("CHUNK", Const::U32(chunk)),
        ("CHUNK_V4", Const::U32(chunk / 4)),
        ("W1_LEN", Const::U32(w1_len(tiling, v.glu))),
        ("GLU", Const::Bool(v.glu)),
        ("ADD", Const::Bool(v.add)),
        ("GROUPED", Const::U32(v.grouped)),
        ("HEADS", Const::U32(v.heads)),
        ("SCALED", Const::Bool(v.scaled)),
    ];
    COOP_PRELUDE.to_string()
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
    ensure!(
        t.gm * t.gn == 4
            && (1..=2).contains(&t.sn)
            && (t.rows() * t.bk / chunk).is_multiple_of(WG)
            && (t.inputs() * t.bk / 4).is_multiple_of(WG),
        "cooperative matmul tiling {t:?}: not 4 subgroups, or its tiles are not whole loads of {WG} invocations"
    );
    let v = Variant { glu: a.up.is_some(), add: a.add, grouped: a.tiles.grouped(), heads: a.tiles.heads(), scaled };
    let w1 = w1_len(t, v.glu);
    let shared = 2 * (t.rows() * (t.bk + 8) + 4 * w1 + t.inputs() * (t.bk + 8)) + 4 * (4 * 512 + 3 * t.inputs() + 4);
    ensure!(
        shared <= ctx.limits.max_compute_workgroup_storage_size,
        "cooperative matmul tiling {t:?} needs {shared} bytes of workgroup memory, more than {}",
        ctx.limits.max_compute_workgroup_storage_size
    );
    let source = source(a.w.ggml_type, t, v);
    let read = Binding::Read;
    let bindings =
        [Binding::Uniform, Binding::Uniform, read, read, Binding::ReadWrite, read, read, read, read, read, read];
    let kernel = kc.get(ctx, "matmul_coop", source, &bindings)?;
    let rows = a.w.rows() as u32;
    let (tiles, entries) = a.tiles.lists(xf);
    let params = [rows, a.w.chunks_per_row() as u32, a.y_stride, x_stride / 4];
    let uniform = ctx.uniform("matmul_coop params", bytemuck::cast_slice(&params));
    let bind_group = kernel
        .bind(ctx, &[&uniform, a.step, xf, s, a.y, tiles, entries, &a.w.words, &a.w.scales, &up.words, &up.scales]);
    let bytes = a.w.bytes() * if v.glu { 2 } else { 1 };
    let heads = a.tiles.heads().max(1);
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
            let other = [
                CoopTiling { sn: 1, ..CoopTiling::ENGINE },
                CoopTiling { gm: 4, gn: 1, sn: 2, bk: 32 },
                CoopTiling { gm: 4, gn: 1, sn: 1, bk: 32 },
            ];
            for tiling in std::iter::once(CoopTiling::ENGINE).chain(other) {
                for (glu, add, grouped, heads, scaled) in [
                    (false, false, 0, 0, true),
                    (false, true, 0, 0, false),
                    (false, false, 0, 4, false),
                    (true, false, 1, 0, true),
                    (false, false, 2, 0, false),
                ] {
                    let v = Variant { glu, add, grouped, heads, scaled };
                    let spirv = crate::gpu::native::spirv(&source(t, tiling, v))
                        .unwrap_or_else(|e| panic!("{} {v:?}: {e:#}", t.name()));
                    assert_eq!(spirv.workgroup_size, [128, 1, 1]);
                    let words = spirv.words;
                    // OpMemoryModel Logical GLSL450, and no VulkanMemoryModel capability.
                    assert!(words.windows(3).any(|w| w == [3 << 16 | 14, 0, 1]), "{} {v:?}", t.name());
                    assert!(!words.windows(2).any(|w| w == [2 << 16 | 17, 5345]), "{} {v:?}", t.name());
                }
            }
        }
    }
}
