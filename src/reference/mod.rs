//! CPU reference forward: the correctness oracle for the GPU engine.
//!
//! Plain f32 Rust, following HF transformers' `Glm4MoeLiteForCausalLM` (eager attention, fp32)
//! step by step; rayon only parallelizes the matrix-vector products and the per-position work of
//! attention. Slow and simple on purpose; every weight is dequantized to f32 at load, so it is meant
//! for small test models (the full GLM-4.7-Flash would need about 120 GB of RAM).
//!
//! Attention scores as the GPU does, through the query absorbed at load (`model::absorb_query`:
//! k_b folded into q_b's nope rows, stored in the engine's type), q_lat · latent; values run in the
//! EXPANDED form: every step, each cached latent is multiplied out to a per-head v, so the GPU's
//! W_v applied after the softmax is checked independently. The absorption itself is checked against
//! transformers on the F32 fixture, where the absorbed matrices are exact.
//!
//! Numerics follow the GPU where it deliberately differs from fp32 transformers: products over Q4_K,
//! Q6_K and Q8_0 weights take their input rounded to int8 per 32-block ([`activations`]), an RMSNorm
//! feeding a product is applied as the GPU folds it, `W (x ⊙ g)` scaled by the RMS afterwards, and
//! the absorbed query is rounded to its stored type (Q8_0 for quantized files).
//!
//! RoPE: HF's `apply_rotary_pos_emb_interleave` rotates the pairs (x0,x1), (x2,x3), … and writes the
//! result de-interleaved (all rotated first elements, then all rotated second elements). Here the
//! pairs are rotated in place (llama.cpp's "NORM" rope). The same permutation applies to q_rope and
//! k_rope, so q_rope·k_rope, and with it everything the model outputs, is identical; only the order
//! of the k_rope entries in the cache differs from HF's cache.

use crate::model::{absorb_query, Gating, Model, ModelConfig, TensorData, LORA_NORM_EPS};
use crate::quant::{activations, GgmlType};
use anyhow::{ensure, Context, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// A row-major `[rows, cols]` matrix: a Linear weight, `[out, in]`.
struct Matrix {
    cols: usize,
    data: Vec<f32>,
    /// Whether products round their input to int8, as the GPU does for this weight's format.
    int8_input: bool,
}

impl Matrix {
    fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// `W x`, rows in parallel.
    fn matvec(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.cols);
        let rounded;
        let x = if self.int8_input {
            rounded = activations::round_to_int8(x);
            &rounded
        } else {
            x
        };
        self.data.par_chunks(self.cols).with_min_len(16).map(|row| dot(row, x)).collect()
    }

    /// `W rms_norm(x)` as the GPU folds the norm: `W (x ⊙ g)`, then the RMS scale.
    fn matvec_normed(&self, n: Normed) -> Vec<f32> {
        let weighted: Vec<f32> = n.x.iter().zip(n.weight).map(|(v, w)| v * w).collect();
        let s = rms_scale(n.x, n.eps);
        self.matvec(&weighted).into_iter().map(|v| v * s).collect()
    }

    /// `W x` on the calling thread (for use inside an already parallel loop), f32 input.
    fn matvec_serial(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.cols);
        assert!(!self.int8_input, "matvec_serial is for f32-input matrices");
        self.data.chunks_exact(self.cols).map(|row| dot(row, x)).collect()
    }

    /// A matrix the engine makes at load (not a file tensor), as the GPU holds it.
    fn made(t: &TensorData, int8: bool) -> Result<Matrix> {
        Ok(Matrix { cols: t.shape[1], data: t.to_f32()?, int8_input: int8_input(t.ggml_type, int8) })
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    // Eight partial sums keep several additions in flight even without auto-vectorization.
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// `1 / sqrt(mean(x²) + eps)`.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}

/// `x / sqrt(mean(x²) + eps) * w`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let inv = rms_scale(x, eps);
    x.iter().zip(w).map(|(v, w)| w * (v * inv)).collect()
}

/// An RMSNorm of `x` with weights `weight`, left for the consuming products to apply.
#[derive(Clone, Copy)]
struct Normed<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    eps: f32,
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// Interleaved RoPE in place: pair i = (x[2i], x[2i+1]) is rotated by `pos · theta^(-2i/d)`.
/// Computed in f32 as HF does (`inv_freq` and `pos · inv_freq` are float32 tensors there).
fn rope(x: &mut [f32], pos: usize, theta: f32) {
    let d = x.len();
    for i in 0..d / 2 {
        let inv_freq = 1.0 / theta.powf((2 * i) as f32 / d as f32);
        let (sin, cos) = (pos as f32 * inv_freq).sin_cos();
        let (a, b) = (x[2 * i], x[2 * i + 1]);
        x[2 * i] = a * cos - b * sin;
        x[2 * i + 1] = b * cos + a * sin;
    }
}

/// The KV cache of the reference: per layer and position, the normalized latent (`kv_lora_rank`
/// floats) and the roped shared key (`qk_rope`, pairs interleaved), both f32.
#[derive(Clone)]
pub struct KvCache {
    kv_lora: usize,
    qk_rope: usize,
    layers: Vec<LayerKv>,
}

#[derive(Clone, Default)]
struct LayerKv {
    latent: Vec<f32>,
    k_rope: Vec<f32>,
}

impl KvCache {
    /// Positions cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.layers[0].latent.len() / self.kv_lora
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn latent(&self, layer: usize, pos: usize) -> &[f32] {
        &self.layers[layer].latent[pos * self.kv_lora..(pos + 1) * self.kv_lora]
    }

    pub fn k_rope(&self, layer: usize, pos: usize) -> &[f32] {
        &self.layers[layer].k_rope[pos * self.qk_rope..(pos + 1) * self.qk_rope]
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.latent.truncate(len * self.kv_lora);
            l.k_rope.truncate(len * self.qk_rope);
        }
    }
}

struct Attention {
    q_a: Matrix,
    q_a_norm: Vec<f32>,
    /// `[n_heads · kv_lora, q_lora]`: the query in the latent space (`model::absorb_query`).
    q_lat: Matrix,
    /// `[n_heads · qk_rope, q_lora]`: q_b's rope rows, of q_lat's type.
    q_rope: Matrix,
    kv_a: Matrix,
    kv_a_norm: Vec<f32>,
    /// Per head `[v_head, kv_lora]`: `v = W_v · latent`.
    w_v: Vec<Matrix>,
    o: Matrix,
}

impl Attention {
    /// `x` is the attn-normed hidden state at position `pos = kv.len()`; appends to `kv`.
    fn forward(&self, c: &ModelConfig, x: Normed, kv: &mut LayerKv) -> Vec<f32> {
        let (nope, rope_d, kv_lora) = (c.qk_nope, c.qk_rope, c.kv_lora_rank);
        let pos = kv.latent.len() / kv_lora;

        let q_a = self.q_a.matvec_normed(x);
        let q_a = Normed { x: &q_a, weight: &self.q_a_norm, eps: LORA_NORM_EPS };
        let (q_lat, q_rope) = (self.q_lat.matvec_normed(q_a), self.q_rope.matvec_normed(q_a));
        let ckv = self.kv_a.matvec_normed(x);
        let latent = rms_norm(&ckv[..kv_lora], &self.kv_a_norm, LORA_NORM_EPS);
        let mut k_rope = ckv[kv_lora..].to_vec();
        rope(&mut k_rope, pos, c.rope_theta);
        kv.latent.extend_from_slice(&latent);
        kv.k_rope.extend_from_slice(&k_rope);

        let n = pos + 1;
        let scale = 1.0 / ((nope + rope_d) as f32).sqrt();
        let mut heads = Vec::with_capacity(c.n_heads * c.v_head);
        for h in 0..c.n_heads {
            let q_lat = &q_lat[h * kv_lora..(h + 1) * kv_lora];
            let mut q_rope = q_rope[h * rope_d..(h + 1) * rope_d].to_vec();
            rope(&mut q_rope, pos, c.rope_theta);

            // Expand every cached latent to this head's value.
            let (scores, values): (Vec<f32>, Vec<Vec<f32>>) = (0..n)
                .into_par_iter()
                .map(|t| {
                    let latent = &kv.latent[t * kv_lora..(t + 1) * kv_lora];
                    let k_rope = &kv.k_rope[t * rope_d..(t + 1) * rope_d];
                    let score = (dot(q_lat, latent) + dot(&q_rope, k_rope)) * scale;
                    (score, self.w_v[h].matvec_serial(latent))
                })
                .unzip();

            let p = softmax(&scores); // causal: only positions 0..=pos exist
            let mut out = vec![0.0f32; c.v_head];
            for (pt, v) in p.iter().zip(&values) {
                for (o, vi) in out.iter_mut().zip(v) {
                    *o += pt * vi;
                }
            }
            heads.extend_from_slice(&out);
        }
        self.o.matvec(&heads)
    }
}

/// `down(silu(gate x) * up x)`.
struct Mlp {
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

impl Mlp {
    fn forward(&self, x: Normed) -> Vec<f32> {
        let (g, u) = (self.gate.matvec_normed(x), self.up.matvec_normed(x));
        let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
        self.down.matvec(&a)
    }
}

struct Moe {
    /// `[n_experts, hidden]`
    router: Matrix,
    /// Added to the scores for the choice of experts only.
    bias: Vec<f32>,
    experts: Vec<Mlp>,
    shared: Option<Mlp>,
    /// The last choice's margin (f32 bits): the last picked expert's biased score less the best
    /// unpicked one's. Near zero, rounding differences may pick another expert.
    margin: AtomicU32,
}

impl Moe {
    /// The chosen experts and their weights.
    fn route(&self, c: &ModelConfig, x: Normed) -> Vec<(usize, f32)> {
        let logits = self.router.matvec_normed(x);
        let scores = match c.gating {
            Gating::Sigmoid => logits.iter().map(|&l| sigmoid(l)).collect(),
            Gating::Softmax => softmax(&logits),
        };
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Descending by biased score; the sort is stable, so ties go to the lower expert index.
        order.sort_by(|&a, &b| (scores[b] + self.bias[b]).total_cmp(&(scores[a] + self.bias[a])));
        let chosen = &order[..c.n_experts_used];
        if let (Some(&last), Some(&next)) = (order.get(c.n_experts_used - 1), order.get(c.n_experts_used)) {
            let margin = (scores[last] + self.bias[last]) - (scores[next] + self.bias[next]);
            self.margin.store(margin.max(0.0).to_bits(), Ordering::Relaxed);
        }
        let sum: f32 = chosen.iter().map(|&e| scores[e]).sum();
        let norm = if c.norm_topk { 1.0 / (sum + 1e-20) } else { 1.0 };
        chosen.iter().map(|&e| (e, scores[e] * norm * c.routed_scale)).collect()
    }

    fn forward(&self, c: &ModelConfig, x: Normed) -> Vec<f32> {
        let mut out = match &self.shared {
            Some(s) => s.forward(x),
            None => vec![0.0; x.x.len()],
        };
        for (e, w) in self.route(c, x) {
            for (o, y) in out.iter_mut().zip(self.experts[e].forward(x)) {
                *o += w * y;
            }
        }
        out
    }
}

enum Ffn {
    Dense(Mlp),
    Moe(Moe),
}

struct Layer {
    attn_norm: Vec<f32>,
    attn: Attention,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

/// The whole model in f32 on the CPU.
pub struct CpuReference {
    config: ModelConfig,
    /// `[vocab, hidden]`
    embed: Matrix,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    /// `[vocab, hidden]`
    output: Matrix,
}

/// Dequantized tensor and its shape.
fn load_f32(model: &Model, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = model.tensor(name)?;
    let data = t.to_f32().with_context(|| format!("cannot dequantize {name}"))?;
    let n: usize = t.shape.iter().product();
    ensure!(data.len() == n, "tensor {name}: {} values for shape {:?}", data.len(), t.shape);
    Ok((t.shape.clone(), data))
}

fn vector(model: &Model, name: &str) -> Result<Vec<f32>> {
    let (shape, data) = load_f32(model, name)?;
    ensure!(shape.len() == 1, "tensor {name}: expected 1-D, got shape {shape:?}");
    Ok(data)
}

/// Whether products over weights of type `t` round their input to int8, given the engine's setting.
fn int8_input(t: GgmlType, int8: bool) -> bool {
    int8 && activations::takes_int8_input(t)
}

fn matrix(model: &Model, name: &str, int8: bool) -> Result<Matrix> {
    let (shape, data) = load_f32(model, name)?;
    ensure!(shape.len() == 2, "tensor {name}: expected 2-D, got shape {shape:?}");
    Ok(Matrix { cols: shape[1], data, int8_input: int8_input(model.tensor_meta(name)?.0, int8) })
}

/// A 3-D `[n, rows, cols]` tensor as `n` matrices; `int8` if products take int8 inputs (per-head
/// attention matrices never do).
fn matrices(model: &Model, name: &str, int8: bool) -> Result<Vec<Matrix>> {
    let (shape, data) = load_f32(model, name)?;
    ensure!(shape.len() == 3, "tensor {name}: expected 3-D, got shape {shape:?}");
    let (rows, cols) = (shape[1], shape[2]);
    let int8_input = int8_input(model.tensor_meta(name)?.0, int8);
    Ok(data.chunks_exact(rows * cols).map(|m| Matrix { cols, data: m.to_vec(), int8_input }).collect())
}

fn mlp(model: &Model, prefix: &str, suffix: &str, int8: bool) -> Result<Mlp> {
    Ok(Mlp {
        gate: matrix(model, &format!("{prefix}ffn_gate{suffix}.weight"), int8)?,
        up: matrix(model, &format!("{prefix}ffn_up{suffix}.weight"), int8)?,
        down: matrix(model, &format!("{prefix}ffn_down{suffix}.weight"), int8)?,
    })
}

impl CpuReference {
    /// Dequantizes every weight of `model` to f32; every product takes f32 inputs (the engine with
    /// `int8_activations` off).
    pub fn load(model: &Model) -> Result<Self> {
        Self::load_with(model, false)
    }

    /// [`CpuReference::load`], with `int8_activations` as the engine's option of that name.
    pub fn load_with(model: &Model, int8_activations: bool) -> Result<Self> {
        let int8 = int8_activations;
        let c = model.config.clone();
        let mut layers = Vec::with_capacity(c.n_layers);
        for (i, &is_moe) in c.moe_layers.iter().enumerate() {
            let p = format!("blk.{i}.");
            let t = |n: &str| format!("{p}{n}");
            let query = absorb_query(&c, &model.tensor(&t("attn_q_b.weight"))?, &model.tensor(&t("attn_k_b.weight"))?)?;
            let attn = Attention {
                q_a: matrix(model, &t("attn_q_a.weight"), int8)?,
                q_a_norm: vector(model, &t("attn_q_a_norm.weight"))?,
                q_lat: Matrix::made(&query.lat, int8)?,
                q_rope: Matrix::made(&query.rope, int8)?,
                kv_a: matrix(model, &t("attn_kv_a_mqa.weight"), int8)?,
                kv_a_norm: vector(model, &t("attn_kv_a_norm.weight"))?,
                w_v: matrices(model, &t("attn_v_b.weight"), false)?,
                o: matrix(model, &t("attn_output.weight"), int8)?,
            };
            ensure!(attn.w_v.len() == c.n_heads, "layer {i}: v_b head count");
            let ffn = if is_moe {
                let gates = matrices(model, &t("ffn_gate_exps.weight"), int8)?;
                let ups = matrices(model, &t("ffn_up_exps.weight"), int8)?;
                let downs = matrices(model, &t("ffn_down_exps.weight"), int8)?;
                let experts =
                    gates.into_iter().zip(ups).zip(downs).map(|((gate, up), down)| Mlp { gate, up, down }).collect();
                Ffn::Moe(Moe {
                    router: matrix(model, &t("ffn_gate_inp.weight"), int8)?,
                    bias: vector(model, &t("exp_probs_b.bias"))?,
                    experts,
                    shared: if c.n_shared_experts > 0 { Some(mlp(model, &p, "_shexp", int8)?) } else { None },
                    margin: AtomicU32::new(f32::INFINITY.to_bits()),
                })
            } else {
                Ffn::Dense(mlp(model, &p, "", int8)?)
            };
            layers.push(Layer {
                attn_norm: vector(model, &t("attn_norm.weight"))?,
                attn,
                ffn_norm: vector(model, &t("ffn_norm.weight"))?,
                ffn,
            });
        }
        Ok(Self {
            embed: matrix(model, "token_embd.weight", false)?,
            output_norm: vector(model, "output_norm.weight")?,
            output: matrix(model, "output.weight", int8)?,
            layers,
            config: c,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache {
            kv_lora: self.config.kv_lora_rank,
            qk_rope: self.config.qk_rope,
            layers: vec![LayerKv::default(); self.config.n_layers],
        }
    }

    /// One token at position `cache.len()`; appends to the cache and returns the logits.
    /// With `hidden`, pushes the hidden states as HF's `output_hidden_states` does: the embedding
    /// output, the output of every layer but the last, then the final-norm output (n_layers + 1).
    pub fn step(&self, cache: &mut KvCache, token: u32, mut hidden: Option<&mut Vec<Vec<f32>>>) -> Vec<f32> {
        let c = &self.config;
        assert!((token as usize) < c.vocab, "token {token} is outside the vocabulary ({})", c.vocab);
        assert_eq!(cache.layers.len(), c.n_layers, "cache made for another model");
        let mut x = self.embed.row(token as usize).to_vec();
        for (layer, kv) in self.layers.iter().zip(&mut cache.layers) {
            if let Some(hs) = hidden.as_deref_mut() {
                hs.push(x.clone());
            }
            let attn = layer.attn.forward(c, Normed { x: &x, weight: &layer.attn_norm, eps: c.rms_eps }, kv);
            let h = add(&x, &attn);
            let normed = Normed { x: &h, weight: &layer.ffn_norm, eps: c.rms_eps };
            let ffn = match &layer.ffn {
                Ffn::Dense(m) => m.forward(normed),
                Ffn::Moe(m) => m.forward(c, normed),
            };
            x = add(&h, &ffn);
        }
        let logits = self.output.matvec_normed(Normed { x: &x, weight: &self.output_norm, eps: c.rms_eps });
        if let Some(hs) = hidden {
            hs.push(rms_norm(&x, &self.output_norm, c.rms_eps));
        }
        logits
    }

    /// The smallest routing margin of the last step's MoE layers (infinite without any): how close
    /// the step came to choosing another expert somewhere.
    pub fn last_route_margin(&self) -> f32 {
        let moe = self.layers.iter().filter_map(|l| if let Ffn::Moe(m) = &l.ffn { Some(m) } else { None });
        moe.map(|m| f32::from_bits(m.margin.load(Ordering::Relaxed))).fold(f32::INFINITY, f32::min)
    }
}
