//! Tensor encodings: ggml's type ids, block sizes, CPU dequantization and the GPU repacking.
//!
//! Each supported format has one module that owns its block layout; the CPU reference, the load-time
//! repacking and the WGSL kernels (`wgsl/formats/<name>.wgsl`) all follow it: `float` (F32, F16, BF16),
//! `q8_0`, `legacy` (Q4_0, Q4_1, Q5_0, Q5_1), `k_quants` (Q2_K … Q6_K) and `iq4` (IQ4_NL, IQ4_XS). CPU dequantization equals the
//! `gguf` Python package's bit for bit (tests/quant_cpu.rs); the quantizers are ggml's reference ones.

pub mod activations;
mod float;
pub mod iq4;
pub mod k_quants;
pub mod legacy;
pub mod q8_0;
mod util;

use anyhow::{bail, Result};

/// ggml tensor types, by their on-disk id (`enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    BF16,
    Tq1_0,
    Tq2_0,
    Mxfp4,
}

/// (type, id, name, elements per block, bytes per block)
const TYPES: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8K, 15, "Q8_K", 256, 292),
    (GgmlType::Iq2Xxs, 16, "IQ2_XXS", 256, 66),
    (GgmlType::Iq2Xs, 17, "IQ2_XS", 256, 74),
    (GgmlType::Iq3Xxs, 18, "IQ3_XXS", 256, 98),
    (GgmlType::Iq1S, 19, "IQ1_S", 256, 50),
    (GgmlType::Iq4Nl, 20, "IQ4_NL", 32, 18),
    (GgmlType::Iq3S, 21, "IQ3_S", 256, 110),
    (GgmlType::Iq2S, 22, "IQ2_S", 256, 82),
    (GgmlType::Iq4Xs, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::Iq1M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::Tq1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::Tq2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::Mxfp4, 39, "MXFP4", 32, 17),
];

impl GgmlType {
    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        TYPES.iter().find(|r| r.0 == self).expect("every variant is in TYPES")
    }

    pub fn from_id(id: u32) -> Result<Self> {
        match TYPES.iter().find(|r| r.1 == id) {
            Some(r) => Ok(r.0),
            None => bail!("unknown ggml tensor type id {id}"),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        TYPES.iter().find(|r| r.2.eq_ignore_ascii_case(name)).map(|r| r.0)
    }

    pub fn id(self) -> u32 {
        self.row().1
    }
    pub fn name(self) -> &'static str {
        self.row().2
    }
    pub fn block_elems(self) -> usize {
        self.row().3
    }
    pub fn block_bytes(self) -> usize {
        self.row().4
    }

    /// Bytes of `n` elements (`n` a multiple of the block size).
    pub fn bytes_for(self, n: usize) -> usize {
        n / self.block_elems() * self.block_bytes()
    }

    /// Types this build can run on the GPU and dequantize on the CPU.
    pub const SUPPORTED: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Iq4Nl,
        GgmlType::Iq4Xs,
    ];

    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    pub fn ensure_supported(self, tensor: &str) -> Result<()> {
        if !self.is_supported() {
            let names: Vec<_> = Self::SUPPORTED.iter().map(|t| t.name()).collect();
            bail!(
                "tensor {tensor} has type {}, which this build does not support (supported: {})",
                self.name(),
                names.join(", ")
            );
        }
        Ok(())
    }
}

/// Dequantizes `data` (whole blocks of `t`) to f32.
pub fn dequantize(t: GgmlType, data: &[u8]) -> Result<Vec<f32>> {
    t.ensure_supported("(dequantize)")?;
    Ok(match t {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::to_f32(t, data),
        GgmlType::Q8_0 => q8_0::dequantize(data),
        GgmlType::Q4_0 => legacy::dequantize_q4_0(data),
        GgmlType::Q5_0 => legacy::dequantize_q5_0(data),
        GgmlType::Q4_1 => legacy::dequantize_q4_1(data),
        GgmlType::Q5_1 => legacy::dequantize_q5_1(data),
        GgmlType::Iq4Nl => iq4::dequantize_iq4_nl(data),
        GgmlType::Q2K => k_quants::dequantize_q2k(data),
        GgmlType::Q3K => k_quants::dequantize_q3k(data),
        GgmlType::Q4K => k_quants::dequantize_q4k(data),
        GgmlType::Q5K => k_quants::dequantize_q5k(data),
        GgmlType::Q6K => k_quants::dequantize_q6k(data),
        GgmlType::Iq4Xs => iq4::dequantize(data),
        _ => unreachable!(),
    })
}

/// The GPU form of a tensor: 16-byte aligned words holding the element data, plus per-block
/// scale words (f32 bits or packed fields, as the format defines) where the format has them.
/// Kernels read both through `wgsl/formats/<format>.wgsl`.
pub struct Repacked {
    pub words: Vec<u32>,
    pub scales: Vec<u32>,
}

/// Rows of every supported format are read in chunks of this many elements by the kernels. Every
/// quantized format uses 32 (a K-quant super-block is 8 chunks) so `load_chunk` returns 8 `vec4<f32>`.
pub fn gpu_chunk_elems(t: GgmlType) -> usize {
    match t {
        GgmlType::F32 => 4,
        GgmlType::F16 | GgmlType::BF16 => 8,
        GgmlType::Q8_0
        | GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::Iq4Nl
        | GgmlType::Q2K
        | GgmlType::Q3K
        | GgmlType::Q4K
        | GgmlType::Q5K
        | GgmlType::Q6K
        | GgmlType::Iq4Xs => 32,
        _ => unreachable!("unsupported type reached the GPU"),
    }
}

pub fn repack(t: GgmlType, data: &[u8]) -> Repacked {
    match t {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::repack(data),
        GgmlType::Q8_0 => q8_0::repack(data),
        GgmlType::Q4_0 => legacy::repack_q4_0(data),
        GgmlType::Q5_0 => legacy::repack_q5_0(data),
        GgmlType::Q4_1 => legacy::repack_q4_1(data),
        GgmlType::Q5_1 => legacy::repack_q5_1(data),
        GgmlType::Iq4Nl => iq4::repack_iq4_nl(data),
        GgmlType::Q2K => k_quants::repack_q2k(data),
        GgmlType::Q3K => k_quants::repack_q3k(data),
        GgmlType::Q4K => k_quants::repack_q4k(data),
        GgmlType::Q5K => k_quants::repack_q5k(data),
        GgmlType::Q6K => k_quants::repack_q6k(data),
        GgmlType::Iq4Xs => iq4::repack(data),
        _ => unreachable!("unsupported type reached the GPU"),
    }
}

/// Encodes f32 values (whole blocks) as `t`: used to write test models and GGUF files.
pub fn quantize(t: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    if !values.len().is_multiple_of(t.block_elems()) {
        bail!("cannot encode {} values as {}: not whole blocks of {}", values.len(), t.name(), t.block_elems());
    }
    Ok(match t {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::from_f32(t, values),
        GgmlType::Q8_0 => q8_0::quantize(values),
        GgmlType::Q4_0 => legacy::quantize_q4_0(values),
        GgmlType::Q5_0 => legacy::quantize_q5_0(values),
        GgmlType::Q4_1 => legacy::quantize_q4_1(values),
        GgmlType::Q5_1 => legacy::quantize_q5_1(values),
        GgmlType::Iq4Nl => iq4::quantize_iq4_nl(values),
        GgmlType::Q2K => k_quants::quantize_q2k(values),
        GgmlType::Q3K => k_quants::quantize_q3k(values),
        GgmlType::Q4K => k_quants::quantize_q4k(values),
        GgmlType::Q5K => k_quants::quantize_q5k(values),
        GgmlType::Q6K => k_quants::quantize_q6k(values),
        GgmlType::Iq4Xs => iq4::quantize(values),
        _ => bail!("cannot encode {}", t.name()),
    })
}

/// The GPU name of a format, used to pick its WGSL snippet.
pub fn wgsl_format(t: GgmlType) -> &'static str {
    match t {
        GgmlType::F32 => "f32",
        GgmlType::F16 => "f16",
        GgmlType::BF16 => "bf16",
        GgmlType::Q8_0 => "q8_0",
        GgmlType::Q4_0 => "q4_0",
        GgmlType::Q5_0 => "q5_0",
        GgmlType::Q4_1 => "q4_1",
        GgmlType::Q5_1 => "q5_1",
        GgmlType::Iq4Nl => "iq4_nl",
        GgmlType::Q2K => "q2_k",
        GgmlType::Q3K => "q3_k",
        GgmlType::Q4K => "q4_k",
        GgmlType::Q5K => "q5_k",
        GgmlType::Q6K => "q6_k",
        GgmlType::Iq4Xs => "iq4_xs",
        _ => unreachable!("unsupported type reached the GPU"),
    }
}
