//! Start-up checks of kernel variants before the engine trusts them; a variant that disagrees is not
//! used. The cooperative-matrix prefill: `matmul_coop` against the plain `matmul` on the model's own
//! weights and random input rows, for every kind of product the prefill runs (token rows, a residual
//! add, per-head matrices, gate/up pairs, expert tiles by token and by entry, the f32 router), and the cooperative
//! attention, prefill and decode, against the plain one on random queries and cache rows. Native pipelines: each against
//! the WGSL build of its own source, at its first launch in the engine's recorded forward.

use super::weights::{FeedForward, ModelWeights};
use crate::gpu::{read_f32, Binding, Dispatch, GpuContext, GpuWeight, Kernel, KernelCache};
use crate::kernels::input_rows::InputRows;
use crate::kernels::matmul::{matmul, MatmulArgs, MatmulInput, MatmulTiling, Tiles};
use crate::kernels::matmul_coop::{matmul_coop, CoopTiling};
use crate::kernels::matvec::PREP_WORDS;
use crate::kernels::mla_attention::{
    cache_rows, mla_attention, partials_len, AttentionArgs, DecodeAttention, COOP_CONTEXT,
};
use crate::kernels::mla_attention_prefill::{mla_attention_prefill, PrefillAttentionArgs};
use crate::kernels::mla_attention_prefill_coop::{mla_attention_prefill_coop, ROWS};
use crate::kernels::Step;
use crate::model::ModelConfig;
use anyhow::{ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::rc::Rc;

/// Tokens of a check: not a whole tile of either kernel.
const TOKENS: u32 = 40;
/// Largest difference from the plain kernel, relative to its largest output: f16 inputs and
/// weights round at 2^-11, so a correct kernel stays far below this and a wrong one far above.
pub const TOLERANCE: f32 = 1e-2;

/// One product the prefill runs, on `TOKENS` tokens.
struct Case<'a> {
    label: &'static str,
    w: &'a GpuWeight,
    up: Option<&'a GpuWeight>,
    add: bool,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Tokens,
    Heads(u32),
    /// Expert tiles of `slots` entries per token; input rows per token or per entry.
    Grouped {
        slots: u32,
        of_token: bool,
    },
}

fn cases(w: &ModelWeights, n_heads: u32, slots: u32) -> Vec<Case<'_>> {
    let mut cases = Vec::new();
    let case = |label, w, up, add, kind| Case { label, w, up, add, kind };
    if let Some(l) = w.layers.first() {
        cases.push(case("attn_q_a", &l.q_a, None, false, Kind::Tokens));
        cases.push(case("attn_output", &l.o, None, true, Kind::Tokens));
        cases.push(case("attn_q_lat", &l.q_lat, None, false, Kind::Tokens));
        cases.push(case("attn_v_b", &l.v_b, None, false, Kind::Heads(n_heads)));
    }
    if let Some(f) = w.layers.iter().find_map(|l| if let FeedForward::Dense(f) = &l.ffn { Some(f) } else { None }) {
        cases.push(case("ffn_gate_up", &f.gate, Some(&f.up), false, Kind::Tokens));
    }
    if let Some(m) = w.layers.iter().find_map(|l| if let FeedForward::Moe(m) = &l.ffn { Some(m) } else { None }) {
        let e = &m.experts;
        cases.push(case("moe_router_logits", &m.router, None, false, Kind::Tokens));
        cases.push(case("moe_gate_up_exps", &e.gate, Some(&e.up), false, Kind::Grouped { slots, of_token: true }));
        cases.push(case("moe_down_exps", &e.down, None, false, Kind::Grouped { slots, of_token: false }));
    }
    cases
}

/// Entries (expert | token << 16, grouped by expert) for `slots` distinct random experts per token,
/// and the tile list of `tile` entries (`moe_group.wgsl`'s layout).
fn group(rng: &mut StdRng, n_mat: u32, slots: u32, tile: u32) -> (Vec<u32>, Vec<u32>) {
    let mut entries = Vec::new();
    for t in 0..TOKENS {
        let mut chosen: Vec<u32> = Vec::new();
        while chosen.len() < slots.min(n_mat) as usize {
            let e = rng.random_range(0..n_mat);
            if !chosen.contains(&e) {
                chosen.push(e);
            }
        }
        entries.extend(chosen.into_iter().map(|e| e | t << 16));
    }
    entries.sort_by_key(|e| e & 0xffff);
    let mut tiles = vec![0];
    let mut first = 0;
    while first < entries.len() {
        let e = entries[first] & 0xffff;
        let n = entries[first..].iter().take_while(|&&x| x & 0xffff == e).count().min(tile as usize);
        tiles.extend([e | (n as u32) << 16, first as u32]);
        first += n;
    }
    tiles[0] = (tiles.len() as u32 - 1) / 2;
    (entries, tiles)
}

/// Checks every case; the largest relative difference seen, or an error naming the product that
/// disagrees and by how much.
pub fn coop_matmul(ctx: &GpuContext, kc: &mut KernelCache, w: &ModelWeights, n_heads: u32, slots: u32) -> Result<f32> {
    let mut rng = StdRng::seed_from_u64(0x636f6f70);
    let mut worst = 0f32;
    for case in cases(w, n_heads, slots) {
        let err = check(ctx, kc, &case, &mut rng).with_context(|| format!("checking {}", case.label))?;
        ensure!(
            err <= TOLERANCE,
            "cooperative matmul disagrees with the plain matmul on {} ({} weights): {err:.2e} of the largest output",
            case.label,
            case.w.ggml_type.name()
        );
        worst = worst.max(err);
    }
    Ok(worst)
}

fn check(ctx: &GpuContext, kc: &mut KernelCache, case: &Case, rng: &mut StdRng) -> Result<f32> {
    let cols = case.w.row_len() as u32;
    let out = case.w.rows() as u32;
    let (in_rows, out_rows) = match case.kind {
        Kind::Tokens => (TOKENS, TOKENS),
        Kind::Heads(h) => (TOKENS * h, TOKENS * h),
        Kind::Grouped { slots, of_token: true } => (TOKENS, TOKENS * slots),
        Kind::Grouped { slots, of_token: false } => (TOKENS * slots, TOKENS * slots),
    };
    let mut random = |n: u32, lo: f32, hi: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(lo..hi)).collect() };
    let rows = InputRows {
        xq: ctx.storage_init("check rows", bytemuck::cast_slice(&random(in_rows * cols, -1.0, 1.0)))?,
        xd: ctx.storage("check row scales", 16)?,
        s: ctx.storage_init("check row norms", bytemuck::cast_slice(&random(in_rows, 0.5, 1.5)))?,
    };
    let y0 = random(out_rows * out, -1.0, 1.0);
    let step = ctx.uniform("check step", bytemuck::bytes_of(&Step::chunk(0, TOKENS as usize)));
    let n_mat = case.w.n_matrices() as u32;
    let mut outputs = Vec::new();
    for coop in [false, true] {
        let y = ctx.storage_init("check y", bytemuck::cast_slice(&y0))?;
        // Token tiles, or expert tiles of that many entries.
        let inputs = if coop { CoopTiling::ENGINE.inputs() } else { MatmulTiling::INPUTS };
        let (tiles_buf, entries_buf, max_tiles) = match case.kind {
            Kind::Grouped { slots, .. } => {
                let (entries, tiles) = group(&mut StdRng::seed_from_u64(7), n_mat, slots, inputs);
                let n = tiles[0];
                (
                    Some(ctx.storage_init("check tiles", bytemuck::cast_slice(&tiles))?),
                    Some(ctx.storage_init("check entries", bytemuck::cast_slice(&entries))?),
                    n,
                )
            }
            _ => (None, None, TOKENS.div_ceil(inputs)),
        };
        let tiles = match case.kind {
            Kind::Tokens => Tiles::Tokens,
            Kind::Heads(h) => Tiles::Heads(h),
            Kind::Grouped { of_token, .. } => {
                Tiles::Grouped { tiles: tiles_buf.as_ref().unwrap(), entries: entries_buf.as_ref().unwrap(), of_token }
            }
        };
        let a = MatmulArgs {
            w: case.w,
            up: case.up,
            step: &step,
            x: MatmulInput::F32Scaled(&rows, cols),
            y: &y,
            y_stride: out,
            add: case.add,
            tiles,
            max_tiles,
        };
        let d = if coop {
            matmul_coop(ctx, kc, a, CoopTiling::ENGINE)?
        } else {
            matmul(ctx, kc, a, MatmulTiling::for_rows(ctx, case.w.chunks_per_row() as u32))?
        };
        ctx.run(&[&d])?;
        outputs.push(read_f32(ctx, &y, 0, (out_rows * out) as u64)?);
    }
    Ok(relative_difference(&outputs[0], &outputs[1]))
}

/// Cache positions before the attention check's tokens (fewer in a shorter context): the check
/// covers a cached prefix and the causal part, with more than one block of positions.
const PREFIX: u32 = 70;

/// The cache the attention check runs on: its element type, the rope table and its positions.
#[derive(Clone, Copy)]
pub struct CacheShape<'a> {
    pub kv_f16: bool,
    pub rope: &'a wgpu::Buffer,
    pub ctx_len: usize,
}

/// The cooperative prefill attention against the plain one, up to `TOKENS` tokens after up to
/// `PREFIX` cached positions of random latent rows, random queries: their largest difference
/// relative to the plain kernel's largest output.
pub fn coop_attention(ctx: &GpuContext, kc: &mut KernelCache, c: &ModelConfig, cache: CacheShape) -> Result<f32> {
    let mut rng = StdRng::seed_from_u64(0x61747421);
    let tokens = TOKENS.min(cache.ctx_len as u32);
    let prefix = PREFIX.min(cache.ctx_len as u32 - tokens);
    let (kv_f16, rope) = (cache.kv_f16, cache.rope);
    let rows = (tokens as usize * c.n_heads).next_multiple_of(ROWS);
    let positions = (prefix + tokens) as usize;
    let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let q_rope = ctx.storage_init("check q_rope", bytemuck::cast_slice(&random(rows * c.qk_rope)))?;
    let q_lat = ctx.storage_init("check q_lat", bytemuck::cast_slice(&random(rows * c.kv_lora_rank)))?;
    let latent = random(positions * c.kv_width());
    let cache = if cache.kv_f16 {
        let h: Vec<u16> = latent.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        ctx.storage_init("check cache", bytemuck::cast_slice(&h))?
    } else {
        ctx.storage_init("check cache", bytemuck::cast_slice(&latent))?
    };
    let step = ctx.uniform("check step", bytemuck::bytes_of(&Step::chunk(prefix as usize, tokens as usize)));
    let mut outputs = Vec::new();
    for coop in [false, true] {
        let out = ctx.storage("check attention", (rows * c.kv_lora_rank * 4) as u64)?;
        let a = PrefillAttentionArgs { step: &step, q_rope: &q_rope, q_lat: &q_lat, rope, cache: &cache, out: &out };
        let d = if coop {
            mla_attention_prefill_coop(ctx, kc, c, kv_f16, tokens, a)?
        } else {
            mla_attention_prefill(ctx, kc, c, kv_f16, tokens, a)?
        };
        ctx.run(&[&d])?;
        outputs.push(read_f32(ctx, &out, 0, (tokens as usize * c.n_heads * c.kv_lora_rank) as u64)?);
    }
    Ok(relative_difference(&outputs[0], &outputs[1]))
}

/// The decode position of the cooperative decode attention's check: past COOP_CONTEXT, the last of
/// its splits partly filled.
const DECODE_POS: usize = COOP_CONTEXT + 69;

/// The cooperative decode attention (its split pass, then the merge) against the plain one at
/// `DECODE_POS` (the last position of a shorter context), on random queries, cache rows and current
/// kv_a output, with the engine's grid for `cache.ctx_len`: their largest difference relative to
/// the plain output's largest value. `None` where the context never reaches the cooperative splits.
pub fn coop_decode_attention(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    cache: CacheShape,
) -> Result<Option<f32>> {
    if cache.ctx_len <= COOP_CONTEXT {
        return Ok(None);
    }
    let pos = DECODE_POS.min(cache.ctx_len - 1);
    let mut rng = StdRng::seed_from_u64(0x64656321);
    let mut random = |n: usize, lo: f32, hi: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(lo..hi)).collect() };
    let storage = |label, v: &[f32]| ctx.storage_init(label, bytemuck::cast_slice(v));
    let q_rope = storage("check q_rope", &random(c.n_heads * c.qk_rope, -3.0, 3.0))?;
    let q_lat = storage("check q_lat", &random(c.n_heads * c.kv_lora_rank, -3.0, 3.0))?;
    let ckv = storage("check ckv", &random(c.kv_width(), -1.0, 1.0))?;
    let kv_norm = storage("check kv_norm", &random(c.kv_lora_rank, 0.5, 1.5))?;
    let rows: Vec<u16> = random(cache_rows(pos + 1) * c.kv_width(), -1.0, 1.0)
        .into_iter()
        .map(|v| half::f16::from_f32(v).to_bits())
        .collect();
    let kv = ctx.storage_init("check cache", bytemuck::cast_slice(&rows))?;
    let mut outputs = Vec::new();
    for coop in [false, true] {
        let step = ctx.uniform("check step", bytemuck::bytes_of(&Step::at(pos, coop)));
        let partials = ctx.storage("check partials", (partials_len(c, cache.ctx_len, coop) * 4) as u64)?;
        let out = ctx.storage("check attention", (c.n_heads * c.kv_lora_rank * 4) as u64)?;
        let a = AttentionArgs {
            step: &step,
            q_rope: &q_rope,
            q_lat: &q_lat,
            rope: cache.rope,
            cache: &kv,
            ckv: &ckv,
            kv_norm: &kv_norm,
            partials: &partials,
            out: &out,
        };
        let attention = mla_attention(ctx, kc, c, DecodeAttention { max_ctx: cache.ctx_len, kv_f16: true, coop }, a)?;
        let split =
            attention.splits.iter().find(|d| d.positions.contains(&pos)).expect("a split pass serves every position");
        ctx.run(&[split, &attention.combine])?;
        outputs.push(read_f32(ctx, &out, 0, (c.n_heads * c.kv_lora_rank) as u64)?);
    }
    Ok(Some(relative_difference(&outputs[0], &outputs[1])))
}

/// Largest difference between a native pipeline and its WGSL twin, relative to the twin's largest
/// output: both are the same WGSL, so anything past rounding noise is a broken pipeline.
pub const NATIVE_TOLERANCE: f32 = 1e-4;

/// One native pipeline checked against its WGSL twin.
pub struct TwinCheck {
    /// The launch it was checked at (e.g. "attn_q_b").
    pub label: String,
    pub kernel: String,
    pub source: String,
    /// Largest difference relative to the twin's largest output.
    pub error: f32,
}

/// Runs `dispatches` in order, one submission each, from the engine's current buffers; at the first
/// launch of each native pipeline that has a WGSL twin, runs the twin first on the same buffers,
/// restores what the launch writes, runs the native pipeline, compares what both wrote, and goes on
/// from what the twin wrote.
pub fn native_twins(ctx: &GpuContext, kc: &KernelCache, dispatches: &[&Dispatch]) -> Result<Vec<TwinCheck>> {
    let mut twins: HashMap<String, Rc<Kernel>> = HashMap::new();
    let mut checks = Vec::new();
    for d in dispatches {
        let k = &d.kernel;
        if !kc.has_twin(k) {
            ctx.run(&[*d])?;
            continue;
        }
        // A pipeline already checked: its twin runs, as after its check, so that a broken one does
        // not spoil the inputs of the checks after it.
        if let Some(twin) = twins.get(&k.source) {
            let bound = twin.bind(ctx, &d.bound.buffers.iter().collect::<Vec<_>>());
            ctx.run(&[&Dispatch::new(twin.clone(), bound, d.groups)])?;
            continue;
        }
        let (written_at, written): (Vec<usize>, Vec<&wgpu::Buffer>) = d
            .bound
            .buffers
            .iter()
            .zip(&k.bindings)
            .enumerate()
            .filter(|(_, (_, b))| **b == Binding::ReadWrite)
            .map(|(i, (x, _))| (i, x))
            .unzip();
        let saved: Vec<wgpu::Buffer> =
            written.iter().map(|b| ctx.storage("saved output", b.size())).collect::<Result<_>>()?;
        copy(ctx, &written, &saved.iter().collect::<Vec<_>>());
        let twin = Rc::new(kc.wgsl_twin(ctx, k)?);
        twins.insert(k.source.clone(), twin.clone());
        let bound = twin.bind(ctx, &d.bound.buffers.iter().collect::<Vec<_>>());
        ctx.run(&[&Dispatch::new(twin, bound, d.groups)])?;
        let want = read_all(ctx, &written)?;
        // The state goes on from the twin's outputs, so one broken pipeline does not spoil the
        // inputs of the checks after it.
        let twin_out: Vec<wgpu::Buffer> =
            written.iter().map(|b| ctx.storage("twin output", b.size())).collect::<Result<_>>()?;
        copy(ctx, &written, &twin_out.iter().collect::<Vec<_>>());
        copy(ctx, &saved.iter().collect::<Vec<_>>(), &written);
        ctx.run(&[*d])?;
        let got = read_all(ctx, &written)?;
        copy(ctx, &twin_out.iter().collect::<Vec<_>>(), &written);
        checks.push(TwinCheck {
            label: d.label.clone(),
            kernel: k.name.clone(),
            source: k.source.clone(),
            error: written_at
                .iter()
                .zip(want.iter().zip(&got))
                .map(
                    |(&i, (a, b))| {
                        if d.rounded_output == Some(i) {
                            rounded_difference(a, b)
                        } else {
                            relative_difference(a, b)
                        }
                    },
                )
                .fold(0.0, f32::max),
        });
    }
    Ok(checks)
}

fn copy(ctx: &GpuContext, from: &[&wgpu::Buffer], to: &[&wgpu::Buffer]) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    for (f, t) in from.iter().zip(to) {
        enc.copy_buffer_to_buffer(f, 0, t, 0, f.size());
    }
    ctx.queue.submit([enc.finish()]);
}

/// Each buffer's words, as floats.
fn read_all(ctx: &GpuContext, bufs: &[&wgpu::Buffer]) -> Result<Vec<Vec<f32>>> {
    bufs.iter().map(|b| read_f32(ctx, b, 0, b.size() / 4)).collect()
}

/// A rounded output (chunks of `PREP_WORDS` words: 8 of int8 quants, Σ q, dx, Σ x² or unused, one
/// unused) against its twin's: 0 where every quant is within one step of the twin's, at the same dx,
/// Σ x² within 1e-5 of it, and the other words (but Σ q, which follows the quants) are the same; else
/// infinite. Sums in another order may land on either side of a rounding boundary; a broken kernel
/// rarely stays within a step.
fn rounded_difference(a: &[f32], b: &[f32]) -> f32 {
    let bytes = |w: &[f32]| w[..8].iter().flat_map(|v| v.to_bits().to_le_bytes()).map(|q| q as i8).collect::<Vec<_>>();
    for (x, y) in a.chunks(PREP_WORDS).zip(b.chunks(PREP_WORDS)) {
        let same = |i: usize| x.get(i).map(|v| v.to_bits()) == y.get(i).map(|v| v.to_bits());
        if (0..x.len()).all(same) {
            continue;
        }
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * a.abs().max(b.abs());
        if x.len() < PREP_WORDS || !same(9) || !same(11) || !(same(10) || close(x[10], y[10])) {
            return f32::INFINITY;
        }
        if bytes(x).iter().zip(bytes(y)).any(|(p, q)| (*p as i32 - q as i32).abs() > 1) {
            return f32::INFINITY;
        }
    }
    0.0
}

/// max |a - b| / max |a| over one buffer; infinite where they differ in a NaN or infinity. Equal
/// words count as equal whatever they hold (a buffer may hold integers, e.g. a prepared int8 input).
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let differ = || a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits());
    if differ().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return f32::INFINITY;
    }
    let scale = a.iter().filter(|v| v.is_finite()).fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    differ().fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(q: [i8; 32], dx: f32) -> Vec<f32> {
        let mut w: Vec<f32> = q
            .chunks(4)
            .map(|b| f32::from_bits(u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])))
            .collect();
        w.push(f32::from_bits(q.iter().map(|&v| v as i32).sum::<i32>() as u32));
        w.extend([dx, 100.0, 0.0]);
        w
    }

    /// A rounded output may differ from its twin's by one step per quant, not more, and not in its scale
    /// (nor its sum of squares beyond rounding).
    #[test]
    fn rounded_outputs_compare_within_a_step() {
        let q: [i8; 32] = std::array::from_fn(|i| (i as i32 * 7 % 120 - 60) as i8);
        let base = [chunk(q, 0.25), chunk([3; 32], 0.5), vec![1.0, 9.0]].concat();
        let with = |k: usize, v: i8, dx: f32| {
            let mut q2 = q;
            q2[k] = v;
            [chunk(q2, dx), chunk([3; 32], 0.5), vec![1.0, 9.0]].concat()
        };
        assert_eq!(rounded_difference(&base, &base), 0.0);
        assert_eq!(rounded_difference(&base, &with(5, q[5] + 1, 0.25)), 0.0);
        assert_eq!(rounded_difference(&base, &with(5, q[5] - 2, 0.25)), f32::INFINITY);
        assert_eq!(rounded_difference(&base, &with(5, q[5], 0.5)), f32::INFINITY);
        // Σ x² (word 10) as a sum in another order may leave it, not more.
        let mut sumsq = base.clone();
        sumsq[10] = 100.0004;
        assert_eq!(rounded_difference(&base, &sumsq), 0.0);
        sumsq[10] = 100.01;
        assert_eq!(rounded_difference(&base, &sumsq), f32::INFINITY);
        let mut tail = base.clone();
        tail[2 * PREP_WORDS] = 0.5;
        assert_eq!(rounded_difference(&base, &tail), f32::INFINITY);
    }
}
