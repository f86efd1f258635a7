//! ggml's 32-weight "legacy" formats with one f16 scale (and, for the `_1` kinds, an f16 min) per block.
//!
//! - Q4_0: `{ d: f16, qs: [u8; 16] }` (18 bytes); weight i = d · (nibble(qs, i) − 8).
//! - Q4_1: `{ d: f16, m: f16, qs: [u8; 16] }` (20 bytes); weight i = d · nibble(qs, i) + m.
//! - Q5_0: `{ d: f16, qh: u32, qs: [u8; 16] }` (22 bytes); weight i = d · ((nibble(qs, i) | bit i of qh << 4) − 16).
//! - Q5_1: `{ d: f16, m: f16, qh: u32, qs: [u8; 16] }` (24 bytes); weight i = d · (nibble(qs, i) | bit i of qh << 4) + m.
//!
//! `nibble(qs, i)` is the low nibble of `qs[i]` for i < 16 and the high nibble of `qs[i − 16]` after: the
//! "split nibble" order that every 4-bit GPU chunk in this crate uses (see `nibble`).
//!
//! GPU layout (`wgsl/formats/q4_0.wgsl`, `q5_0.wgsl`): block b's 16 `qs` bytes verbatim in `words[4b..4b + 4]`
//! (one `vec4<u32>`). Q4_0: `scales[b / 2]` holds the f16 bits of d for blocks 2p (low half) and 2p + 1
//! (high half), 18 bytes per block as on disk. Q5_0: `scales[3p]`, `scales[3p + 1]` are the `qh` words of
//! blocks 2p and 2p + 1 and `scales[3p + 2]` their two f16 d, 22 bytes per block as on disk. Q4_1:
//! `scales[b]` = d | m << 16 (the block's first 4 bytes), 20 bytes. Q5_1: `scales[2b]` = d | m << 16,
//! `scales[2b + 1]` = qh, 24 bytes.

use super::util::{f16_at, f16_bytes, u32_at};
use super::Repacked;

pub const BLOCK: usize = 32;

/// Byte offsets inside a block.
pub mod q4_0 {
    pub const BYTES: usize = 18;
    pub const D: usize = 0;
    pub const QS: usize = 2;
}

pub mod q4_1 {
    pub const BYTES: usize = 20;
    pub const D: usize = 0;
    pub const M: usize = 2;
    pub const QS: usize = 4;
}

pub mod q5_1 {
    pub const BYTES: usize = 24;
    pub const D: usize = 0;
    pub const M: usize = 2;
    pub const QH: usize = 4;
    pub const QS: usize = 8;
}

pub mod q5_0 {
    pub const BYTES: usize = 22;
    pub const D: usize = 0;
    pub const QH: usize = 2;
    pub const QS: usize = 6;
}

/// The 4-bit field of weight `i` (0..32) in 16 split-nibble bytes.
pub fn nibble(qs: &[u8], i: usize) -> u8 {
    (qs[i % 16] >> (4 * (i / 16))) & 15
}

/// Packs 32 values 0..16 in split-nibble order.
pub fn pack_nibbles(l: &[u8]) -> [u8; 16] {
    std::array::from_fn(|j| (l[j] & 15) | (l[j + 16] & 15) << 4)
}

pub fn dequantize_q4_0(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / q4_0::BYTES * BLOCK);
    for b in data.chunks_exact(q4_0::BYTES) {
        let d = f16_at(b, q4_0::D);
        let qs = &b[q4_0::QS..];
        out.extend((0..BLOCK).map(|i| d * (nibble(qs, i) as i32 - 8) as f32));
    }
    out
}

pub fn dequantize_q5_0(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / q5_0::BYTES * BLOCK);
    for b in data.chunks_exact(q5_0::BYTES) {
        let d = f16_at(b, q5_0::D);
        let qh = u32_at(b, q5_0::QH);
        let qs = &b[q5_0::QS..];
        out.extend((0..BLOCK).map(|i| {
            let q = nibble(qs, i) as i32 | (((qh >> i) & 1) << 4) as i32;
            d * (q - 16) as f32
        }));
    }
    out
}

pub fn dequantize_q4_1(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / q4_1::BYTES * BLOCK);
    for b in data.chunks_exact(q4_1::BYTES) {
        let (d, m) = (f16_at(b, q4_1::D), f16_at(b, q4_1::M));
        let qs = &b[q4_1::QS..];
        out.extend((0..BLOCK).map(|i| d * nibble(qs, i) as f32 + m));
    }
    out
}

pub fn dequantize_q5_1(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / q5_1::BYTES * BLOCK);
    for b in data.chunks_exact(q5_1::BYTES) {
        let (d, m) = (f16_at(b, q5_1::D), f16_at(b, q5_1::M));
        let qh = u32_at(b, q5_1::QH);
        let qs = &b[q5_1::QS..];
        out.extend((0..BLOCK).map(|i| d * (nibble(qs, i) as u32 | ((qh >> i) & 1) << 4) as f32 + m));
    }
    out
}

/// The weight of largest magnitude (the first one on ties), as ggml's reference quantizers pick it.
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// ggml's `quantize_row_q4_0_ref`: d = max / −8, q = min(15, trunc(x / d + 8.5)).
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK * q4_0::BYTES);
    for x in values.chunks_exact(BLOCK) {
        let d = signed_absmax(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let l: Vec<u8> = x.iter().map(|&v| ((v * id + 8.5) as i8).min(15) as u8).collect();
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&pack_nibbles(&l));
    }
    out
}

/// ggml's `quantize_row_q5_0_ref`: d = max / −16, q = min(31, trunc(x / d + 16.5)).
pub fn quantize_q5_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK * q5_0::BYTES);
    for x in values.chunks_exact(BLOCK) {
        let d = signed_absmax(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let l: Vec<u8> = x.iter().map(|&v| ((v * id + 16.5) as i8).min(31) as u8).collect();
        let qh = l.iter().enumerate().fold(0u32, |h, (i, &q)| h | ((q as u32 >> 4) & 1) << i);
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&pack_nibbles(&l));
    }
    out
}

/// ggml's `quantize_row_q4_1_ref` / `quantize_row_q5_1_ref`: d = (max − min) / nmax, q = trunc((x − min) / d + 0.5)
/// (clamped to 15 for Q4_1, as ggml does; Q5_1 keeps ggml's unclamped 8-bit cast).
fn quantize_min_max(values: &[f32], nmax: f32, f: impl Fn(&mut Vec<u8>, f32, f32, &[u8])) -> Vec<u8> {
    let mut out = Vec::new();
    for x in values.chunks_exact(BLOCK) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / nmax;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let l: Vec<u8> = x.iter().map(|&v| ((v - min) * id + 0.5) as u8).collect();
        f(&mut out, d, min, &l);
    }
    out
}

pub fn quantize_q4_1(values: &[f32]) -> Vec<u8> {
    quantize_min_max(values, 15.0, |out, d, m, l| {
        let l: Vec<u8> = l.iter().map(|&q| q.min(15)).collect();
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(m));
        out.extend_from_slice(&pack_nibbles(&l));
    })
}

pub fn quantize_q5_1(values: &[f32]) -> Vec<u8> {
    quantize_min_max(values, 31.0, |out, d, m, l| {
        let qh = l.iter().enumerate().fold(0u32, |h, (i, &q)| h | ((q as u32 >> 4) & 1) << i);
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(m));
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&pack_nibbles(l));
    })
}

/// The 16 quant bytes of each block as one aligned `vec4<u32>`.
pub fn qs_words(data: &[u8], bytes: usize, qs: usize) -> Vec<u32> {
    data.chunks_exact(bytes).flat_map(|b| (0..4).map(move |k| u32_at(b, qs + 4 * k))).collect()
}

pub fn d_bits(b: &[u8], at: usize) -> u32 {
    u16::from_le_bytes([b[at], b[at + 1]]) as u32
}

pub fn repack_q4_0(data: &[u8]) -> Repacked {
    Repacked { words: qs_words(data, q4_0::BYTES, q4_0::QS), scales: paired_d(data, q4_0::BYTES, q4_0::D) }
}

/// The f16 d of blocks 2p and 2p + 1 in the low and high halves of word p (Q4_0, IQ4_NL).
pub fn paired_d(data: &[u8], bytes: usize, d: usize) -> Vec<u32> {
    let blocks: Vec<&[u8]> = data.chunks_exact(bytes).collect();
    blocks.chunks(2).map(|p| p.iter().enumerate().fold(0u32, |w, (h, b)| w | d_bits(b, d) << (16 * h))).collect()
}

pub fn repack_q4_1(data: &[u8]) -> Repacked {
    let scales = data.chunks_exact(q4_1::BYTES).map(|b| u32_at(b, q4_1::D)).collect();
    Repacked { words: qs_words(data, q4_1::BYTES, q4_1::QS), scales }
}

pub fn repack_q5_1(data: &[u8]) -> Repacked {
    let scales = data.chunks_exact(q5_1::BYTES).flat_map(|b| [u32_at(b, q5_1::D), u32_at(b, q5_1::QH)]).collect();
    Repacked { words: qs_words(data, q5_1::BYTES, q5_1::QS), scales }
}

pub fn repack_q5_0(data: &[u8]) -> Repacked {
    let blocks: Vec<&[u8]> = data.chunks_exact(q5_0::BYTES).collect();
    let mut scales = Vec::with_capacity(blocks.len().div_ceil(2) * 3);
    for p in blocks.chunks(2) {
        let qh = |h: usize| p.get(h).map_or(0, |b| u32_at(b, q5_0::QH));
        scales.extend([qh(0), qh(1), p.iter().enumerate().fold(0u32, |w, (h, b)| w | d_bits(b, q5_0::D) << (16 * h))]);
    }
    Repacked { words: qs_words(data, q5_0::BYTES, q5_0::QS), scales }
}
