//! The decode query in the latent space, made once at load: `k_b` absorbed into `q_b`.
//!
//! Per head h, attention scores the latent cache with q_lat[h] = k_b[h] · q_nope[h], where q_nope[h]
//! is q_b's nope rows of head h times the normalised q_a output. Multiplying the matrices first,
//! q_lat[h] = (k_b[h] · q_b_nope[h]) · x, turns two dependent products (the second one a launch of
//! its own per token) into one of twice q_b's rows. The rope rows of q_b become a second matrix of
//! the same type, so one pass computes both.

use super::{ModelConfig, TensorData};
use crate::quant::{self, GgmlType};
use anyhow::{ensure, Result};
use rayon::prelude::*;
use std::borrow::Cow;

/// The absorbed query: `lat` (n_heads · kv_lora rows) and `rope` (n_heads · qk_rope rows), each
/// q_lora_rank long, of one type.
pub struct AbsorbedQuery {
    pub lat: TensorData<'static>,
    pub rope: TensorData<'static>,
}

/// The type the absorbed matrices are stored in: at least as fine as the finer input, so the
/// product loses no more than its inputs did: Q8_0 for quantized inputs, F32 where an input is
/// F32, else F16 where f16's range holds every value (`max_abs`), else F32.
pub fn absorbed_type(q_b: GgmlType, k_b: GgmlType, row_len: usize, max_abs: f32) -> GgmlType {
    let float = |t: GgmlType| matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
    if q_b == GgmlType::F32 || k_b == GgmlType::F32 {
        GgmlType::F32
    } else if float(q_b) || float(k_b) {
        if max_abs <= f32::from(half::f16::MAX) {
            GgmlType::F16
        } else {
            GgmlType::F32
        }
    } else if row_len.is_multiple_of(GgmlType::Q8_0.block_elems()) {
        GgmlType::Q8_0
    } else {
        GgmlType::F32
    }
}

/// `q_b` ([n_heads · qk_head, q_lora]) and `k_b` ([n_heads, kv_lora, qk_nope]) as the file has them.
pub fn absorb_query(c: &ModelConfig, q_b: &TensorData, k_b: &TensorData) -> Result<AbsorbedQuery> {
    let (heads, nope, rope, lora, width) = (c.n_heads, c.qk_nope, c.qk_rope, c.kv_lora_rank, c.q_lora_rank);
    let qb = q_b.to_f32()?;
    let kb = k_b.to_f32()?;
    ensure!(
        qb.len() == heads * c.qk_head() * width,
        "attn_q_b has {} values, not {heads}·{}·{width}",
        qb.len(),
        c.qk_head()
    );
    ensure!(kb.len() == heads * lora * nope, "attn_k_b has {} values, not {heads}·{lora}·{nope}", kb.len());
    // Row r of head h: Σ_j k_b[h][r][j] · q_b[h · qk_head + j], accumulated along the row.
    let mut lat = vec![0f32; heads * lora * width];
    lat.par_chunks_mut(width).enumerate().for_each(|(row, out)| {
        let h = row / lora;
        for (j, &k) in kb[row * nope..(row + 1) * nope].iter().enumerate() {
            let src = &qb[(h * c.qk_head() + j) * width..][..width];
            for (o, s) in out.iter_mut().zip(src) {
                *o += k * s;
            }
        }
    });
    let rope_rows: Vec<f32> = (0..heads)
        .flat_map(|h| &qb[(h * c.qk_head() + nope) * width..(h + 1) * c.qk_head() * width])
        .copied()
        .collect();
    let max_abs = lat.iter().chain(&rope_rows).fold(0f32, |m, v| m.max(v.abs()));
    let t = absorbed_type(q_b.ggml_type, k_b.ggml_type, width, max_abs);
    let encode = |values: &[f32], rows: usize| -> Result<TensorData<'static>> {
        Ok(TensorData { ggml_type: t, shape: vec![rows, width], bytes: Cow::Owned(quant::quantize(t, values)?) })
    };
    Ok(AbsorbedQuery { lat: encode(&lat, heads * lora)?, rope: encode(&rope_rows, heads * rope)? })
}
