//! The non-linear 4-bit formats: a 16-entry grid (`KVALUES`) indexed by 4-bit quants in split-nibble order.
//!
//! IQ4_NL: blocks of 32 weights, `{ d: f16, qs: [u8; 16] }` (18 bytes); weight i = d · KVALUES[nibble(qs, i)].
//! GPU layout as Q4_0 (`wgsl/formats/iq4_nl.wgsl`): `qs` verbatim in `words[4b..4b + 4]`, the f16 d of blocks
//! 2p and 2p + 1 in the halves of `scales[p]`.
//!
//! IQ4_XS: super-blocks of 256 weights, `{ d: f16, scales_h: u16, scales_l: [u8; 4], qs: [u8; 128] }`
//! (136 bytes). Sub-block j (32 weights) has the 6-bit scale ls = nibble j of `scales_l` | (bits 2j..2j+2 of
//! `scales_h`) << 4; weight i of sub-block j = d · (ls − 32) · KVALUES[nibble(qs[16j..16j + 16], i)], with
//! the split-nibble order of Q4_0 (`legacy::nibble`).
//!
//! GPU layout (`wgsl/formats/iq4_xs.wgsl`): the quant bytes verbatim, `words[4c..4c + 4]` for chunk
//! (sub-block) c; per super-block s, `scales[2s]` = d | scales_h << 16 (the first 4 bytes verbatim) and
//! `scales[2s + 1]` = `scales_l`. 136 bytes per super-block, as on disk.

use super::legacy::{nibble, pack_nibbles, paired_d, qs_words};
use super::util::{f16_at, f16_bytes, nearest_int, u32_at};
use super::Repacked;

pub mod iq4_nl {
    pub const BLOCK: usize = 32;
    pub const BYTES: usize = 18;
    pub const D: usize = 0;
    pub const QS: usize = 2;
}

pub const QK_K: usize = 256;
pub const BYTES: usize = 136;
pub const D: usize = 0;
pub const SCALES_H: usize = 2;
pub const SCALES_L: usize = 4;
pub const QS: usize = 8;

/// The non-linear 4-bit grid (ggml's `kvalues_iq4nl`).
pub const KVALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// The 6-bit scale of sub-block j, 0..64 (the weight uses it minus 32).
pub fn scale(b: &[u8], j: usize) -> u8 {
    let h = u16::from_le_bytes([b[SCALES_H], b[SCALES_H + 1]]);
    ((b[SCALES_L + j / 2] >> (4 * (j % 2))) & 15) | (((h >> (2 * j)) & 3) as u8) << 4
}

pub fn dequantize_iq4_nl(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / iq4_nl::BYTES * iq4_nl::BLOCK);
    for b in data.chunks_exact(iq4_nl::BYTES) {
        let d = f16_at(b, iq4_nl::D);
        let qs = &b[iq4_nl::QS..];
        out.extend((0..iq4_nl::BLOCK).map(|i| d * KVALUES[nibble(qs, i) as usize] as f32));
    }
    out
}

pub fn repack_iq4_nl(data: &[u8]) -> Repacked {
    Repacked { words: qs_words(data, iq4_nl::BYTES, iq4_nl::QS), scales: paired_d(data, iq4_nl::BYTES, iq4_nl::D) }
}

/// ggml's `quantize_row_iq4_nl_ref` (`quantize_row_iq4_nl_impl` with one 32-weight block and ntry −1:
/// d = max / KVALUES[0], the nearest grid points, then the least-squares d for them).
pub fn quantize_iq4_nl(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / iq4_nl::BLOCK * iq4_nl::BYTES);
    for xb in values.chunks_exact(iq4_nl::BLOCK) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let mut l = [0u8; 32];
        let mut d = 0f32;
        if amax >= 1e-15 {
            let id = 1.0 / (max / KVALUES[0] as f32);
            let (mut sqx, mut sq2) = (0f32, 0f32);
            for (j, &v) in xb.iter().enumerate() {
                l[j] = best_index(id * v) as u8;
                let q = KVALUES[l[j] as usize] as f32;
                let w = v * v;
                sqx += w * q * v;
                sq2 += w * q * q;
            }
            d = if sq2 > 0.0 { sqx / sq2 } else { 0.0 };
        }
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&pack_nibbles(&l));
    }
    out
}

pub fn dequantize(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / BYTES * QK_K);
    for b in data.chunks_exact(BYTES) {
        let d = f16_at(b, D);
        for j in 0..8 {
            let dl = d * (scale(b, j) as i32 - 32) as f32;
            let qs = &b[QS + 16 * j..QS + 16 * j + 16];
            out.extend((0..32).map(|i| dl * KVALUES[nibble(qs, i) as usize] as f32));
        }
    }
    out
}

pub fn repack(data: &[u8]) -> Repacked {
    let (mut words, mut scales) = (Vec::new(), Vec::new());
    for b in data.chunks_exact(BYTES) {
        words.extend((0..32).map(|k| u32_at(b, QS + 4 * k)));
        scales.extend([u32_at(b, D), u32_at(b, SCALES_L)]);
    }
    Repacked { words, scales }
}

/// ggml's `best_index_int8`: the grid index nearest to x.
fn best_index(x: f32) -> usize {
    let x2 = x + x;
    let mut idx = 0;
    let mut step = 8;
    while step > 0 {
        let j = idx + step;
        if x2 >= (KVALUES[j - 1] as i32 + KVALUES[j] as i32) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx
}

/// ggml's `quantize_row_iq4_nl_impl` for IQ4_XS without an importance matrix (ntry 7).
pub fn quantize(values: &[f32]) -> Vec<u8> {
    const NTRY: i32 = 7;
    let v0 = KVALUES[0] as f32;
    let mut out = vec![0u8; values.len() / QK_K * BYTES];
    for (x, b) in values.chunks_exact(QK_K).zip(out.chunks_exact_mut(BYTES)) {
        let mut scales = [0f32; 8];
        let (mut max_scale, mut amax_scale) = (0f32, 0f32);
        for ib in 0..8 {
            let xb = &x[32 * ib..32 * ib + 32];
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax < 1e-15 {
                continue;
            }
            let sums = |id: f32| {
                let (mut sqx, mut sq2) = (0f32, 0f32);
                for &v in xb {
                    let q = KVALUES[best_index(id * v)] as f32;
                    let w = v * v;
                    sqx += w * q * v;
                    sq2 += w * q * q;
                }
                (sqx, sq2)
            };
            let (sqx, sq2) = sums(1.0 / (-max / v0));
            let mut d = if sq2 > 0.0 { sqx / sq2 } else { 0.0 };
            let mut best = d * sqx;
            for itry in -NTRY..=NTRY {
                let (sqx, sq2) = sums((itry as f32 + v0) / max);
                if sq2 > 0.0 && sqx * sqx > best * sq2 {
                    d = sqx / sq2;
                    best = d * sqx;
                }
            }
            scales[ib] = d;
            if d.abs() > amax_scale {
                amax_scale = d.abs();
                max_scale = d;
            }
        }
        let d = -max_scale / 32.0;
        b[D..D + 2].copy_from_slice(&f16_bytes(d));
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut scales_h = 0u16;
        for ib in 0..8 {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let lq: Vec<u8> = x[32 * ib..32 * ib + 32].iter().map(|&v| best_index(idl * v) as u8).collect();
            b[QS + 16 * ib..QS + 16 * ib + 16].copy_from_slice(&pack_nibbles(&lq));
            let l = (l + 32) as u8;
            b[SCALES_L + ib / 2] |= (l & 15) << (4 * (ib % 2));
            scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        b[SCALES_H..SCALES_H + 2].copy_from_slice(&scales_h.to_le_bytes());
    }
    out
}
