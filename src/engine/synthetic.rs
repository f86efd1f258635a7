//! Tensor types of a synthetic model: the quantization mixes `bench --synthetic` fills with random
//! weights, typed as `../shared/tools/make_synth_gguf.py` (and llama.cpp's quantizer) type them.

use crate::quant::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantMix {
    /// Q4_K, with Q6_K for the LM head and for `ffn_down`/`attn_v_b` in llama.cpp's
    /// `use_more_bits` layers, Q8_0 for `attn_k_b`.
    #[value(name = "q4_k_m")]
    Q4KM,
    /// As Q4_K_M with Q5_K in place of Q4_K (llama.cpp's Q5_K_M rule; `make_synth_gguf.py` writes
    /// only the other two).
    #[value(name = "q5_k_m")]
    Q5KM,
    /// Q3_K for every matrix Q4_K_M has in Q4_K (Q6_K and Q8_0 as there). Not a llama.cpp mix (its
    /// Q3_K_M keeps more matrices in Q4_K/Q5_K): it measures the Q3_K kernels.
    #[value(name = "q3_k")]
    Q3K,
    /// As `q3_k` with Q2_K.
    #[value(name = "q2_k")]
    Q2K,
    /// Q4_0 for every matrix but the LM head (Q6_K) and `attn_k_b` (Q8_0), as llama.cpp's Q4_0.
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q8_0")]
    Q8_0,
}

impl QuantMix {
    pub fn name(self) -> &'static str {
        match self {
            QuantMix::Q4KM => "Q4_K_M",
            QuantMix::Q5KM => "Q5_K_M",
            QuantMix::Q3K => "Q3_K",
            QuantMix::Q2K => "Q2_K",
            QuantMix::Q4_0 => "Q4_0",
            QuantMix::Q8_0 => "Q8_0",
        }
    }

    /// The type of matrix `name` (a GGUF tensor name) with rows of `row_len` weights. The router
    /// stays f32; a K-quant whose rows are not whole 256-weight super-blocks falls back to Q8_0.
    pub fn tensor_type(self, name: &str, row_len: usize, n_layers: usize) -> GgmlType {
        if name.contains("ffn_gate_inp") {
            return GgmlType::F32;
        }
        if self == QuantMix::Q8_0 {
            return GgmlType::Q8_0;
        }
        let layer = name.strip_prefix("blk.").and_then(|s| s.split('.').next()).and_then(|i| i.parse().ok());
        let more_bits = |i: usize| i < n_layers / 8 || i >= 7 * n_layers / 8 || (i - n_layers / 8) % 3 == 2;
        let t = if name == "output.weight" {
            GgmlType::Q6K
        } else if name.contains("attn_k_b") {
            GgmlType::Q8_0
        } else if self == QuantMix::Q4_0 {
            GgmlType::Q4_0
        } else if (name.contains("ffn_down") || name.contains("attn_v_b")) && layer.is_some_and(more_bits) {
            GgmlType::Q6K
        } else if self == QuantMix::Q3K {
            GgmlType::Q3K
        } else if self == QuantMix::Q2K {
            GgmlType::Q2K
        } else if self == QuantMix::Q5KM {
            GgmlType::Q5K
        } else {
            GgmlType::Q4K
        };
        if row_len.is_multiple_of(t.block_elems()) {
            t
        } else {
            GgmlType::Q8_0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_types_as_the_synthetic_gguf_does() {
        let m = QuantMix::Q4KM;
        assert_eq!(m.tensor_type("output.weight", 2048, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("token_embd.weight", 2048, 47), GgmlType::Q4K);
        assert_eq!(m.tensor_type("blk.3.attn_k_b.weight", 192, 47), GgmlType::Q8_0);
        assert_eq!(m.tensor_type("blk.3.ffn_gate_inp.weight", 2048, 47), GgmlType::F32);
        // use_more_bits with 47 layers: 0..5, 41.., and every third from 7.
        assert_eq!(m.tensor_type("blk.0.ffn_down_exps.weight", 1536, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("blk.6.ffn_down_exps.weight", 1536, 47), GgmlType::Q4K);
        assert_eq!(m.tensor_type("blk.7.attn_v_b.weight", 512, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("blk.8.attn_v_b.weight", 512, 47), GgmlType::Q4K);
        assert_eq!(m.tensor_type("blk.46.ffn_down_shexp.weight", 1536, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("blk.8.attn_output.weight", 384, 47), GgmlType::Q8_0);
        assert_eq!(QuantMix::Q8_0.tensor_type("blk.8.attn_output.weight", 384, 47), GgmlType::Q8_0);
        let m = QuantMix::Q5KM;
        assert_eq!(m.tensor_type("blk.6.ffn_down_exps.weight", 1536, 47), GgmlType::Q5K);
        assert_eq!(m.tensor_type("blk.7.attn_v_b.weight", 512, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("output.weight", 2048, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("blk.3.attn_k_b.weight", 192, 47), GgmlType::Q8_0);
        let m = QuantMix::Q3K;
        assert_eq!(m.tensor_type("blk.6.ffn_down_exps.weight", 1536, 47), GgmlType::Q3K);
        assert_eq!(m.tensor_type("blk.7.ffn_down_exps.weight", 1536, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("blk.6.attn_q_a.weight", 2048, 47), GgmlType::Q3K);
        assert_eq!(QuantMix::Q2K.tensor_type("blk.6.attn_q_a.weight", 2048, 47), GgmlType::Q2K);
        let m = QuantMix::Q4_0;
        assert_eq!(m.tensor_type("blk.7.ffn_down_exps.weight", 1536, 47), GgmlType::Q4_0);
        assert_eq!(m.tensor_type("output.weight", 2048, 47), GgmlType::Q6K);
        assert_eq!(m.tensor_type("blk.3.attn_k_b.weight", 192, 47), GgmlType::Q8_0);
    }
}
