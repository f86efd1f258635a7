//! The model's weights uploaded to the GPU, one tensor at a time straight from the mapped file.

use crate::gpu::{GpuContext, GpuWeight};
use crate::model::{Model, TensorData};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

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

pub enum FeedForward {
    Dense(Box<Ffn>),
    Moe(Box<Moe>),
}

pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub q_a: GpuWeight,
    pub q_a_norm: wgpu::Buffer,
    pub q_b: GpuWeight,
    pub kv_a: GpuWeight,
    pub kv_a_norm: wgpu::Buffer,
    pub k_b: GpuWeight,
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

struct Uploader<'a> {
    ctx: &'a GpuContext,
    model: &'a Model,
    bar: ProgressBar,
    bytes: u64,
}

impl Uploader<'_> {
    fn weight(&mut self, name: &str) -> Result<GpuWeight> {
        let t = self.model.tensor(name)?;
        let w = GpuWeight::upload(self.ctx, name, &t)?;
        self.bytes += w.bytes();
        self.bar.inc(t.bytes.len() as u64);
        Ok(w)
    }

    /// Small vectors (norms, biases) are kept as plain f32.
    fn vector(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let t = self.model.tensor(name)?;
        let v = t.to_f32()?;
        let b = self.ctx.storage_init(name, bytemuck::cast_slice(&v))?;
        self.bytes += b.size();
        self.bar.inc(t.bytes.len() as u64);
        Ok(b)
    }

    /// The routed experts, with the shared expert appended as one more where the types allow.
    fn experts(&mut self, p: &str, n_shared: usize) -> Result<(Ffn, SharedExpert)> {
        if n_shared == 0 {
            return Ok((self.ffn(p, "_exps")?, SharedExpert::None));
        }
        let names =
            ["gate", "up", "down"].map(|m| (format!("{p}ffn_{m}_exps.weight"), format!("{p}ffn_{m}_shexp.weight")));
        let mut tensors = Vec::new();
        for (e, s) in &names {
            tensors.push((self.model.tensor(e)?, self.model.tensor(s)?));
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
        let c = &model.config;
        let bar = ProgressBar::new(file_bytes(model)?);
        bar.set_style(
            ProgressStyle::with_template("uploading weights {bar:40} {binary_bytes}/{binary_total_bytes} {eta}")
                .expect("static template"),
        );
        let mut up = Uploader { ctx, model, bar, bytes: 0 };
        // A device that cannot hold the model reports it through this scope instead of aborting.
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let embed = up.weight("token_embd.weight")?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for (i, &moe) in c.moe_layers.iter().enumerate() {
            let p = format!("blk.{i}.");
            let w = |s: &str| format!("{p}{s}");
            let layer = LayerWeights {
                attn_norm: up.vector(&w("attn_norm.weight"))?,
                q_a: up.weight(&w("attn_q_a.weight"))?,
                q_a_norm: up.vector(&w("attn_q_a_norm.weight"))?,
                q_b: up.weight(&w("attn_q_b.weight"))?,
                kv_a: up.weight(&w("attn_kv_a_mqa.weight"))?,
                kv_a_norm: up.vector(&w("attn_kv_a_norm.weight"))?,
                k_b: up.weight(&w("attn_k_b.weight"))?,
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
