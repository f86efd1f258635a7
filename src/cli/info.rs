//! `glm-wgpu info`: what a model file holds and what running it needs.

use crate::engine::file_bytes;
use crate::gpu::GpuContext;
use crate::model::{expected_tensors, Model};
use anyhow::Result;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A GGUF file or a Hugging Face checkpoint directory.
    #[arg(short, long)]
    pub model: PathBuf,
    /// GPU adapter: an index or part of its name.
    #[arg(long)]
    pub device: Option<String>,
    /// Context length to size the KV cache for.
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

pub fn info(a: InfoArgs) -> Result<()> {
    let model = Model::open(&a.model)?;
    let c = &model.config;
    println!("model: {} ({})", a.model.display(), model.format_name());
    println!(
        "shape: {} layers ({} dense, {} MoE), hidden {}, vocab {}, max context {}",
        c.n_layers,
        c.moe_layers.iter().filter(|&&m| !m).count(),
        c.moe_layers.iter().filter(|&&m| m).count(),
        c.hidden,
        c.vocab,
        c.max_ctx
    );
    println!(
        "attention: MLA, {} heads, q_lora {}, kv_lora {}, qk_nope {}, qk_rope {}, v_head {}, rope theta {}",
        c.n_heads, c.q_lora_rank, c.kv_lora_rank, c.qk_nope, c.qk_rope, c.v_head, c.rope_theta
    );
    println!(
        "ffn: dense {}, {} experts of {} (top {}, {:?} gating, scale {}), {} shared",
        c.dense_ffn, c.n_experts, c.moe_ffn, c.n_experts_used, c.gating, c.routed_scale, c.n_shared_experts
    );
    let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (name, _) in expected_tensors(c) {
        let (t, shape) = model.tensor_meta(&name)?;
        let e = by_type.entry(t.name()).or_default();
        e.0 += 1;
        e.1 += t.bytes_for(shape.iter().product()) as u64;
    }
    println!("tensor types:");
    for (t, (n, b)) in &by_type {
        println!("  {t:6} {n:5} tensors  {}", gib(*b));
    }
    let weights = file_bytes(&model)?;
    let kv = (a.ctx * c.kv_width() * c.n_layers * 2) as u64;
    println!(
        "memory: weights {}, f16 KV cache for {} positions {}, total {}",
        gib(weights),
        a.ctx,
        gib(kv),
        gib(weights + kv)
    );
    match GpuContext::new(a.device.as_deref()) {
        Ok(ctx) => {
            println!("gpu: {} (max buffer binding {})", ctx.describe(), gib(ctx.limits.max_storage_buffer_binding_size))
        }
        Err(e) => println!("gpu: none ({e:#})"),
    }
    Ok(())
}
