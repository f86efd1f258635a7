//! `wgsl/random_weight.wgsl`: random, valid weights written straight into a format's GPU layout
//! (`bench --synthetic`), with [`word`] as the kernel's exact CPU twin.

use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::quant::k_quants::{q2k, q3k, q4k, q5k, q6k, QK_K};
use crate::quant::{legacy, q8_0, GgmlType};
use anyhow::{bail, Result};

const WG: u32 = 256;
const MAX_GROUPS_X: u32 = 65535;

/// What one word of a layout holds (`field_word` in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Bits = 0,
    /// Q4_K's and Q5_K's scale vec4s, by the word's place from `at` mod 4: d in [2^-10, 2^-8) and dmin
    /// in [2^-11, 2^-10) as f32 (the same in every vec4 of a stride), then 6-bit scales and mins as bytes.
    ScaleMins = 1,
    /// A block scale in [2^-10, 2^-8).
    F32Scale = 2,
    /// A plain f32 weight, ±[2^-7, 2^-5).
    F32Weight = 3,
    /// Two block scales in [2^-10, 2^-8) as f16 bits, one per half.
    F16Scales = 4,
}

/// The words from `at` to the end of every `stride` words are `field`; the others are random bits.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    pub stride: u32,
    pub at: u32,
    pub field: Field,
}

const BITS: Recipe = Recipe { stride: 1, at: 0, field: Field::Bits };

/// How a format's GPU layout (`quant::repack`) is filled: rows are whole blocks, the layout whole
/// groups of `group_blocks` blocks (the last one padded), each of `words_per_group` words and
/// `scales_per_group` scale words.
pub struct Layout {
    pub block_elems: usize,
    pub group_blocks: usize,
    pub words_per_group: usize,
    pub scales_per_group: usize,
    pub words: Recipe,
    pub scales: Recipe,
}

impl Layout {
    /// Groups holding `elems` weights.
    pub fn groups(&self, elems: usize) -> usize {
        (elems / self.block_elems).div_ceil(self.group_blocks)
    }
}

pub fn layout(t: GgmlType) -> Result<Layout> {
    Ok(match t {
        GgmlType::F32 => Layout {
            block_elems: 1,
            group_blocks: 1,
            words_per_group: 1,
            scales_per_group: 0,
            words: Recipe { field: Field::F32Weight, ..BITS },
            scales: BITS,
        },
        // Split-nibble quants; d (Q4_0: two blocks' per word) or d | m << 16 (Q4_1) as f16.
        GgmlType::Q4_0 | GgmlType::Q4_1 => Layout {
            block_elems: legacy::BLOCK,
            group_blocks: if t == GgmlType::Q4_0 { 2 } else { 1 },
            words_per_group: if t == GgmlType::Q4_0 { 8 } else { 4 },
            scales_per_group: 1,
            words: BITS,
            scales: Recipe { field: Field::F16Scales, ..BITS },
        },
        // Four blocks' quants, then their scales.
        GgmlType::Q8_0 => Layout {
            block_elems: q8_0::BLOCK,
            group_blocks: q8_0::GROUP,
            words_per_group: q8_0::GROUP_WORDS,
            scales_per_group: 0,
            words: Recipe {
                stride: q8_0::GROUP_WORDS as u32,
                at: q8_0::GROUP_WORDS as u32 - 4,
                field: Field::F32Scale,
            },
            scales: BITS,
        },
        // Nibble words, then the scale vec4s.
        GgmlType::Q4K => Layout {
            block_elems: QK_K,
            group_blocks: 1,
            words_per_group: q4k::GPU_WORDS,
            scales_per_group: 0,
            words: Recipe { stride: q4k::GPU_WORDS as u32, at: QK_K as u32 / 8, field: Field::ScaleMins },
            scales: BITS,
        },
        // Scale words: scale and min nibbles (any), then d and dmin as f32.
        GgmlType::Q2K => Layout {
            block_elems: QK_K,
            group_blocks: 1,
            words_per_group: QK_K / 16,
            scales_per_group: q2k::GPU_STRIDE,
            words: BITS,
            scales: Recipe { stride: q2k::GPU_STRIDE as u32, at: q2k::GPU_STRIDE as u32 - 2, field: Field::F32Scale },
        },
        // Scale words: high bits, int8 scales (any), then d as f32.
        GgmlType::Q3K => Layout {
            block_elems: QK_K,
            group_blocks: 1,
            words_per_group: QK_K / 16,
            scales_per_group: q3k::GPU_STRIDE,
            words: BITS,
            scales: Recipe { stride: q3k::GPU_STRIDE as u32, at: q3k::GPU_STRIDE as u32 - 1, field: Field::F32Scale },
        },
        // Nibble words, 5th-bit words, then the scale vec4s.
        GgmlType::Q5K => Layout {
            block_elems: QK_K,
            group_blocks: 1,
            words_per_group: q5k::GPU_WORDS,
            scales_per_group: 0,
            words: Recipe { stride: q5k::GPU_WORDS as u32, at: q5k::GPU_WORDS as u32 - 8, field: Field::ScaleMins },
            scales: BITS,
        },
        // Scale words: high bits, int8 scales, then d as f32.
        GgmlType::Q6K => Layout {
            block_elems: QK_K,
            group_blocks: 1,
            words_per_group: QK_K / 8,
            scales_per_group: q6k::GPU_STRIDE,
            words: BITS,
            scales: Recipe { stride: q6k::GPU_STRIDE as u32, at: q6k::GPU_STRIDE as u32 - 1, field: Field::F32Scale },
        },
        _ => {
            bail!("synthetic weights come in F32, Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, not {}", t.name())
        }
    })
}

fn hash(x: u32) -> u32 {
    let mut h = x;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846ca68b);
    h ^= h >> 16;
    h
}

/// A block scale in [2^-10, 2^-8), f32 bits.
fn f32_scale(h: u32) -> u32 {
    ((117 + (h & 1)) << 23) | ((h >> 1) & 0x7fffff)
}

/// A block scale in [2^-10, 2^-8), f16 bits (in the low 16 bits).
fn f16_scale(h: u32) -> u32 {
    ((5 + (h & 1)) << 10) | ((h >> 1) & 0x3ff)
}

/// Word `i` of a fill with `seed`: what the kernel writes.
pub fn word(i: u32, seed: u32, r: Recipe) -> u32 {
    let h = |i: u32| hash(i ^ hash(seed));
    let place = i % r.stride;
    let field = if place >= r.at { r.field } else { Field::Bits };
    match field {
        Field::Bits => h(i),
        // d and dmin hash from the first vec4's place, so every vec4 of the stride holds the same.
        Field::ScaleMins => match (place - r.at) % 4 {
            0 => f32_scale(h(i - (place - r.at))),
            1 => (116 << 23) | (h(i - (place - r.at) + 1) & 0x7fffff),
            _ => h(i) & 0x3f3f_3f3f,
        },
        Field::F32Scale => f32_scale(h(i)),
        Field::F16Scales => f16_scale(h(i)) | f16_scale(h(i) >> 16) << 16,
        Field::F32Weight => {
            let h = h(i);
            (h & 0x8000_0000) | ((120 + ((h >> 23) & 1)) << 23) | (h & 0x7fffff)
        }
    }
}

/// Fills the first `n` words of `out`.
pub fn random_weight(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    n: u32,
    seed: u32,
    r: Recipe,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let source = compose(&[("WG", Const::U32(WG))], include_str!("../../wgsl/random_weight.wgsl"));
    let kernel = kc.get(ctx, "random_weight", source, &[Binding::Uniform, Binding::ReadWrite])?;
    let groups = n.div_ceil(WG).max(1);
    let groups_x = groups.min(MAX_GROUPS_X);
    let params = [n, seed, r.stride, r.at, r.field as u32, groups_x, 0, 0];
    let uniform = ctx.uniform("random_weight", bytemuck::cast_slice(&params));
    let bind_group = kernel.bind(ctx, &[&uniform, out]);
    Ok(Dispatch::new(kernel, bind_group, [groups_x, groups.div_ceil(groups_x), 1]))
}
