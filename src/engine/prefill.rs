//! Prompt processing in chunks: every op of a layer runs once over all of a chunk's tokens, so each
//! weight is read once per chunk (experts once per chunk too: their tokens are grouped by expert
//! on the GPU) instead of once per token. The chunk's dispatches are recorded once and replayed
//! for every chunk; the step uniform says where the chunk starts and how many tokens it holds.

use super::weights::{FeedForward, Ffn, ModelWeights, SharedExpert};
use super::{Activations, EngineOptions};
use crate::gpu::{Dispatch, GpuContext, GpuWeight, KernelCache};
use crate::kernels::{
    embed::embed,
    kv_store::{kv_store, KvStoreArgs},
    matvec,
    mla_attention_prefill::{mla_attention_prefill, PrefillAttentionArgs},
    moe_group::moe_group,
    moe_sum::moe_sum,
    router::router,
    InputNorm, MatrixOf, MatvecArgs, Output, Step,
};
use crate::model::{ModelConfig, LORA_NORM_EPS};
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
    q: wgpu::Buffer,
    q_lat: wgpu::Buffer,
    ctx_lat: wgpu::Buffer,
    attn_out: wgpu::Buffer,
    act: wgpu::Buffer,
    act_shared: wgpu::Buffer,
    router_logits: wgpu::Buffer,
    route: wgpu::Buffer,
    entries: wgpu::Buffer,
    slot_entry: wgpu::Buffer,
    expert_out: wgpu::Buffer,
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
        let f = |n: usize| (n * t * 4) as u64;
        let slots = c.n_experts_used + c.n_shared_experts;
        let b = ChunkBuffers {
            step: ctx.uniform("prefill step", bytemuck::bytes_of(&Step::chunk(0, t))),
            x: ctx.storage("prefill x", f(c.hidden))?,
            qa: ctx.storage("prefill qa", f(c.q_lora_rank))?,
            ckv: ctx.storage("prefill ckv", f(c.kv_width()))?,
            q: ctx.storage("prefill q", f(c.n_heads * c.qk_head()))?,
            q_lat: ctx.storage("prefill q_lat", f(c.n_heads * c.kv_lora_rank))?,
            ctx_lat: ctx.storage("prefill ctx_lat", f(c.n_heads * c.kv_lora_rank))?,
            attn_out: ctx.storage("prefill attn_out", f(c.n_heads * c.v_head))?,
            act: ctx.storage("prefill act", f(c.dense_ffn.max(slots * c.moe_ffn)))?,
            act_shared: ctx.storage("prefill act_shared", f(c.moe_ffn * c.n_shared_experts.max(1)))?,
            router_logits: ctx.storage("prefill router_logits", f(c.n_experts.max(1)))?,
            route: ctx.storage("prefill route", f(16))?,
            entries: ctx.storage("prefill entries", f(slots.max(1)))?,
            slot_entry: ctx.storage("prefill slot_entry", f(slots.max(1)))?,
            expert_out: ctx.storage("prefill expert_out", f(slots.max(1) * c.hidden))?,
        };
        let dispatches = record(ctx, kc, c, o, w, d, &b)?;
        Ok(Self { chunk: t, step: b.step, dispatches })
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
    let (t, step) = (o.prefill_chunk as u32, &b.step);
    let heads = c.n_heads as u32;
    // A product over every token's row (or every head of every token, or every routed entry).
    let mm = |kc: &mut KernelCache,
              w: &GpuWeight,
              up: Option<&GpuWeight>,
              norm: Option<InputNorm>,
              matrix,
              out,
              slots,
              io: [(&wgpu::Buffer, u32); 2],
              route| {
        let [(x, x_stride), (y, y_stride)] = io;
        matvec(
            ctx,
            kc,
            MatvecArgs {
                w,
                stacked: None,
                up,
                norm,
                matrix,
                out,
                slots,
                x_stride,
                y_stride,
                x,
                y,
                route,
                int8: o.int8_activations,
            },
        )
    };
    let dense = |kc: &mut KernelCache, w: &GpuWeight, norm: Option<InputNorm>, out, io: [(&wgpu::Buffer, u32); 2]| {
        mm(kc, w, None, norm, MatrixOf::Single, out, t, io, &b.route)
    };
    let hidden = c.hidden as u32;
    let mut ds = vec![embed(ctx, kc, &w.embed, t, step, &d.tokens, &b.x)?.labeled("embed")];
    for (i, l) in w.layers.iter().enumerate() {
        let attn_norm = Some(InputNorm { weight: &l.attn_norm, eps: c.rms_eps });
        let (q_lora, kv_w, qk) = (c.q_lora_rank as u32, c.kv_width() as u32, c.qk_head() as u32);
        ds.push(dense(kc, &l.q_a, attn_norm, Output::Store, [(&b.x, hidden), (&b.qa, q_lora)])?.labeled("attn_q_a"));
        ds.push(dense(kc, &l.kv_a, attn_norm, Output::Store, [(&b.x, hidden), (&b.ckv, kv_w)])?.labeled("attn_kv_a"));
        let q_norm = Some(InputNorm { weight: &l.q_a_norm, eps: LORA_NORM_EPS });
        ds.push(dense(kc, &l.q_b, q_norm, Output::Store, [(&b.qa, q_lora), (&b.q, heads * qk)])?.labeled("attn_q_b"));
        let kv = KvStoreArgs { step, ckv: &b.ckv, kv_norm: &l.kv_a_norm, rope: &d.rope, cache: &d.kv_cache[i] };
        ds.push(kv_store(ctx, kc, c, o.kv_f16, t, kv)?.labeled("kv_store"));
        let lora = c.kv_lora_rank as u32;
        let per_head = |kc: &mut KernelCache, w: &GpuWeight, io| {
            mm(kc, w, None, None, MatrixOf::Slot, Output::Store, t * heads, io, &b.route)
        };
        ds.push(per_head(kc, &l.k_b, [(&b.q, qk), (&b.q_lat, lora)])?.labeled("attn_k_b"));
        let att = PrefillAttentionArgs {
            step,
            q: &b.q,
            q_lat: &b.q_lat,
            rope: &d.rope,
            cache: &d.kv_cache[i],
            out: &b.ctx_lat,
        };
        ds.push(mla_attention_prefill(ctx, kc, c, o.kv_f16, t, att)?.labeled("mla_attention"));
        let v_head = c.v_head as u32;
        ds.push(per_head(kc, &l.v_b, [(&b.ctx_lat, lora), (&b.attn_out, v_head)])?.labeled("attn_v_b"));
        ds.push(
            dense(kc, &l.o, None, Output::Add, [(&b.attn_out, heads * v_head), (&b.x, hidden)])?.labeled("attn_output"),
        );

        let ffn_norm = Some(InputNorm { weight: &l.ffn_norm, eps: c.rms_eps });
        let glu = |kc: &mut KernelCache, f: &Ffn, act: &wgpu::Buffer| {
            let width = f.gate.rows() as u32;
            mm(
                kc,
                &f.gate,
                Some(&f.up),
                ffn_norm,
                MatrixOf::Single,
                Output::Store,
                t,
                [(&b.x, hidden), (act, width)],
                &b.route,
            )
        };
        match &l.ffn {
            FeedForward::Dense(f) => {
                ds.push(glu(kc, f, &b.act)?.labeled("ffn_gate_up"));
                let width = f.gate.rows() as u32;
                ds.push(dense(kc, &f.down, None, Output::Add, [(&b.act, width), (&b.x, hidden)])?.labeled("ffn_down"));
            }
            FeedForward::Moe(m) => {
                let appended = matches!(m.shared, SharedExpert::Appended);
                let slots = c.n_experts_used as u32 + appended as u32;
                let n_exp = c.n_experts as u32;
                ds.push(
                    dense(kc, &m.router, ffn_norm, Output::Store, [(&b.x, hidden), (&b.router_logits, n_exp)])?
                        .labeled("moe_router_logits"),
                );
                ds.push(router(ctx, kc, c, appended, t, [&b.router_logits, &m.bias, &b.route])?.labeled("moe_router"));
                let n_mat = m.experts.gate.n_matrices() as u32;
                ds.push(
                    moe_group(ctx, kc, t, slots, n_mat, [step, &b.route, &b.entries, &b.slot_entry])?
                        .labeled("moe_group"),
                );
                let ffn = c.moe_ffn as u32;
                let e = &m.experts;
                let io = [(&b.x, hidden), (&b.act, ffn)];
                ds.push(
                    mm(
                        kc,
                        &e.gate,
                        Some(&e.up),
                        ffn_norm,
                        MatrixOf::Grouped,
                        Output::Store,
                        t * slots,
                        io,
                        &b.entries,
                    )?
                    .labeled("moe_gate_up_exps"),
                );
                if let SharedExpert::Apart(s) = &m.shared {
                    ds.push(glu(kc, s, &b.act_shared)?.labeled("moe_gate_up_shexp"));
                }
                let io = [(&b.act, ffn), (&b.expert_out, hidden)];
                ds.push(
                    mm(kc, &e.down, None, None, MatrixOf::GroupedRows, Output::Store, t * slots, io, &b.entries)?
                        .labeled("moe_down_exps"),
                );
                if let SharedExpert::Apart(s) = &m.shared {
                    let width = s.gate.rows() as u32;
                    ds.push(
                        dense(kc, &s.down, None, Output::Add, [(&b.act_shared, width), (&b.x, hidden)])?
                            .labeled("moe_down_shexp"),
                    );
                }
                let sum = [step, &b.route, &b.slot_entry, &b.expert_out, &b.x];
                ds.push(moe_sum(ctx, kc, hidden, t, slots, sum)?.labeled("moe_sum"));
            }
        }
    }
    Ok(ds)
}
