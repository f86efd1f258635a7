//! Every WGSL kernel against a plain CPU reference (f64 accumulation) on seeded random inputs.
//!
//! Weights go through `quant::quantize`, and the reference uses `quant::dequantize` of the very
//! same bytes, so a mismatch is the kernel's (or the repacking's), never the quantizer's.
//! Store outputs start as NaN bit patterns, accumulated outputs as known random values, and the
//! words around every output must come back untouched.
//!
//! A missing GPU adapter fails every test: there is no silent skip.
//! Run `cargo test --test kernels -- --nocapture` to see the worst relative error per kernel.

use glm_wgpu::gpu::{Dispatch, GpuContext, GpuWeight, KernelCache};
use glm_wgpu::kernels::argmax::argmax;
use glm_wgpu::kernels::capture::capture;
use glm_wgpu::kernels::embed::embed;
use glm_wgpu::kernels::input_rows::{input_rows, InputRows};
use glm_wgpu::kernels::kv_store::{kv_store, KvStoreArgs};
use glm_wgpu::kernels::matmul::{matmul, MatmulArgs, MatmulInput, MatmulTiling, Tiles};
use glm_wgpu::kernels::mla_attention::{
    cache_rows, mla_attention_reducing, partials_len, AttentionArgs, DecodeAttention, COOP_CONTEXT,
};
use glm_wgpu::kernels::mla_attention_prefill::{mla_attention_prefill, PrefillAttentionArgs};
use glm_wgpu::kernels::moe_group::{moe_group, Grouping};
use glm_wgpu::kernels::moe_sum::moe_sum;
use glm_wgpu::kernels::rms_norm::rms_norm;
use glm_wgpu::kernels::router::{router, RouteChoice};
use glm_wgpu::kernels::stream::{stream, Stream, PER_THREAD, SENTINEL, WG};
use glm_wgpu::kernels::{matmul_coop, mla_attention_coop};
use glm_wgpu::kernels::{
    matvec, matvec_tiled, prepare_input, prepared_bytes, prepared_floats, router_partials_bytes, ChooseRoute,
    InputNorm, MatrixOf, MatvecArgs, Output, Reduce, RouterPartials, Stacked, Step, Tiling, PARTIAL_ROWS,
};
use glm_wgpu::model::{Gating, ModelConfig, TensorData, LORA_NORM_EPS};
use glm_wgpu::quant::{self, activations, GgmlType};
use half::f16;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Max |gpu - cpu| allowed, relative to the largest |cpu| of the compared output.
const REL_TOL: f64 = 1e-4;
/// Tolerance of values that went through an f16 store (11-bit significand), relative per element.
const F16_TOL: f64 = 1.0 / 1024.0;
/// A quiet NaN: what Store outputs hold before the kernel runs.
const NAN_BITS: u32 = 0x7fc0_0000;
/// Two f16 quiet NaNs in one word (the f16 KV cache's poison).
const NAN_F16X2: u32 = 0x7e00_7e00;

const ROWS: [usize; 5] = [1, 3, 37, 130, 1000];

/// Row lengths of the 32-weight block formats and of the 256-weight super-block (K-quant) formats.
const LEGACY_COLS: &[usize] = &[32, 96, 160, 544, 2080];
const K_COLS: &[usize] = &[256, 768, 512, 2304];

/// The formats whose products take int8 inputs.
fn int8_formats() -> impl Iterator<Item = GgmlType> {
    GgmlType::SUPPORTED.into_iter().filter(|&t| activations::takes_int8_input(t))
}

/// Each supported weight format with row lengths that are multiples of its block.
fn formats() -> Vec<(GgmlType, &'static [usize])> {
    vec![
        (GgmlType::F32, &[4, 12, 100]),
        (GgmlType::F16, &[8, 24, 200]),
        (GgmlType::BF16, &[8, 24, 200]),
        (GgmlType::Q8_0, LEGACY_COLS),
        (GgmlType::Q4_0, LEGACY_COLS),
        (GgmlType::Q4_1, LEGACY_COLS),
        (GgmlType::Q5_0, LEGACY_COLS),
        (GgmlType::Q5_1, LEGACY_COLS),
        (GgmlType::Iq4Nl, LEGACY_COLS),
        (GgmlType::Q2K, K_COLS),
        (GgmlType::Q3K, K_COLS),
        (GgmlType::Q4K, K_COLS),
        (GgmlType::Q5K, K_COLS),
        (GgmlType::Q6K, K_COLS),
        (GgmlType::Iq4Xs, K_COLS),
    ]
}

// ---------------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------------

/// One device for the whole binary (`GpuContext` is `Sync`); each test keeps its own kernel cache.
fn gpu() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = GpuContext::new(None)
            .unwrap_or_else(|e| panic!("the kernel tests need a GPU adapter, and none could be opened: {e:#}"));
        eprintln!("kernel tests on {}", ctx.describe());
        ctx
    })
}

fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in ±`amp`, never exactly zero.
fn uniform(rng: &mut StdRng, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|_| loop {
            let v = rng.random_range(-amp..amp);
            if v != 0.0 {
                break v;
            }
        })
        .collect()
}

fn buf_f32(ctx: &GpuContext, label: &str, data: &[f32]) -> wgpu::Buffer {
    ctx.storage_init(label, bytemuck::cast_slice(data)).unwrap()
}

fn buf_u32(ctx: &GpuContext, label: &str, data: &[u32]) -> wgpu::Buffer {
    ctx.storage_init(label, bytemuck::cast_slice(data)).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn floats(b: &[u32]) -> Vec<f32> {
    b.iter().map(|&w| f32::from_bits(w)).collect()
}

fn read_u32(ctx: &GpuContext, buf: &wgpu::Buffer, n: usize) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(&ctx.read_buffer(buf, 0, n as u64 * 4).unwrap())
}

/// A decode step's uniform; `coop`: the attention's splits from COOP_CONTEXT are the cooperative
/// pass's.
fn step(ctx: &GpuContext, pos: u32, coop: bool) -> wgpu::Buffer {
    ctx.uniform("step", bytemuck::bytes_of(&Step::at(pos as usize, coop)))
}

fn run(ctx: &GpuContext, d: &[&Dispatch]) {
    ctx.run(d).unwrap();
}

/// max|got - want| / max|want|; panics, naming the worst element, above `tol` or on a non-finite value.
fn check(name: &str, got: &[f32], want: &[f64], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let (mut err, mut at) = (0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        assert!(e.is_finite(), "{name}: element {i} is {g} (bits {:#010x}), want {w}", g.to_bits());
        if e > err {
            (err, at) = (e, i);
        }
    }
    let rel = err / scale;
    assert!(
        rel <= tol,
        "{name}: max |Δ| {err:.3e} at element {at} (got {}, want {}) is {rel:.3e} of the output scale {scale:.3e} \
         (tolerance {tol:.0e})",
        got[at],
        want[at]
    );
    rel
}

/// Words the kernel must not have written.
fn check_untouched(name: &str, got: &[u32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!("{name}: word {i} outside the output was overwritten: {:#010x}, was {:#010x}", got[i], want[i]);
    }
}

fn report(kernel: &str, worst: f64) {
    println!("[kernels] {kernel:<34} worst relative error {worst:.3e}");
}

/// A weight on the GPU and its dequantized values.
struct Weight {
    gpu: GpuWeight,
    deq: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Weight {
    fn new(ctx: &GpuContext, rng: &mut StdRng, t: GgmlType, shape: &[usize], amp: f32) -> Self {
        let n: usize = shape.iter().product();
        let bytes = quant::quantize(t, &uniform(rng, n, amp)).unwrap();
        let deq = quant::dequantize(t, &bytes).unwrap();
        assert_eq!(deq.len(), n);
        let td = TensorData { ggml_type: t, shape: shape.to_vec(), bytes: Cow::Owned(bytes) };
        let gpu = GpuWeight::upload(ctx, "test weight", &td).unwrap();
        let cols = shape[shape.len() - 1];
        let rows = if shape.len() >= 2 { shape[shape.len() - 2] } else { 1 };
        Self { gpu, deq, rows, cols }
    }

    /// Row `r` of matrix `m`.
    fn row(&self, m: usize, r: usize) -> &[f32] {
        let start = (m * self.rows + r) * self.cols;
        &self.deq[start..start + self.cols]
    }
}

fn dot(w: &[f32], x: &[f32]) -> f64 {
    assert_eq!(w.len(), x.len());
    w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// What a matvec over `t` multiplies `x` with: `x` rounded to int8 per block where the format takes
/// int8 inputs (except per-head matrices), `x` itself otherwise.
fn kernel_input(t: GgmlType, matrix: MatrixOf, x: &[f32]) -> Vec<f32> {
    if matrix != MatrixOf::Slot && activations::takes_int8_input(t) {
        activations::round_to_int8(x)
    } else {
        x.to_vec()
    }
}

/// The folded input norm as the kernel applies it: x ⊙ g (f32, before any int8 rounding) and the
/// RMS scale applied to the products.
fn norm_parts(x: &[f32], g: &[f32]) -> (Vec<f32>, f64) {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    (x.iter().zip(g).map(|(v, w)| v * w).collect(), 1.0 / (ms + NORM_EPS as f64).sqrt())
}

fn silu_glu(g: f64, u: f64) -> f64 {
    g / (1.0 + (-g).exp()) * u
}

/// What a matvec over input `x` stores for matrices `experts` of `gate` (with `up`: silu(gate x) ·
/// (up x)), `rows` rows each, every dot scaled by `inv` (a folded norm's scale; 1 without).
fn products_want(gate: &Weight, up: Option<&Weight>, experts: &[usize], rows: usize, x: &[f32], inv: f64) -> Vec<f64> {
    let mut want = Vec::new();
    for &e in experts {
        for r in 0..rows {
            let v = inv * dot(gate.row(e, r), x);
            want.push(up.map_or(v, |up| silu_glu(v, inv * dot(up.row(e, r), x))));
        }
    }
    want
}

/// Chunk `c` of a prepared input (per chunk: 8 words of int8, Σ q, dx, two unused): its quants and
/// dx, after checking Σ q.
fn prepared_chunk(name: &str, words: &[u32], c: usize) -> (Vec<i32>, f32) {
    let w = &words[12 * c..12 * c + 12];
    let q: Vec<i32> = w[..8].iter().flat_map(|v| v.to_le_bytes()).map(|b| b as i8 as i32).collect();
    assert_eq!(w[8] as i32, q.iter().sum::<i32>(), "{name}: chunk {c} sum of quants");
    (q, f32::from_bits(w[9]))
}

/// Chunk `c` of an output stored rounded: a power-of-two scale that puts its largest quant in
/// [64, 127], each value within half a step of `want` (the chunk's 32 values); its values as rounded.
fn check_rounded_chunk(name: &str, words: &[u32], c: usize, want: &[f64]) -> Vec<f32> {
    let (q, dx) = prepared_chunk(name, words, c);
    let dx = dx as f64;
    let amax = q.iter().map(|q| q.abs()).max().unwrap();
    assert!((64..=127).contains(&amax) && dx.log2().fract() == 0.0, "{name}: chunk {c} scale {dx}");
    q.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (&q, &v))| {
            let err = (q as f64 * dx - v).abs();
            assert!(err <= 0.5001 * dx, "{name}: value {} is {q} x {dx}, want {v}", 32 * c + i);
            (q as f64 * dx) as f32
        })
        .collect()
}

/// A prepared input of `xg` (x ⊙ g) with the norm's scale `inv`: rounded as the CPU rounds, bit for
/// bit, and the scale after the chunks.
fn check_prepared(name: &str, words: &[u32], xg: &[f32], inv: f64) {
    for (c, want) in activations::round_to_int8(xg).chunks(32).enumerate() {
        let (q, dx) = prepared_chunk(name, words, c);
        let got: Vec<f32> = q.iter().map(|&q| q as f32 * dx).collect();
        assert_eq!(got, want, "{name}: chunk {c} rounded values");
    }
    let scale = f32::from_bits(words[12 * xg.len() / 32]) as f64;
    assert!((scale - inv).abs() <= 1e-6 * inv, "{name}: norm scale {scale} vs {inv}");
}

/// The route buffer: `ids` in u32[0..8], `weights` as f32 bits in u32[8..16], the rest poisoned.
fn route_words(ids: &[u32], weights: &[f32]) -> Vec<u32> {
    let mut r = vec![u32::MAX; 8];
    r[..ids.len()].copy_from_slice(ids);
    let mut w = vec![NAN_BITS; 8];
    w[..weights.len()].copy_from_slice(&bits(weights));
    r.extend(w);
    r
}

struct MatvecCase<'a> {
    w: &'a Weight,
    up: Option<&'a Weight>,
    /// RMSNorm weights folded into the product (eps [`NORM_EPS`]).
    norm: Option<&'a [f32]>,
    matrix: MatrixOf,
    out: Output,
    slots: usize,
    x_stride: usize,
    y_stride: usize,
    x: &'a [f32],
    /// The y buffer before the kernel runs (poison or accumulation base).
    y0: &'a [u32],
    /// The route buffer before the kernel runs.
    route: &'a [u32],
    /// The pass chooses its routes: how, the router logits and bias.
    choose: Option<(RouteChoice, &'a [f32], &'a [f32])>,
    /// `x` is the attention's partials, merged first: the step's position and split length.
    merge: Option<(u32, u32)>,
}

/// The eps of folded input norms.
const NORM_EPS: f32 = 1e-5;

/// Runs one matvec under the engine's tiling and others (the shared-memory reduction; narrow teams
/// of several rows that each lane walks many chunks of; the LM head's and the absorbed query's) and
/// returns, for each, its name, the whole y buffer's words and the route buffer's.
fn run_matvec(ctx: &GpuContext, kc: &mut KernelCache, c: &MatvecCase) -> Vec<(String, Vec<u32>, Vec<u32>)> {
    let xb = buf_f32(ctx, "x", c.x);
    let rb = buf_u32(ctx, "route", c.route);
    let nb = c.norm.map(|g| buf_f32(ctx, "norm", g));
    let router =
        c.choose.map(|(choice, logits, bias)| (choice, buf_f32(ctx, "logits", logits), buf_f32(ctx, "bias", bias)));
    let step = c.merge.map(|(pos, split)| ctx.uniform("step", bytemuck::bytes_of(&Step { pos, n: 1, split, pad: 0 })));
    let args = |yb| MatvecArgs {
        up: c.up.map(|u| &u.gpu),
        norm: nb.as_ref().map(|weight| InputNorm { weight, eps: NORM_EPS }),
        matrix: c.matrix,
        choose: router.as_ref().map(|(choice, logits, bias)| ChooseRoute {
            choice: *choice,
            logits,
            bias,
            folded: false,
        }),
        out: c.out,
        slots: c.slots as u32,
        x_stride: c.x_stride as u32,
        y_stride: c.y_stride as u32,
        merge: step.as_ref(),
        ..MatvecArgs::new(&c.w.gpu, &xb, yb, &rb, true)
    };
    let engine = Tiling::for_shape(ctx, 1, 1, false);
    let tilings = [
        None,
        Some(Tiling { reduce: Reduce::Shared, ..engine }),
        Some(Tiling { lanes: 4, teams: 16, rows: 3, ..engine }),
        // The LM head's (8 rows per team) and the absorbed query's (one team of 32 lanes, 4 rows).
        Some(Tiling::for_shape(ctx, 64, 1 << 17, false)),
        Some(Tiling::for_shape(ctx, 24, 10_240, false)),
    ];
    let ys: Vec<wgpu::Buffer> = tilings.iter().map(|_| buf_u32(ctx, "y", c.y0)).collect();
    tilings
        .into_iter()
        .zip(&ys)
        .map(|(t, yb)| {
            let d = match t {
                None => matvec(ctx, kc, args(yb)).unwrap(),
                Some(t) => matvec_tiled(ctx, kc, args(yb), t).unwrap(),
            };
            run(ctx, &[&d]);
            let name = t.map_or("engine tiling".to_string(), |t| format!("{t:?}"));
            (name, read_u32(ctx, yb, c.y0.len()), read_u32(ctx, &rb, c.route.len()))
        })
        .collect()
}

/// The model shape the attention, KV and router kernels read; only the fields they use matter.
fn config() -> ModelConfig {
    ModelConfig {
        hidden: 2048,
        n_layers: 1,
        moe_layers: vec![true],
        dense_ffn: 10240,
        moe_ffn: 1536,
        n_experts: 64,
        n_experts_used: 4,
        n_shared_experts: 1,
        routed_scale: 1.8,
        norm_topk: true,
        gating: Gating::Sigmoid,
        n_heads: 4,
        q_lora_rank: 768,
        kv_lora_rank: 512,
        qk_nope: 192,
        qk_rope: 64,
        v_head: 256,
        rope_theta: 1e6,
        rms_eps: 1e-5,
        max_ctx: 4096,
        vocab: 154880,
    }
}

/// Attention shapes: the real one and a small odd one (kv_lora 72, 3 rope pairs).
fn attention_configs() -> Vec<ModelConfig> {
    let real = config();
    let small = ModelConfig { n_heads: 3, kv_lora_rank: 72, qk_nope: 16, qk_rope: 6, rms_eps: 1e-6, ..config() };
    real.validate().unwrap();
    small.validate().unwrap();
    vec![real, small]
}

/// A (cos, sin) table for `positions` × `pairs` with random angles (so cos and sin never coincide).
fn rope_table(rng: &mut StdRng, positions: usize, pairs: usize) -> Vec<f32> {
    (0..positions * pairs)
        .flat_map(|_| {
            let a: f64 = rng.random_range(-3.1..3.1);
            [a.cos() as f32, a.sin() as f32]
        })
        .collect()
}

/// Interleaved-pair RoPE of `v` with the table row of `pos`.
fn rope_ref(v: &[f32], table: &[f32], pos: usize) -> Vec<f64> {
    let pairs = v.len() / 2;
    let mut out = Vec::with_capacity(v.len());
    for j in 0..pairs {
        let (a, b) = (v[2 * j] as f64, v[2 * j + 1] as f64);
        let (c, s) = (table[2 * (pos * pairs + j)] as f64, table[2 * (pos * pairs + j) + 1] as f64);
        out.extend([a * c - b * s, a * s + b * c]);
    }
    out
}

/// Cache words of values (f16 pairs, low half first, or f32 bits).
fn cache_encode(v: &[f32], kv_f16: bool) -> Vec<u32> {
    if kv_f16 {
        v.chunks_exact(2)
            .map(|p| f16::from_f32(p[0]).to_bits() as u32 | (f16::from_f32(p[1]).to_bits() as u32) << 16)
            .collect()
    } else {
        bits(v)
    }
}

fn cache_decode(w: &[u32], kv_f16: bool) -> Vec<f32> {
    if kv_f16 {
        w.iter().flat_map(|&w| [f16::from_bits(w as u16).to_f32(), f16::from_bits((w >> 16) as u16).to_f32()]).collect()
    } else {
        floats(w)
    }
}

// ---------------------------------------------------------------------------------------------
// matvec
// ---------------------------------------------------------------------------------------------

#[test]
fn matvec_single_store() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(1);
    let mut worst = 0f64;
    let mut cases: Vec<(GgmlType, usize, usize)> = Vec::new();
    for (t, cols) in formats() {
        for &c in cols {
            for r in ROWS {
                cases.push((t, r, c));
            }
        }
    }
    // More than 65535 workgroups of 4 rows: the grid spills into y.
    cases.push((GgmlType::F32, 262_147, 4));
    for (t, rows, cols) in cases {
        let w = Weight::new(ctx, &mut rng, t, &[rows, cols], 1.0);
        let x = uniform(&mut rng, cols, 1.0);
        let pad = 7;
        let y0 = vec![NAN_BITS; rows + pad];
        let route = route_words(&[], &[]);
        let c = MatvecCase {
            w: &w,
            up: None,
            norm: None,
            matrix: MatrixOf::Single,
            out: Output::Store,
            slots: 1,
            x_stride: 0,
            y_stride: 0,
            x: &x,
            y0: &y0,
            route: &route,
            choose: None,
            merge: None,
        };
        let xk = kernel_input(t, MatrixOf::Single, &x);
        for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
            let want: Vec<f64> = (0..rows).map(|r| dot(w.row(0, r), &xk)).collect();
            let name = format!("matvec {} Single/Store {rows}x{cols}", t.name());
            let name = format!("{name} [{tiling}]");
            worst = worst.max(check(&name, &floats(&y[..rows]), &want, REL_TOL));
            check_untouched(&name, &y[rows..], &y0[rows..]);
        }
    }
    report("matvec Single/Store", worst);
}

#[test]
fn matvec_single_add() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(2);
    let mut worst = 0f64;
    for (t, cols) in formats() {
        for &cols in cols {
            for rows in ROWS {
                let w = Weight::new(ctx, &mut rng, t, &[rows, cols], 1.0);
                let x = uniform(&mut rng, cols, 1.0);
                let pad = 5;
                let base = uniform(&mut rng, rows + pad, 4.0);
                let y0 = bits(&base);
                let route = route_words(&[], &[]);
                let c = MatvecCase {
                    w: &w,
                    up: None,
                    norm: None,
                    matrix: MatrixOf::Single,
                    out: Output::Add,
                    slots: 1,
                    x_stride: 0,
                    y_stride: 0,
                    x: &x,
                    y0: &y0,
                    route: &route,
                    choose: None,
                    merge: None,
                };
                let xk = kernel_input(t, MatrixOf::Single, &x);
                for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                    let want: Vec<f64> = (0..rows).map(|r| base[r] as f64 + dot(w.row(0, r), &xk)).collect();
                    let name = format!("matvec {} Single/Add {rows}x{cols}", t.name());
                    let name = format!("{name} [{tiling}]");
                    worst = worst.max(check(&name, &floats(&y[..rows]), &want, REL_TOL));
                    check_untouched(&name, &y[rows..], &y0[rows..]);
                }
            }
        }
    }
    report("matvec Single/Add", worst);
}

/// Per-head matrices (attention's k_b / v_b): slot h reads x[h * x_stride ..] and writes y[h * y_stride ..].
#[test]
fn matvec_slot() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(3);
    let mut worst = [0f64; 2];
    for (t, cols) in formats() {
        // (heads, rows, cols, extra x floats between slots, extra y floats between slots)
        let shapes = [
            (3, 37, cols[1], 4, 3),
            (5, 130, cols[cols.len() - 1], 8, 0),
            (2, 1, cols[0], 0, 1),
            (4, 3, cols[2], 12, 5),
        ];
        for (heads, rows, cols, x_gap, y_gap) in shapes {
            for (oi, out) in [Output::Store, Output::Add].into_iter().enumerate() {
                let w = Weight::new(ctx, &mut rng, t, &[heads, rows, cols], 1.0);
                let (x_stride, y_stride) = (cols + x_gap, rows + y_gap);
                // The gaps between slots' inputs hold values too: reading them would show.
                let x = uniform(&mut rng, heads * x_stride, 1.0);
                let len = heads * y_stride + 6;
                let base = uniform(&mut rng, len, 3.0);
                let y0 = if out == Output::Store { vec![NAN_BITS; len] } else { bits(&base) };
                let route = route_words(&[], &[]);
                let c = MatvecCase {
                    w: &w,
                    up: None,
                    norm: None,
                    matrix: MatrixOf::Slot,
                    out,
                    slots: heads,
                    x_stride,
                    y_stride,
                    x: &x,
                    y0: &y0,
                    route: &route,
                    choose: None,
                    merge: None,
                };
                for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                    let name = format!(
                        "matvec {} Slot/{out:?} {heads}x{rows}x{cols} x_stride {x_stride} y_stride {y_stride}",
                        t.name()
                    );
                    let name = format!("{name} [{tiling}]");
                    let (mut got, mut want, mut written) = (Vec::new(), Vec::new(), vec![false; len]);
                    for h in 0..heads {
                        let xh = &x[h * x_stride..h * x_stride + cols];
                        for r in 0..rows {
                            let o = h * y_stride + r;
                            let acc = if out == Output::Add { base[o] as f64 } else { 0.0 };
                            want.push(acc + dot(w.row(h, r), xh));
                            got.push(f32::from_bits(y[o]));
                            written[o] = true;
                        }
                    }
                    worst[oi] = worst[oi].max(check(&name, &got, &want, REL_TOL));
                    let (rest_got, rest_want): (Vec<u32>, Vec<u32>) =
                        (0..len).filter(|&i| !written[i]).map(|i| (y[i], y0[i])).unzip();
                    check_untouched(&name, &rest_got, &rest_want);
                }
            }
        }
    }
    report("matvec Slot/Store", worst[0]);
    report("matvec Slot/Add", worst[1]);
}

/// The per-head product that merges the decode attention's splits first (v_b below MERGED_CONTEXT):
/// y[h] = W[h] · Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s over the step's splits of head h, whose
/// maxima span ±30 (only a max-subtracted merge survives). The splits past the step's, and the
/// pad words, are NaN: a merge that reads them fails.
#[test]
fn matvec_merges_attention_splits() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(31);
    let mut worst = 0f64;
    for (t, cols) in formats() {
        let cols = cols[cols.len() - 1];
        // (splits in use, split length, room for splits in the layout)
        for (used, split, room) in [(1usize, 8usize, 1usize), (5, 8, 7), (24, 8, 24), (37, 40, 40)] {
            let (heads, rows) = (3, 37);
            let w = Weight::new(ctx, &mut rng, t, &[heads, rows, cols], 1.0);
            let part = 4 + cols;
            let mut x = vec![f32::NAN; heads * room * part];
            let mut ctx_want = Vec::new();
            for h in 0..heads {
                let mut splits = Vec::new();
                for s in 0..used {
                    let at = (h * room + s) * part;
                    let (m, l) = (rng.random_range(-30.0f32..30.0), rng.random_range(0.5f32..2.0));
                    let c = uniform(&mut rng, cols, 1.0);
                    x[at] = m;
                    x[at + 1] = l;
                    x[at + 4..at + part].copy_from_slice(&c);
                    splits.push((m as f64, l as f64, c));
                }
                let top = splits.iter().map(|s| s.0).fold(f64::MIN, f64::max);
                let sum: f64 = splits.iter().map(|s| (s.0 - top).exp() * s.1).sum();
                let merged: Vec<f32> = (0..cols)
                    .map(|d| (splits.iter().map(|s| (s.0 - top).exp() * s.2[d] as f64).sum::<f64>() / sum) as f32)
                    .collect();
                ctx_want.push(merged);
            }
            let pos = (used * split - 1 - split / 2) as u32;
            let len = heads * rows + 5;
            let y0 = vec![NAN_BITS; len];
            let route = route_words(&[], &[]);
            let c = MatvecCase {
                w: &w,
                up: None,
                norm: None,
                matrix: MatrixOf::Slot,
                out: Output::Store,
                slots: heads,
                x_stride: room * part,
                y_stride: rows,
                x: &x,
                y0: &y0,
                route: &route,
                choose: None,
                merge: Some((pos, split as u32)),
            };
            for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                let name = format!("matvec {} merging {used} splits {heads}x{rows}x{cols} [{tiling}]", t.name());
                let want: Vec<f64> = (0..heads)
                    .flat_map(|h| (0..rows).map(|r| dot(w.row(h, r), &ctx_want[h])).collect::<Vec<_>>())
                    .collect();
                worst = worst.max(check(&name, &floats(&y[..heads * rows]), &want, REL_TOL));
                check_untouched(&name, &y[heads * rows..], &y0[heads * rows..]);
            }
        }
    }
    report("matvec Slot merging the attention's splits", worst);
}

/// Gate/up pairs: the dense FFN (Single + GLU) and the routed experts (Routed + GLU), plus Routed
/// without GLU.
#[test]
fn matvec_glu_and_routed() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(4);
    let (mut worst_dense, mut worst_routed_glu, mut worst_routed) = (0f64, 0f64, 0f64);
    let n_exp = 7;
    for (t, cols) in formats() {
        let shapes = [(37, cols[1]), (130, cols[cols.len() - 1]), (1, cols[0]), (1000, cols[2])];
        for (rows, cols) in shapes {
            // Dense: y = silu(gate x) * (up x).
            let gate = Weight::new(ctx, &mut rng, t, &[rows, cols], 1.0);
            let up = Weight::new(ctx, &mut rng, t, &[rows, cols], 1.0);
            let x = uniform(&mut rng, cols, 1.0);
            let y0 = vec![NAN_BITS; rows + 5];
            let route = route_words(&[], &[]);
            let c = MatvecCase {
                w: &gate,
                up: Some(&up),
                norm: None,
                matrix: MatrixOf::Single,
                out: Output::Store,
                slots: 1,
                x_stride: 0,
                y_stride: rows,
                x: &x,
                y0: &y0,
                route: &route,
                choose: None,
                merge: None,
            };
            let xk = kernel_input(t, MatrixOf::Single, &x);
            let want = products_want(&gate, Some(&up), &[0], rows, &xk, 1.0);
            for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                let name = format!("matvec {} Single/Store GLU {rows}x{cols}", t.name());
                let name = format!("{name} [{tiling}]");
                worst_dense = worst_dense.max(check(&name, &floats(&y[..rows]), &want, REL_TOL));
                check_untouched(&name, &y[rows..], &y0[rows..]);
            }

            // Routed experts: slot s uses expert ids[s]; shared input (x_stride 0, as the engine)
            // or one input per slot; with and without GLU.
            let gate = Weight::new(ctx, &mut rng, t, &[n_exp, rows, cols], 1.0);
            let up = Weight::new(ctx, &mut rng, t, &[n_exp, rows, cols], 1.0);
            let ids: [u32; 4] = [6, 0, 3, 5];
            let route = route_words(&ids, &[0.5, 0.25, 0.125, 0.0625]);
            for (x_stride, y_gap) in [(0, 0), (cols + 4, 2)] {
                let slots = ids.len();
                let y_stride = rows + y_gap;
                let x = uniform(&mut rng, cols + (slots - 1) * x_stride, 1.0);
                let len = slots * y_stride + 3;
                let y0 = vec![NAN_BITS; len];
                for glu in [true, false] {
                    let c = MatvecCase {
                        w: &gate,
                        up: glu.then_some(&up),
                        norm: None,
                        matrix: MatrixOf::Routed,
                        out: Output::Store,
                        slots,
                        x_stride,
                        y_stride,
                        x: &x,
                        y0: &y0,
                        route: &route,
                        choose: None,
                        merge: None,
                    };
                    for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                        let (mut got, mut want, mut written) = (Vec::new(), Vec::new(), vec![false; len]);
                        for (s, &e) in ids.iter().enumerate() {
                            let xs = kernel_input(t, MatrixOf::Routed, &x[s * x_stride..s * x_stride + cols]);
                            for r in 0..rows {
                                let g = dot(gate.row(e as usize, r), &xs);
                                want.push(if glu { silu_glu(g, dot(up.row(e as usize, r), &xs)) } else { g });
                                got.push(f32::from_bits(y[s * y_stride + r]));
                                written[s * y_stride + r] = true;
                            }
                        }
                        let name = format!(
                        "matvec {} Routed/Store{} {n_exp}x{rows}x{cols} ids {ids:?} x_stride {x_stride} y_stride {y_stride}",
                        t.name(),
                        if glu { " GLU" } else { "" }
                    );
                        let name = format!("{name} [{tiling}]");
                        let e = check(&name, &got, &want, REL_TOL);
                        if glu {
                            worst_routed_glu = worst_routed_glu.max(e);
                        } else {
                            worst_routed = worst_routed.max(e);
                        }
                        let (rest_got, rest_want): (Vec<u32>, Vec<u32>) =
                            (0..len).filter(|&i| !written[i]).map(|i| (y[i], y0[i])).unzip();
                        check_untouched(&name, &rest_got, &rest_want);
                    }
                }
            }
        }
    }
    report("matvec Single/Store GLU", worst_dense);
    report("matvec Routed/Store GLU", worst_routed_glu);
    report("matvec Routed/Store", worst_routed);
}

/// An RMSNorm folded into the product: y = W (x / sqrt(mean(x²) + eps) * g), as the engine's
/// q_a / kv_a / q_b / router / gate-up / LM-head matvecs use it; plain, gate/up and routed gate/up.
#[test]
fn matvec_input_norm() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(13);
    let mut worst = 0f64;
    for (t, cols) in formats() {
        for (rows, cols) in [(37, cols[1]), (130, cols[cols.len() - 1]), (1, cols[0])] {
            // Inputs far from unit scale, so a missing or wrong normalisation shows.
            let x = uniform(&mut rng, cols, 40.0);
            let g = uniform(&mut rng, cols, 2.0);
            let (xg, inv) = norm_parts(&x, &g);
            let n_exp = 5;
            let gate = Weight::new(ctx, &mut rng, t, &[n_exp, rows, cols], 1.0);
            let up = Weight::new(ctx, &mut rng, t, &[n_exp, rows, cols], 1.0);
            let ids: [u32; 3] = [4, 1, 2];
            let route = route_words(&ids, &[0.5, 0.25, 0.125]);
            for (matrix, glu) in [(MatrixOf::Single, false), (MatrixOf::Single, true), (MatrixOf::Routed, true)] {
                let (slots, experts): (usize, Vec<usize>) = match matrix {
                    MatrixOf::Routed => (ids.len(), ids.iter().map(|&e| e as usize).collect()),
                    _ => (1, vec![0]),
                };
                let len = slots * rows + 4;
                let y0 = vec![NAN_BITS; len];
                let c = MatvecCase {
                    w: &gate,
                    up: glu.then_some(&up),
                    norm: Some(&g),
                    matrix,
                    out: Output::Store,
                    slots,
                    x_stride: 0,
                    y_stride: rows,
                    x: &x,
                    y0: &y0,
                    route: &route,
                    choose: None,
                    merge: None,
                };
                let xk = kernel_input(t, matrix, &xg);
                let want = products_want(&gate, glu.then_some(&up), &experts, rows, &xk, inv);
                for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                    let name = format!(
                        "matvec {} {matrix:?}{} with input norm {rows}x{cols} [{tiling}]",
                        t.name(),
                        if glu { " GLU" } else { "" }
                    );
                    worst = worst.max(check(&name, &floats(&y[..slots * rows]), &want, REL_TOL));
                    check_untouched(&name, &y[slots * rows..], &y0[slots * rows..]);
                }
            }
        }
    }
    report("matvec with input norm", worst);
}

/// Two matrices of different formats over one (normalised) input in one pass, each writing its own
/// output (the engine's q_a + kv_a).
#[test]
fn matvec_stacked() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(14);
    let mut worst = 0f64;
    let pairs = [
        (GgmlType::Q4K, GgmlType::Q6K, 512),
        (GgmlType::Q8_0, GgmlType::Q5_0, 96),
        (GgmlType::BF16, GgmlType::F16, 64),
    ];
    for (t0, t1, cols) in pairs {
        for (rows0, rows1) in [(37, 5), (130, 67), (1, 1)] {
            let w0 = Weight::new(ctx, &mut rng, t0, &[rows0, cols], 1.0);
            let w1 = Weight::new(ctx, &mut rng, t1, &[rows1, cols], 1.0);
            let x = uniform(&mut rng, cols, 30.0);
            let g = uniform(&mut rng, cols, 2.0);
            for norm in [false, true] {
                let (xg, inv) = if norm { norm_parts(&x, &g) } else { (x.clone(), 1.0) };
                let (xk0, xk1) = (kernel_input(t0, MatrixOf::Single, &xg), kernel_input(t1, MatrixOf::Single, &xg));
                let (xb, gb, rb) =
                    (buf_f32(ctx, "x", &x), buf_f32(ctx, "g", &g), buf_u32(ctx, "route", &route_words(&[], &[])));
                let engine = Tiling::for_shape(ctx, 1, 1, false);
                for tiling in [
                    engine,
                    Tiling { reduce: Reduce::Shared, ..engine },
                    Tiling { lanes: 4, teams: 16, rows: 3, ..engine },
                ] {
                    let (y0, y1) = (vec![NAN_BITS; rows0 + 3], vec![NAN_BITS; rows1 + 3]);
                    let (yb0, yb1) = (buf_u32(ctx, "y0", &y0), buf_u32(ctx, "y1", &y1));
                    let args = MatvecArgs {
                        stacked: Some(Stacked { w: &w1.gpu, y: &yb1 }),
                        norm: norm.then_some(InputNorm { weight: &gb, eps: NORM_EPS }),
                        ..MatvecArgs::new(&w0.gpu, &xb, &yb0, &rb, true)
                    };
                    let d = matvec_tiled(ctx, &mut kc, args, tiling).unwrap();
                    run(ctx, &[&d]);
                    let (got0, got1) = (read_u32(ctx, &yb0, y0.len()), read_u32(ctx, &yb1, y1.len()));
                    let name = format!(
                        "matvec stacked {} {rows0}x{cols} + {} {rows1}x{cols} norm {norm} [{tiling:?}]",
                        t0.name(),
                        t1.name()
                    );
                    let want0: Vec<f64> = (0..rows0).map(|r| inv * dot(w0.row(0, r), &xk0)).collect();
                    let want1: Vec<f64> = (0..rows1).map(|r| inv * dot(w1.row(0, r), &xk1)).collect();
                    worst = worst.max(check(&format!("{name} first"), &floats(&got0[..rows0]), &want0, REL_TOL));
                    worst = worst.max(check(&format!("{name} second"), &floats(&got1[..rows1]), &want1, REL_TOL));
                    check_untouched(&name, &got0[rows0..], &y0[rows0..]);
                    check_untouched(&name, &got1[rows1..], &y1[rows1..]);
                }
            }
        }
    }
    report("matvec stacked", worst);
}

/// The routed experts' down projection: y += Σ_s weight_s · W[ids[s]] x_s.
#[test]
fn matvec_add_routed_sum() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(5);
    let mut worst = 0f64;
    let n_exp = 9;
    for (t, cols) in formats() {
        let shapes =
            [(37, cols[1], 4, 0), (130, cols[cols.len() - 1], 8, 4), (1, cols[0], 1, 0), (1000, cols[2], 3, 8)];
        for (rows, cols, k, x_gap) in shapes {
            let w = Weight::new(ctx, &mut rng, t, &[n_exp, rows, cols], 1.0);
            let mut experts: Vec<u32> = (0..n_exp as u32).collect();
            experts.shuffle(&mut rng);
            let ids = &experts[..k];
            let weights: Vec<f32> = (0..k).map(|_| rng.random_range(0.05..1.5)).collect();
            let route = route_words(ids, &weights);
            let x_stride = cols + x_gap;
            let x = uniform(&mut rng, k * x_stride, 1.0);
            let pad = 6;
            let base = uniform(&mut rng, rows + pad, 4.0);
            let y0 = bits(&base);
            let c = MatvecCase {
                w: &w,
                up: None,
                norm: None,
                matrix: MatrixOf::Routed,
                out: Output::AddRoutedSum,
                slots: k,
                x_stride,
                y_stride: 0,
                x: &x,
                y0: &y0,
                route: &route,
                choose: None,
                merge: None,
            };
            let xs: Vec<Vec<f32>> =
                (0..k).map(|s| kernel_input(t, MatrixOf::Routed, &x[s * x_stride..s * x_stride + cols])).collect();
            let want: Vec<f64> = (0..rows)
                .map(|r| {
                    let sum: f64 = ids
                        .iter()
                        .enumerate()
                        .map(|(s, &e)| weights[s] as f64 * dot(w.row(e as usize, r), &xs[s]))
                        .sum();
                    base[r] as f64 + sum
                })
                .collect();
            for (tiling, y, _) in run_matvec(ctx, &mut kc, &c) {
                let name = format!(
                    "matvec {} Routed/AddRoutedSum {n_exp}x{rows}x{cols} ids {ids:?} x_stride {x_stride}",
                    t.name()
                );
                let name = format!("{name} [{tiling}]");
                worst = worst.max(check(&name, &floats(&y[..rows]), &want, REL_TOL));
                check_untouched(&name, &y[rows..], &y0[rows..]);
            }
        }
    }
    report("matvec Routed/AddRoutedSum", worst);
}

/// A product that stores its output rounded by 32 rows (`round_output`) stores what the next product
/// would have rounded: per 32 values of the slots' outputs back to back, int8 quants within half a step
/// of the CPU's product (the GPU's sum may land on the other side of a rounding boundary), scaled by
/// the power of two that makes the largest |q| 64-127, their sum, then a norm scale of 1; and the next
/// product over it as a prepared input (one input, or one per routed slot) multiplies exactly those
/// values. Producers: per-head (f32 inputs, the merging v_b's shape) and routed gate/up pairs choosing
/// nothing (the route given), under the engine's tiling and other whole-chunk tilings.
#[test]
fn matvec_round_output_feeds_a_prepared_product() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(21);
    let mut worst = 0f64;
    let (n_exp, cols, out_rows) = (3, 256, 37);
    let engine = Tiling::for_shape(ctx, 1, 1, false);
    let tilings = [
        None,
        Some(Tiling { lanes: 8, teams: 16, rows: 2, reduce: Reduce::Shared }),
        Some(Tiling { lanes: 4, teams: 8, rows: 4, ..engine }),
        Some(Tiling { lanes: 2, teams: 32, rows: 2, ..engine }),
        // The routed gate/up's over a prepared input (512 threads).
        Some(Tiling { lanes: 16, teams: 32, rows: 1, ..engine }),
    ];
    for t in int8_formats() {
        // (producer, rows per slot, slots, input stride): 4 heads of 64 rows; 2 routed slots of 256
        // gate/up rows.
        for glu in [false, true] {
            let (rows, slots) = if glu { (256, 2) } else { (64, 4) };
            let w = Weight::new(ctx, &mut rng, t, &[n_exp.max(slots), rows, cols], 1.0);
            let up = Weight::new(ctx, &mut rng, t, &[n_exp.max(slots), rows, cols], 1.0);
            let ids: Vec<u32> = if glu { vec![2, 0] } else { (0..slots as u32).collect() };
            let route = buf_u32(ctx, "route", &route_words(&ids, &vec![0.75; ids.len()]));
            let x = uniform(&mut rng, slots * cols, 1.0);
            let xb = buf_f32(ctx, "x", &x);
            let (matrix, x_stride) = if glu { (MatrixOf::Routed, 0) } else { (MatrixOf::Slot, cols) };
            let experts: Vec<usize> = ids.iter().map(|&e| e as usize).collect();
            let want: Vec<f64> = if glu {
                products_want(&w, Some(&up), &experts, rows, &kernel_input(t, matrix, &x[..cols]), 1.0)
            } else {
                (0..slots * rows).map(|i| dot(w.row(i / rows, i % rows), &x[i / rows * cols..][..cols])).collect()
            };
            let n = slots * rows;
            let words = (prepared_bytes(n) / 4) as usize;
            for tiling in tilings {
                let y0 = vec![NAN_BITS; words + 5];
                let y = buf_u32(ctx, "y", &y0);
                let args = MatvecArgs {
                    up: glu.then_some(&up.gpu),
                    matrix,
                    slots: slots as u32,
                    x_stride: x_stride as u32,
                    y_stride: rows as u32,
                    round_output: true,
                    ..MatvecArgs::new(&w.gpu, &xb, &y, &route, true)
                };
                let d = match tiling {
                    None => matvec(ctx, &mut kc, args).unwrap(),
                    Some(tiling) => matvec_tiled(ctx, &mut kc, args, tiling).unwrap(),
                };
                run(ctx, &[&d]);
                let got = read_u32(ctx, &y, y0.len());
                let name = format!(
                    "{} {} rounding its {slots} x {rows} outputs [{}]",
                    t.name(),
                    if glu { "routed gate/up" } else { "per-head product" },
                    tiling.map_or("engine tiling".to_string(), |t| format!("{t:?}"))
                );
                let mut values = Vec::with_capacity(n);
                for (c, want) in want.chunks(32).enumerate() {
                    values.extend(check_rounded_chunk(&name, &got, c, want));
                    check_untouched(&name, &got[12 * c + 10..12 * c + 12], &[NAN_BITS; 2]);
                }
                assert_eq!(f32::from_bits(got[12 * n / 32]), 1.0, "{name}: norm scale");
                check_untouched(&name, &got[12 * n / 32 + 1..], &y0[12 * n / 32 + 1..]);

                // The next product: the attention output over all heads' values, or the routed down
                // pass summing each slot's own.
                let base = uniform(&mut rng, out_rows, 4.0);
                let out = buf_f32(ctx, "out", &base);
                let (next, args, want) = if glu {
                    let down = Weight::new(ctx, &mut rng, t, &[n_exp, out_rows, rows], 1.0);
                    let want: Vec<f64> = (0..out_rows)
                        .map(|r| {
                            let sum: f64 = (0..slots)
                                .map(|s| 0.75 * dot(down.row(experts[s], r), &values[s * rows..][..rows]))
                                .sum();
                            base[r] as f64 + sum
                        })
                        .collect();
                    (down, MatrixOf::Routed, want)
                } else {
                    let o = Weight::new(ctx, &mut rng, t, &[out_rows, n], 1.0);
                    let want: Vec<f64> = (0..out_rows).map(|r| base[r] as f64 + dot(o.row(0, r), &values)).collect();
                    (o, MatrixOf::Single, want)
                };
                let d = matvec(
                    ctx,
                    &mut kc,
                    MatvecArgs {
                        matrix: args,
                        out: if glu { Output::AddRoutedSum } else { Output::Add },
                        slots: if glu { slots as u32 } else { 1 },
                        x_stride: if glu { prepared_floats(rows) } else { 0 },
                        prepared: true,
                        ..MatvecArgs::new(&next.gpu, &y, &out, &route, true)
                    },
                )
                .unwrap();
                run(ctx, &[&d]);
                let name = format!("{name}, then the product over them");
                worst = worst.max(check(&name, &floats(&read_u32(ctx, &out, out_rows)), &want, REL_TOL));
            }
        }
    }
    report("matvec rounding its output", worst);
}

/// The attention's q_a + kv_a pass storing q_a's output rounded for the absorbed query: a stacked
/// product (its own input norm folded) rounding W0's output times the next product's norm weights,
/// with each chunk's Σ y²; then the next stacked product over it, taking the rms from those sums.
#[test]
fn matvec_round_norm_feeds_a_normed_prepared_product() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(22);
    let mut worst = 0f64;
    let (cols, rows0, rows1, next0, next1) = (256, 256, 40, 37, 11);
    let engine = Tiling::for_shape(ctx, 1, 1, false);
    let tilings = [
        None,
        Some(Tiling { lanes: 8, teams: 16, rows: 2, reduce: Reduce::Shared }),
        Some(Tiling { lanes: 64, teams: 4, rows: 8, ..engine }),
    ];
    for t in int8_formats() {
        let w0 = Weight::new(ctx, &mut rng, t, &[rows0, cols], 1.0);
        let w1 = Weight::new(ctx, &mut rng, t, &[rows1, cols], 1.0);
        let (v0, v1) =
            (Weight::new(ctx, &mut rng, t, &[next0, rows0], 1.0), Weight::new(ctx, &mut rng, t, &[next1, rows0], 1.0));
        let x = uniform(&mut rng, cols, 30.0);
        let (g_in, g_out) = (uniform(&mut rng, cols, 2.0), uniform(&mut rng, rows0, 2.0));
        let (xg, inv) = norm_parts(&x, &g_in);
        let xk = kernel_input(t, MatrixOf::Single, &xg);
        let want0: Vec<f64> = (0..rows0).map(|r| inv * dot(w0.row(0, r), &xk)).collect();
        let want1: Vec<f64> = (0..rows1).map(|r| inv * dot(w1.row(0, r), &xk)).collect();
        let (xb, gib, gob) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "g in", &g_in), buf_f32(ctx, "g out", &g_out));
        let rb = buf_u32(ctx, "route", &route_words(&[], &[]));
        for tiling in tilings {
            let (y0, y1) = (vec![NAN_BITS; (prepared_bytes(rows0) / 4) as usize + 3], vec![NAN_BITS; rows1 + 3]);
            let (yb0, yb1) = (buf_u32(ctx, "y0", &y0), buf_u32(ctx, "y1", &y1));
            let args = MatvecArgs {
                stacked: Some(Stacked { w: &w1.gpu, y: &yb1 }),
                norm: Some(InputNorm { weight: &gib, eps: NORM_EPS }),
                round_output: true,
                round_norm: Some(&gob),
                ..MatvecArgs::new(&w0.gpu, &xb, &yb0, &rb, true)
            };
            let d = match tiling {
                None => matvec(ctx, &mut kc, args).unwrap(),
                Some(tiling) => matvec_tiled(ctx, &mut kc, args, tiling).unwrap(),
            };
            run(ctx, &[&d]);
            let (got0, got1) = (read_u32(ctx, &yb0, y0.len()), read_u32(ctx, &yb1, y1.len()));
            let name = format!(
                "{} q_a + kv_a rounding q_a for a normed product [{}]",
                t.name(),
                tiling.map_or("engine tiling".to_string(), |t| format!("{t:?}"))
            );
            worst = worst.max(check(&format!("{name} second"), &floats(&got1[..rows1]), &want1, REL_TOL));
            check_untouched(&name, &got1[rows1..], &y1[rows1..]);
            // Each chunk: W0's outputs times g_out, rounded; Σ y² of the outputs before g_out.
            let mut values = Vec::with_capacity(rows0);
            for (c, want) in want0.chunks(32).enumerate() {
                let want_g: Vec<f64> = want.iter().zip(&g_out[32 * c..]).map(|(v, &g)| v * g as f64).collect();
                values.extend(check_rounded_chunk(&name, &got0, c, &want_g));
                let sumsq: f64 = want.iter().map(|v| v * v).sum();
                let got = f32::from_bits(got0[12 * c + 10]) as f64;
                assert!((got - sumsq).abs() <= 1e-4 * sumsq, "{name}: chunk {c} sum of squares {got}, want {sumsq}");
                check_untouched(&name, &got0[12 * c + 11..12 * c + 12], &[NAN_BITS]);
            }
            check_untouched(&name, &got0[12 * rows0 / 32 + 1..], &y0[12 * rows0 / 32 + 1..]);

            // The next product, normalised by the rms of W0's outputs.
            let inv_next = 1.0 / (want0.iter().map(|v| v * v).sum::<f64>() / rows0 as f64 + NORM_EPS as f64).sqrt();
            let (z0, z1) = (vec![NAN_BITS; next0 + 3], vec![NAN_BITS; next1 + 3]);
            let (zb0, zb1) = (buf_u32(ctx, "z0", &z0), buf_u32(ctx, "z1", &z1));
            let d = matvec(
                ctx,
                &mut kc,
                MatvecArgs {
                    stacked: Some(Stacked { w: &v1.gpu, y: &zb1 }),
                    norm: Some(InputNorm { weight: &gob, eps: NORM_EPS }),
                    prepared: true,
                    ..MatvecArgs::new(&v0.gpu, &yb0, &zb0, &rb, true)
                },
            )
            .unwrap();
            run(ctx, &[&d]);
            let (got0, got1) = (read_u32(ctx, &zb0, z0.len()), read_u32(ctx, &zb1, z1.len()));
            let want0: Vec<f64> = (0..next0).map(|r| inv_next * dot(v0.row(0, r), &values)).collect();
            let want1: Vec<f64> = (0..next1).map(|r| inv_next * dot(v1.row(0, r), &values)).collect();
            let name = format!("{name}, then the normed product over it");
            worst = worst.max(check(&format!("{name} first"), &floats(&got0[..next0]), &want0, REL_TOL));
            worst = worst.max(check(&format!("{name} second"), &floats(&got1[..next1]), &want1, REL_TOL));
            check_untouched(&name, &got0[next0..], &z0[next0..]);
            check_untouched(&name, &got1[next1..], &z1[next1..]);
        }
    }
    report("matvec rounding its output for a normed product", worst);
}

// ---------------------------------------------------------------------------------------------
// rms_norm, embed, capture
// ---------------------------------------------------------------------------------------------

/// The router folded into the attention output: each 32-row workgroup's partial sums (Σ_j W_r[e, j]
/// g_j y_j per expert and Σ y_j²) against the CPU from the new y it stored, then the gate/up pass
/// choosing from them picks the experts, with the weights, that it picks from the router's own
/// logits (computed on the CPU from the same y), and stores the same products.
#[test]
fn router_folded_into_the_attention_output_chooses_as_the_router() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(31);
    let (hidden, cols, experts, ffn) = (512, 384, 16, 64);
    let w_o = Weight::new(ctx, &mut rng, GgmlType::Q8_0, &[hidden, cols], 0.1);
    let router_w = Weight::new(ctx, &mut rng, GgmlType::F32, &[experts, hidden], 0.5);
    let g = uniform(&mut rng, hidden, 1.5);
    let (x, y0) = (uniform(&mut rng, cols, 1.0), uniform(&mut rng, hidden, 1.0));
    let (xb, yb, gb) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "y", &y0), buf_f32(ctx, "ffn norm", &g));
    let route = buf_u32(ctx, "route", &[0; 16]);
    let partials = ctx.storage("partials", router_partials_bytes(hidden, experts)).unwrap();
    let args = MatvecArgs {
        out: Output::Add,
        router_partials: Some(RouterPartials { router: &router_w.gpu, norm: &gb, out: &partials }),
        ..MatvecArgs::new(&w_o.gpu, &xb, &yb, &route, true)
    };
    run(ctx, &[&matvec(ctx, &mut kc, args).unwrap()]);
    let y = floats(&read_u32(ctx, &yb, hidden));
    let got = floats(&read_u32(ctx, &partials, (hidden / PARTIAL_ROWS) * (experts + 1)));
    let mut want = Vec::new();
    for group in 0..hidden / PARTIAL_ROWS {
        let rows = group * PARTIAL_ROWS..(group + 1) * PARTIAL_ROWS;
        for e in 0..experts {
            want.push(rows.clone().map(|j| router_w.deq[e * hidden + j] as f64 * g[j] as f64 * y[j] as f64).sum());
        }
        want.push(rows.map(|j| y[j] as f64 * y[j] as f64).sum());
    }
    report("router partials", check("router partials", &got, &want, 1e-5));

    // The gate/up pass over the new y, its norm folded: choosing from the partials, and from the
    // logits the router pass would store.
    let inv = 1.0 / (y.iter().map(|v| *v as f64 * *v as f64).sum::<f64>() / hidden as f64 + NORM_EPS as f64).sqrt();
    let logits: Vec<f32> = (0..experts)
        .map(|e| {
            ((0..hidden).map(|j| router_w.deq[e * hidden + j] as f64 * g[j] as f64 * y[j] as f64).sum::<f64>() * inv)
                as f32
        })
        .collect();
    let (gate, up) = (
        Weight::new(ctx, &mut rng, GgmlType::Q4K, &[experts, ffn, hidden], 0.1),
        Weight::new(ctx, &mut rng, GgmlType::Q4K, &[experts, ffn, hidden], 0.1),
    );
    let bias = buf_f32(ctx, "bias", &uniform(&mut rng, experts, 0.1));
    let logits_b = buf_f32(ctx, "logits", &logits);
    // GLM's sigmoid scores, and softmax ones (which total each expert's slices once for the max and sum).
    for gating in [Gating::Sigmoid, Gating::Softmax] {
        let cfg = ModelConfig { n_experts: experts, n_experts_used: 4, gating, ..config() };
        let choice = RouteChoice::new(&cfg, false).unwrap();
        let mut outs = Vec::new();
        for (logits, folded) in [(&logits_b, false), (&partials, true)] {
            let (act, route) = (ctx.storage("act", (4 * ffn * 4) as u64).unwrap(), buf_u32(ctx, "route", &[0; 16]));
            let args = MatvecArgs {
                up: Some(&up.gpu),
                norm: Some(InputNorm { weight: &gb, eps: NORM_EPS }),
                matrix: MatrixOf::Routed,
                choose: Some(ChooseRoute { choice, logits, bias: &bias, folded }),
                slots: 4,
                y_stride: ffn as u32,
                ..MatvecArgs::new(&gate.gpu, &yb, &act, &route, true)
            };
            run(ctx, &[&matvec(ctx, &mut kc, args).unwrap()]);
            outs.push((read_u32(ctx, &route, 16), floats(&read_u32(ctx, &act, 4 * ffn))));
        }
        let ((route_a, act_a), (route_b, act_b)) = (&outs[0], &outs[1]);
        assert_eq!(
            route_a[..4],
            route_b[..4],
            "{gating:?}: experts chosen from the partials vs from the router's logits"
        );
        let (wa, wb) = (floats(&route_a[8..12]), floats(&route_b[8..12]));
        for (a, b) in wa.iter().zip(&wb) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{gating:?}: route weights {wa:?} vs {wb:?}");
        }
        let want: Vec<f64> = act_a.iter().map(|v| *v as f64).collect();
        let name = format!("gate/up after a folded router, {gating:?}");
        report(&name, check(&name, act_b, &want, 1e-5));
    }
}

#[test]
fn rms_norm_matches_cpu() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(6);
    let mut worst = 0f64;
    for (n, eps, amp) in [
        (1, 1e-6, 2.0),
        (8, 1e-5, 0.01),
        (37, 1e-6, 3.0),
        (256, 1e-5, 1.0),
        (1000, 1e-6, 50.0),
        (2048, 1e-5, 1.0),
        (6144, 1e-6, 0.5),
    ] {
        let x = uniform(&mut rng, n, amp);
        let w = uniform(&mut rng, n, 2.0);
        let pad = 9;
        let y0 = vec![NAN_BITS; n + pad];
        let (xb, wb, yb) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "w", &w), buf_u32(ctx, "y", &y0));
        let d = rms_norm(ctx, &mut kc, n, eps, &xb, &wb, &yb).unwrap();
        run(ctx, &[&d]);
        let y = read_u32(ctx, &yb, n + pad);
        let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        let want: Vec<f64> = x.iter().zip(&w).map(|(&a, &b)| a as f64 * inv * b as f64).collect();
        let name = format!("rms_norm n {n} eps {eps:e}");
        worst = worst.max(check(&name, &floats(&y[..n]), &want, REL_TOL));
        check_untouched(&name, &y[n..], &y0[n..]);
    }
    report("rms_norm", worst);
}

/// x = dequantized row tokens[pos]: bit-exact (one multiply per weight at most).
#[test]
fn embed_matches_dequantized_row() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(7);
    let vocab = 37;
    let cases: Vec<(GgmlType, &[usize])> = vec![
        (GgmlType::F32, &[4, 100, 260]),
        (GgmlType::F16, &[8, 24, 520]),
        (GgmlType::BF16, &[8, 200, 520]),
        (GgmlType::Q8_0, &[32, 544, 2080]),
        (GgmlType::Q4_0, &[32, 544, 2080]),
        (GgmlType::Q4_1, &[32, 544, 2080]),
        (GgmlType::Q5_0, &[32, 544, 2080]),
        (GgmlType::Q5_1, &[32, 544, 2080]),
        (GgmlType::Iq4Nl, &[32, 544, 2080]),
        (GgmlType::Q2K, &[256, 2304]),
        (GgmlType::Q3K, &[256, 2304]),
        (GgmlType::Q4K, &[256, 2304]),
        (GgmlType::Q5K, &[256, 2304]),
        (GgmlType::Q6K, &[256, 2304]),
        (GgmlType::Iq4Xs, &[256, 2304]),
    ];
    for (t, cols) in cases {
        for &cols in cols {
            let table = Weight::new(ctx, &mut rng, t, &[vocab, cols], 1.0);
            let tokens: Vec<u32> = (0..12).map(|_| rng.random_range(0..vocab as u32)).collect();
            let tb = buf_u32(ctx, "tokens", &tokens);
            // (first position, tokens of the step, tokens the dispatch is sized for)
            for (pos, n, max) in [(0usize, 1usize, 1u32), (5, 1, 1), (11, 1, 1), (2, 3, 4), (4, 4, 4)] {
                let pad = 8;
                let x0 = vec![NAN_BITS; max as usize * cols + pad];
                let xb = buf_u32(ctx, "x", &x0);
                let sb = ctx.uniform("step", bytemuck::bytes_of(&Step::chunk(pos, n)));
                let d = embed(ctx, &mut kc, &table.gpu, max, &sb, &tb, &xb).unwrap();
                run(ctx, &[&d]);
                let x = read_u32(ctx, &xb, x0.len());
                for r in 0..n {
                    let tok = tokens[pos + r] as usize;
                    let name = format!("embed {} {vocab}x{cols} pos {pos} row {r} token {tok}", t.name());
                    let want = bits(table.row(0, tok));
                    let row = &x[r * cols..(r + 1) * cols];
                    if let Some(i) = (0..cols).find(|&i| row[i] != want[i]) {
                        panic!("{name}: element {i} is {}, want {}", f32::from_bits(row[i]), f32::from_bits(want[i]));
                    }
                }
                check_untouched("embed: rows past the step", &x[n * cols..], &x0[n * cols..]);
            }
        }
    }
    report("embed (bit-exact)", 0.0);
}

#[test]
fn capture_copies_into_slot() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(8);
    for (n, offset) in [(1, 0), (37, 5), (2048, 3 * 2048), (100, 13), (64, 64), (65, 0)] {
        let src = uniform(&mut rng, n, 10.0);
        let len = offset + n + 11;
        let dst0 = vec![NAN_BITS; len];
        let (sb, db) = (buf_f32(ctx, "src", &src), buf_u32(ctx, "dst", &dst0));
        let d = capture(ctx, &mut kc, n, offset, &sb, &db).unwrap();
        run(ctx, &[&d]);
        let dst = read_u32(ctx, &db, len);
        let name = format!("capture n {n} offset {offset}");
        check_untouched(&name, &dst[offset..offset + n], &bits(&src));
        check_untouched(&name, &dst[..offset], &dst0[..offset]);
        check_untouched(&name, &dst[offset + n..], &dst0[offset + n..]);
    }
    report("capture (bit-exact)", 0.0);
}

#[test]
fn stream_copies_or_reads_the_words_from_its_offset() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(9);
    let wg = WG as usize;
    // Words of 4 u32; a partial last workgroup, exactly one, several, and an offset source.
    for (words, offset) in [(1usize, 0usize), (5, 3), (1024, 0), (1025, 7), (3000, 1000)] {
        let mut src: Vec<u32> = (0..(offset + words + 2) * 4).map(|_| rng.random()).collect();
        let dst0 = vec![NAN_BITS; (words + 3) * 4];
        let name = format!("stream {words} words from {offset}");
        let go = |kc: &mut KernelCache, how, src: &[u32]| {
            let (sb, db) = (buf_u32(ctx, "src", src), buf_u32(ctx, "dst", &dst0));
            run(ctx, &[&stream(ctx, kc, how, words as u64, offset as u64, &sb, &db).unwrap()]);
            read_u32(ctx, &db, dst0.len())
        };
        let dst = go(&mut kc, Stream::Copy, &src);
        check_untouched(&name, &dst[..words * 4], &src[offset * 4..(offset + words) * 4]);
        check_untouched(&name, &dst[words * 4..], &dst0[words * 4..]);
        // A read stores nothing of random words, and the sentinel where thread 0's words (those
        // before the end) fold to it: its last word set to make them so.
        check_untouched(&name, &go(&mut kc, Stream::Read, &src), &dst0);
        let mine: Vec<usize> = (0..PER_THREAD as usize).map(|k| k * wg).filter(|&i| i < words).collect();
        let last = offset + mine[mine.len() - 1];
        for c in 0..4 {
            let others = mine[..mine.len() - 1].iter().fold(0, |f, &i| f ^ src[(offset + i) * 4 + c]);
            src[last * 4 + c] = SENTINEL ^ others;
        }
        let dst = go(&mut kc, Stream::Read, &src);
        check_untouched(&name, &dst[..4], &[SENTINEL; 4]);
        check_untouched(&name, &dst[4..], &dst0[4..]);
    }
    // Past either end: an error, not a read out of range.
    let (sb, db) = (buf_u32(ctx, "src", &[0; 64]), buf_u32(ctx, "dst", &[0; 64]));
    assert!(stream(ctx, &mut kc, Stream::Copy, 16, 1, &sb, &db).is_err());
    assert!(stream(ctx, &mut kc, Stream::Read, 17, 0, &sb, &db).is_err());
    report("stream (bit-exact)", 0.0);
}

// ---------------------------------------------------------------------------------------------
// KV cache and attention
// ---------------------------------------------------------------------------------------------

/// Set to 1 where the adapter has cooperative matrices (the H200 runs), so that their absence fails.
const REQUIRE_COOP: &str = "GLM_WGPU_REQUIRE_COOP";
/// The cooperative decode attention's queries and weights P are rounded to f16.
const COOP_ATTENTION_TOL: f64 = 2e-3;

/// The two passes store the current row (RMSNorm of ckv's latent, RoPE of its key) and compute
/// ctx[h] = softmax_t(SCALE · (q_lat[h]·latent_t + rope(q_rope[h], pos)·key_t)) · latent_t over a
/// cache of pos random positions plus that row; every other cache word stays as it was (words past
/// the row are NaN, so a pass that lets them into a sum fails). Where the adapter has cooperative
/// matrices, the f16 cases also run with the cooperative split pass serving from COOP_CONTEXT.
#[test]
fn mla_attention_stores_the_row_and_matches_softmax() {
    let ctx = gpu();
    let mut rng = seeded(10);
    let coop_here = matmul_coop::supported(ctx).is_ok();
    assert!(coop_here || std::env::var(REQUIRE_COOP).is_err(), "{REQUIRE_COOP} is set but this adapter has none");
    let (mut worst32, mut worst16, mut worst_row32, mut worst_row16) = (0f64, 0f64, 0f64, 0f64);
    let mut worst_coop = None;
    let mut configs = attention_configs();
    if coop_here {
        // Both 16-row bands of the cooperative pass's heads.
        configs.push(ModelConfig { n_heads: 20, ..config() });
    }
    for (i, c) in configs.into_iter().enumerate() {
        let mut kc = KernelCache::default();
        let (heads, lora, rope, kw, qk) = (c.n_heads, c.kv_lora_rank, c.qk_rope, c.kv_width(), c.qk_head());
        let scale = (1.0 / (qk as f32).sqrt()) as f64;
        // Splits of 8 positions (contexts up to 512), 40 (2,500: five rounds of 8, the last split
        // part full) and, on the small shape, the longest splits (33,000 positions).
        let mut cases = vec![
            (1usize, 1.0f32, 1.0f32),
            (5, 1.0, 20.0),
            (67, 1.0, 1.0),
            (300, 1.0, 1.0),
            (67, 100.0, 1.0),
            (2500, 1.0, 1.0),
        ];
        if i == 1 {
            cases.push((33_000, 1.0, 1.0));
        }
        if i == 2 {
            cases.push((4100, 1.0, 1.0));
        }
        let max_ctx = cases.iter().map(|c| c.0).max().unwrap() + 1;
        let variants = [(false, false), (true, false), (true, true)];
        let coop_fits = coop_here && mla_attention_coop::fits(&c, true).is_ok();
        for (kv_f16, coop) in variants.into_iter().filter(|&(_, coop)| !coop || coop_fits) {
            // (n, q_lat amplitude, ckv amplitude): the q_lat of 100 makes scores span hundreds, so only
            // a max-subtracted softmax survives.
            for (k, &(n, amp, ckv_amp)) in cases.iter().enumerate() {
                // The adapter's team reductions and shared-memory ones, alternately: each case meets
                // both over the two cache types.
                let reduce =
                    if (k + kv_f16 as usize).is_multiple_of(2) { Reduce::for_adapter(ctx) } else { Reduce::Shared };
                let pos = n - 1;
                let table = rope_table(&mut rng, max_ctx, rope / 2);
                let per_pos = if kv_f16 { kw / 2 } else { kw };
                let mut words = cache_encode(&uniform(&mut rng, pos * kw, 1.0), kv_f16);
                words.resize(cache_rows(max_ctx) * per_pos, if kv_f16 { NAN_F16X2 } else { NAN_BITS });
                let ckv = uniform(&mut rng, kw, ckv_amp);
                let norm = uniform(&mut rng, lora, 2.0);
                let q_rope = uniform(&mut rng, heads * rope, 1.0);
                let q_lat = uniform(&mut rng, heads * lora, amp);
                let out_len = heads * lora + 5;
                let out0 = vec![NAN_BITS; out_len];
                let sb = step(ctx, pos as u32, coop);
                let (qb, qlb, rb) =
                    (buf_f32(ctx, "q_rope", &q_rope), buf_f32(ctx, "q_lat", &q_lat), buf_f32(ctx, "rope", &table));
                let (kb, nb) = (buf_f32(ctx, "ckv", &ckv), buf_f32(ctx, "norm", &norm));
                let cb = buf_u32(ctx, "cache", &words);
                let partials = buf_u32(ctx, "partials", &vec![NAN_BITS; partials_len(&c, max_ctx, coop)]);
                let ob = buf_u32(ctx, "ctx", &out0);
                let a = AttentionArgs {
                    step: &sb,
                    q_rope: &qb,
                    q_lat: &qlb,
                    rope: &rb,
                    cache: &cb,
                    ckv: &kb,
                    kv_norm: &nb,
                    partials: &partials,
                    out: &ob,
                };
                // The split pass variant that serves this position, as in the engine.
                let attention =
                    mla_attention_reducing(ctx, &mut kc, &c, DecodeAttention { max_ctx, kv_f16, coop }, reduce, a)
                        .unwrap();
                let serving: Vec<_> = attention.splits.iter().filter(|d| d.positions.contains(&pos)).collect();
                assert_eq!(serving.len(), 1, "split passes serving position {pos}");
                let split = serving[0];
                assert_eq!(split.kernel.name == "mla_attention_coop", coop && pos >= COOP_CONTEXT, "pos {pos}");
                run(ctx, &[split, &attention.combine]);
                let name = format!(
                    "{} {} heads {heads} kv_lora {lora} rope {rope} n {n} q_lat amp {amp} {reduce:?}",
                    split.kernel.name,
                    if kv_f16 { "f16" } else { "f32" }
                );

                // The stored row, and the cache around it untouched.
                let cache = read_u32(ctx, &cb, words.len());
                let row_words = pos * per_pos..n * per_pos;
                check_untouched(
                    &format!("{name} cache before pos"),
                    &cache[..row_words.start],
                    &words[..row_words.start],
                );
                check_untouched(&format!("{name} cache after pos"), &cache[row_words.end..], &words[row_words.end..]);
                let ms = ckv[..lora].iter().map(|&v| v as f64 * v as f64).sum::<f64>() / lora as f64;
                let inv = 1.0 / (ms + LORA_NORM_EPS as f64).sqrt();
                let mut want_row: Vec<f64> = (0..lora).map(|i| ckv[i] as f64 * inv * norm[i] as f64).collect();
                want_row.extend(rope_ref(&ckv[lora..], &table, pos));
                let row = cache_decode(&cache[row_words], kv_f16);
                if kv_f16 {
                    // Each value rounded to f16: compare per element.
                    for (i, (&g, &w)) in row.iter().zip(&want_row).enumerate() {
                        let e = (g as f64 - w).abs();
                        let tol = F16_TOL * w.abs() + 1e-7;
                        assert!(e <= tol, "{name}: row element {i} is {g}, want {w} (|Δ| {e:.3e} > {tol:.3e})");
                        worst_row16 = worst_row16.max(e / w.abs().max(1e-7));
                    }
                } else {
                    let (lat, key) = row.split_at(lora);
                    worst_row32 = worst_row32.max(check(&format!("{name} latent"), lat, &want_row[..lora], REL_TOL));
                    worst_row32 = worst_row32.max(check(&format!("{name} roped key"), key, &want_row[lora..], REL_TOL));
                }

                // Attention over the cache as stored.
                let stored = cache_decode(&cache[..n * per_pos], kv_f16);
                let out = read_u32(ctx, &ob, out_len);
                let mut want = Vec::with_capacity(heads * lora);
                for h in 0..heads {
                    let ql = &q_lat[h * lora..(h + 1) * lora];
                    let qr = rope_ref(&q_rope[h * rope..(h + 1) * rope], &table, pos);
                    let s: Vec<f64> = (0..n)
                        .map(|t| {
                            let row = &stored[t * kw..(t + 1) * kw];
                            let lat: f64 = ql.iter().zip(&row[..lora]).map(|(&a, &b)| a as f64 * b as f64).sum();
                            let key: f64 = qr.iter().zip(&row[lora..]).map(|(&a, &b)| a * b as f64).sum();
                            scale * (lat + key)
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let p: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let sum: f64 = p.iter().sum();
                    for d in 0..lora {
                        want.push((0..n).map(|t| p[t] * stored[t * kw + d] as f64).sum::<f64>() / sum);
                    }
                }
                if split.kernel.name == "mla_attention_coop" {
                    let e = check(&name, &floats(&out[..heads * lora]), &want, COOP_ATTENTION_TOL);
                    worst_coop = Some(worst_coop.unwrap_or(0f64).max(e));
                } else if kv_f16 {
                    worst16 = worst16.max(check(&name, &floats(&out[..heads * lora]), &want, REL_TOL));
                } else {
                    worst32 = worst32.max(check(&name, &floats(&out[..heads * lora]), &want, REL_TOL));
                }
                check_untouched(&name, &out[heads * lora..], &out0[heads * lora..]);
            }
        }
    }
    report("mla_attention stored row f32", worst_row32);
    report("mla_attention stored row f16 (per element)", worst_row16);
    report("mla_attention f32 cache", worst32);
    report("mla_attention f16 cache", worst16);
    match worst_coop {
        Some(e) => report("mla_attention_coop f16 cache", e),
        None => eprintln!("mla_attention_coop: no cooperative matrices on this adapter, not run"),
    }
}

// ---------------------------------------------------------------------------------------------
// router, argmax
// ---------------------------------------------------------------------------------------------

struct RouterCase {
    n_exp: usize,
    topk: usize,
    gating: Gating,
    norm_topk: bool,
    scale: f32,
    hidden: usize,
    /// Push an expert outside the unbiased top-k into the biased one.
    bias_flips: bool,
}

/// Scores (sigmoid or softmax of the logits) in f64.
fn gate_scores(logits: &[f64], gating: Gating) -> Vec<f64> {
    match gating {
        Gating::Sigmoid => logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect(),
        Gating::Softmax => {
            let m = logits.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        }
    }
}

/// Indices of the `k` largest values, largest first, and the gap between the k-th and the next.
fn top_k(v: &[f64], k: usize) -> (Vec<usize>, f64) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    let gap = if k < v.len() { v[order[k - 1]] - v[order[k]] } else { f64::INFINITY };
    (order[..k].to_vec(), gap)
}

#[test]
fn router_selects_and_weights() {
    let ctx = gpu();
    let mut rng = seeded(11);
    let mut worst = 0f64;
    let cases = [
        RouterCase {
            n_exp: 64,
            topk: 4,
            gating: Gating::Sigmoid,
            norm_topk: true,
            scale: 1.8,
            hidden: 2080,
            bias_flips: true,
        },
        // A row length of whole 256-weight super-blocks, so the K-quant formats route too.
        RouterCase {
            n_exp: 64,
            topk: 4,
            gating: Gating::Sigmoid,
            norm_topk: true,
            scale: 1.8,
            hidden: 768,
            bias_flips: false,
        },
        RouterCase {
            n_exp: 64,
            topk: 4,
            gating: Gating::Sigmoid,
            norm_topk: true,
            scale: 1.8,
            hidden: 96,
            bias_flips: false,
        },
        RouterCase {
            n_exp: 37,
            topk: 8,
            gating: Gating::Sigmoid,
            norm_topk: false,
            scale: 1.0,
            hidden: 160,
            bias_flips: true,
        },
        RouterCase {
            n_exp: 130,
            topk: 6,
            gating: Gating::Softmax,
            norm_topk: true,
            scale: 2.5,
            hidden: 544,
            bias_flips: false,
        },
        RouterCase {
            n_exp: 16,
            topk: 1,
            gating: Gating::Softmax,
            norm_topk: false,
            scale: 1.0,
            hidden: 96,
            bias_flips: false,
        },
        RouterCase {
            n_exp: 20,
            topk: 3,
            gating: Gating::Softmax,
            norm_topk: false,
            scale: 0.7,
            hidden: 32,
            bias_flips: true,
        },
    ];
    for rc in &cases {
        let c = ModelConfig {
            n_experts: rc.n_exp,
            n_experts_used: rc.topk,
            gating: rc.gating,
            norm_topk: rc.norm_topk,
            routed_scale: rc.scale,
            hidden: rc.hidden,
            ..config()
        };
        c.validate().unwrap();
        let mut kc = KernelCache::default();
        for (t, _) in formats().into_iter().filter(|(t, _)| rc.hidden % t.block_elems() == 0) {
            let amp = (18.0 / rc.hidden as f32).sqrt();
            let gate = Weight::new(ctx, &mut rng, t, &[rc.n_exp, rc.hidden], amp);
            // Draw inputs until the choice is clear-cut (no near-ties at the top-k boundary).
            let (x, bias, scores, ids) = (0..200)
                .find_map(|_| {
                    let x = uniform(&mut rng, rc.hidden, 1.0);
                    let logits: Vec<f64> = (0..rc.n_exp).map(|e| dot(gate.row(0, e), &x)).collect();
                    let scores = gate_scores(&logits, rc.gating);
                    let top = scores.iter().cloned().fold(0.0, f64::max);
                    let mut bias = uniform(&mut rng, rc.n_exp, 0.02 * top as f32);
                    let (plain, _) = top_k(&scores, rc.topk);
                    if rc.bias_flips {
                        // Lift the (k+2)-th expert by the spread of the scores: it must enter the top-k.
                        let (order, _) = top_k(&scores, (rc.topk + 2).min(rc.n_exp));
                        let e = order[order.len() - 1];
                        bias[e] += (top - scores[e]) as f32 * 1.5 + 0.05 * top as f32;
                    }
                    let choice: Vec<f64> = scores.iter().zip(&bias).map(|(&s, &b)| s + b as f64).collect();
                    let (ids, gap) = top_k(&choice, rc.topk);
                    let spread = choice.iter().cloned().fold(0.0, |m: f64, v| m.max(v.abs()));
                    let mut a = ids.clone();
                    let mut b = plain.clone();
                    a.sort();
                    b.sort();
                    let flipped = a != b;
                    (gap > 2e-3 * spread && flipped == rc.bias_flips).then_some((x, bias, scores, ids))
                })
                .expect("no well-separated router input in 200 draws");
            let (xb, bb) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "bias", &bias));
            let route0 = route_words(&[], &[]);
            let rb = buf_u32(ctx, "route", &route0);
            let lb = ctx.storage("router logits", (rc.n_exp * 4) as u64).unwrap();
            // The router test checks the choice against exact f32 logits.
            let args = MatvecArgs::new(&gate.gpu, &xb, &lb, &rb, false);
            let logits = matvec(ctx, &mut kc, args).unwrap();
            let d = router(ctx, &mut kc, &c, false, 1, [&lb, &bb, &rb]).unwrap();
            run(ctx, &[&logits, &d]);
            let route = read_u32(ctx, &rb, 16);
            let name = format!(
                "router {} {:?} {} experts top-{} norm_topk {} scale {} hidden {}{}",
                t.name(),
                rc.gating,
                rc.n_exp,
                rc.topk,
                rc.norm_topk,
                rc.scale,
                rc.hidden,
                if rc.bias_flips { " (bias changes the choice)" } else { "" }
            );
            let got_ids: Vec<usize> = route[..rc.topk].iter().map(|&i| i as usize).collect();
            let (mut gs, mut ws) = (got_ids.clone(), ids.clone());
            gs.sort();
            ws.sort();
            assert_eq!(gs, ws, "{name}: chosen experts (GPU order {got_ids:?}, expected order {ids:?})");
            // Weights follow the unbiased scores of the chosen experts, matched by id.
            let total: f64 = ids.iter().map(|&e| scores[e]).sum();
            let norm = if rc.norm_topk { 1.0 / total } else { 1.0 };
            let want: Vec<f64> = got_ids.iter().map(|&e| scores[e] * norm * rc.scale as f64).collect();
            let got = floats(&route[8..8 + rc.topk]);
            worst = worst.max(check(&format!("{name} weights"), &got, &want, REL_TOL));
            check_untouched(&format!("{name} unused id slots"), &route[rc.topk..8], &route0[rc.topk..8]);
            check_untouched(&format!("{name} unused weight slots"), &route[8 + rc.topk..], &route0[8 + rc.topk..]);
        }
    }
    report("router weights", worst);
}

/// The expert gate/up pass of decode chooses its experts from the router logits in every workgroup
/// (route_choice.wgsl, as the router kernel): each slot holds the product of the expert ranked
/// there (the shared expert after the routed ones where appended), with the input norm folded in,
/// and workgroup 0 stores the route for the down pass.
#[test]
fn expert_gate_up_chooses_its_routes() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(12);
    let mut worst = 0f64;
    let cases = [(64, 4, Gating::Sigmoid, true, 1.8, true), (20, 3, Gating::Softmax, false, 0.7, false)];
    for (n_exp, topk, gating, norm_topk, scale, shared) in cases {
        let c =
            ModelConfig { n_experts: n_exp, n_experts_used: topk, gating, norm_topk, routed_scale: scale, ..config() };
        let choice = RouteChoice::new(&c, shared).unwrap();
        for (t, cols) in
            formats().into_iter().filter(|(t, _)| [GgmlType::Q4K, GgmlType::Q8_0, GgmlType::F32].contains(t))
        {
            let (rows, cols) = (37, cols[1]);
            // Logits with a clear-cut choice (no near-ties at the top-k boundary, none inside it).
            let (logits, bias, scores, ids) = (0..200)
                .find_map(|_| {
                    let logits = uniform(&mut rng, n_exp, 3.0);
                    let bias = uniform(&mut rng, n_exp, 0.1);
                    let scores = gate_scores(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>(), gating);
                    let keys: Vec<f64> = scores.iter().zip(&bias).map(|(&s, &b)| s + b as f64).collect();
                    let (ids, _) = top_k(&keys, topk);
                    let gaps_ok = (0..=topk.min(n_exp - 1)).all(|k| {
                        let (order, _) = top_k(&keys, n_exp);
                        k == 0 || keys[order[k - 1]] - keys[order[k]] > 1e-3
                    });
                    gaps_ok.then_some((logits, bias, scores, ids))
                })
                .expect("no well-separated logits in 200 draws");
            let x = uniform(&mut rng, cols, 40.0);
            let g = uniform(&mut rng, cols, 2.0);
            let (xg, inv) = norm_parts(&x, &g);
            let n_mat = n_exp + shared as usize;
            let gate = Weight::new(ctx, &mut rng, t, &[n_mat, rows, cols], 1.0);
            let up = Weight::new(ctx, &mut rng, t, &[n_mat, rows, cols], 1.0);
            let slots = topk + shared as usize;
            let experts: Vec<usize> = ids.iter().copied().chain(shared.then_some(n_exp)).collect();
            let len = slots * rows + 4;
            let y0 = vec![NAN_BITS; len];
            let route0 = route_words(&[], &[]);
            let c = MatvecCase {
                w: &gate,
                up: Some(&up),
                norm: Some(&g),
                matrix: MatrixOf::Routed,
                out: Output::Store,
                slots,
                x_stride: 0,
                y_stride: rows,
                x: &x,
                y0: &y0,
                route: &route0,
                choose: Some((choice, &logits, &bias)),
                merge: None,
            };
            let xk = kernel_input(t, MatrixOf::Routed, &xg);
            let want = products_want(&gate, Some(&up), &experts, rows, &xk, inv);
            let total: f64 = ids.iter().map(|&e| scores[e]).sum();
            let norm = if norm_topk { 1.0 / total } else { 1.0 };
            let want_w: Vec<f64> =
                ids.iter().map(|&e| scores[e] * norm * scale as f64).chain(shared.then_some(1.0)).collect();
            for (tiling, y, route) in run_matvec(ctx, &mut kc, &c) {
                let name = format!("expert gate/up choosing {topk} of {n_exp} {gating:?} {} [{tiling}]", t.name());
                let got_ids: Vec<usize> = route[..slots].iter().map(|&e| e as usize).collect();
                assert_eq!(got_ids, experts, "{name}: stored expert ids, in rank order");
                worst = worst.max(check(&format!("{name} weights"), &floats(&route[8..8 + slots]), &want_w, REL_TOL));
                check_untouched(&format!("{name} unused route slots"), &route[slots..8], &route0[slots..8]);
                worst = worst.max(check(&name, &floats(&y[..slots * rows]), &want, REL_TOL));
                check_untouched(&name, &y[slots * rows..], &y0[slots * rows..]);
            }
        }
    }
    report("expert gate/up choosing routes", worst);
}

/// The router pass also stores its input normalised and rounded to int8 (`prepare`), as the CPU
/// rounds it, with the norm's scale; gate/up passes over that prepared input equal the same products
/// with the norm folded in.
#[test]
fn router_pass_prepares_the_expert_input() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(15);
    let mut worst = 0f64;
    let (n_exp, cols, rows) = (12, 512, 37);
    for router_type in [GgmlType::F32, GgmlType::BF16] {
        let router_w = Weight::new(ctx, &mut rng, router_type, &[n_exp, cols], 0.1);
        let x = uniform(&mut rng, cols, 40.0);
        let g = uniform(&mut rng, cols, 2.0);
        let (xg, inv) = norm_parts(&x, &g);
        let (xb, gb, rb) =
            (buf_f32(ctx, "x", &x), buf_f32(ctx, "norm", &g), buf_u32(ctx, "route", &route_words(&[], &[])));
        let logits = ctx.storage("logits", (n_exp * 4) as u64).unwrap();
        let prepared = ctx.storage("prepared", prepared_bytes(cols)).unwrap();
        let args = MatvecArgs {
            norm: Some(InputNorm { weight: &gb, eps: NORM_EPS }),
            prepare: Some(&prepared),
            ..MatvecArgs::new(&router_w.gpu, &xb, &logits, &rb, true)
        };
        let d = matvec(ctx, &mut kc, args).unwrap();
        run(ctx, &[&d]);
        let name = format!("router {} with prepare", router_type.name());
        let want: Vec<f64> = (0..n_exp).map(|e| inv * dot(router_w.row(0, e), &xg)).collect();
        worst = worst.max(check(&name, &floats(&read_u32(ctx, &logits, n_exp)), &want, REL_TOL));
        check_prepared(&name, &read_u32(ctx, &prepared, (prepared_bytes(cols) / 4) as usize), &xg, inv);
        let rounded = activations::round_to_int8(&xg);

        for t in int8_formats() {
            let gate = Weight::new(ctx, &mut rng, t, &[3, rows, cols], 1.0);
            let up = Weight::new(ctx, &mut rng, t, &[3, rows, cols], 1.0);
            let ids = [2u32, 0];
            let route = buf_u32(ctx, "route", &route_words(&ids, &[0.5, 0.25]));
            let y0 = vec![NAN_BITS; ids.len() * rows + 3];
            let y = buf_u32(ctx, "y", &y0);
            let args = MatvecArgs {
                up: Some(&up.gpu),
                matrix: MatrixOf::Routed,
                slots: ids.len() as u32,
                y_stride: rows as u32,
                prepared: true,
                ..MatvecArgs::new(&gate.gpu, &prepared, &y, &route, true)
            };
            let d = matvec(ctx, &mut kc, args).unwrap();
            run(ctx, &[&d]);
            let got = read_u32(ctx, &y, y0.len());
            let experts: Vec<usize> = ids.iter().map(|&e| e as usize).collect();
            let want = products_want(&gate, Some(&up), &experts, rows, &rounded, inv);
            let name = format!("{} gate/up over the input {name}", t.name());
            worst = worst.max(check(&name, &floats(&got[..want.len()]), &want, REL_TOL));
            check_untouched(&name, &got[want.len()..], &y0[want.len()..]);
        }
    }
    report("prepared expert input", worst);
}

/// `prepare_input` (the LM head's input): x ⊙ g rounded as the CPU rounds it, bit for bit, with 1 / rms
/// after the chunks; a product over it, stored or added (at 4,096 values, 128 chunks, the attention
/// output's tiling; at 8,195 rows, the LM head's), equals the product with the norm folded in.
#[test]
fn prepare_input_rounds_the_normalised_input_once() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let mut rng = seeded(23);
    let mut worst = 0f64;
    for cols in [32, 256, 2080, 2304, 4096] {
        let x = uniform(&mut rng, cols, 30.0);
        let g = uniform(&mut rng, cols, 2.0);
        let (xg, inv) = norm_parts(&x, &g);
        let (xb, gb) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "norm", &g));
        let words = (prepared_bytes(cols) / 4) as usize;
        let prepared = buf_u32(ctx, "prepared", &vec![NAN_BITS; words]);
        let d = prepare_input(ctx, &mut kc, cols, InputNorm { weight: &gb, eps: NORM_EPS }, &xb, &prepared).unwrap();
        run(ctx, &[&d]);
        let got = read_u32(ctx, &prepared, words);
        let name = format!("prepare_input of {cols} values");
        check_prepared(&name, &got, &xg, inv);
        for c in 0..cols / 32 {
            check_untouched(&name, &got[12 * c + 10..12 * c + 12], &[NAN_BITS; 2]);
        }

        for t in int8_formats().filter(|t| cols.is_multiple_of(t.block_elems())) {
            let rows = if cols == 256 && t == GgmlType::Q8_0 { 8195 } else { 45 };
            let w = Weight::new(ctx, &mut rng, t, &[rows, cols], 1.0);
            let route = buf_u32(ctx, "route", &route_words(&[], &[]));
            let product = products_want(&w, None, &[0], rows, &activations::round_to_int8(&xg), inv);
            for out in [Output::Store, Output::Add] {
                let base = uniform(&mut rng, rows, 4.0);
                let y0 = [bits(&base), vec![NAN_BITS; 3]].concat();
                let y = buf_u32(ctx, "y", &y0);
                let d = matvec(
                    ctx,
                    &mut kc,
                    MatvecArgs { prepared: true, out, ..MatvecArgs::new(&w.gpu, &prepared, &y, &route, true) },
                )
                .unwrap();
                run(ctx, &[&d]);
                let got = read_u32(ctx, &y, y0.len());
                let add = out == Output::Add;
                let want: Vec<f64> =
                    product.iter().zip(&base).map(|(p, b)| p + if add { *b as f64 } else { 0.0 }).collect();
                let name = format!("{} product of {rows} rows over the {name}, added {add}", t.name());
                worst = worst.max(check(&name, &floats(&got[..rows]), &want, REL_TOL));
                check_untouched(&name, &got[rows..], &y0[rows..]);
            }
        }
    }
    report("prepare_input and a product over it", worst);
}

#[test]
fn argmax_lowest_index_wins() {
    let ctx = gpu();
    let mut rng = seeded(12);
    for n in [1usize, 37, 1536, 154_880] {
        let mut kc = KernelCache::default();
        // (description, logits)
        let mut cases: Vec<(String, Vec<f32>, usize)> = Vec::new();
        let base = |rng: &mut StdRng| uniform(rng, n, 10.0);
        for _ in 0..2 {
            let mut v = base(&mut rng);
            let i = rng.random_range(0..n);
            v[i] = 11.0 + rng.random_range(0.0..1.0);
            cases.push((format!("unique max at {i}"), v, i));
        }
        let mut v = base(&mut rng);
        v[n - 1] = 12.0;
        cases.push(("max at the last index".into(), v, n - 1));
        let mut v = base(&mut rng);
        v[0] = 12.0;
        cases.push(("max at index 0".into(), v, 0));
        cases.push(("all equal".into(), vec![0.5; n], 0));
        let v: Vec<f32> = uniform(&mut rng, n, 1.0).iter().map(|x| -1e30 - 1e29 * x.abs()).collect();
        let want = (0..n).fold(0, |b, i| if v[i] > v[b] { i } else { b });
        cases.push(("all hugely negative".into(), v, want));
        // Ties: within one thread's stride, across threads with the later index on a lower thread,
        // and far apart.
        for (a, b) in [(3, 3 + 256), (255, 256), (1000, 1200), (5, n - 1), (300, 20_000), (100_000, 154_879)] {
            if b >= n || a >= b {
                continue;
            }
            let mut v = base(&mut rng);
            v[a] = 11.5;
            v[b] = 11.5;
            cases.push((format!("tie at {a} and {b}"), v, a));
        }
        for (what, logits, want) in cases {
            let pos = rng.random_range(0..20u32);
            let len = pos as usize + 5;
            let tokens0: Vec<u32> = (0..len as u32).map(|i| 0xdead_0000 + i).collect();
            let (lb, tb) = (buf_f32(ctx, "logits", &logits), buf_u32(ctx, "tokens", &tokens0));
            let sb = step(ctx, pos, false);
            let [partial, last] = argmax(ctx, &mut kc, n, &sb, &lb, &tb).unwrap();
            run(ctx, &[&partial, &last]);
            let tokens = read_u32(ctx, &tb, len);
            let name = format!("argmax n {n} pos {pos} {what}");
            let slot = pos as usize + 1;
            assert_eq!(tokens[slot], want as u32, "{name}: picked {} (logit {})", tokens[slot], logits[want]);
            check_untouched(&name, &tokens[..slot], &tokens0[..slot]);
            check_untouched(&name, &tokens[slot + 1..], &tokens0[slot + 1..]);
        }
    }
    report("argmax (exact)", 0.0);
}

// ---------------------------------------------------------------------------------------------
// Prefill: int8 row products, expert grouping, chunk attention
// ---------------------------------------------------------------------------------------------

/// A matmul with the tiling the engine picks for its rows.
fn prefill_matmul(ctx: &GpuContext, kc: &mut KernelCache, a: MatmulArgs) -> Dispatch {
    let t = MatmulTiling::for_rows(ctx, a.w.chunks_per_row() as u32);
    matmul(ctx, kc, a, t).unwrap()
}

/// Per-head matmul over (token, head) rows: 3 heads, input rows 32 floats longer than the weight's
/// (as k_b takes q_nope of q), on int8 rows (`input_rows`, no norm) or f32 rows. Returns the worst
/// relative error; the `n` of `chunk` tokens the step holds are checked, the rest must stay untouched.
fn prefill_matmul_per_head(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    rng: &mut StdRng,
    step: &wgpu::Buffer,
    (chunk, n): (usize, usize),
    t: GgmlType,
    int8: bool,
) -> f64 {
    let (heads, rows) = (3usize, 40usize);
    let cols = if t == GgmlType::Q6K { 256 } else { 64 };
    let stride = cols + 32;
    let w = Weight::new(ctx, rng, t, &[heads, rows, cols], (18.0 / cols as f32).sqrt());
    let x = uniform(rng, chunk * heads * stride, 1.0);
    let xb = buf_f32(ctx, "x", &x);
    let y0 = vec![NAN_BITS; chunk * heads * rows];
    let yb = buf_u32(ctx, "y", &y0);
    let prepared = InputRows::new(ctx, chunk * heads, chunk * heads * cols).unwrap();
    let mut ds = Vec::new();
    let input = if int8 {
        let rows_in = (chunk * heads) as u32;
        ds.push(input_rows(ctx, kc, rows_in, cols as u32, stride as u32, None, true, &xb, &prepared).unwrap());
        MatmulInput::Int8(&prepared)
    } else {
        MatmulInput::F32 { x: &xb, stride: stride as u32 }
    };
    let a = MatmulArgs {
        w: &w.gpu,
        up: None,
        step,
        x: input,
        y: &yb,
        y_stride: rows as u32,
        add: false,
        tiles: Tiles::Heads(heads as u32),
        max_tiles: (chunk as u32).div_ceil(MatmulTiling::INPUTS),
    };
    ds.push(prefill_matmul(ctx, kc, a));
    run(ctx, &ds.iter().collect::<Vec<_>>());
    let y = read_u32(ctx, &yb, y0.len());
    let name = format!("prefill matmul per head {} int8 {int8}", t.name());
    let mut want = Vec::new();
    for r in 0..n * heads {
        let row = &x[r * stride..r * stride + cols];
        let xr = if int8 { activations::round_to_int8(row) } else { row.to_vec() };
        want.extend((0..rows).map(|o| dot(w.row(r % heads, o), &xr)));
    }
    let len = n * heads * rows;
    check_untouched(&name, &y[len..], &y0[len..]);
    check(&name, &floats(&y[..len]), &want, REL_TOL)
}

/// Rows of `x` (`cols` each) as the prefill products take them: x ⊙ g rounded to int8, and 1/rms(x).
fn int8_rows(x: &[f32], g: &[f32], cols: usize) -> Vec<(Vec<f32>, f64)> {
    x.chunks(cols)
        .map(|r| {
            let (xg, s) = norm_parts(r, g);
            (activations::round_to_int8(&xg), s)
        })
        .collect()
}

/// What a product over token rows writes, on the CPU: for each input row (values, scale s) and
/// output row, s·(W x) (SiLU(s·gate x)·(s·up x) with `up`), plus the row's old y where it adds.
fn token_rows_want(
    gate: &Weight,
    up: Option<&Weight>,
    inputs: &[(Vec<f32>, f64)],
    y0: Option<&[u32]>,
    rows: usize,
) -> Vec<f64> {
    let mut want = Vec::new();
    for (r, (xr, s)) in inputs.iter().enumerate() {
        for row in 0..rows {
            let gv = s * dot(gate.row(0, row), xr);
            let v = up.map_or(gv, |up| silu_glu(gv, s * dot(up.row(0, row), xr)));
            want.push(v + y0.map_or(0.0, |y0| f32::from_bits(y0[r * rows + row]) as f64));
        }
    }
    want
}

/// input_rows + matmul over a chunk of 11 token rows of which the step holds 9: stores, residual
/// adds and gate/up pairs against the CPU on the same int8 rows; rows past the step stay untouched.
#[test]
fn prefill_matmul_over_token_rows() {
    let ctx = gpu();
    let mut rng = seeded(20);
    let mut kc = KernelCache::default();
    let (chunk, n) = (11usize, 9usize);
    let sb = ctx.uniform("step", bytemuck::bytes_of(&Step::chunk(3, n)));
    let mut worst = 0f64;
    for t in int8_formats() {
        // 8 and 16 chunks per row take one lane per team, 64 and 128 take 4 and 8 (`MatmulTiling::for_rows`).
        for (rows, cols) in [(37usize, 256usize), (130, 512), (37, 2048), (5, 4096)] {
            let amp = (18.0 / cols as f32).sqrt();
            let (gate, up) =
                (Weight::new(ctx, &mut rng, t, &[rows, cols], amp), Weight::new(ctx, &mut rng, t, &[rows, cols], amp));
            let x = uniform(&mut rng, chunk * cols, 1.0);
            let g = uniform(&mut rng, cols, 2.0);
            let (xb, gb) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "g", &g));
            let inputs = int8_rows(&x, &g, cols);
            let int8 = InputRows::new(ctx, chunk, chunk * cols).unwrap();
            for (glu, add) in [(false, false), (false, true), (true, false)] {
                let y0: Vec<u32> =
                    if add { bits(&uniform(&mut rng, chunk * rows, 1.0)) } else { vec![NAN_BITS; chunk * rows] };
                let yb = buf_u32(ctx, "y", &y0);
                let norm = Some(InputNorm { weight: &gb, eps: NORM_EPS });
                let q =
                    input_rows(ctx, &mut kc, chunk as u32, cols as u32, cols as u32, norm, true, &xb, &int8).unwrap();
                let a = MatmulArgs {
                    w: &gate.gpu,
                    up: glu.then_some(&up.gpu),
                    step: &sb,
                    x: MatmulInput::Int8(&int8),
                    y: &yb,
                    y_stride: rows as u32,
                    add,
                    tiles: Tiles::Tokens,
                    max_tiles: (chunk as u32).div_ceil(MatmulTiling::INPUTS),
                };
                let m = prefill_matmul(ctx, &mut kc, a);
                run(ctx, &[&q, &m]);
                let y = read_u32(ctx, &yb, chunk * rows);
                let name = format!("prefill matmul {} {rows}x{cols} glu {glu} add {add}", t.name());
                let want = token_rows_want(&gate, glu.then_some(&up), &inputs[..n], add.then_some(&y0[..]), rows);
                worst = worst.max(check(&name, &floats(&y[..n * rows]), &want, REL_TOL));
                check_untouched(&name, &y[n * rows..], &y0[n * rows..]);
            }
        }
    }
    for t in [GgmlType::Q8_0, GgmlType::Q6K] {
        worst = worst.max(prefill_matmul_per_head(ctx, &mut kc, &mut rng, &sb, (chunk, n), t, true));
    }
    report("prefill matmul (token rows)", worst);
}

/// matmul on f32 rows (formats without int8 inputs, per-head products): token rows with stores,
/// adds and gate/up pairs, and per-head matrices over (token, head) rows longer than the weight's.
#[test]
fn prefill_matmul_over_f32_rows() {
    let ctx = gpu();
    let mut rng = seeded(23);
    let mut kc = KernelCache::default();
    let (chunk, n) = (11usize, 9usize);
    let sb = ctx.uniform("step", bytemuck::bytes_of(&Step::chunk(0, n)));
    let mut worst = 0f64;
    for (t, cols) in [
        (GgmlType::F32, 12usize),
        (GgmlType::BF16, 40),
        (GgmlType::Q4_0, 96),
        (GgmlType::Q4K, 256),
        (GgmlType::F32, 512),
    ] {
        let rows = 37;
        let amp = (18.0 / cols as f32).sqrt();
        let (gate, up) =
            (Weight::new(ctx, &mut rng, t, &[rows, cols], amp), Weight::new(ctx, &mut rng, t, &[rows, cols], amp));
        let x = uniform(&mut rng, chunk * cols, 1.0);
        let xb = buf_f32(ctx, "x", &x);
        let g = uniform(&mut rng, cols, 2.0);
        let gb = buf_f32(ctx, "g", &g);
        let prepared = InputRows::new(ctx, chunk, chunk * cols).unwrap();
        for (glu, add, norm) in [(false, false, false), (false, true, false), (true, false, false), (true, false, true)]
        {
            let y0: Vec<u32> =
                if add { bits(&uniform(&mut rng, chunk * rows, 1.0)) } else { vec![NAN_BITS; chunk * rows] };
            let yb = buf_u32(ctx, "y", &y0);
            // With a norm: x ⊙ g as f32 rows (input_rows), scaled by 1/rms(x) after the product.
            let mut ds = Vec::new();
            let input = if norm {
                let n = Some(InputNorm { weight: &gb, eps: NORM_EPS });
                ds.push(
                    input_rows(ctx, &mut kc, chunk as u32, cols as u32, cols as u32, n, false, &xb, &prepared).unwrap(),
                );
                MatmulInput::F32Scaled(&prepared, cols as u32)
            } else {
                MatmulInput::F32 { x: &xb, stride: cols as u32 }
            };
            let a = MatmulArgs {
                w: &gate.gpu,
                up: glu.then_some(&up.gpu),
                step: &sb,
                x: input,
                y: &yb,
                y_stride: rows as u32,
                add,
                tiles: Tiles::Tokens,
                max_tiles: (chunk as u32).div_ceil(MatmulTiling::INPUTS),
            };
            ds.push(prefill_matmul(ctx, &mut kc, a));
            run(ctx, &ds.iter().collect::<Vec<_>>());
            let y = read_u32(ctx, &yb, chunk * rows);
            let name = format!("prefill matmul f32 rows {} {rows}x{cols} glu {glu} add {add} norm {norm}", t.name());
            let inputs: Vec<(Vec<f32>, f64)> =
                x.chunks(cols).take(n).map(|xr| if norm { norm_parts(xr, &g) } else { (xr.to_vec(), 1.0) }).collect();
            let want = token_rows_want(&gate, glu.then_some(&up), &inputs, add.then_some(&y0[..]), rows);
            worst = worst.max(check(&name, &floats(&y[..n * rows]), &want, REL_TOL));
            check_untouched(&name, &y[n * rows..], &y0[n * rows..]);
        }
    }
    for t in [GgmlType::Q8_0, GgmlType::Q4_0] {
        worst = worst.max(prefill_matmul_per_head(ctx, &mut kc, &mut rng, &sb, (chunk, n), t, false));
    }
    report("prefill matmul (f32 rows)", worst);
}

/// moe_group groups 9 tokens × 3 slots by expert (a bijection, experts contiguous, tiles covering
/// each expert's run); the grouped gate/up and down products and moe_sum then match the CPU.
#[test]
fn prefill_experts_grouped_by_expert() {
    let ctx = gpu();
    let mut rng = seeded(21);
    let mut kc = KernelCache::default();
    let (chunk, n, ks, n_exp) = (11usize, 9usize, 3usize, 5usize);
    let sb = ctx.uniform("step", bytemuck::bytes_of(&Step::chunk(0, n)));
    let mut worst = 0f64;
    for t in [GgmlType::Q4K, GgmlType::Q8_0] {
        let (ffn, hidden) = (256usize, 64usize);
        let amp = (18.0 / hidden as f32).sqrt();
        let gate = Weight::new(ctx, &mut rng, t, &[n_exp, ffn, hidden], amp);
        let up = Weight::new(ctx, &mut rng, t, &[n_exp, ffn, hidden], amp);
        let down = Weight::new(ctx, &mut rng, GgmlType::Q8_0, &[n_exp, hidden, ffn], (18.0 / ffn as f32).sqrt());
        let x = uniform(&mut rng, chunk * hidden, 1.0);
        let g = uniform(&mut rng, hidden, 2.0);
        let (xb, gb) = (buf_f32(ctx, "x", &x), buf_f32(ctx, "g", &g));
        // Each token's slots: distinct experts (skewed towards expert 1), random weights.
        let mut route = vec![0u32; chunk * 16];
        let mut picks = Vec::new();
        for tok in 0..chunk {
            let mut ids: Vec<u32> = (0..n_exp as u32).collect();
            ids.shuffle(&mut rng);
            if rng.random_bool(0.5) {
                let one = ids.iter().position(|&e| e == 1).unwrap();
                ids.swap(0, one);
            }
            let w = uniform(&mut rng, ks, 1.0);
            route[tok * 16..tok * 16 + ks].copy_from_slice(&ids[..ks]);
            route[tok * 16 + 8..tok * 16 + 8 + ks].copy_from_slice(&bits(&w));
            picks.push((ids[..ks].to_vec(), w));
        }
        let grouping =
            Grouping { chunk: chunk as u32, slots: ks as u32, n_mat: n_exp as u32, tile: MatmulTiling::INPUTS };
        let rb = buf_u32(ctx, "route", &route);
        let words = grouping.entries() as usize;
        let (eb, seb) =
            (buf_u32(ctx, "entries", &vec![NAN_BITS; words]), buf_u32(ctx, "slot_entry", &vec![NAN_BITS; words]));
        let tb = buf_u32(ctx, "tiles", &vec![NAN_BITS; grouping.tile_words() as usize]);
        let group = moe_group(ctx, &mut kc, grouping, [&sb, &rb, &eb, &seb, &tb]).unwrap();
        run(ctx, &[&group]);
        let (entries, slot_entry) = (read_u32(ctx, &eb, words), read_u32(ctx, &seb, n * ks));
        let tiles = read_u32(ctx, &tb, grouping.tile_words() as usize);
        let name = format!("moe_group {}", t.name());
        let mut seen = vec![false; n * ks];
        for tok in 0..n {
            for k in 0..ks {
                let i = slot_entry[tok * ks + k] as usize;
                assert!(i < n * ks && !seen[i], "{name}: slot ({tok}, {k}) → entry {i} out of range or taken twice");
                seen[i] = true;
                assert_eq!(entries[i], picks[tok].0[k] | (tok as u32) << 16, "{name}: entry {i}");
            }
        }
        let experts: Vec<u32> = entries[..n * ks].iter().map(|e| e & 0xffff).collect();
        assert!(experts.windows(2).all(|w| w[0] <= w[1]), "{name}: experts not grouped: {experts:?}");
        assert!(entries[n * ks..].iter().all(|&e| e == 0), "{name}: entries past the chunk's slots");
        let mut covered = 0;
        for j in 0..tiles[0] as usize {
            let (e, count, first) = (tiles[1 + 2 * j] & 0xffff, tiles[1 + 2 * j] >> 16, tiles[2 + 2 * j] as usize);
            assert!((1..=MatmulTiling::INPUTS).contains(&count), "{name}: tile {j} of {count} entries");
            assert_eq!(first, covered, "{name}: tile {j} starts at {first}");
            assert!(experts[first..first + count as usize].iter().all(|&x| x == e), "{name}: tile {j} mixes experts");
            covered += count as usize;
        }
        assert_eq!(covered, n * ks, "{name}: tiles cover {covered} entries");

        // Gate/up of each entry's token, then down of each entry's own row.
        let int8 = InputRows::new(ctx, words, words * ffn).unwrap();
        let act0 = vec![NAN_BITS; words * ffn];
        let ab = buf_u32(ctx, "act", &act0);
        let norm = Some(InputNorm { weight: &gb, eps: NORM_EPS });
        let q = input_rows(ctx, &mut kc, chunk as u32, hidden as u32, hidden as u32, norm, true, &xb, &int8).unwrap();
        let tiles_of = |of_token| Tiles::Grouped { tiles: &tb, entries: &eb, of_token };
        let a = MatmulArgs {
            w: &gate.gpu,
            up: Some(&up.gpu),
            step: &sb,
            x: MatmulInput::Int8(&int8),
            y: &ab,
            y_stride: ffn as u32,
            add: false,
            tiles: tiles_of(true),
            max_tiles: grouping.max_tiles(),
        };
        let gu = prefill_matmul(ctx, &mut kc, a);
        run(ctx, &[&q, &gu]);
        let act = floats(&read_u32(ctx, &ab, n * ks * ffn));
        let inputs = int8_rows(&x, &g, hidden);
        let mut want = Vec::new();
        for &e in &entries[..n * ks] {
            let (m, tok) = ((e & 0xffff) as usize, (e >> 16) as usize);
            let (xr, s) = &inputs[tok];
            want.extend((0..ffn).map(|r| silu_glu(s * dot(gate.row(m, r), xr), s * dot(up.row(m, r), xr))));
        }
        worst = worst.max(check(&format!("{name} gate/up"), &act, &want, REL_TOL));

        let out0 = vec![NAN_BITS; words * hidden];
        let ob = buf_u32(ctx, "expert out", &out0);
        let q = input_rows(ctx, &mut kc, words as u32, ffn as u32, ffn as u32, None, true, &ab, &int8).unwrap();
        let a = MatmulArgs {
            w: &down.gpu,
            up: None,
            step: &sb,
            x: MatmulInput::Int8(&int8),
            y: &ob,
            y_stride: hidden as u32,
            add: false,
            tiles: tiles_of(false),
            max_tiles: grouping.max_tiles(),
        };
        let dn = prefill_matmul(ctx, &mut kc, a);
        run(ctx, &[&q, &dn]);
        let out = read_u32(ctx, &ob, words * hidden);
        let mut want = Vec::new();
        for (i, &e) in entries[..n * ks].iter().enumerate() {
            let xr = activations::round_to_int8(&act[i * ffn..(i + 1) * ffn]);
            want.extend((0..hidden).map(|r| dot(down.row((e & 0xffff) as usize, r), &xr)));
        }
        worst = worst.max(check(&format!("{name} down"), &floats(&out[..n * ks * hidden]), &want, REL_TOL));
        check_untouched(&format!("{name} down past the slots"), &out[n * ks * hidden..], &out0[n * ks * hidden..]);

        // moe_sum: x[t] += Σ_k w_k · out[slot_entry[t, k]].
        let res0 = uniform(&mut rng, chunk * hidden, 1.0);
        let resb = buf_f32(ctx, "residual", &res0);
        let sum = moe_sum(ctx, &mut kc, hidden as u32, chunk as u32, ks as u32, [&sb, &rb, &seb, &ob, &resb]).unwrap();
        run(ctx, &[&sum]);
        let res = read_u32(ctx, &resb, chunk * hidden);
        let out = floats(&out);
        let mut want = Vec::new();
        for tok in 0..n {
            for i in 0..hidden {
                let s: f64 = (0..ks)
                    .map(|k| picks[tok].1[k] as f64 * out[slot_entry[tok * ks + k] as usize * hidden + i] as f64)
                    .sum();
                want.push(res0[tok * hidden + i] as f64 + s);
            }
        }
        worst = worst.max(check(&format!("{name} moe_sum"), &floats(&res[..n * hidden]), &want, REL_TOL));
        check_untouched(&format!("{name} moe_sum past the step"), &res[n * hidden..], &bits(&res0[n * hidden..]));
    }
    report("prefill experts (gate/up, down, sum)", worst);
}

/// kv_store writes the chunk's rows after a random cached prefix, and mla_attention_prefill attends
/// each of the step's tokens causally over the cache as stored; rows and outputs past the step
/// stay untouched.
#[test]
fn prefill_attention_is_causal_softmax() {
    let ctx = gpu();
    let mut rng = seeded(22);
    let (mut worst, mut worst_row) = (0f64, 0f64);
    for c in attention_configs() {
        let mut kc = KernelCache::default();
        let (heads, lora, rope, kw, qk) = (c.n_heads, c.kv_lora_rank, c.qk_rope, c.kv_width(), c.qk_head());
        let scale = (1.0 / (qk as f32).sqrt()) as f64;
        for kv_f16 in [false, true] {
            // (cached prefix, chunk size, tokens in the step): the long prefix spans several blocks.
            for (p0, chunk, n) in [(0usize, 4usize, 4usize), (5, 7, 6), (70, 4, 3)] {
                let max_ctx = p0 + chunk + 2;
                let table = rope_table(&mut rng, max_ctx, rope / 2);
                let per_pos = if kv_f16 { kw / 2 } else { kw };
                let mut words = cache_encode(&uniform(&mut rng, p0 * kw, 1.0), kv_f16);
                words.resize(max_ctx * per_pos, if kv_f16 { NAN_F16X2 } else { NAN_BITS });
                let ckv = uniform(&mut rng, chunk * kw, 3.0);
                let norm = uniform(&mut rng, lora, 2.0);
                let q_rope = uniform(&mut rng, chunk * heads * rope, 1.0);
                let q_lat = uniform(&mut rng, chunk * heads * lora, 1.0);
                let out0 = vec![NAN_BITS; chunk * heads * lora];
                let sb = ctx.uniform("step", bytemuck::bytes_of(&Step::chunk(p0, n)));
                let (kb, nb, rb) =
                    (buf_f32(ctx, "ckv", &ckv), buf_f32(ctx, "norm", &norm), buf_f32(ctx, "rope", &table));
                let (qb, qlb) = (buf_f32(ctx, "q_rope", &q_rope), buf_f32(ctx, "q_lat", &q_lat));
                let cb = buf_u32(ctx, "cache", &words);
                let ob = buf_u32(ctx, "out", &out0);
                let store = KvStoreArgs { step: &sb, ckv: &kb, kv_norm: &nb, rope: &rb, cache: &cb };
                let s = kv_store(ctx, &mut kc, &c, kv_f16, chunk as u32, store).unwrap();
                let att = PrefillAttentionArgs { step: &sb, q_rope: &qb, q_lat: &qlb, rope: &rb, cache: &cb, out: &ob };
                let a = mla_attention_prefill(ctx, &mut kc, &c, kv_f16, chunk as u32, att).unwrap();
                run(ctx, &[&s, &a]);
                let name = format!(
                    "prefill attention {} heads {heads} kv_lora {lora} prefix {p0} tokens {n} of {chunk}",
                    if kv_f16 { "f16" } else { "f32" }
                );
                let cache = read_u32(ctx, &cb, max_ctx * per_pos);
                check_untouched(&format!("{name}: prefix"), &cache[..p0 * per_pos], &words[..p0 * per_pos]);
                check_untouched(
                    &format!("{name}: past the step"),
                    &cache[(p0 + n) * per_pos..],
                    &words[(p0 + n) * per_pos..],
                );
                let stored = cache_decode(&cache[..(p0 + n) * per_pos], kv_f16);
                for tk in 0..n {
                    let r = &ckv[tk * kw..(tk + 1) * kw];
                    let ms = r[..lora].iter().map(|&v| v as f64 * v as f64).sum::<f64>() / lora as f64;
                    let inv = 1.0 / (ms + LORA_NORM_EPS as f64).sqrt();
                    let mut want: Vec<f64> = (0..lora).map(|i| r[i] as f64 * inv * norm[i] as f64).collect();
                    want.extend(rope_ref(&r[lora..], &table, p0 + tk));
                    let got = &stored[(p0 + tk) * kw..(p0 + tk + 1) * kw];
                    let tol = if kv_f16 { 2.0 * F16_TOL } else { REL_TOL };
                    worst_row = worst_row.max(check(&format!("{name}: row of token {tk}"), got, &want, tol));
                }
                let out = read_u32(ctx, &ob, out0.len());
                let mut want = Vec::new();
                for tk in 0..n {
                    for h in 0..heads {
                        let qh = tk * heads + h;
                        let ql = &q_lat[qh * lora..(qh + 1) * lora];
                        let qr = rope_ref(&q_rope[qh * rope..(qh + 1) * rope], &table, p0 + tk);
                        let s: Vec<f64> = (0..=p0 + tk)
                            .map(|t| {
                                let row = &stored[t * kw..(t + 1) * kw];
                                let lat: f64 = ql.iter().zip(&row[..lora]).map(|(&a, &b)| a as f64 * b as f64).sum();
                                let key: f64 = qr.iter().zip(&row[lora..]).map(|(&a, &b)| a * b as f64).sum();
                                scale * (lat + key)
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::MIN, f64::max);
                        let p: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                        let sum: f64 = p.iter().sum();
                        for d in 0..lora {
                            want.push(
                                p.iter().enumerate().map(|(t, pt)| pt * stored[t * kw + d] as f64).sum::<f64>() / sum,
                            );
                        }
                    }
                }
                let len = n * heads * lora;
                worst = worst.max(check(&name, &floats(&out[..len]), &want, REL_TOL));
                check_untouched(&format!("{name}: outputs past the step"), &out[len..], &out0[len..]);
            }
        }
    }
    report("prefill kv_store rows", worst_row);
    report("prefill attention", worst);
}
