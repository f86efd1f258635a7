//! Q8_0: blocks of 32 weights, `{ d: f16, qs: [i8; 32] }` (34 bytes), weight = d * q.
//!
//! GPU layout: groups of four blocks, 36 words each: the 32 quants of block 4g + k in words
//! `36g + 8k .. 36g + 8k + 8` (two `vec4<u32>`), then the four scales `d` as f32 bits (one `vec4`) in words
//! `36g + 32 ..`; the last group is padded with zero blocks, and there are no `scales`. 34-byte blocks are
//! not 4-byte aligned, so the repacking also makes the loads aligned; the scales sit among the quants because
//! loading them from a region of their own cost 6 % of a Q8_0 step on the H200 (BENCHMARKS.md).

use super::Repacked;
use half::f16;

pub const BLOCK: usize = 32;
pub const BLOCK_BYTES: usize = 34;
/// Blocks per GPU group, and the group's words.
pub const GROUP: usize = 4;
pub const GROUP_WORDS: usize = 36;

pub fn dequantize(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / BLOCK_BYTES * BLOCK);
    for b in data.chunks_exact(BLOCK_BYTES) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        out.extend(b[2..].iter().map(|&q| d * q as i8 as f32));
    }
    out
}

/// ggml's reference quantizer (`quantize_row_q8_0_ref`): d = amax / 127, q = round(x / d).
pub fn quantize(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK * BLOCK_BYTES);
    for x in values.chunks_exact(BLOCK) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

pub fn repack(data: &[u8]) -> Repacked {
    let n_blocks = data.len() / BLOCK_BYTES;
    let mut words = vec![0u32; n_blocks.div_ceil(GROUP) * GROUP_WORDS];
    for (i, b) in data.chunks_exact(BLOCK_BYTES).enumerate() {
        let (group, k) = (&mut words[i / GROUP * GROUP_WORDS..][..GROUP_WORDS], i % GROUP);
        for (w, q) in group[8 * k..8 * k + 8].iter_mut().zip(b[2..].chunks_exact(4)) {
            *w = u32::from_le_bytes(q.try_into().unwrap());
        }
        group[32 + k] = f16::from_le_bytes([b[0], b[1]]).to_f32().to_bits();
    }
    Repacked { words, scales: Vec::new() }
}
