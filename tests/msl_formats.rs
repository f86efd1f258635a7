//! The Metal kernels' format and input code (native_msl/formats.metal, inputs.metal) run on the CPU:
//! clang compiles it against native_msl/check/metal_stdlib (a stand-in for Metal's library whose
//! vector types compute what Metal's do) into a small program, which reads random repacked weights
//! and inputs and returns each chunk's f32 and (for the formats that take them) int8 dot products,
//! which must equal the CPU reference
//! (src/quant's dequantization, and its int8 rounding of the inputs). What this cannot show: that
//! Metal's compiler and an Apple GPU compute the same (no Metal on Linux); the kernel around these
//! functions is type-checked only (src/kernels/matvec.rs tests).

mod common;

use glm_wgpu::gpu::native;
use glm_wgpu::quant::{self, activations, GgmlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn metal_formats_compute_the_reference_dot_products() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("formats_harness");
    common::metal_cpu_program("formats_harness.cpp", &exe, &[]);
    let mut rng = StdRng::seed_from_u64(5);
    for t in GgmlType::SUPPORTED {
        let name = native::msl_format(t).unwrap_or_else(|| panic!("{} has no Metal format struct", t.name()));
        let n = 1024;
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-0.05..0.05)).collect();
        let bytes = quant::quantize(t, &values).unwrap();
        let w = quant::dequantize(t, &bytes).unwrap();
        let r = quant::repack(t, &bytes);
        // Inputs of several magnitudes, so the int8 rounding takes different exponents.
        let x: Vec<f32> = (0..n).map(|i| rng.random_range(-1.0..1.0) * [1.0, 30.0, 1e-3, 0.2][i / 32 % 4]).collect();
        let chunk = quant::gpu_chunk_elems(t);
        let chunks = n / chunk;
        let mut input = Vec::new();
        let mut tag = [0u8; 8];
        tag[..name.len()].copy_from_slice(name.as_bytes());
        input.extend(tag);
        for v in [chunks as u32, chunk as u32, r.words.len() as u32, r.scales.len() as u32] {
            input.extend(v.to_le_bytes());
        }
        input.extend(r.words.iter().flat_map(|v| v.to_le_bytes()));
        input.extend(r.scales.iter().flat_map(|v| v.to_le_bytes()));
        input.extend(x.iter().flat_map(|v| v.to_le_bytes()));
        let mut child = Command::new(&exe).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: harness exit {:?}", out.status);
        let got: Vec<f32> = out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(got.len(), 2 * chunks, "{name}: outputs");
        let xq = activations::round_to_int8(&x);
        for c in 0..chunks {
            let span = chunk * c..chunk * (c + 1);
            let dot = |xs: &[f32]| -> (f32, f32) {
                let terms = w[span.clone()].iter().zip(xs).map(|(a, b)| a * b);
                (terms.clone().sum(), terms.map(f32::abs).sum::<f32>().max(f32::MIN_POSITIVE))
            };
            let int8 = activations::takes_int8_input(t);
            let wants = [Some(dot(&x[span.clone()])), int8.then(|| dot(&xq[span.clone()]))];
            for (k, (want, scale)) in wants.into_iter().enumerate().filter_map(|(k, w)| Some((k, w?))) {
                let g = got[2 * c + k];
                assert!(
                    (g - want).abs() <= 1e-5 * scale,
                    "{name} chunk {c} {}: Metal code {g}, reference {want}",
                    ["f32", "int8"][k]
                );
            }
        }
    }
}
