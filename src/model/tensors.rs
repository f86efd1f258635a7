//! The tensors a GLM-4.7-Flash forward needs, by their GGUF names, with the shapes the config implies.

use super::ModelConfig;

/// Shapes are row-major (numpy order): the last entry is the row length.
pub fn expected_tensors(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        ("token_embd.weight".to_string(), vec![c.vocab, c.hidden]),
        ("output_norm.weight".to_string(), vec![c.hidden]),
        ("output.weight".to_string(), vec![c.vocab, c.hidden]),
    ];
    for (i, &moe) in c.moe_layers.iter().enumerate() {
        let mut t = |n: &str, s: Vec<usize>| v.push((format!("blk.{i}.{n}"), s));
        t("attn_norm.weight", vec![c.hidden]);
        t("attn_q_a.weight", vec![c.q_lora_rank, c.hidden]);
        t("attn_q_a_norm.weight", vec![c.q_lora_rank]);
        t("attn_q_b.weight", vec![c.n_heads * c.qk_head(), c.q_lora_rank]);
        t("attn_kv_a_mqa.weight", vec![c.kv_width(), c.hidden]);
        t("attn_kv_a_norm.weight", vec![c.kv_lora_rank]);
        t("attn_k_b.weight", vec![c.n_heads, c.kv_lora_rank, c.qk_nope]);
        t("attn_v_b.weight", vec![c.n_heads, c.v_head, c.kv_lora_rank]);
        t("attn_output.weight", vec![c.hidden, c.n_heads * c.v_head]);
        t("ffn_norm.weight", vec![c.hidden]);
        if moe {
            let (e, f, h) = (c.n_experts, c.moe_ffn, c.hidden);
            t("ffn_gate_inp.weight", vec![e, h]);
            t("exp_probs_b.bias", vec![e]);
            t("ffn_gate_exps.weight", vec![e, f, h]);
            t("ffn_up_exps.weight", vec![e, f, h]);
            t("ffn_down_exps.weight", vec![e, h, f]);
            if c.n_shared_experts > 0 {
                let sf = f * c.n_shared_experts;
                t("ffn_gate_shexp.weight", vec![sf, h]);
                t("ffn_up_shexp.weight", vec![sf, h]);
                t("ffn_down_shexp.weight", vec![h, sf]);
            }
        } else {
            t("ffn_gate.weight", vec![c.dense_ffn, c.hidden]);
            t("ffn_up.weight", vec![c.dense_ffn, c.hidden]);
            t("ffn_down.weight", vec![c.hidden, c.dense_ffn]);
        }
    }
    v
}
