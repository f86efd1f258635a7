//! The GPU forward: every op of a token recorded into one compute pass, one submission per token.
//! The token id lives on the GPU: the embedding reads `tokens[pos]`, greedy sampling writes
//! `tokens[pos + 1]`, so the CPU never has to wait for a token before submitting the next step.

mod kernel_check;
mod prefill;
mod synthetic;
mod weights;

pub use synthetic::QuantMix;
pub use weights::{file_bytes, FeedForward, ModelWeights, SharedExpert};

use crate::gpu::native::KernelChoice;
use crate::gpu::{map_read, read_f32, Dispatch, GpuContext, KernelCache};
use crate::kernels::{
    argmax::argmax,
    capture::capture,
    embed::embed,
    matmul_coop, matvec,
    mla_attention::{
        cache_rows, mla_attention, partials_head_floats, partials_len, AttentionArgs, DecodeAttention, COOP_CONTEXT,
        MERGED_CONTEXT,
    },
    mla_attention_coop, mla_attention_prefill_coop, prepare_input, prepared_bytes, prepared_floats,
    rms_norm::rms_norm,
    router::RouteChoice,
    router_partials_bytes, router_partials_fit, ChooseRoute, InputNorm, MatrixOf, MatvecArgs, Output, RouterPartials,
    Stacked, Step,
};
use crate::model::{Model, ModelConfig, LORA_NORM_EPS};
use crate::quant::{activations, GgmlType};
use anyhow::{ensure, Result};
use std::collections::VecDeque;
use std::sync::mpsc;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Positions the KV cache holds.
    pub ctx_len: usize,
    /// Latent cache in f16 (default) or f32.
    pub kv_f16: bool,
    /// Record every layer's output (for the parity tests).
    pub capture_hidden: bool,
    /// Keep wgpu's runtime bounds checks in the kernels (slower; the tests run this way).
    pub checked_kernels: bool,
    /// Round the inputs of Q4_K/Q5_K/Q6_K/Q8_0 products to int8 (`quant::activations`): faster, and what
    /// llama.cpp does; off, every product takes f32 inputs.
    pub int8_activations: bool,
    /// Most prompt tokens [`Engine::prefill`] runs through the model together (at most the context).
    pub prefill_chunk: usize,
    /// WGSL or native pipelines for the matrix products (`gpu::native`).
    pub kernels: KernelChoice,
    /// The prefill's products and attention, and with an f16 cache the decode attention from
    /// `COOP_CONTEXT` positions, on cooperative matrices (`kernels::matmul_coop`,
    /// `kernels::mla_attention_prefill_coop`, `kernels::mla_attention_coop`). [`Engine`] resolves
    /// `Auto` to `On` or `Off` at load.
    pub coop_matrix: CoopMatrix,
}

impl EngineOptions {
    /// Whether the decode attention's long-context splits run on cooperative matrices (once
    /// `coop_matrix` is resolved).
    pub fn coop_decode(&self) -> bool {
        self.coop_matrix == CoopMatrix::On && self.kv_f16
    }

    /// The step uniform of a decode step at `pos`, split for the attention these options run.
    fn decode_step(&self, pos: usize) -> Step {
        Step::at(pos, self.coop_decode())
    }
}

/// Whether the prefill's products and attention, and the decode attention of long contexts, run on
/// cooperative matrices (tensor cores, simdgroup matrices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CoopMatrix {
    /// Where the adapter has them and they pass the start-up check against the plain kernels.
    #[default]
    Auto,
    /// Required: an adapter without them, or a failed start-up check, is an error.
    On,
    /// The plain kernels (matmul on int8 or f32 dot products, attention per token).
    Off,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            ctx_len: 4096,
            kv_f16: true,
            capture_hidden: false,
            checked_kernels: true,
            int8_activations: true,
            prefill_chunk: 1024,
            kernels: KernelChoice::Wgsl,
            coop_matrix: CoopMatrix::Auto,
        }
    }
}

/// One launch's GPU time in a profiled step.
#[derive(Debug, Clone)]
pub struct LaunchTime {
    pub label: String,
    pub micros: f64,
    pub weight_bytes: u64,
}

/// What a step produces beyond filling the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutput {
    /// Prompt tokens whose successor is known: no LM head.
    CacheOnly,
    /// Logits left in the logits buffer for the CPU to read.
    Logits,
    /// Logits and the greedy token written to `tokens[pos + 1]` on the GPU.
    Greedy,
}

struct Activations {
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    x: wgpu::Buffer,
    xn: wgpu::Buffer,
    qa: wgpu::Buffer,
    q_rope: wgpu::Buffer,
    ckv: wgpu::Buffer,
    q_lat: wgpu::Buffer,
    ctx_lat: wgpu::Buffer,
    attn_out: wgpu::Buffer,
    act: wgpu::Buffer,
    act_shared: wgpu::Buffer,
    router_logits: wgpu::Buffer,
    /// The attention output's partial router sums, where the router is folded into it.
    router_partials: wgpu::Buffer,
    /// The FFN input normalised and rounded to int8 by the router pass, for the expert passes.
    ffn_int8: wgpu::Buffer,
    /// The final hidden state normalised and rounded to int8, for the LM head.
    head_int8: wgpu::Buffer,
    route: wgpu::Buffer,
    partials: wgpu::Buffer,
    logits: wgpu::Buffer,
    rope: wgpu::Buffer,
    kv_cache: Vec<wgpu::Buffer>,
    hidden: Option<wgpu::Buffer>,
}

/// (cos, sin) of every position and rope pair, computed as transformers does: the angle
/// `pos * inv_freq` rounded to f32, its cosine and sine taken exactly.
fn rope_table(c: &ModelConfig, ctx_len: usize) -> Vec<f32> {
    let half = c.qk_rope / 2;
    let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / c.rope_theta.powf((2 * i) as f32 / c.qk_rope as f32)).collect();
    let mut t = Vec::with_capacity(ctx_len * half * 2);
    for pos in 0..ctx_len {
        for f in &inv_freq {
            let a = (pos as f32 * f) as f64;
            t.push(a.cos() as f32);
            t.push(a.sin() as f32);
        }
    }
    t
}

impl Activations {
    /// Buffers for the options as resolved (`coop_matrix` on or off), around the rope table.
    fn new(ctx: &GpuContext, c: &ModelConfig, o: &EngineOptions, rope: wgpu::Buffer) -> Result<Self> {
        let f = |n: usize| (n * 4) as u64;
        let kv_bytes = (cache_rows(o.ctx_len) * c.kv_width()) as u64 * if o.kv_f16 { 2 } else { 4 };
        // Routed slots, plus one for a shared expert appended to the routed ones.
        let act = c.dense_ffn.max((c.n_experts_used + c.n_shared_experts) * c.moe_ffn);
        Ok(Self {
            step: ctx.uniform("step", bytemuck::bytes_of(&o.decode_step(0))),
            tokens: ctx.storage("tokens", f(o.ctx_len + 1))?,
            x: ctx.storage("x", f(c.hidden))?,
            xn: ctx.storage("xn", f(c.hidden))?,
            qa: ctx.storage("qa", f(c.q_lora_rank).max(prepared_bytes(c.q_lora_rank)))?,
            q_rope: ctx.storage("q_rope", f(c.n_heads * c.qk_rope))?,
            ckv: ctx.storage("ckv", f(c.kv_width()))?,
            q_lat: ctx.storage("q_lat", f(c.n_heads * c.kv_lora_rank))?,
            ctx_lat: ctx.storage("ctx_lat", f(c.n_heads * c.kv_lora_rank))?,
            attn_out: ctx.storage("attn_out", f(c.n_heads * c.v_head))?,
            act: ctx.storage("act", f(act))?,
            act_shared: ctx.storage("act_shared", f(c.moe_ffn * c.n_shared_experts.max(1)))?,
            router_logits: ctx.storage("router_logits", f(c.n_experts.max(1)))?,
            router_partials: ctx.storage("router_partials", router_partials_bytes(c.hidden, c.n_experts).max(4))?,
            ffn_int8: ctx.storage("ffn_int8", prepared_bytes(c.hidden))?,
            head_int8: ctx.storage("head_int8", prepared_bytes(c.hidden))?,
            route: ctx.storage("route", f(16))?,
            partials: ctx.storage("attention partials", f(partials_len(c, o.ctx_len, o.coop_decode())))?,
            logits: ctx.storage("logits", f(c.vocab))?,
            rope,
            kv_cache: (0..c.n_layers)
                .map(|i| ctx.storage(&format!("kv_cache.{i}"), kv_bytes))
                .collect::<Result<_>>()?,
            hidden: if o.capture_hidden { Some(ctx.storage("hidden", f((c.n_layers + 1) * c.hidden))?) } else { None },
        })
    }
}

/// Token ids read back without stalling: each greedy step copies its token into a ring slot that
/// is mapped once the GPU gets there.
struct TokenRing {
    slots: Vec<wgpu::Buffer>,
    next: usize,
    pending: VecDeque<PendingToken>,
}

/// A greedy step's token on its way back: the ring slot, the map callback's result, the submission.
struct PendingToken {
    slot: usize,
    mapped: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    submission: wgpu::SubmissionIndex,
}

pub const MAX_IN_FLIGHT: usize = 4;

pub struct Engine {
    pub ctx: GpuContext,
    pub config: ModelConfig,
    pub options: EngineOptions,
    pub weights: ModelWeights,
    bufs: Activations,
    body: Vec<Dispatch>,
    head: Vec<Dispatch>,
    /// Greedy sampling's launches.
    sample: [Dispatch; 2],
    prefill: prefill::Prefill,
    ring: TokenRing,
    pos: usize,
    /// Launches of this label are left out of decode steps ([`Engine::leave_out`]).
    left_out: Option<String>,
    pub kernels_compiled: usize,
    /// What the engine found out about its kernel variants at load (for the user).
    pub kernel_notes: Vec<String>,
}

impl Engine {
    pub fn load(ctx: GpuContext, model: &Model, options: EngineOptions) -> Result<Self> {
        check_options(&model.config, &options)?;
        let weights = ModelWeights::upload(&ctx, model)?;
        Self::new(ctx, model.config.clone(), weights, options)
    }

    /// A model of shape `c` with random weights of the mix's types, filled on the GPU: the full-size
    /// model's speed without its file.
    pub fn synthetic(ctx: GpuContext, c: &ModelConfig, mix: QuantMix, options: EngineOptions) -> Result<Self> {
        check_options(c, &options)?;
        let weights = ModelWeights::synthetic(&ctx, c, mix)?;
        Self::new(ctx, c.clone(), weights, options)
    }

    fn new(ctx: GpuContext, c: ModelConfig, weights: ModelWeights, mut options: EngineOptions) -> Result<Self> {
        options.prefill_chunk = options.prefill_chunk.min(options.ctx_len);
        let rope = ctx.storage_init("rope", bytemuck::cast_slice(&rope_table(&c, options.ctx_len)))?;
        let mut kernel_notes = Vec::new();
        let mut kc = match options.kernels {
            KernelChoice::Wgsl => KernelCache::new(options.checked_kernels),
            KernelChoice::Native => KernelCache::with_native(&ctx, options.checked_kernels)?,
            KernelChoice::Auto => KernelCache::with_native(&ctx, options.checked_kernels).unwrap_or_else(|e| {
                kernel_notes.push(format!("WGSL kernels: {e:#}"));
                KernelCache::new(options.checked_kernels)
            }),
        };
        let cache = kernel_check::CacheShape { kv_f16: options.kv_f16, rope: &rope, ctx_len: options.ctx_len };
        options.coop_matrix = resolve_coop(&ctx, &mut kc, &c, &weights, cache, options.coop_matrix, &mut kernel_notes)?;
        let bufs = Activations::new(&ctx, &c, &options, rope)?;
        let (body, head, sample) = record(&ctx, &mut kc, &c, &options, &weights, &bufs)?;
        let prefill = prefill::Prefill::new(&ctx, &mut kc, &c, &options, &weights, &bufs)?;
        let slots = (0..MAX_IN_FLIGHT + 1).map(|_| ctx.readback("token", 4)).collect();
        let mut e = Self {
            kernels_compiled: kc.len(),
            kernel_notes,
            ctx,
            config: c,
            options,
            weights,
            bufs,
            body,
            head,
            sample,
            prefill,
            ring: TokenRing { slots, next: 0, pending: VecDeque::new() },
            pos: 0,
            left_out: None,
        };
        if kc.is_native() {
            e.check_native(&mut kc)?;
        }
        e.kernel_notes.append(&mut kc.notes);
        Ok(e)
    }

    /// Checks every native pipeline against its WGSL twin at its first launch in one decode step and
    /// one prefill chunk of random tokens; the ones that disagree are rebuilt from WGSL (the forward
    /// recorded again) and named in the notes. Leaves the cache empty (position 0).
    fn check_native(&mut self, kc: &mut KernelCache) -> Result<()> {
        let n = self.prefill.chunk.min(8);
        let ids: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2_654_435_761) % self.config.vocab as u32).collect();
        self.write_tokens(0, &ids)?;
        let q = &self.ctx.queue;
        q.write_buffer(&self.bufs.step, 0, bytemuck::bytes_of(&self.options.decode_step(0)));
        let decode: Vec<&Dispatch> = self.recorded(StepOutput::Logits).collect();
        let mut checks = kernel_check::native_twins(&self.ctx, kc, &decode)?;
        q.write_buffer(&self.prefill.step, 0, bytemuck::bytes_of(&Step::chunk(0, n)));
        checks.extend(kernel_check::native_twins(&self.ctx, kc, &self.prefill.dispatches.iter().collect::<Vec<_>>())?);
        let (bad, good): (Vec<_>, Vec<_>) = checks.iter().partition(|t| t.error > kernel_check::NATIVE_TOLERANCE);
        let worst = good.iter().map(|t| t.error).fold(0f32, f32::max);
        self.kernel_notes.push(format!(
            "native pipelines: {} of {} agree with their WGSL twins (largest difference {worst:.1e} of the output)",
            good.len(),
            checks.len()
        ));
        for t in &bad {
            self.kernel_notes.push(format!(
                "native {} at {} disagrees with its WGSL twin by {:.2e} of the output: built from WGSL instead",
                t.kernel, t.label, t.error
            ));
            kc.reject_native(&t.source);
        }
        if !bad.is_empty() {
            (self.body, self.head, self.sample) =
                record(&self.ctx, kc, &self.config, &self.options, &self.weights, &self.bufs)?;
            self.prefill =
                prefill::Prefill::new(&self.ctx, kc, &self.config, &self.options, &self.weights, &self.bufs)?;
            self.kernels_compiled = kc.len();
        }
        Ok(())
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn ctx_len(&self) -> usize {
        self.options.ctx_len
    }

    /// Leaves every launch labelled `label` out of the decode steps that follow (`None`: none), so
    /// that timing steps with and without it gives what that kernel costs in a step, its barrier
    /// and start-up included (`bench --ablate`). Outputs are wrong meanwhile: for timing only.
    pub fn leave_out(&mut self, label: Option<&str>) {
        self.left_out = label.map(str::to_string);
    }

    /// The labels of a decode step's launches, in first-launch order, with their launches per step.
    pub fn decode_labels(&self) -> Vec<(String, usize)> {
        let mut labels: Vec<(String, usize)> = Vec::new();
        for d in self.launches(StepOutput::Greedy) {
            match labels.iter_mut().find(|(l, _)| *l == d.label) {
                Some((_, n)) => *n += 1,
                None => labels.push((d.label.clone(), 1)),
            }
        }
        labels
    }

    /// Dispatches of one decode step (embedding to sampled token).
    pub fn dispatches_per_token(&self) -> usize {
        self.launches(StepOutput::Greedy).count()
    }

    /// Forgets the cache: the next step is position 0.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Keeps the cache of positions `0..pos` and forgets the rest: the next step is position `pos`.
    /// Greedy steps still in flight are waited for and their tokens dropped.
    pub fn truncate(&mut self, pos: usize) -> Result<()> {
        ensure!(pos <= self.pos, "cannot truncate the cache to {pos} positions: it holds {}", self.pos);
        while self.tokens_in_flight() > 0 {
            self.next_token()?;
        }
        self.pos = pos;
        Ok(())
    }

    /// Puts token ids at positions `start..`, e.g. a prompt before its steps.
    pub fn write_tokens(&self, start: usize, ids: &[u32]) -> Result<()> {
        ensure!(
            start + ids.len() <= self.ctx_len(),
            "{} tokens exceed the context of {}",
            start + ids.len(),
            self.ctx_len()
        );
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.config.vocab) {
            anyhow::bail!("token id {bad} is outside the vocabulary of {}", self.config.vocab);
        }
        self.ctx.queue.write_buffer(&self.bufs.tokens, (start * 4) as u64, bytemuck::cast_slice(ids));
        Ok(())
    }

    /// Runs the token at the current position through the model, as one compute pass in one
    /// submission, and advances the position. With `Greedy` the chosen token is also queued for
    /// read-back: collect it with [`Engine::next_token`].
    pub fn step(&mut self, out: StepOutput) -> Result<()> {
        ensure!(self.pos < self.ctx_len(), "the context of {} positions is full", self.ctx_len());
        let ctx = &self.ctx;
        ctx.queue.write_buffer(&self.bufs.step, 0, bytemuck::bytes_of(&self.options.decode_step(self.pos)));
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let left_out = self.left_out.as_deref();
            self.launches(out).filter(|d| Some(d.label.as_str()) != left_out).for_each(|d| d.record(&mut pass));
        }
        let mut slot = None;
        if out == StepOutput::Greedy {
            ensure!(self.ring.pending.len() < MAX_IN_FLIGHT, "more than {MAX_IN_FLIGHT} greedy steps in flight");
            let s = self.ring.next;
            self.ring.next = (s + 1) % self.ring.slots.len();
            enc.copy_buffer_to_buffer(&self.bufs.tokens, (self.pos as u64 + 1) * 4, &self.ring.slots[s], 0, 4);
            slot = Some(s);
        }
        let submission = ctx.queue.submit([enc.finish()]);
        if let Some(s) = slot {
            let (tx, rx) = mpsc::channel();
            self.ring.slots[s].slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            self.ring.pending.push_back(PendingToken { slot: s, mapped: rx, submission });
        }
        self.pos += 1;
        Ok(())
    }

    /// Runs the `n` tokens already written at the next positions through the model, as
    /// [`StepOutput::CacheOnly`] steps would, in chunks of up to `prefill_chunk` tokens (one compute
    /// pass and one submission each), and advances the position past them.
    pub fn prefill(&mut self, n: usize) -> Result<()> {
        ensure!(
            self.pos + n <= self.ctx_len(),
            "{} tokens exceed the context of {} positions",
            self.pos + n,
            self.ctx_len()
        );
        let mut done = 0;
        while done < n {
            let m = (n - done).min(self.prefill.chunk);
            let ctx = &self.ctx;
            ctx.queue.write_buffer(&self.prefill.step, 0, bytemuck::bytes_of(&Step::chunk(self.pos, m)));
            ctx.submit(&self.prefill.dispatches);
            self.pos += m;
            done += m;
        }
        Ok(())
    }

    /// Every distinct kernel the engine launches (decode step and prefill chunk), in launch order.
    pub fn kernels(&self) -> Vec<std::rc::Rc<crate::gpu::Kernel>> {
        let mut seen = std::collections::HashSet::new();
        self.recorded(StepOutput::Greedy)
            .chain(&self.prefill.dispatches)
            .filter(|d| seen.insert(d.kernel.source.clone()))
            .map(|d| d.kernel.clone())
            .collect()
    }

    /// Dispatches of one prefill chunk.
    pub fn dispatches_per_chunk(&self) -> usize {
        self.prefill.dispatches.len()
    }

    /// The launches of the step at the current position producing `out`, in order.
    fn launches(&self, out: StepOutput) -> impl Iterator<Item = &Dispatch> {
        let pos = self.pos;
        self.recorded(out).filter(move |d| d.positions.contains(&pos))
    }

    /// Every launch recorded for steps producing `out`, the variants for every position included.
    fn recorded(&self, out: StepOutput) -> impl Iterator<Item = &Dispatch> {
        let head: &[Dispatch] = if out == StepOutput::CacheOnly { &[] } else { &self.head };
        let sample: &[Dispatch] = if out == StepOutput::Greedy { &self.sample } else { &[] };
        self.body.iter().chain(head).chain(sample)
    }

    /// Bytes of weights one decode step reads.
    pub fn weight_bytes_per_token(&self) -> u64 {
        self.launches(StepOutput::Greedy).map(|d| d.weight_bytes).sum()
    }

    /// Runs one step with every launch in a compute pass of its own, timed by GPU timestamps. Slower
    /// than [`Engine::step`] (one pass per launch): for profiles only. A greedy token is written on
    /// the GPU but not queued for read-back.
    pub fn step_profiled(&mut self, out: StepOutput) -> Result<Vec<LaunchTime>> {
        ensure!(self.pos < self.ctx_len(), "the context of {} positions is full", self.ctx_len());
        self.ctx.queue.write_buffer(&self.bufs.step, 0, bytemuck::bytes_of(&self.options.decode_step(self.pos)));
        let times = time_launches(&self.ctx, &self.launches(out).collect::<Vec<_>>())?;
        self.pos += 1;
        Ok(times)
    }

    /// [`Engine::prefill`] of one chunk of `n` tokens, each launch timed in a compute pass of its own.
    pub fn prefill_profiled(&mut self, n: usize) -> Result<Vec<LaunchTime>> {
        ensure!(
            n >= 1 && n <= self.prefill.chunk,
            "a profiled prefill is one chunk of 1 to {} tokens",
            self.prefill.chunk
        );
        ensure!(self.pos + n <= self.ctx_len(), "{} tokens exceed the context of {}", self.pos + n, self.ctx_len());
        self.ctx.queue.write_buffer(&self.prefill.step, 0, bytemuck::bytes_of(&Step::chunk(self.pos, n)));
        let times = time_launches(&self.ctx, &self.prefill.dispatches.iter().collect::<Vec<_>>())?;
        self.pos += n;
        Ok(times)
    }

    /// Greedy steps submitted whose token has not been collected yet.
    pub fn tokens_in_flight(&self) -> usize {
        self.ring.pending.len()
    }

    /// The token of the oldest greedy step in flight, waiting for that step only (later steps keep
    /// the GPU busy meanwhile).
    pub fn next_token(&mut self) -> Result<u32> {
        let p = self.ring.pending.pop_front().ok_or_else(|| anyhow::anyhow!("no greedy step in flight"))?;
        let wait = wgpu::PollType::Wait { submission_index: Some(p.submission), timeout: None };
        self.ctx.device.poll(wait)?;
        p.mapped.try_recv().map_err(|_| anyhow::anyhow!("token read-back did not complete"))??;
        let buf = &self.ring.slots[p.slot];
        let id = bytemuck::pod_read_unaligned::<u32>(&buf.slice(..).get_mapped_range()?[..4]);
        buf.unmap();
        Ok(id)
    }

    /// The logits of the last step that produced them (blocks until it is done).
    pub fn logits(&self) -> Result<Vec<f32>> {
        read_f32(&self.ctx, &self.bufs.logits, 0, self.config.vocab as u64)
    }

    /// With `capture_hidden`: the embedding output, every layer's output but the last, and the final
    /// norm's output, of the last step that ran the LM head.
    pub fn hidden_states(&self) -> Result<Vec<Vec<f32>>> {
        let buf =
            self.bufs.hidden.as_ref().ok_or_else(|| anyhow::anyhow!("engine was built without capture_hidden"))?;
        let h = self.config.hidden;
        let all = read_f32(&self.ctx, buf, 0, ((self.config.n_layers + 1) * h) as u64)?;
        Ok(all.chunks(h).map(<[f32]>::to_vec).collect())
    }

    /// The token id stored at `pos` (blocking).
    pub fn token_at(&self, pos: usize) -> Result<u32> {
        let staging = self.ctx.readback("token_at", 4);
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&self.bufs.tokens, pos as u64 * 4, &staging, 0, 4);
        self.ctx.queue.submit([enc.finish()]);
        Ok(bytemuck::pod_read_unaligned(&map_read(&self.ctx, &staging, 4)?))
    }
}

/// Runs `launches` in one compute pass each, timed by GPU timestamps.
fn time_launches(ctx: &GpuContext, launches: &[&Dispatch]) -> Result<Vec<LaunchTime>> {
    ensure!(
        ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY),
        "{} has no timestamp queries: cannot profile",
        ctx.describe()
    );
    let n = launches.len() as u32 * 2;
    let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("profile"),
        ty: wgpu::QueryType::Timestamp,
        count: n,
    });
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile resolve"),
        size: n as u64 * 8,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = ctx.readback("profile", n as u64 * 8);
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    for (i, d) in launches.iter().enumerate() {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        d.record(&mut pass);
    }
    enc.resolve_query_set(&queries, 0..n, &resolved, 0);
    enc.copy_buffer_to_buffer(&resolved, 0, &staging, 0, n as u64 * 8);
    ctx.queue.submit([enc.finish()]);
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&map_read(ctx, &staging, n as u64 * 8)?);
    let ns_per_tick = ctx.queue.get_timestamp_period() as f64;
    Ok(launches
        .iter()
        .zip(ticks.chunks(2))
        .map(|(d, t)| LaunchTime {
            label: d.label.clone(),
            micros: t[1].saturating_sub(t[0]) as f64 * ns_per_tick / 1e3,
            weight_bytes: d.weight_bytes,
        })
        .collect())
}

/// `On` if the cooperative prefill (products and attention) and, with an f16 cache, decode attention
/// are wanted, possible and agree with the plain kernels at start-up; `Off` otherwise (an error where
/// `On` was asked for).
fn resolve_coop(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    w: &ModelWeights,
    cache: kernel_check::CacheShape,
    choice: CoopMatrix,
    notes: &mut Vec<String>,
) -> Result<CoopMatrix> {
    if choice == CoopMatrix::Off {
        return Ok(CoopMatrix::Off);
    }
    let slots = (c.n_experts_used + c.n_shared_experts) as u32;
    let kv_f16 = cache.kv_f16;
    let checked = matmul_coop::supported(ctx)
        .and_then(|()| mla_attention_prefill_coop::fits(c))
        .and_then(|()| if kv_f16 { mla_attention_coop::fits(c, kv_f16) } else { Ok(()) })
        .and_then(|()| kernel_check::coop_matmul(ctx, kc, w, c.n_heads as u32, slots))
        .and_then(|products| {
            let attention = kernel_check::coop_attention(ctx, kc, c, cache)?;
            ensure!(
                attention <= kernel_check::TOLERANCE,
                "cooperative prefill attention disagrees with the plain one: {attention:.2e} of the largest output"
            );
            let decode = match kv_f16 {
                true => kernel_check::coop_decode_attention(ctx, kc, c, cache)?,
                false => None,
            };
            if let Some(d) = decode {
                ensure!(
                    d <= kernel_check::TOLERANCE,
                    "cooperative decode attention disagrees with the plain one: {d:.2e} of the largest output"
                );
            }
            Ok((products, attention, decode))
        });
    match checked {
        Ok((products, attention, decode)) => {
            notes.push(format!(
                "prefill on cooperative matrices: products agree with the plain kernel to {products:.1e} of the \
                 largest output, attention to {attention:.1e}"
            ));
            notes.push(match decode {
                Some(d) => format!(
                    "decode attention from {COOP_CONTEXT} positions on cooperative matrices: agrees with the plain \
                     kernel to {d:.1e} of the largest output"
                ),
                None if !kv_f16 => {
                    "decode attention on the plain kernel (the cooperative one reads an f16 cache)".into()
                }
                None => format!("decode attention on the plain kernel (the context ends before {COOP_CONTEXT})"),
            });
            Ok(CoopMatrix::On)
        }
        Err(e) if choice == CoopMatrix::Auto => {
            notes.push(format!("prefill and decode attention on the plain kernels, not cooperative matrices: {e:#}"));
            Ok(CoopMatrix::Off)
        }
        Err(e) => Err(e.context("--coop-matrix on")),
    }
}

fn check_options(c: &ModelConfig, o: &EngineOptions) -> Result<()> {
    ensure!(o.ctx_len >= 1, "context length must be at least 1");
    ensure!(o.ctx_len <= c.max_ctx, "context length {} exceeds the model's maximum of {}", o.ctx_len, c.max_ctx);
    // A chunk's per-head and per-expert products put a workgroup layer per (token, head or slot).
    let per_token = c.n_heads.max(c.n_experts_used + c.n_shared_experts);
    ensure!(
        o.prefill_chunk >= 1 && o.prefill_chunk * per_token <= 65535,
        "prefill chunk of {} tokens: 1 to {} for this model",
        o.prefill_chunk,
        65535 / per_token
    );
    Ok(())
}

/// Records the dispatches of one token: the body (embedding and layers), the head (final norm and
/// LM head) and greedy sampling.
fn record(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    o: &EngineOptions,
    w: &ModelWeights,
    b: &Activations,
) -> Result<(Vec<Dispatch>, Vec<Dispatch>, [Dispatch; 2])> {
    let mv = |kc: &mut KernelCache,
              w: &crate::gpu::GpuWeight,
              norm: Option<InputNorm>,
              x: &wgpu::Buffer,
              y: &wgpu::Buffer,
              out: Output| {
        matvec(ctx, kc, MatvecArgs { norm, out, ..MatvecArgs::new(w, x, y, &b.route, o.int8_activations) })
    };
    let mut body = vec![embed(ctx, kc, &w.embed, 1, &b.step, &b.tokens, &b.x)?.labeled("embed")];
    if let Some(hidden) = &b.hidden {
        body.push(capture(ctx, kc, c.hidden, 0, &b.x, hidden)?);
    }
    // Whether a product of `rows` rows per slot stores its output rounded for the one product that
    // reads it, `next`: where that product rounds its input to int8 (the rounding then runs once per
    // value instead of once per workgroup of `next`).
    let round_for = |next: &crate::gpu::GpuWeight, rows: usize| {
        o.int8_activations && activations::takes_int8_input(next.ggml_type) && rows.is_multiple_of(32)
    };
    let heads = c.n_heads as u32;
    let v_b = |kc: &mut KernelCache, l: &weights::LayerWeights, merge: bool| {
        let (x, x_stride) = if merge {
            (&b.partials, partials_head_floats(c, o.ctx_len, o.coop_decode()))
        } else {
            (&b.ctx_lat, c.kv_lora_rank)
        };
        matvec(
            ctx,
            kc,
            MatvecArgs {
                matrix: MatrixOf::Slot,
                slots: heads,
                x_stride: x_stride as u32,
                y_stride: c.v_head as u32,
                merge: merge.then_some(&b.step),
                round_output: round_for(&l.o, c.v_head),
                ..MatvecArgs::new(&l.v_b, x, &b.attn_out, &b.route, o.int8_activations)
            },
        )
    };
    // Whether the layer's router is folded into its attention output (RouterPartials): an f32 router
    // whose experts, and shared expert, are one routed gate/up pass over int8 inputs, which then
    // normalises and rounds its input itself. H200, Q4_K_M: 373.0 -> 375.9 tok/s at depth 0, 304.3 ->
    // 310.2 at 4096, Q8_0 326.1 -> 331.4; 46 launches fewer (BENCHMARKS.md session 15).
    let folds = |l: &weights::LayerWeights| match &l.ffn {
        FeedForward::Moe(m) => {
            o.int8_activations
                && m.router.ggml_type == GgmlType::F32
                && m.shared.apart().is_none()
                && activations::takes_int8_input(m.experts.gate.ggml_type)
                && router_partials_fit(c.hidden)
                && c.n_experts < 256
        }
        FeedForward::Dense(_) => false,
    };
    // Where each layer's merging v_b launches.
    let mut merging_v_b = Vec::new();
    for (i, l) in w.layers.iter().enumerate() {
        // Attention.
        // RMSNorms are folded into the matvecs that consume them.
        // q_a and kv_a read the same normalised input: one pass, stacked, where their formats chunk
        // rows alike (always for quantized files).
        let stack = l.q_a.chunks_per_row() == l.kv_a.chunks_per_row();
        let fold = folds(l);
        // q_a's output is the query's input, stored rounded (with the query's norm applied) where the
        // query's matrices take int8 inputs.
        let q_norm = InputNorm { weight: &l.q_a_norm, eps: LORA_NORM_EPS };
        let query_prepared = round_for(&l.q_lat, c.q_lora_rank) && round_for(&l.q_rope, c.q_lora_rank);
        body.push(
            matvec(
                ctx,
                kc,
                MatvecArgs {
                    stacked: stack.then_some(Stacked { w: &l.kv_a, y: &b.ckv }),
                    norm: Some(InputNorm { weight: &l.attn_norm, eps: c.rms_eps }),
                    round_output: query_prepared,
                    round_norm: query_prepared.then_some(q_norm.weight),
                    ..MatvecArgs::new(&l.q_a, &b.x, &b.qa, &b.route, o.int8_activations)
                },
            )?
            .labeled(if stack { "attn_q_a_kv_a" } else { "attn_q_a" }),
        );
        if !stack {
            body.push(
                mv(kc, &l.kv_a, Some(InputNorm { weight: &l.attn_norm, eps: c.rms_eps }), &b.x, &b.ckv, Output::Store)?
                    .labeled("attn_kv_a"),
            );
        }
        // The query in the latent space (k_b absorbed at load) and its rope part, in one pass.
        body.push(
            matvec(
                ctx,
                kc,
                MatvecArgs {
                    stacked: Some(Stacked { w: &l.q_rope, y: &b.q_rope }),
                    norm: Some(q_norm),
                    prepared: query_prepared,
                    ..MatvecArgs::new(&l.q_lat, &b.qa, &b.q_lat, &b.route, o.int8_activations)
                },
            )?
            .labeled("attn_q_b_k_b"),
        );
        let att = AttentionArgs {
            step: &b.step,
            q_rope: &b.q_rope,
            q_lat: &b.q_lat,
            rope: &b.rope,
            cache: &b.kv_cache[i],
            ckv: &b.ckv,
            kv_norm: &l.kv_a_norm,
            partials: &b.partials,
            out: &b.ctx_lat,
        };
        let attention = mla_attention(
            ctx,
            kc,
            c,
            DecodeAttention { max_ctx: o.ctx_len, kv_f16: o.kv_f16, coop: o.coop_decode() },
            att,
        )?;
        // Each split variant under its kernel's name (the cooperative one apart in profiles).
        body.extend(attention.splits.into_iter().map(|d| {
            let name = d.kernel.name.clone();
            d.labeled(&name)
        }));
        body.push(attention.combine.labeled("mla_attention_combine"));
        // The per-head value product; below MERGED_CONTEXT its variant that merges the splits itself,
        // built after everything else (below) but launched here.
        merging_v_b.push(body.len());
        body.push(v_b(kc, l, false)?.labeled("attn_v_b").serving(MERGED_CONTEXT..usize::MAX));
        body.push(
            matvec(
                ctx,
                kc,
                MatvecArgs {
                    out: Output::Add,
                    prepared: round_for(&l.o, c.v_head),
                    router_partials: match &l.ffn {
                        FeedForward::Moe(m) if fold => {
                            Some(RouterPartials { router: &m.router, norm: &l.ffn_norm, out: &b.router_partials })
                        }
                        _ => None,
                    },
                    ..MatvecArgs::new(&l.o, &b.attn_out, &b.x, &b.route, o.int8_activations)
                },
            )?
            .labeled("attn_output"),
        );

        // Feed-forward.
        // `prepared`: the input the router pass prepared, else x with the norm folded in (rounded once
        // per workgroup where it takes int8 inputs: after a folded router). The output
        // is stored rounded for the down projection where that takes int8 inputs.
        let glu = |kc: &mut KernelCache,
                   f: &weights::Ffn,
                   matrix: MatrixOf,
                   choose: Option<ChooseRoute>,
                   slots: u32,
                   prepared: bool,
                   act: &wgpu::Buffer| {
            let width = f.gate.rows() as u32;
            let round_output = round_for(&f.down, f.gate.rows());
            matvec(
                ctx,
                kc,
                MatvecArgs {
                    up: Some(&f.up),
                    norm: (!prepared).then_some(InputNorm { weight: &l.ffn_norm, eps: c.rms_eps }),
                    matrix,
                    choose,
                    slots,
                    y_stride: width,
                    prepared,
                    round_output,
                    ..MatvecArgs::new(
                        &f.gate,
                        if prepared { &b.ffn_int8 } else { &b.x },
                        act,
                        &b.route,
                        o.int8_activations,
                    )
                },
            )
        };
        // The down projection of `f`, adding into x, over `slots` inputs in `act` (summed with the
        // route weights for routed experts), stored rounded by its gate/up pass where `round_for` says.
        let down = |kc: &mut KernelCache, f: &weights::Ffn, matrix: MatrixOf, slots: u32, act: &wgpu::Buffer| {
            let width = f.gate.rows();
            let prepared = round_for(&f.down, width);
            let routed = matrix == MatrixOf::Routed;
            let stride = if prepared { prepared_floats(width) } else { width as u32 };
            matvec(
                ctx,
                kc,
                MatvecArgs {
                    matrix,
                    out: if routed { Output::AddRoutedSum } else { Output::Add },
                    slots,
                    x_stride: if routed { stride } else { 0 },
                    prepared,
                    ..MatvecArgs::new(&f.down, act, &b.x, &b.route, o.int8_activations)
                },
            )
        };
        match &l.ffn {
            FeedForward::Dense(f) => {
                body.push(glu(kc, f, MatrixOf::Single, None, 1, false, &b.act)?.labeled("ffn_gate_up"));
                body.push(down(kc, f, MatrixOf::Single, 1, &b.act)?.labeled("ffn_down"));
            }
            FeedForward::Moe(m) => {
                let appended = matches!(m.shared, SharedExpert::Appended);
                let k = c.n_experts_used as u32 + appended as u32;
                // The router pass, where the router is not folded into the attention output, also
                // prepares the experts' int8 input, so they skip the norm and the rounding, where they
                // take int8 inputs.
                let prepared = !fold
                    && o.int8_activations
                    && activations::takes_int8_input(m.experts.gate.ggml_type)
                    && m.shared.apart().is_none_or(|s| activations::takes_int8_input(s.gate.ggml_type));
                if !fold {
                    body.push(
                        matvec(
                            ctx,
                            kc,
                            MatvecArgs {
                                norm: Some(InputNorm { weight: &l.ffn_norm, eps: c.rms_eps }),
                                prepare: prepared.then_some(&b.ffn_int8),
                                ..MatvecArgs::new(&m.router, &b.x, &b.router_logits, &b.route, o.int8_activations)
                            },
                        )?
                        .labeled("moe_router_logits"),
                    );
                }
                // The expert gate/up pass chooses the experts itself and stores the route for the down pass.
                let choose = ChooseRoute {
                    choice: RouteChoice::new(c, appended)?,
                    logits: if fold { &b.router_partials } else { &b.router_logits },
                    bias: &m.bias,
                    folded: fold,
                };
                body.push(
                    glu(kc, &m.experts, MatrixOf::Routed, Some(choose), k, prepared, &b.act)?
                        .labeled("moe_gate_up_exps"),
                );
                // Both gate/up passes read the layer's input before either down pass adds to it.
                let shared = m.shared.apart();
                if let Some(s) = shared {
                    body.push(
                        glu(kc, s, MatrixOf::Single, None, 1, prepared, &b.act_shared)?.labeled("moe_gate_up_shexp"),
                    );
                }
                body.push(down(kc, &m.experts, MatrixOf::Routed, k, &b.act)?.labeled("moe_down_exps"));
                if let Some(s) = shared {
                    body.push(down(kc, s, MatrixOf::Single, 1, &b.act_shared)?.labeled("moe_down_shexp"));
                }
            }
        }
        if let (Some(hidden), true) = (&b.hidden, i + 1 < c.n_layers) {
            body.push(capture(ctx, kc, c.hidden, (i + 1) * c.hidden, &b.x, hidden)?);
        }
    }
    let mut head = Vec::new();
    if let Some(hidden) = &b.hidden {
        // The LM head folds the final norm; the captured copy is computed apart for the parity tests.
        head.push(rms_norm(ctx, kc, c.hidden, c.rms_eps, &b.x, &w.output_norm, &b.xn)?.labeled("output_norm"));
        head.push(capture(ctx, kc, c.hidden, c.n_layers * c.hidden, &b.xn, hidden)?);
    }
    // The LM head's thousands of workgroups would each normalise and round the hidden state: one pass
    // does it for them where its format takes int8 inputs (H200: LM head 130 -> 82 us, +1.6 % tok/s).
    let head_norm = InputNorm { weight: &w.output_norm, eps: c.rms_eps };
    if round_for(&w.output, c.hidden) {
        head.push(prepare_input(ctx, kc, c.hidden, head_norm, &b.x, &b.head_int8)?.labeled("lm_head_input"));
        head.push(
            matvec(
                ctx,
                kc,
                MatvecArgs { prepared: true, ..MatvecArgs::new(&w.output, &b.head_int8, &b.logits, &b.route, true) },
            )?
            .labeled("lm_head"),
        );
    } else {
        head.push(mv(kc, &w.output, Some(head_norm), &b.x, &b.logits, Output::Store)?.labeled("lm_head"));
    }
    let sample = argmax(ctx, kc, c.vocab, &b.step, &b.logits, &b.tokens)?;
    // Built in layer order, the merging v_b's uniforms and bind groups slowed the steps at depth 4096,
    // where it never launches, by 0.8 % on the H200; built last, not (why is not known: BENCHMARKS.md
    // session 10).
    for (&at, l) in merging_v_b.iter().zip(&w.layers).rev() {
        body.insert(at, v_b(kc, l, true)?.labeled("attn_v_b_merging").serving(0..MERGED_CONTEXT));
    }
    Ok((body, head, sample))
}
