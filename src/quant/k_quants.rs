//! ggml's K-quants: super-blocks of 256 weights with per-sub-block scales (QK_K = 256).
//!
//! On-disk layouts (`block_q*_K` in ggml-common.h), byte offsets in the `q*k` modules below:
//!
//! - Q2_K (84 bytes): `scales[16]` (low nibble: 4-bit scale, high nibble: 4-bit min, one per 16 weights),
//!   `qs[64]` (2-bit quants), `d: f16`, `dmin: f16`. Weight = d·sc·q − dmin·m.
//! - Q3_K (110 bytes): `hmask[32]` (high bit of the 3-bit quant), `qs[64]` (low 2 bits), `scales[12]` (16
//!   6-bit scales, biased by 32), `d: f16`. Weight = d·(sc − 32)·(q − 4), q = low | high << 2.
//! - Q4_K (144 bytes): `d: f16`, `dmin: f16`, `scales[12]` (8 6-bit scales and 8 6-bit mins, one per 32
//!   weights, packed as `get_scale_min_k4`), `qs[128]` (4-bit quants). Weight = d·sc·q − dmin·m.
//! - Q5_K (176 bytes): as Q4_K plus `qh[32]` (5th bit) before `qs`.
//! - Q6_K (210 bytes): `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales: [i8; 16]` (one per 16
//!   weights), `d: f16`. Weight = d·sc·(q − 32).
//!
//! Where the bits of weight w of a super-block live is written once, in the `*_pos` functions; the CPU
//! dequantizer, the quantizers (which pack through them) and the GPU repacking all go through them.
//!
//! GPU layout (read by `wgsl/formats/q*_k.wgsl`; a chunk is 32 weights: chunk c is sub-block c % 8 of
//! super-block c / 8). The quants of a chunk are re-ordered into one of three aligned forms:
//!
//! - nibbles (Q4_K, Q5_K, Q6_K low 4 bits): four words hold the chunk's 32 4-bit fields in split-nibble
//!   order (byte k: weight k in the low nibble, weight k + 16 in the high one), as Q4_0's `qs`; they are
//!   `words[4c..4c + 4]`, except in Q4_K (below).
//! - crumbs (Q2_K, Q3_K low 2 bits): `words[2c..2c + 2]` (half a `vec4<u32>`), byte-interleaved: weight
//!   16h + 4k + b at bits 8b + 2k of word h, so that one shift and mask gives 4 weights' bits as bytes.
//! - extra bits: Q3_K's and Q5_K's high bit byte-interleaved in one word per chunk, weight 4k + b at bit
//!   8b + k, so that one shift and mask puts the high bits of nibble (or crumb) word k's 4 weights beside
//!   them (the 3- and 5-bit bytes for the int8 dot; Q3_K's in `scales`); Q6_K's top two bits in two words of
//!   byte-interleaved crumbs (in `scales`): weight 16h + 4k + b of the chunk at bits 8b + 2k ..= 8b + 2k + 1
//!   of word h, so one shift and mask puts the high bits of the 4 weights in byte b of nibble word k beside
//!   their low nibbles (the 6-bit bytes in 4 operations, not 13).
//!
//! Q4_K and Q5_K keep everything in `words` (no `scales`), per super-block s: the 8 chunks' nibble words
//! (`words[W·s + 4j ..]`), Q5_K's 8 words of 5th bits (`words[48s + 32 + j]`), then for each half h of
//! the super-block a vec4 of d and dmin as f32 bits and the 6-bit scales and the mins of sub-blocks
//! 4h .. 4h + 3 as bytes (byte j % 4 of the third and fourth word): W = 40 words, 160 bytes per 256
//! weights for Q4_K (144 on disk), 48 words, 192 bytes for Q5_K (176). A product gets a chunk's scale and
//! min with one vec4 load, where ggml's packed scales and f16s took ~40 operations, and four separate
//! loads of them cost 6 % of a step on the H200 (BENCHMARKS.md).
//!
//! Per super-block s, `scales[STRIDE·s ..]` holds (u32 words):
//!
//! - Q2_K, stride 6: the 16 scale bytes verbatim (4 words), then d and dmin as f32 bits. 64 + 24 = 88 bytes
//!   (84 on disk).
//! - Q3_K, stride 13: 8 high-bit words (one per chunk), the 16 6-bit scales less 32 as i8 (4 words: scale i,
//!   for weights 16i .. 16i + 15, at byte i % 4 of word 8 + i / 4), d as f32 bits. 64 + 52 = 116 bytes (110
//!   on disk).
//! - Q6_K, stride 21: 16 high-crumb words (two per chunk), the 16 i8 scales verbatim (4 words), d as f32
//!   bits. 128 + 84 = 212 bytes (210 on disk).

use super::legacy::pack_nibbles;
use super::util::{f16_at, f16_bytes, nearest_int, u32_at};
use super::Repacked;

pub const QK_K: usize = 256;

pub mod q2k {
    pub const BYTES: usize = 84;
    pub const SCALES: usize = 0;
    pub const QS: usize = 16;
    pub const D: usize = 80;
    pub const DMIN: usize = 82;
    pub const GPU_STRIDE: usize = 6;
}

pub mod q3k {
    pub const BYTES: usize = 110;
    pub const HMASK: usize = 0;
    pub const QS: usize = 32;
    pub const SCALES: usize = 96;
    pub const D: usize = 108;
    pub const GPU_STRIDE: usize = 13;
}

pub mod q4k {
    pub const BYTES: usize = 144;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QS: usize = 16;
    /// GPU words per super-block: 32 of nibbles, two vec4s of scales.
    pub const GPU_WORDS: usize = 40;
}

pub mod q5k {
    pub const BYTES: usize = 176;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QH: usize = 16;
    pub const QS: usize = 48;
    /// GPU words per super-block: 32 of nibbles, 8 of 5th bits, two vec4s of scales.
    pub const GPU_WORDS: usize = 48;
}

pub mod q6k {
    pub const BYTES: usize = 210;
    pub const QL: usize = 0;
    pub const QH: usize = 128;
    pub const SCALES: usize = 192;
    pub const D: usize = 208;
    pub const GPU_STRIDE: usize = 21;
}

// ---------------------------------------------------------------------------------------------
// Where the bits of weight w (0..256) live: (byte offset in the field, bit shift).
// ---------------------------------------------------------------------------------------------

/// Q2_K/Q3_K `qs`: 2-bit field of weight w.
fn crumb_pos(w: usize) -> (usize, u32) {
    (32 * (w / 128) + w % 32, 2 * ((w % 128) / 32) as u32)
}

/// Q3_K `hmask`, Q5_K `qh`: the single high bit of weight w.
fn high_bit_pos(w: usize) -> (usize, u32) {
    (w % 32, (w / 32) as u32)
}

/// Q4_K/Q5_K `qs`: 4-bit field of weight w.
fn nibble_pos(w: usize) -> (usize, u32) {
    (32 * (w / 64) + w % 32, 4 * ((w % 64) / 32) as u32)
}

/// Q6_K `ql` (4 bits) and `qh` (2 bits) of weight w.
fn q6_pos(w: usize) -> ((usize, u32), (usize, u32)) {
    let (n, g, l) = (w / 128, (w % 128) / 32, w % 32);
    ((64 * n + 32 * (g % 2) + l, 4 * (g / 2) as u32), (32 * n + l, 2 * g as u32))
}

fn get(field: &[u8], (byte, shift): (usize, u32), mask: u8) -> u8 {
    (field[byte] >> shift) & mask
}

fn put(field: &mut [u8], (byte, shift): (usize, u32), v: u8) {
    field[byte] |= v << shift;
}

/// Q4_K/Q5_K: the 6-bit scale and min of sub-block j (ggml's `get_scale_min_k4`).
pub fn scale_min_k4(q: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The inverse of `scale_min_k4` (scales and mins 0..64).
fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            q[j] |= sc[j];
            q[j + 4] |= m[j];
        } else {
            q[j + 4] = (sc[j] & 0xf) | ((m[j] & 0xf) << 4);
            q[j - 4] |= (sc[j] >> 4) << 6;
            q[j] |= (m[j] >> 4) << 6;
        }
    }
    q
}

/// Q3_K: the positions of scale i's low 4 bits and high 2 bits in the 12 scale bytes.
fn q3k_scale_pos(i: usize) -> ((usize, u32), (usize, u32)) {
    ((i % 8, 4 * (i / 8) as u32), (8 + i % 4, 2 * (i / 4) as u32))
}

/// Q3_K: scale i (0..16) as stored, 0..64 (the weight uses it minus 32).
pub fn q3k_scale(sc: &[u8], i: usize) -> u8 {
    let (lo, hi) = q3k_scale_pos(i);
    get(sc, lo, 15) | get(sc, hi, 3) << 4
}

// ---------------------------------------------------------------------------------------------
// Unsigned quant values of a super-block, through the positions above.
// ---------------------------------------------------------------------------------------------

/// Q2_K: 0..4.
fn q2k_quants(b: &[u8]) -> [u8; QK_K] {
    let qs = &b[q2k::QS..q2k::QS + 64];
    std::array::from_fn(|w| get(qs, crumb_pos(w), 3))
}

/// Q3_K: low | high << 2, 0..8 (the weight uses it minus 4).
fn q3k_quants(b: &[u8]) -> [u8; QK_K] {
    let (qs, hm) = (&b[q3k::QS..q3k::QS + 64], &b[q3k::HMASK..q3k::HMASK + 32]);
    std::array::from_fn(|w| get(qs, crumb_pos(w), 3) | get(hm, high_bit_pos(w), 1) << 2)
}

/// Q4_K: 0..16.
fn q4k_quants(b: &[u8]) -> [u8; QK_K] {
    let qs = &b[q4k::QS..q4k::QS + 128];
    std::array::from_fn(|w| get(qs, nibble_pos(w), 15))
}

/// Q5_K: 0..32.
fn q5k_quants(b: &[u8]) -> [u8; QK_K] {
    let (qs, qh) = (&b[q5k::QS..q5k::QS + 128], &b[q5k::QH..q5k::QH + 32]);
    std::array::from_fn(|w| get(qs, nibble_pos(w), 15) | get(qh, high_bit_pos(w), 1) << 4)
}

/// Q6_K: 0..64 (the weight uses it minus 32).
fn q6k_quants(b: &[u8]) -> [u8; QK_K] {
    let (ql, qh) = (&b[q6k::QL..q6k::QL + 128], &b[q6k::QH..q6k::QH + 64]);
    std::array::from_fn(|w| {
        let (lo, hi) = q6_pos(w);
        get(ql, lo, 15) | get(qh, hi, 3) << 4
    })
}

// ---------------------------------------------------------------------------------------------
// CPU dequantization: the same operations, in the same order, as gguf-py's numpy code.
// ---------------------------------------------------------------------------------------------

fn dequant_blocks(data: &[u8], bytes: usize, f: impl Fn(&[u8], &mut [f32])) -> Vec<f32> {
    let mut out = vec![0f32; data.len() / bytes * QK_K];
    for (b, y) in data.chunks_exact(bytes).zip(out.chunks_exact_mut(QK_K)) {
        f(b, y);
    }
    out
}

pub fn dequantize_q2k(data: &[u8]) -> Vec<f32> {
    dequant_blocks(data, q2k::BYTES, |b, y| {
        let (d, dmin) = (f16_at(b, q2k::D), f16_at(b, q2k::DMIN));
        let q = q2k_quants(b);
        for (w, y) in y.iter_mut().enumerate() {
            let sc = b[q2k::SCALES + w / 16];
            *y = d * (sc & 15) as f32 * q[w] as f32 - dmin * (sc >> 4) as f32;
        }
    })
}

pub fn dequantize_q3k(data: &[u8]) -> Vec<f32> {
    dequant_blocks(data, q3k::BYTES, |b, y| {
        let d = f16_at(b, q3k::D);
        let q = q3k_quants(b);
        let sc = &b[q3k::SCALES..q3k::SCALES + 12];
        for (w, y) in y.iter_mut().enumerate() {
            *y = d * (q3k_scale(sc, w / 16) as i32 - 32) as f32 * (q[w] as i32 - 4) as f32;
        }
    })
}

pub fn dequantize_q4k(data: &[u8]) -> Vec<f32> {
    dequant_blocks(data, q4k::BYTES, |b, y| {
        let (d, dmin) = (f16_at(b, q4k::D), f16_at(b, q4k::DMIN));
        let q = q4k_quants(b);
        for (w, y) in y.iter_mut().enumerate() {
            let (sc, m) = scale_min_k4(&b[q4k::SCALES..], w / 32);
            *y = d * sc as f32 * q[w] as f32 - dmin * m as f32;
        }
    })
}

pub fn dequantize_q5k(data: &[u8]) -> Vec<f32> {
    dequant_blocks(data, q5k::BYTES, |b, y| {
        let (d, dmin) = (f16_at(b, q5k::D), f16_at(b, q5k::DMIN));
        let q = q5k_quants(b);
        for (w, y) in y.iter_mut().enumerate() {
            let (sc, m) = scale_min_k4(&b[q5k::SCALES..], w / 32);
            *y = d * sc as f32 * q[w] as f32 - dmin * m as f32;
        }
    })
}

pub fn dequantize_q6k(data: &[u8]) -> Vec<f32> {
    dequant_blocks(data, q6k::BYTES, |b, y| {
        let d = f16_at(b, q6k::D);
        let q = q6k_quants(b);
        for (w, y) in y.iter_mut().enumerate() {
            *y = d * b[q6k::SCALES + w / 16] as i8 as f32 * (q[w] as i32 - 32) as f32;
        }
    })
}

// ---------------------------------------------------------------------------------------------
// GPU repacking.
// ---------------------------------------------------------------------------------------------

/// 32 4-bit fields (the low bits of `q`) in split-nibble order: 4 words.
fn nibble_words(q: &[u8]) -> [u32; 4] {
    let l: Vec<u8> = q.iter().map(|v| v & 15).collect();
    let b = pack_nibbles(&l);
    std::array::from_fn(|k| u32_at(&b, 4 * k))
}

/// 16 2-bit fields in one word, field 4k + b at bits 8b + 2k (Q2_K's and Q3_K's low bits, Q6_K's high bits,
/// see the GPU layout).
fn byte_crumb_word(q: &[u8]) -> u32 {
    q.iter().enumerate().fold(0, |w, (i, &v)| w | ((v as u32) & 3) << (8 * (i % 4) + 2 * (i / 4)))
}

/// 32 1-bit fields in one word, field 4k + b at bit 8b + k (Q3_K's and Q5_K's high bits, see the GPU layout).
fn byte_bit_word(q: &[u8], shift: u32) -> u32 {
    q.iter().enumerate().fold(0, |w, (i, &v)| w | ((v as u32 >> shift) & 1) << (8 * (i % 4) + i / 4))
}

const _: () = assert!(q4k::D == q5k::D && q4k::DMIN == q5k::DMIN && q4k::SCALES == q5k::SCALES);

/// Q4_K's and Q5_K's two scale vec4s: per half super-block d and dmin as f32 bits, then the 6-bit scales
/// and mins of its four sub-blocks as bytes. Q5_K's header is Q4_K's (checked above).
fn scale_min_words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let (sc, m): (Vec<u8>, Vec<u8>) = (0..8).map(|j| scale_min_k4(&b[q4k::SCALES..], j)).unzip();
    (0..2).flat_map(move |h| [f32_word(b, q4k::D), f32_word(b, q4k::DMIN), u32_at(&sc, 4 * h), u32_at(&m, 4 * h)])
}

fn verbatim_words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap()))
}

fn f32_word(b: &[u8], at: usize) -> u32 {
    f16_at(b, at).to_bits()
}

fn repack_blocks(
    data: &[u8],
    bytes: usize,
    stride: usize,
    words_per: usize,
    f: impl Fn(&[u8], &mut Vec<u32>, &mut Vec<u32>),
) -> Repacked {
    let n = data.len() / bytes;
    let (mut words, mut scales) = (Vec::with_capacity(n * words_per), Vec::with_capacity(n * stride));
    for b in data.chunks_exact(bytes) {
        f(b, &mut words, &mut scales);
        debug_assert_eq!(scales.len(), stride * (words.len() / words_per));
    }
    Repacked { words, scales }
}

pub fn repack_q2k(data: &[u8]) -> Repacked {
    repack_blocks(data, q2k::BYTES, q2k::GPU_STRIDE, 16, |b, words, scales| {
        let q = q2k_quants(b);
        words.extend(q.chunks_exact(16).map(byte_crumb_word));
        scales.extend(verbatim_words(&b[q2k::SCALES..q2k::SCALES + 16]));
        scales.extend([f32_word(b, q2k::D), f32_word(b, q2k::DMIN)]);
    })
}

pub fn repack_q3k(data: &[u8]) -> Repacked {
    repack_blocks(data, q3k::BYTES, q3k::GPU_STRIDE, 16, |b, words, scales| {
        let q = q3k_quants(b);
        words.extend(q.chunks_exact(16).map(byte_crumb_word));
        scales.extend(q.chunks_exact(32).map(|c| byte_bit_word(c, 2)));
        let sc: Vec<u8> = (0..16).map(|i| q3k_scale(&b[q3k::SCALES..], i).wrapping_sub(32)).collect();
        scales.extend(verbatim_words(&sc));
        scales.push(f32_word(b, q3k::D));
    })
}

pub fn repack_q4k(data: &[u8]) -> Repacked {
    repack_blocks(data, q4k::BYTES, 0, q4k::GPU_WORDS, |b, words, _| {
        let q = q4k_quants(b);
        words.extend(q.chunks_exact(32).flat_map(nibble_words));
        words.extend(scale_min_words(b));
    })
}

pub fn repack_q5k(data: &[u8]) -> Repacked {
    repack_blocks(data, q5k::BYTES, 0, q5k::GPU_WORDS, |b, words, _| {
        let q = q5k_quants(b);
        words.extend(q.chunks_exact(32).flat_map(nibble_words));
        words.extend(q.chunks_exact(32).map(|c| byte_bit_word(c, 4)));
        words.extend(scale_min_words(b));
    })
}

pub fn repack_q6k(data: &[u8]) -> Repacked {
    repack_blocks(data, q6k::BYTES, q6k::GPU_STRIDE, 32, |b, words, scales| {
        let q = q6k_quants(b);
        words.extend(q.chunks_exact(32).flat_map(nibble_words));
        let high: Vec<u8> = q.iter().map(|v| v >> 4).collect();
        scales.extend(high.chunks_exact(16).map(byte_crumb_word));
        scales.extend(verbatim_words(&b[q6k::SCALES..q6k::SCALES + 16]));
        scales.push(f32_word(b, q6k::D));
    })
}

// ---------------------------------------------------------------------------------------------
// Reference quantizers: ggml's `quantize_row_q*_K_ref` (no importance matrix), ported.
// ---------------------------------------------------------------------------------------------

const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qx_quants` with rmse_type 1 and no weights: symmetric quants in 0..2·nmax, returns the scale.
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (o, &v) in l_out.iter_mut().zip(x) {
        *o = (quant(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in l_out.iter_mut().zip(x) {
                *o = (quant(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants` with rmse: quants in 0..2·nmax, returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l: Vec<i32> = x.iter().map(|&v| nearest_int(iscale * v).clamp(-nmax, nmax - 1)).collect();
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (&v, &li) in x.iter().zip(&l) {
        let w = v * v;
        sumlx += w * v * li as f32;
        suml2 += w * (li * li) as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..x.len() {
            let w = x[i] * x[i];
            let mut slx = sumlx - w * x[i] * l[i] as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * (l[i] * l[i]) as f32;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * (new_l * new_l) as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for (o, li) in l_out.iter_mut().zip(l) {
        *o = (li + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// ggml's `make_qkx2_quants`: asymmetric quants in 0..=nmax with a min; returns (scale, −min).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        best_error += weights[i] * err(scale * l as f32 + min - x[i]);
    }
    let mut aux = vec![0u8; n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let cur: f32 = (0..n).map(|i| weights[i] * err(this_scale * aux[i] as f32 + this_min - x[i])).sum();
            if cur < best_error {
                l_out.copy_from_slice(&aux);
                best_error = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

fn quantize_blocks(values: &[f32], bytes: usize, f: impl Fn(&[f32], &mut [u8])) -> Vec<u8> {
    let mut out = vec![0u8; values.len() / QK_K * bytes];
    for (x, b) in values.chunks_exact(QK_K).zip(out.chunks_exact_mut(bytes)) {
        f(x, b);
    }
    out
}

/// Scales (and mins) of the sub-blocks as integers 0..=nmax against a block scale max/nmax.
fn requant_scales(v: &[f32], max: f32, nmax: i32) -> Vec<u8> {
    let inv = if max > 0.0 { nmax as f32 / max } else { 0.0 };
    v.iter().map(|&s| nearest_int(inv * s).clamp(0, nmax) as u8).collect()
}

pub fn quantize_q2k(values: &[f32]) -> Vec<u8> {
    quantize_blocks(values, q2k::BYTES, |x, b| {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            let w: Vec<f32> = xs.iter().map(|v| v.abs()).collect();
            (scales[j], mins[j]) = make_qkx2_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
        }
        let max_scale = scales.iter().fold(0f32, |m, &s| if s > m { s } else { m });
        let max_min = mins.iter().fold(0f32, |m, &s| if s > m { s } else { m });
        let ls = requant_scales(&scales, max_scale, 15);
        let lm = requant_scales(&mins, max_min, 15);
        for j in 0..16 {
            b[q2k::SCALES + j] = ls[j] | lm[j] << 4;
        }
        b[q2k::D..q2k::D + 2].copy_from_slice(&f16_bytes(if max_scale > 0.0 { max_scale / 15.0 } else { 0.0 }));
        b[q2k::DMIN..q2k::DMIN + 2].copy_from_slice(&f16_bytes(if max_min > 0.0 { max_min / 15.0 } else { 0.0 }));
        let (d, dmin) = (f16_at(b, q2k::D), f16_at(b, q2k::DMIN));
        for j in 0..16 {
            let dl = d * ls[j] as f32;
            if dl == 0.0 {
                continue;
            }
            let ml = dmin * lm[j] as f32;
            for i in 16 * j..16 * j + 16 {
                l[i] = nearest_int((x[i] + ml) / dl).clamp(0, 3) as u8;
            }
        }
        let qs = &mut b[q2k::QS..q2k::QS + 64];
        for (w, &q) in l.iter().enumerate() {
            put(qs, crumb_pos(w), q);
        }
    })
}

pub fn quantize_q3k(values: &[f32]) -> Vec<u8> {
    quantize_blocks(values, q3k::BYTES, |x, b| {
        let mut l = [0u8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut amax) = (0f32, 0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            let sc = &mut b[q3k::SCALES..q3k::SCALES + 12];
            for (j, &s) in scales.iter().enumerate() {
                let v = (nearest_int(iscale * s).clamp(-32, 31) + 32) as u8;
                let (lo, hi) = q3k_scale_pos(j);
                put(sc, lo, v & 15);
                put(sc, hi, v >> 4);
            }
            b[q3k::D..q3k::D + 2].copy_from_slice(&f16_bytes(1.0 / iscale));
        }
        let d = f16_at(b, q3k::D);
        for j in 0..16 {
            let dl = d * (q3k_scale(&b[q3k::SCALES..], j) as i32 - 32) as f32;
            if dl == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(x[i] / dl).clamp(-4, 3) + 4) as u8;
            }
        }
        for (w, &q) in l.iter().enumerate() {
            put(&mut b[q3k::QS..q3k::QS + 64], crumb_pos(w), q & 3);
            put(&mut b[q3k::HMASK..q3k::HMASK + 32], high_bit_pos(w), q >> 2);
        }
    })
}

/// Q4_K and Q5_K share the scale search and packing; `nmax` is 15 or 31.
fn quantize_k4_k5(x: &[f32], nmax: i32, rmin: f32, nstep: i32, b: &mut [u8], scales_at: usize) -> [u8; QK_K] {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let av_x = (xs.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        let w: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
        (scales[j], mins[j]) = make_qkx2_quants(nmax, xs, &w, &mut l[32 * j..32 * j + 32], rmin, 0.1, nstep, false);
    }
    let max_scale = scales.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let ls: [u8; 8] = requant_scales(&scales, max_scale, 63).try_into().unwrap();
    let lm: [u8; 8] = requant_scales(&mins, max_min, 63).try_into().unwrap();
    b[scales_at..scales_at + 12].copy_from_slice(&pack_scale_min_k4(&ls, &lm));
    b[0..2].copy_from_slice(&f16_bytes(max_scale / 63.0));
    b[2..4].copy_from_slice(&f16_bytes(max_min / 63.0));
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(&b[scales_at..], j);
        let dl = d * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + ml) / dl).clamp(0, nmax) as u8;
        }
    }
    l
}

pub fn quantize_q4k(values: &[f32]) -> Vec<u8> {
    quantize_blocks(values, q4k::BYTES, |x, b| {
        let l = quantize_k4_k5(x, 15, -1.0, 20, b, q4k::SCALES);
        for (w, &q) in l.iter().enumerate() {
            put(&mut b[q4k::QS..q4k::QS + 128], nibble_pos(w), q);
        }
    })
}

pub fn quantize_q5k(values: &[f32]) -> Vec<u8> {
    quantize_blocks(values, q5k::BYTES, |x, b| {
        let l = quantize_k4_k5(x, 31, -0.5, 15, b, q5k::SCALES);
        for (w, &q) in l.iter().enumerate() {
            put(&mut b[q5k::QS..q5k::QS + 128], nibble_pos(w), q & 15);
            put(&mut b[q5k::QH..q5k::QH + 32], high_bit_pos(w), q >> 4);
        }
    })
}

pub fn quantize_q6k(values: &[f32]) -> Vec<u8> {
    quantize_blocks(values, q6k::BYTES, |x, b| {
        let mut l = [0u8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs) = (0f32, 0f32);
        for j in 0..16 {
            scales[j] = make_qx_quants(32, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > max_abs {
                max_abs = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs < GROUP_MAX_EPS {
            return; // all zero
        }
        let iscale = -128.0 / max_scale;
        b[q6k::D..q6k::D + 2].copy_from_slice(&f16_bytes(1.0 / iscale));
        for j in 0..16 {
            b[q6k::SCALES + j] = nearest_int(iscale * scales[j]).clamp(-128, 127) as i8 as u8;
        }
        let d = f16_at(b, q6k::D);
        for j in 0..16 {
            let dl = d * b[q6k::SCALES + j] as i8 as f32;
            if dl == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(x[i] / dl).clamp(-32, 31) + 32) as u8;
            }
        }
        for (w, &q) in l.iter().enumerate() {
            let (lo, hi) = q6_pos(w);
            put(&mut b[q6k::QL..q6k::QL + 128], lo, q & 15);
            put(&mut b[q6k::QH..q6k::QH + 64], hi, q >> 4);
        }
    })
}
