//! The model's weights on the GPU: uploaded one tensor at a time straight from the mapped file, or
//! filled with random values on the GPU for a synthetic model.

use super::synthetic::QuantMix;
use crate::gpu::{GpuContext, GpuWeight, KernelCache};
use crate::model::{absorb_query, absorbed_type, expected_tensors, Model, ModelConfig, TensorData};
use crate::quant::GgmlType;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

pub struct Ffn {
    pub gate: GpuWeight,
    pub up: GpuWeight,
    pub down: GpuWeight,
}

pub struct Moe {
    pub router: GpuWeight,
    /// Selection bias, f32.
    pub bias: wgpu::Buffer,
    pub experts: Ffn,
    pub shared: SharedExpert,
}

/// Where the layer's shared expert lives.
pub enum SharedExpert {
    None,
    /// Its own matrices, run as separate passes.
    Apart(Box<Ffn>),
    /// Appended to the routed experts as expert `n_experts` (its three tensors have the routed
    /// experts' types and shapes), so the router gives it a slot of weight 1 and the expert passes
    /// run it with the others.
    Appended,
}

impl SharedExpert {
    /// The matrices of a shared expert run apart.
    pub fn apart(&self) -> Option<&Ffn> {
        match self {
            SharedExpert::Apart(s) => Some(s),
            _ => None,
        }
    }
}

pub enum FeedForward {
    Dense(Box<Ffn>),
    Moe(Box<Moe>),
}

pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub q_a: GpuWeight,
    pub q_a_norm: wgpu::Buffer,
    /// The query in the latent space: `k_b` absorbed into `q_b`'s nope rows (`model::absorb_query`).
    pub q_lat: GpuWeight,
    /// `q_b`'s rope rows, of `q_lat`'s type.
    pub q_rope: GpuWeight,
    pub kv_a: GpuWeight,
    pub kv_a_norm: wgpu::Buffer,
    pub v_b: GpuWeight,
    pub o: GpuWeight,
    pub ffn_norm: wgpu::Buffer,
    pub ffn: FeedForward,
}

pub struct ModelWeights {
    pub embed: GpuWeight,
    pub output_norm: wgpu::Buffer,
    pub output: GpuWeight,
    pub layers: Vec<LayerWeights>,
    pub bytes: u64,
}

/// Where the weights come from.
enum Source<'a> {
    File(&'a Model),
    /// Random weights of a quantization mix's types, filled on the GPU.
    Synthetic {
        mix: QuantMix,
        n_layers: usize,
        shapes: HashMap<String, Vec<usize>>,
        kc: KernelCache,
        seed: u32,
    },
}

struct Uploader<'a> {
    ctx: &'a GpuContext,
    source: Source<'a>,
    bar: ProgressBar,
    bytes: u64,
}

impl Uploader<'_> {
    fn weight(&mut self, name: &str) -> Result<GpuWeight> {
        let model = match &self.source {
            Source::File(model) => *model,
            Source::Synthetic { shapes, .. } => {
                let shape = shapes[name].clone();
                return self.random(name, &shape);
            }
        };
        let t = model.tensor(name)?;
        let w = GpuWeight::upload(self.ctx, name, &t)?;
        self.bytes += w.bytes();
        self.bar.inc(t.bytes.len() as u64);
        Ok(w)
    }

    fn random(&mut self, name: &str, shape: &[usize]) -> Result<GpuWeight> {
        let Source::Synthetic { mix, n_layers, .. } = &self.source else {
            unreachable!("random weights of a model file")
        };
        let t = mix.tensor_type(name, shape[shape.len() - 1], *n_layers);
        self.random_of(name, t, shape)
    }

    fn random_of(&mut self, name: &str, t: GgmlType, shape: &[usize]) -> Result<GpuWeight> {
        let Source::Synthetic { kc, seed, .. } = &mut self.source else {
            unreachable!("random weights of a model file")
        };
        *seed += 1;
        let w = GpuWeight::random(self.ctx, kc, name, t, shape, *seed)?;
        self.bytes += w.bytes();
        self.bar.inc(t.bytes_for(shape.iter().product()) as u64);
        Ok(w)
    }

    /// The layer's absorbed query (`q_lat`, `q_rope`) from its `q_b` and `k_b`.
    fn query(&mut self, c: &ModelConfig, p: &str) -> Result<(GpuWeight, GpuWeight)> {
        let (q_b, k_b) = (format!("{p}attn_q_b.weight"), format!("{p}attn_k_b.weight"));
        let (lat, rope) = (format!("{p}attn_q_lat"), format!("{p}attn_q_rope"));
        let model = match &self.source {
            Source::File(model) => *model,
            Source::Synthetic { mix, n_layers, .. } => {
                let t = absorbed_type(
                    mix.tensor_type(&q_b, c.q_lora_rank, *n_layers),
                    mix.tensor_type(&k_b, c.qk_nope, *n_layers),
                    c.q_lora_rank,
                    0.0,
                );
                let lat = self.random_of(&lat, t, &[c.n_heads * c.kv_lora_rank, c.q_lora_rank])?;
                return Ok((lat, self.random_of(&rope, t, &[c.n_heads * c.qk_rope, c.q_lora_rank])?));
            }
        };
        let (q_b, k_b) = (model.tensor(&q_b)?, model.tensor(&k_b)?);
        let a = absorb_query(c, &q_b, &k_b)?;
        self.bar.inc((q_b.bytes.len() + k_b.bytes.len()) as u64);
        let lat = GpuWeight::upload(self.ctx, &lat, &a.lat)?;
        let rope = GpuWeight::upload(self.ctx, &rope, &a.rope)?;
        self.bytes += lat.bytes() + rope.bytes();
        Ok((lat, rope))
    }

    /// Small vectors (norms, biases) are kept as plain f32.
    fn vector(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let v = match &mut self.source {
            Source::File(model) => {
                let t = model.tensor(name)?;
                self.bar.inc(t.bytes.len() as u64);
                t.to_f32()?
            }
            // Norm weights near 1, biases near 0, as the synthetic GGUF has them.
            Source::Synthetic { shapes, seed, .. } => {
                *seed += 1;
                let mut rng = StdRng::seed_from_u64(*seed as u64);
                let centre = if name.ends_with(".bias") { 0.0 } else { 1.0 };
                self.bar.inc(shapes[name][0] as u64 * 4);
                (0..shapes[name][0]).map(|_| centre + rng.random_range(-0.1..0.1)).collect()
            }
        };
        let b = self.ctx.storage_init(name, bytemuck::cast_slice(&v))?;
        self.bytes += b.size();
        Ok(b)
    }

    /// The routed experts, with the shared expert appended as one more where the types allow.
    fn experts(&mut self, p: &str, n_shared: usize) -> Result<(Ffn, SharedExpert)> {
        if n_shared == 0 {
            return Ok((self.ffn(p, "_exps")?, SharedExpert::None));
        }
        if let Source::Synthetic { shapes, .. } = &self.source {
            // One shared expert has the routed experts' types and shapes.
            let [gate, up, down] = ["gate", "up", "down"].map(|m| {
                let name = format!("{p}ffn_{m}_exps.weight");
                let mut shape = shapes[&name].clone();
                shape[0] += 1;
                (name, shape)
            });
            let ffn = Ffn {
                gate: self.random(&gate.0, &gate.1)?,
                up: self.random(&up.0, &up.1)?,
                down: self.random(&down.0, &down.1)?,
            };
            return Ok((ffn, SharedExpert::Appended));
        }
        let Source::File(model) = &self.source else { unreachable!() };
        let model = *model;
        let names =
            ["gate", "up", "down"].map(|m| (format!("{p}ffn_{m}_exps.weight"), format!("{p}ffn_{m}_shexp.weight")));
        let mut tensors = Vec::new();
        for (e, s) in &names {
            tensors.push((model.tensor(e)?, model.tensor(s)?));
        }
        let appendable = tensors.iter().all(|(e, s)| e.ggml_type == s.ggml_type && e.shape[1..] == s.shape[..]);
        if !appendable {
            return Ok((self.ffn(p, "_exps")?, SharedExpert::Apart(Box::new(self.ffn(p, "_shexp")?))));
        }
        let mut up = Vec::new();
        for ((e, s), (name, _)) in tensors.iter().zip(&names) {
            let mut shape = e.shape.clone();
            shape[0] += 1;
            let joined =
                TensorData { ggml_type: e.ggml_type, shape, bytes: [&e.bytes[..], &s.bytes[..]].concat().into() };
            let w = GpuWeight::upload(self.ctx, name, &joined)?;
            self.bytes += w.bytes();
            self.bar.inc(joined.bytes.len() as u64);
            up.push(w);
        }
        let [gate, up, down] = <[GpuWeight; 3]>::try_from(up).ok().expect("three tensors");
        Ok((Ffn { gate, up, down }, SharedExpert::Appended))
    }

    fn ffn(&mut self, p: &str, suffix: &str) -> Result<Ffn> {
        Ok(Ffn {
            gate: self.weight(&format!("{p}ffn_gate{suffix}.weight"))?,
            up: self.weight(&format!("{p}ffn_up{suffix}.weight"))?,
            down: self.weight(&format!("{p}ffn_down{suffix}.weight"))?,
        })
    }
}

/// Bytes of all tensors the forward reads, as stored in the file.
pub fn file_bytes(model: &Model) -> Result<u64> {
    let mut total = 0;
    for (name, _) in crate::model::expected_tensors(&model.config) {
        let (t, shape) = model.tensor_meta(&name)?;
        total += t.bytes_for(shape.iter().product()) as u64;
    }
    Ok(total)
}

impl ModelWeights {
    pub fn upload(ctx: &GpuContext, model: &Model) -> Result<Self> {
        Self::load(ctx, &model.config, Source::File(model), file_bytes(model)?, "uploading weights")
    }

    /// Random weights of the mix's types for a model of shape `c`, filled on the GPU.
    pub fn synthetic(ctx: &GpuContext, c: &ModelConfig, mix: QuantMix) -> Result<Self> {
        let shapes: HashMap<_, _> = expected_tensors(c).into_iter().collect();
        let total = shapes
            .iter()
            .map(|(name, shape)| {
                let t = if shape.len() == 1 {
                    GgmlType::F32
                } else {
                    mix.tensor_type(name, shape[shape.len() - 1], c.n_layers)
                };
                t.bytes_for(shape.iter().product()) as u64
            })
            .sum();
        let source = Source::Synthetic { mix, n_layers: c.n_layers, shapes, kc: KernelCache::new(true), seed: 0 };
        Self::load(ctx, c, source, total, "filling random weights")
    }

    fn load(ctx: &GpuContext, c: &ModelConfig, source: Source, total: u64, what: &str) -> Result<Self> {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!("{what} {{bar:40}} {{binary_bytes}}/{{binary_total_bytes}} {{eta}}"))
                .expect("static template"),
        );
        let mut up = Uploader { ctx, source, bar, bytes: 0 };
        // A device that cannot hold the model reports it through this scope instead of aborting.
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let embed = up.weight("token_embd.weight")?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for (i, &moe) in c.moe_layers.iter().enumerate() {
            let p = format!("blk.{i}.");
            let w = |s: &str| format!("{p}{s}");
            let (q_lat, q_rope) = up.query(c, &p)?;
            let layer = LayerWeights {
                attn_norm: up.vector(&w("attn_norm.weight"))?,
                q_a: up.weight(&w("attn_q_a.weight"))?,
                q_a_norm: up.vector(&w("attn_q_a_norm.weight"))?,
                q_lat,
                q_rope,
                kv_a: up.weight(&w("attn_kv_a_mqa.weight"))?,
                kv_a_norm: up.vector(&w("attn_kv_a_norm.weight"))?,
                v_b: up.weight(&w("attn_v_b.weight"))?,
                o: up.weight(&w("attn_output.weight"))?,
                ffn_norm: up.vector(&w("ffn_norm.weight"))?,
                ffn: if moe {
                    let (experts, shared) = up.experts(&p, c.n_shared_experts)?;
                    FeedForward::Moe(Box::new(Moe {
                        router: up.weight(&w("ffn_gate_inp.weight"))?,
                        bias: up.vector(&w("exp_probs_b.bias"))?,
                        experts,
                        shared,
                    }))
                } else {
                    FeedForward::Dense(Box::new(up.ffn(&p, "")?))
                },
            };
            layers.push(layer);
        }
        let output_norm = up.vector("output_norm.weight")?;
        let output = up.weight("output.weight")?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(e).context(format!("the GPU ({}) cannot hold this model", ctx.describe()));
        }
        up.bar.finish_and_clear();
        Ok(Self { embed, output_norm, output, layers, bytes: up.bytes })
    }
}
