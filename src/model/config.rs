//! The model's shape, read from an HF `config.json` (either spelling) or GGUF `deepseek2.*` metadata.

use crate::gguf::GgufFile;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    Sigmoid,
    Softmax,
}

/// The eps of `q_a_layernorm` and `kv_a_layernorm`: HF builds them with the RMSNorm default, not
/// `rms_norm_eps`.
pub const LORA_NORM_EPS: f32 = 1e-6;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub hidden: usize,
    pub n_layers: usize,
    /// Per layer: true for a routed-expert (MoE) FFN, false for the dense FFN.
    pub moe_layers: Vec<bool>,
    pub dense_ffn: usize,
    pub moe_ffn: usize,
    pub n_experts: usize,
    pub n_experts_used: usize,
    pub n_shared_experts: usize,
    pub routed_scale: f32,
    pub norm_topk: bool,
    pub gating: Gating,
    pub n_heads: usize,
    pub q_lora_rank: usize,
    pub kv_lora_rank: usize,
    pub qk_nope: usize,
    pub qk_rope: usize,
    pub v_head: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub max_ctx: usize,
    pub vocab: usize,
}

fn get<'a>(j: &'a Value, key: &str) -> Result<&'a Value> {
    j.get(key).with_context(|| format!("config.json: missing {key:?}"))
}

fn usize_of(j: &Value, key: &str) -> Result<usize> {
    get(j, key)?.as_u64().map(|v| v as usize).with_context(|| format!("config.json: {key:?} is not an integer"))
}

fn f64_of(j: &Value, key: &str) -> Result<f64> {
    get(j, key)?.as_f64().with_context(|| format!("config.json: {key:?} is not a number"))
}

impl ModelConfig {
    pub fn qk_head(&self) -> usize {
        self.qk_nope + self.qk_rope
    }

    /// Floats cached per position and layer: the normalized latent and the roped shared key.
    pub fn kv_width(&self) -> usize {
        self.kv_lora_rank + self.qk_rope
    }

    /// From an HF `config.json` file (see [`ModelConfig::from_hf_json`]).
    pub fn from_hf_file(path: &std::path::Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let json = serde_json::from_str(&json).with_context(|| format!("{} is not valid JSON", path.display()))?;
        Self::from_hf_json(&json)
    }

    /// From an HF `config.json`; accepts `rope_theta`/`first_k_dense_replace` and transformers-5's
    /// `rope_parameters`/`mlp_layer_types`.
    pub fn from_hf_json(j: &Value) -> Result<Self> {
        let model_type = get(j, "model_type")?.as_str().unwrap_or("");
        ensure!(
            model_type == "glm4_moe_lite",
            "unsupported architecture {model_type:?} (this engine runs glm4_moe_lite, GLM-4.7-Flash)"
        );
        let n_layers = usize_of(j, "num_hidden_layers")?;
        let moe_layers = if let Some(types) = j.get("mlp_layer_types") {
            let types = types.as_array().context("config.json: mlp_layer_types is not a list")?;
            types
                .iter()
                .map(|t| match t.as_str() {
                    Some("dense") => Ok(false),
                    Some("sparse") => Ok(true),
                    _ => bail!("config.json: unknown mlp_layer_types entry {t}"),
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            let k = usize_of(j, "first_k_dense_replace")?;
            (0..n_layers).map(|i| i >= k).collect()
        };
        let rope_theta = match j.get("rope_parameters") {
            Some(p) => f64_of(p, "rope_theta")?,
            None => f64_of(j, "rope_theta")?,
        };
        let scoring = j.get("scoring_func").and_then(Value::as_str).unwrap_or("sigmoid");
        let cfg = Self {
            hidden: usize_of(j, "hidden_size")?,
            n_layers,
            moe_layers,
            dense_ffn: usize_of(j, "intermediate_size")?,
            moe_ffn: usize_of(j, "moe_intermediate_size")?,
            n_experts: usize_of(j, "n_routed_experts")?,
            n_experts_used: usize_of(j, "num_experts_per_tok")?,
            n_shared_experts: usize_of(j, "n_shared_experts")?,
            routed_scale: f64_of(j, "routed_scaling_factor")? as f32,
            norm_topk: get(j, "norm_topk_prob")?.as_bool().unwrap_or(true),
            gating: if scoring == "softmax" { Gating::Softmax } else { Gating::Sigmoid },
            n_heads: usize_of(j, "num_attention_heads")?,
            q_lora_rank: usize_of(j, "q_lora_rank")?,
            kv_lora_rank: usize_of(j, "kv_lora_rank")?,
            qk_nope: usize_of(j, "qk_nope_head_dim")?,
            qk_rope: usize_of(j, "qk_rope_head_dim")?,
            v_head: usize_of(j, "v_head_dim")?,
            rope_theta: rope_theta as f32,
            rms_eps: f64_of(j, "rms_norm_eps")? as f32,
            max_ctx: usize_of(j, "max_position_embeddings")?,
            vocab: usize_of(j, "vocab_size")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// From GGUF metadata (`general.architecture = deepseek2`).
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.architecture()?;
        ensure!(
            arch == "deepseek2",
            "unsupported architecture {arch:?} (this engine runs GLM-4.7-Flash, GGUF architecture deepseek2)"
        );
        let u = |k: &str| -> Result<usize> {
            let key = format!("deepseek2.{k}");
            Ok(g.require(&key)?.as_u64().with_context(|| key.clone())? as usize)
        };
        let f = |k: &str| -> Result<f64> {
            let key = format!("deepseek2.{k}");
            g.require(&key)?.as_f64().with_context(|| key.clone())
        };
        // Newer converters count the MTP (next-token prediction) blocks in block_count; they follow
        // the main layers and are not part of the forward.
        let nextn = match g.get("deepseek2.nextn_predict_layers") {
            Some(v) => v.as_u64()? as usize,
            None => 0,
        };
        let n_layers =
            u("block_count")?.checked_sub(nextn).context("deepseek2.nextn_predict_layers exceeds block_count")?;
        let n_dense = u("leading_dense_block_count")?;
        let n_heads = u("attention.head_count")?;
        let kv_lora_rank = u("attention.kv_lora_rank")?;
        let qk_rope = u("rope.dimension_count")?;
        let qk_head = u("attention.key_length_mla")?;
        ensure!(qk_head > qk_rope, "deepseek2.attention.key_length_mla {qk_head} ≤ rope dims {qk_rope}");
        let vocab = match g.get("deepseek2.vocab_size") {
            Some(v) => v.as_u64()? as usize,
            None => g.require("tokenizer.ggml.tokens")?.as_array()?.len(),
        };
        // GGUFs converted before expert_gating_func existed: llama.cpp falls back to sigmoid for this model.
        let gating = match g.get("deepseek2.expert_gating_func") {
            None => Gating::Sigmoid,
            Some(v) => match v.as_u64()? {
                1 => Gating::Softmax,
                2 => Gating::Sigmoid,
                other => bail!("deepseek2.expert_gating_func {other} is not supported (1 softmax, 2 sigmoid)"),
            },
        };
        let cfg = Self {
            hidden: u("embedding_length")?,
            n_layers,
            moe_layers: (0..n_layers).map(|i| i >= n_dense).collect(),
            dense_ffn: u("feed_forward_length")?,
            moe_ffn: u("expert_feed_forward_length")?,
            n_experts: u("expert_count")?,
            n_experts_used: u("expert_used_count")?,
            n_shared_experts: u("expert_shared_count")?,
            routed_scale: f("expert_weights_scale")? as f32,
            norm_topk: g.get("deepseek2.expert_weights_norm").map_or(Ok(true), |v| v.as_bool())?,
            gating,
            n_heads,
            q_lora_rank: u("attention.q_lora_rank")?,
            kv_lora_rank,
            qk_nope: qk_head - qk_rope,
            qk_rope,
            v_head: u("attention.value_length_mla")?,
            rope_theta: f("rope.freq_base")? as f32,
            rms_eps: f("attention.layer_norm_rms_epsilon")? as f32,
            max_ctx: u("context_length")?,
            vocab,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects shapes the forward cannot run, with the offending values named.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        ensure!(
            c.moe_layers.len() == c.n_layers,
            "config: {} layer types for {} layers",
            c.moe_layers.len(),
            c.n_layers
        );
        ensure!(c.n_layers > 0 && c.hidden > 0 && c.vocab > 0 && c.n_heads > 0, "config: zero-sized model");
        ensure!(c.hidden.is_multiple_of(8), "config: hidden size {} is not a multiple of 8", c.hidden);
        ensure!(c.qk_rope.is_multiple_of(2), "config: rope dims {} must be even", c.qk_rope);
        ensure!(c.max_ctx > 0, "config: context length 0");
        if c.moe_layers.iter().any(|&m| m) {
            ensure!(
                c.n_experts_used > 0 && c.n_experts_used <= c.n_experts,
                "config: {} experts per token but {} experts",
                c.n_experts_used,
                c.n_experts
            );
            ensure!(
                c.n_experts_used <= 8,
                "config: at most 8 experts per token are supported, not {}",
                c.n_experts_used
            );
            ensure!(c.n_shared_experts <= 1, "config: {} shared experts (1 supported)", c.n_shared_experts);
        }
        for (name, v) in [
            ("q_lora_rank", c.q_lora_rank),
            ("kv_lora_rank", c.kv_lora_rank),
            ("qk_nope_head_dim", c.qk_nope),
            ("v_head_dim", c.v_head),
            ("intermediate_size", c.dense_ffn),
            ("moe_intermediate_size", c.moe_ffn),
        ] {
            ensure!(v > 0 && v.is_multiple_of(8), "config: {name} = {v} must be a positive multiple of 8");
        }
        Ok(())
    }
}

#[cfg(test)]
impl ModelConfig {
    /// A config of tests/fixtures (`glm-4.7-flash.config.json`, `glm-tiny/config.json`), for the unit
    /// tests that check kernel variants at the real and the tiny shape.
    pub fn fixture(name: &str) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        Self::from_hf_file(&dir.join(name)).unwrap()
    }
}
