//! Q8_0: blocks of 32 weights, `{ d: f16, qs: [i8; 32] }` (34 bytes), weight = d * q.
//!
//! GPU layout: the 32 quants of block b in words `8b..8b+8` (two `vec4<u32>`), the scale `d` as f32 bits in
//! `scales[b]`. 34-byte blocks are not 4-byte aligned, so the repacking also makes the loads aligned.

use super::Repacked;
use half::f16;

pub const BLOCK: usize = 32;
pub const BLOCK_BYTES: usize = 34;

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
    let mut words = vec![0u32; n_blocks * BLOCK / 4];
    let mut scales = Vec::with_capacity(n_blocks);
    let bytes = bytemuck::cast_slice_mut::<u32, u8>(&mut words);
    for (i, b) in data.chunks_exact(BLOCK_BYTES).enumerate() {
        scales.push(f16::from_le_bytes([b[0], b[1]]).to_f32().to_bits());
        bytes[i * BLOCK..(i + 1) * BLOCK].copy_from_slice(&b[2..]);
    }
    Repacked { words, scales }
}
