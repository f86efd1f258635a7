//! The CPU side of the quantized formats against the `gguf` Python package (tests/fixtures/quant, written by
//! tools/make_quant_vectors.py): dequantization bit for bit on random and extreme blocks, the legacy
//! quantizers byte for byte, and round trips, GPU repacking sizes and error messages for the rest.

use glm_wgpu::quant::{self, GgmlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant").join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    let b = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

struct Entry {
    t: GgmlType,
    blocks: usize,
    data: Vec<u8>,
    values: Vec<f32>,
    /// (gguf-py's quantization of quantize_input.f32.bin, that input)
    quantized: Option<(Vec<u8>, Vec<f32>)>,
}

fn entries() -> Vec<Entry> {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("index.json")).unwrap()).unwrap();
    index["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["type"].as_str().unwrap();
            let t = GgmlType::from_name(name).unwrap_or_else(|| panic!("unknown type {name}"));
            assert_eq!(e["block_bytes"].as_u64().unwrap() as usize, t.block_bytes(), "{name} block bytes");
            assert_eq!(e["block_elems"].as_u64().unwrap() as usize, t.block_elems(), "{name} block elems");
            let blocks = e["blocks"].as_u64().unwrap() as usize;
            let data = std::fs::read(fixture(e["data"].as_str().unwrap())).unwrap();
            let values = read_f32(e["values"].as_str().unwrap());
            assert_eq!(data.len(), blocks * t.block_bytes(), "{name} data size");
            assert_eq!(values.len(), blocks * t.block_elems(), "{name} values size");
            let quantized = e.get("quantized").map(|q| {
                (std::fs::read(fixture(q.as_str().unwrap())).unwrap(), read_f32(e["quantize_input"].as_str().unwrap()))
            });
            Entry { t, blocks, data, values, quantized }
        })
        .collect()
}

fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Every type the vectors cover, and every quantized type this build claims to support, has vectors.
#[test]
fn vectors_cover_every_supported_quant_type() {
    let have: Vec<GgmlType> = entries().iter().map(|e| e.t).collect();
    for t in GgmlType::SUPPORTED {
        if t.block_elems() > 1 {
            assert!(have.contains(&t), "no test vectors for {}", t.name());
        }
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for e in entries() {
        let got = quant::dequantize(e.t, &e.data).unwrap();
        assert_eq!(got.len(), e.values.len());
        for (i, (&g, &w)) in got.iter().zip(&e.values).enumerate() {
            let block = i / e.t.block_elems();
            assert!(
                same_bits(g, w),
                "{}: element {i} (block {block}, index {}) is {g:e} ({:#010x}), gguf-py gives {w:e} ({:#010x}); block bytes {:02x?}",
                e.t.name(),
                i % e.t.block_elems(),
                g.to_bits(),
                w.to_bits(),
                &e.data[block * e.t.block_bytes()..(block + 1) * e.t.block_bytes()]
            );
        }
        let nan = e.values.iter().filter(|v| v.is_nan()).count();
        let zero = e.values.iter().filter(|v| **v == 0.0).count();
        println!("[quant_cpu] {:<7} {} blocks bit-exact ({nan} NaN, {zero} zero values)", e.t.name(), e.blocks);
    }
}

#[test]
fn legacy_quantizers_match_gguf_py_byte_for_byte() {
    for e in entries() {
        let Some((want, input)) = &e.quantized else { continue };
        let got = quant::quantize(e.t, input).unwrap();
        assert_eq!(got.len(), want.len(), "{} quantized size", e.t.name());
        if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
            let bb = e.t.block_bytes();
            panic!(
                "{}: byte {i} (block {}) differs: {:02x?} vs gguf-py {:02x?}",
                e.t.name(),
                i / bb,
                &got[i / bb * bb..(i / bb + 1) * bb],
                &want[i / bb * bb..(i / bb + 1) * bb]
            );
        }
    }
}

fn normal(rng: &mut StdRng, n: usize) -> Vec<f32> {
    // Sum of uniforms: roughly normal, with occasional larger values.
    (0..n).map(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.5).collect()
}

const NEW_TYPES: [GgmlType; 11] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Iq4Nl,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Xs,
];

/// Quantize → dequantize: the RMS error relative to the data's RMS stays where each format should put it,
/// and a zero tensor stays zero.
#[test]
fn quantizers_round_trip() {
    let mut rng = StdRng::seed_from_u64(11);
    for t in NEW_TYPES {
        // Bound on RMS error / RMS value for roughly normal data, loose but far below a broken quantizer.
        let bound = match t {
            GgmlType::Q2K => 0.45,
            GgmlType::Q3K => 0.25,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K | GgmlType::Iq4Nl | GgmlType::Iq4Xs => 0.12,
            GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5K => 0.06,
            GgmlType::Q6K => 0.03,
            _ => unreachable!(),
        };
        for scale in [1.0f32, 1e-3, 200.0] {
            let n = 256 * 24;
            let x: Vec<f32> = normal(&mut rng, n).iter().map(|v| v * scale).collect();
            let q = quant::quantize(t, &x).unwrap();
            assert_eq!(q.len(), t.bytes_for(n), "{} encoded size", t.name());
            let y = quant::dequantize(t, &q).unwrap();
            let rms = (x.iter().map(|v| (v * v) as f64).sum::<f64>() / n as f64).sqrt();
            let err = (x.iter().zip(&y).map(|(a, b)| ((a - b) * (a - b)) as f64).sum::<f64>() / n as f64).sqrt();
            println!("[quant_cpu] {:<7} scale {scale:e}: RMS error {:.4} of RMS", t.name(), err / rms);
            assert!(
                err / rms < bound,
                "{}: RMS error {:.4} of RMS (bound {bound}) at scale {scale}",
                t.name(),
                err / rms
            );
        }
        let zeros = quant::dequantize(t, &quant::quantize(t, &vec![0.0; 512]).unwrap()).unwrap();
        assert!(zeros.iter().all(|v| *v == 0.0), "{}: zeros do not stay zero", t.name());
        // A block with one outlier and the rest small still reproduces the outlier closely.
        let mut x = vec![0.01f32; 256];
        x[77] = -5.0;
        let y = quant::dequantize(t, &quant::quantize(t, &x).unwrap()).unwrap();
        assert!((y[77] + 5.0).abs() < 0.5, "{}: outlier -5 became {}", t.name(), y[77]);
    }
}

/// GPU bytes per weight stay those of the file, up to alignment padding (2 bytes per Q6_K super-block) and
/// decoded scales: Q2_K's d and dmin as f32 (4 bytes per super-block), Q3_K's scales as bytes and d as f32
/// (6), Q4_K's and Q5_K's d and dmin as f32 in each half's vec4 with the scales and mins as bytes (16).
#[test]
fn repacking_keeps_the_size() {
    let mut rng = StdRng::seed_from_u64(12);
    for t in NEW_TYPES {
        for blocks in [1usize, 2, 3, 8, 37] {
            let n = blocks * t.block_elems();
            let bytes = quant::quantize(t, &normal(&mut rng, n)).unwrap();
            let r = quant::repack(t, &bytes);
            let gpu = 4 * (r.words.len() + r.scales.len());
            assert!(r.words.len().is_multiple_of(4), "{}: words are not whole vec4s", t.name());
            let pad = match t {
                GgmlType::Q2K => 4 * blocks,
                GgmlType::Q3K => 6 * blocks,
                GgmlType::Q6K => 2 * blocks,
                GgmlType::Q4K | GgmlType::Q5K => 16 * blocks,
                GgmlType::Q4_0 | GgmlType::Iq4Nl => 2 * (blocks % 2), // the odd block's half of a shared d word
                GgmlType::Q5_0 => 2 * (blocks % 2) + 4 * (blocks % 2), // and of the shared qh pair
                _ => 0,
            };
            assert_eq!(gpu, bytes.len() + pad, "{} × {blocks} blocks: GPU bytes vs file bytes", t.name());
            let bits = match t {
                GgmlType::Q2K | GgmlType::Q3K => 2,
                GgmlType::Q4K => 5,
                GgmlType::Q5K => 6,
                _ => 4,
            };
            assert_eq!(r.words.len() * 32, n * bits, "{}: {bits} bits of words per weight", t.name());
        }
    }
}

#[test]
fn unsupported_types_are_named() {
    for t in [GgmlType::Iq2Xxs, GgmlType::Q8_1, GgmlType::Iq1M, GgmlType::Tq2_0] {
        let err = t.ensure_supported("blk.0.ffn_down.weight").unwrap_err().to_string();
        assert!(err.contains("blk.0.ffn_down.weight") && err.contains(t.name()), "{err}");
        assert!(quant::dequantize(t, &vec![0; t.block_bytes()]).is_err());
    }
    for t in NEW_TYPES {
        t.ensure_supported("x").unwrap();
    }
}
