//! Prompt processing in chunks: every op of a layer runs once over all of a chunk's tokens, so each
//! weight is read once per chunk (experts once per chunk too: their tokens are grouped by expert
//! on the GPU) instead of once per token. Every product is a `matmul` over the chunk's rows (or its
//! tokens' heads, or its expert entries): each weight chunk is loaded once per tile of 8 rows, the
//! input rows are prepared once per product, or once for consecutive products of one input
//! (`input_rows`: rounded to int8 for Q4_K/Q5_K/Q6_K/Q8_0 with int8 activations, scaled by a folded
//! norm's weight otherwise). The chunk's dispatches are recorded once and replayed for every chunk;
//! the step uniform says where the chunk starts and how many tokens it holds.

use super::weights::{FeedForward, Ffn, ModelWeights, SharedExpert};
use super::{Activations, CoopMatrix, EngineOptions};
use crate::gpu::{Dispatch, GpuContext, GpuWeight, KernelCache};
use crate::kernels::{
    embed::embed,
    input_rows::{input_rows, InputRows},
    kv_store::{kv_store, KvStoreArgs},
    matmul::{matmul, MatmulArgs, MatmulInput, MatmulTiling, Tiles},
    matmul_coop::{matmul_coop, CoopTiling},
    mla_attention_prefill::{mla_attention_prefill, PrefillAttentionArgs},
    mla_attention_prefill_coop::{self as attention_coop, mla_attention_prefill_coop},
    moe_group::{moe_group, Grouping},
    moe_sum::moe_sum,
    router::router,
    InputNorm, Step,
};
use crate::model::{ModelConfig, LORA_NORM_EPS};
use crate::quant::activations::takes_int8_input;
use anyhow::Result;

/// The recorded chunk, replayed for every chunk of a prompt.
pub(super) struct Prefill {
    pub chunk: usize,
    pub step: wgpu::Buffer,
    pub dispatches: Vec<Dispatch>,
}

/// Activations of a chunk of up to `prefill_chunk` tokens, each token's row after the previous one's.
struct ChunkBuffers {
    step: wgpu::Buffer,
    x: wgpu::Buffer,
    qa: wgpu::Buffer,
    ckv: wgpu::Buffer,
    q_rope: wgpu::Buffer,
    q_lat: wgpu::Buffer,
    ctx_lat: wgpu::Buffer,
    attn_out: wgpu::Buffer,
    act: wgpu::Buffer,
    act_shared: wgpu::Buffer,
    router_logits: wgpu::Buffer,
    route: wgpu::Buffer,
    entries: wgpu::Buffer,
    slot_entry: wgpu::Buffer,
    tiles: wgpu::Buffer,
    expert_out: wgpu::Buffer,
    /// The current product's prepared input rows.
    rows: InputRows,
}

impl Prefill {
    pub fn new(
        ctx: &GpuContext,
        kc: &mut KernelCache,
        c: &ModelConfig,
        o: &EngineOptions,
        w: &ModelWeights,
        d: &Activations,
    ) -> Result<Self> {
        let t = o.prefill_chunk;
        let coop = o.coop_matrix == CoopMatrix::On;
        let f = |n: usize| (n * t * 4) as u64;
        let slots = c.n_experts_used + c.n_shared_experts;
        // Values per token of the widest prepared product input (rows of a token, its heads or its slots).
        let per_token =
            [c.hidden, c.q_lora_rank, c.n_heads * c.kv_lora_rank, c.n_heads * c.v_head, c.dense_ffn, slots * c.moe_ffn];
        let b = ChunkBuffers {
            step: ctx.uniform("prefill step", bytemuck::bytes_of(&Step::chunk(0, t))),
            x: ctx.storage("prefill x", f(c.hidden))?,
            qa: ctx.storage("prefill qa", f(c.q_lora_rank))?,
            ckv: ctx.storage("prefill ckv", f(c.kv_width()))?,
            q_rope: ctx.storage("prefill q_rope", f(c.n_heads * c.qk_rope))?,
            q_lat: ctx.storage("prefill q_lat", f(c.n_heads * c.kv_lora_rank))?,
            // Whole tiles of rows for the cooperative attention, which stores them all.
            ctx_lat: ctx.storage(
                "prefill ctx_lat",
                ((t * c.n_heads).next_multiple_of(attention_coop::ROWS) * c.kv_lora_rank * 4) as u64,
            )?,
            attn_out: ctx.storage("prefill attn_out", f(c.n_heads * c.v_head))?,
            act: ctx.storage("prefill act", f(c.dense_ffn.max(slots * c.moe_ffn)))?,
            act_shared: ctx.storage("prefill act_shared", f(c.moe_ffn * c.n_shared_experts.max(1)))?,
            router_logits: ctx.storage("prefill router_logits", f(c.n_experts.max(1)))?,
            route: ctx.storage("prefill route", f(16))?,
            entries: ctx.storage("prefill entries", f(slots.max(1)))?,
            slot_entry: ctx.storage("prefill slot_entry", f(slots.max(1)))?,
            tiles: ctx.storage("prefill tiles", grouping(c, t, coop).tile_words() as u64 * 4)?,
            expert_out: ctx.storage("prefill expert_out", f(slots.max(1) * c.hidden))?,
            rows: InputRows::new(ctx, t * slots.max(c.n_heads), t * per_token.into_iter().max().unwrap_or(0))?,
        };
        let dispatches = record(ctx, kc, c, o, w, d, &b)?;
        Ok(Self { chunk: t, step: b.step, dispatches })
    }
}

/// The chunk's expert tiles, of the size the product kernel takes.
fn grouping(c: &ModelConfig, chunk: usize, coop: bool) -> Grouping {
    Grouping {
        chunk: chunk as u32,
        slots: (c.n_experts_used + c.n_shared_experts).max(1) as u32,
        n_mat: (c.n_experts + c.n_shared_experts) as u32,
        tile: if coop { CoopTiling::ENGINE.inputs() } else { MatmulTiling::INPUTS },
    }
}

/// One product over a chunk's rows: `x` holds input rows `cols` floats apart (one per token, per
/// routed entry, or per token and head; a head's row may be longer than the weight's, as q is),
/// `y` gets output rows `y_stride` floats apart.
struct Product<'a> {
    w: &'a GpuWeight,
    up: Option<&'a GpuWeight>,
    norm: Option<InputNorm<'a>>,
    add: bool,
    tiles: Tiles<'a>,
    x: &'a wgpu::Buffer,
    cols: u32,
    y: &'a wgpu::Buffer,
    y_stride: u32,
}

struct Recorder<'a> {
    ctx: &'a GpuContext,
    o: &'a EngineOptions,
    b: &'a ChunkBuffers,
    chunk: u32,
    grouping: Grouping,
    /// Products on cooperative matrices (`matmul_coop`, f32 input rows).
    coop: bool,
    ds: Vec<Dispatch>,
    /// What the input rows buffer holds while no dispatch since the product that prepared it can
    /// have changed it: q_a and kv_a, q_lat and q_rope, and a shared expert's gate/up after the
    /// routed one's each share one preparation.
    prepared: Option<PreparedRows>,
}

/// The arguments of an `input_rows` preparation, buffers by identity.
#[derive(PartialEq)]
struct PreparedRows {
    x: *const wgpu::Buffer,
    norm: Option<(*const wgpu::Buffer, f32)>,
    int8: bool,
    rows: u32,
    cols: u32,
    stride: u32,
}

impl Recorder<'_> {
    /// Any dispatch but a product's may write the prepared rows' source.
    fn push(&mut self, d: Dispatch, label: &str) {
        self.prepared = None;
        self.ds.push(d.labeled(label));
    }

    /// Through `matmul_coop`, or `matmul` on input rows rounded to int8 once if the weight takes
    /// int8 inputs; else on the f32 rows (scaled by the norm weight first where a norm is folded in).
    fn product(&mut self, kc: &mut KernelCache, p: Product, label: &str) -> Result<()> {
        let (t, g) = (self.chunk, self.grouping);
        let inputs = if self.coop { CoopTiling::ENGINE.inputs() } else { MatmulTiling::INPUTS };
        let (rows, max_tiles) = match p.tiles {
            Tiles::Tokens => (t, t.div_ceil(inputs)),
            Tiles::Heads(h) => (t * h, t.div_ceil(inputs)),
            Tiles::Grouped { of_token: true, .. } => (t, g.max_tiles()),
            Tiles::Grouped { of_token: false, .. } => (g.entries(), g.max_tiles()),
        };
        let int8 = !self.coop && self.o.int8_activations && takes_int8_input(p.w.ggml_type);
        let cols = p.w.row_len() as u32;
        let x = if int8 || p.norm.is_some() {
            let key = PreparedRows {
                x: p.x,
                norm: p.norm.map(|n| (n.weight as *const _, n.eps)),
                int8,
                rows,
                cols,
                stride: p.cols,
            };
            if self.prepared.as_ref() != Some(&key) {
                let d = input_rows(self.ctx, kc, rows, cols, p.cols, p.norm, int8, p.x, &self.b.rows)?;
                self.ds.push(d.labeled("input_rows"));
                self.prepared = Some(key);
            }
            if int8 {
                MatmulInput::Int8(&self.b.rows)
            } else {
                MatmulInput::F32Scaled(&self.b.rows, cols)
            }
        } else {
            MatmulInput::F32 { x: p.x, stride: p.cols }
        };
        let a = MatmulArgs {
            w: p.w,
            up: p.up,
            step: &self.b.step,
            x,
            y: p.y,
            y_stride: p.y_stride,
            add: p.add,
            tiles: p.tiles,
            max_tiles,
        };
        let d = if self.coop {
            matmul_coop(self.ctx, kc, a, CoopTiling::ENGINE)?
        } else {
            matmul(self.ctx, kc, a, MatmulTiling::for_rows(self.ctx, p.w.chunks_per_row() as u32))?
        };
        self.ds.push(d.labeled(label));
        if std::ptr::eq(p.y, p.x) {
            self.prepared = None;
        }
        Ok(())
    }
}

fn record(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    o: &EngineOptions,
    w: &ModelWeights,
    d: &Activations,
    b: &ChunkBuffers,
) -> Result<Vec<Dispatch>> {
    let t = o.prefill_chunk as u32;
    let coop = o.coop_matrix == CoopMatrix::On;
    let mut r =
        Recorder { ctx, o, b, chunk: t, grouping: grouping(c, t as usize, coop), coop, ds: Vec::new(), prepared: None };
    let step = &b.step;
    let (heads, hidden) = (c.n_heads as u32, c.hidden as u32);
    let (q_lora, kv_w, rope, lora, v_head) =
        (c.q_lora_rank as u32, c.kv_width() as u32, c.qk_rope as u32, c.kv_lora_rank as u32, c.v_head as u32);
    let dense = |w, norm, add, x, cols, y, y_stride| Product {
        w,
        up: None,
        norm,
        add,
        tiles: Tiles::Tokens,
        x,
        cols,
        y,
        y_stride,
    };
    let e = embed(ctx, kc, &w.embed, t, step, &d.tokens, &b.x)?;
    r.push(e, "embed");
    for (i, l) in w.layers.iter().enumerate() {
        let attn_norm = Some(InputNorm { weight: &l.attn_norm, eps: c.rms_eps });
        r.product(kc, dense(&l.q_a, attn_norm, false, &b.x, hidden, &b.qa, q_lora), "attn_q_a")?;
        r.product(kc, dense(&l.kv_a, attn_norm, false, &b.x, hidden, &b.ckv, kv_w), "attn_kv_a")?;
        let q_norm = Some(InputNorm { weight: &l.q_a_norm, eps: LORA_NORM_EPS });
        // The query in the latent space (k_b absorbed at load) and its rope part.
        r.product(kc, dense(&l.q_lat, q_norm, false, &b.qa, q_lora, &b.q_lat, heads * lora), "attn_q_lat")?;
        r.product(kc, dense(&l.q_rope, q_norm, false, &b.qa, q_lora, &b.q_rope, heads * rope), "attn_q_rope")?;
        let kv = KvStoreArgs { step, ckv: &b.ckv, kv_norm: &l.kv_a_norm, rope: &d.rope, cache: &d.kv_cache[i] };
        let s = kv_store(ctx, kc, c, o.kv_f16, t, kv)?;
        r.push(s, "kv_store");
        // Per-head products, over (token, head) rows.
        let per_head = |w, x, stride, y, y_stride| Product {
            w,
            up: None,
            norm: None,
            add: false,
            tiles: Tiles::Heads(heads),
            x,
            cols: stride,
            y,
            y_stride,
        };
        let att = PrefillAttentionArgs {
            step,
            q_rope: &b.q_rope,
            q_lat: &b.q_lat,
            rope: &d.rope,
            cache: &d.kv_cache[i],
            out: &b.ctx_lat,
        };
        let a = if coop {
            mla_attention_prefill_coop(ctx, kc, c, o.kv_f16, t, att)?
        } else {
            mla_attention_prefill(ctx, kc, c, o.kv_f16, t, att)?
        };
        r.push(a, "mla_attention");
        r.product(kc, per_head(&l.v_b, &b.ctx_lat, lora, &b.attn_out, v_head), "attn_v_b")?;
        r.product(kc, dense(&l.o, None, true, &b.attn_out, heads * v_head, &b.x, hidden), "attn_output")?;

        let ffn_norm = Some(InputNorm { weight: &l.ffn_norm, eps: c.rms_eps });
        fn glu<'a>(
            f: &'a Ffn,
            norm: Option<InputNorm<'a>>,
            x: &'a wgpu::Buffer,
            cols: u32,
            act: &'a wgpu::Buffer,
        ) -> Product<'a> {
            let width = f.gate.rows() as u32;
            Product {
                w: &f.gate,
                up: Some(&f.up),
                norm,
                add: false,
                tiles: Tiles::Tokens,
                x,
                cols,
                y: act,
                y_stride: width,
            }
        }
        match &l.ffn {
            FeedForward::Dense(f) => {
                r.product(kc, glu(f, ffn_norm, &b.x, hidden, &b.act), "ffn_gate_up")?;
                r.product(kc, dense(&f.down, None, true, &b.act, f.gate.rows() as u32, &b.x, hidden), "ffn_down")?;
            }
            FeedForward::Moe(m) => {
                let appended = matches!(m.shared, SharedExpert::Appended);
                let slots = c.n_experts_used as u32 + appended as u32;
                let n_exp = c.n_experts as u32;
                r.product(
                    kc,
                    dense(&m.router, ffn_norm, false, &b.x, hidden, &b.router_logits, n_exp),
                    "moe_router_logits",
                )?;
                let rt = router(ctx, kc, c, appended, t, [&b.router_logits, &m.bias, &b.route])?;
                r.push(rt, "moe_router");
                let g = Grouping { slots, n_mat: m.experts.gate.n_matrices() as u32, ..r.grouping };
                r.grouping = g;
                let grp = moe_group(ctx, kc, g, [step, &b.route, &b.entries, &b.slot_entry, &b.tiles])?;
                r.push(grp, "moe_group");
                let (ffn, e) = (c.moe_ffn as u32, &m.experts);
                let tiles = |of_token| Tiles::Grouped { tiles: &b.tiles, entries: &b.entries, of_token };
                let gate_up = Product {
                    up: Some(&e.up),
                    tiles: tiles(true),
                    ..dense(&e.gate, ffn_norm, false, &b.x, hidden, &b.act, ffn)
                };
                r.product(kc, gate_up, "moe_gate_up_exps")?;
                if let SharedExpert::Apart(s) = &m.shared {
                    r.product(kc, glu(s, ffn_norm, &b.x, hidden, &b.act_shared), "moe_gate_up_shexp")?;
                }
                let down =
                    Product { tiles: tiles(false), ..dense(&e.down, None, false, &b.act, ffn, &b.expert_out, hidden) };
                r.product(kc, down, "moe_down_exps")?;
                if let SharedExpert::Apart(s) = &m.shared {
                    r.product(
                        kc,
                        dense(&s.down, None, true, &b.act_shared, s.gate.rows() as u32, &b.x, hidden),
                        "moe_down_shexp",
                    )?;
                }
                let sum = moe_sum(ctx, kc, hidden, t, slots, [step, &b.route, &b.slot_entry, &b.expert_out, &b.x])?;
                r.push(sum, "moe_sum");
            }
        }
    }
    Ok(r.ds)
}
