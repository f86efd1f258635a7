//! Quantized variants of the tiny model, written as GGUF files the way llama.cpp's quantizer would.

use super::fixture_dir;
use glm_wgpu::gguf::{GgufFile, GgufWriter};
use glm_wgpu::quant::{self, GgmlType};
use std::path::{Path, PathBuf};

/// The tiny model as llama.cpp's converter writes it in BF16.
pub fn bf16_gguf() -> PathBuf {
    fixture_dir().parent().unwrap().join("glm-tiny-bf16.gguf")
}

/// Writes the tiny model with every BF16 tensor re-encoded as `plan(name, row length)` (norms, the router
/// and the expert bias stay F32, as the converter writes them).
pub fn quantized_model(dir: &Path, file: &str, plan: impl Fn(&str, usize) -> GgmlType) -> PathBuf {
    let g = GgufFile::open(&bf16_gguf()).unwrap();
    let mut w = GgufWriter::from_file(&g);
    for t in &g.tensors {
        if t.ggml_type != GgmlType::BF16 {
            continue;
        }
        let target = plan(&t.name, t.dims[0] as usize);
        let values = quant::dequantize(t.ggml_type, g.tensor_data(t)).unwrap();
        let bytes = quant::quantize(target, &values).unwrap();
        w.remove_tensor(&t.name);
        w.add_tensor(&t.name, t.dims.clone(), target, bytes).unwrap();
    }
    let p = dir.join(file);
    std::fs::write(&p, w.to_bytes()).unwrap();
    p
}

/// llama.cpp's Q4_K_M recipe, reduced to this model: Q6_K for `output` and for `attn_v_b` and the FFN down
/// projections of the "more bits" layers (0 and 2 of 3), Q4_K elsewhere; rows that are not whole
/// super-blocks fall back to Q8_0 (`attn_k_b`, 64 long) or Q5_0 (`attn_output`, 384 long).
pub fn q4_k_m_plan(name: &str, row: usize) -> GgmlType {
    let more_bits_layer = name.starts_with("blk.0.") || name.starts_with("blk.2.");
    if !row.is_multiple_of(256) {
        if name.contains("attn_k_b") {
            GgmlType::Q8_0
        } else {
            GgmlType::Q5_0
        }
    } else if name == "output.weight"
        || (more_bits_layer && (name.contains("attn_v_b") || name.contains("ffn_down")))
        // llama.cpp's more-bits counter can give a shared expert another type than the routed
        // ones: the engine then runs it apart instead of as an extra routed slot.
        || name == "blk.1.ffn_down_shexp.weight"
    {
        GgmlType::Q6K
    } else {
        GgmlType::Q4K
    }
}
