//! `glm-wgpu bench`: prompt and decode speed of the forward, and a per-kernel GPU profile.

use super::EngineArgs;
use crate::engine::{CoopMatrix, Engine, LaunchTime, QuantMix, StepOutput, MAX_IN_FLIGHT};
use crate::gpu::native::KernelChoice;
use crate::gpu::GpuContext;
use crate::model::{Model, ModelConfig};
use anyhow::{ensure, Result};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A GGUF file or a Hugging Face checkpoint directory.
    #[arg(short, long, required_unless_present = "synthetic", conflicts_with = "synthetic")]
    pub model: Option<PathBuf>,
    /// Instead of a model file: an HF `config.json` whose shape is filled with random, valid
    /// weights on the GPU (types from `--quant`).
    #[arg(long, value_name = "CONFIG")]
    pub synthetic: Option<PathBuf>,
    /// The quantization mix of `--synthetic` weights.
    #[arg(long, value_enum, default_value_t = QuantMix::Q4KM, requires = "synthetic")]
    pub quant: QuantMix,
    /// GPU adapter: an index or part of its name.
    #[arg(long)]
    pub device: Option<String>,
    /// Prompt tokens per prefill measurement (0: skip).
    #[arg(short = 'p', long, default_value_t = 512)]
    pub prompt: usize,
    /// Tokens per decode measurement (0: skip).
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: usize,
    /// Tokens already in the KV cache before each measurement.
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// The context the engine is built for, as `run --ctx` (default: just what the measurement
    /// needs, depth + tokens + 1; kernels whose grids cover the whole context see the difference).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Measured repetitions (after one warm-up); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Time every kernel of one decode step and one prefill chunk with GPU timestamps (one pass per
    /// kernel in this mode).
    #[arg(long)]
    pub profile: bool,
    /// Also time decode steps with each kernel left out in turn, against steps with everything,
    /// back to back: what each kernel costs in a real step, barrier and start-up included (the
    /// profile's one pass per kernel inflates small kernels). Outputs are wrong while one is out.
    #[arg(long, conflicts_with = "ab")]
    pub ablate: bool,
    /// Run twice, varying one engine option, and print both runs side by side (with `--profile`,
    /// kernel by kernel): `kernels` (wgsl vs native) or `coop-matrix` (off vs on).
    #[arg(long, value_enum)]
    pub ab: Option<AbAxis>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Fills the cache with `depth` random tokens and waits, so what follows is timed alone. The
/// runs after it go back to this depth with [`at_depth`] instead of filling again.
fn fill(e: &mut Engine, rng: &mut StdRng, depth: usize) -> Result<()> {
    e.reset();
    at_depth(e, rng, 0, depth)?;
    e.prefill(depth)?;
    e.ctx.wait()
}

/// Forgets every position past `depth` and puts `n` random tokens after it.
fn at_depth(e: &mut Engine, rng: &mut StdRng, depth: usize, n: usize) -> Result<()> {
    e.truncate(depth)?;
    let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..e.config.vocab as u32)).collect();
    e.write_tokens(depth, &ids)
}

/// Prompt tokens per second over a prefill of `n` tokens.
fn prefill(e: &mut Engine, rng: &mut StdRng, depth: usize, n: usize) -> Result<f64> {
    at_depth(e, rng, depth, n)?;
    e.ctx.wait()?;
    let t = Instant::now();
    e.prefill(n)?;
    e.ctx.wait()?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Greedy decoding of `n` tokens with the GPU running ahead; returns the seconds between tokens.
fn decode(e: &mut Engine, rng: &mut StdRng, depth: usize, n: usize) -> Result<Vec<f64>> {
    at_depth(e, rng, depth, 1)?;
    e.ctx.wait()?;
    let mut gaps = Vec::with_capacity(n);
    let (mut submitted, mut last) = (0, Instant::now());
    while gaps.len() < n {
        while e.tokens_in_flight() < MAX_IN_FLIGHT && submitted < n {
            e.step(StepOutput::Greedy)?;
            submitted += 1;
        }
        e.next_token()?;
        let now = Instant::now();
        gaps.push((now - last).as_secs_f64());
        last = now;
    }
    Ok(gaps)
}

fn print_profile(what: &str, times: &[LaunchTime]) {
    let mut by: BTreeMap<&str, (usize, f64, u64)> = BTreeMap::new();
    for t in times {
        let e = by.entry(&t.label).or_default();
        e.0 += 1;
        e.1 += t.micros;
        e.2 += t.weight_bytes;
    }
    let total: f64 = times.iter().map(|t| t.micros).sum();
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    println!("\nprofile of {what} ({} launches, {:.1} µs of kernel time):", times.len(), total);
    println!("{:<20} {:>6} {:>11} {:>7} {:>10}", "kernel", "count", "total µs", "share", "GB/s");
    for (label, (count, us, bytes)) in rows {
        let gbs = if bytes > 0 { bytes as f64 / (us * 1e3) } else { 0.0 };
        println!("{label:<20} {count:>6} {us:>11.1} {:>6.1}% {gbs:>10.1}", 100.0 * us / total);
    }
}

/// Which engine option `--ab` varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AbAxis {
    /// `--kernels wgsl` against `--kernels native`.
    Kernels,
    /// `--coop-matrix off` against `--coop-matrix on`.
    CoopMatrix,
}

impl AbAxis {
    /// The two runs' engine options and names.
    fn runs(self, base: &EngineArgs) -> [(String, EngineArgs); 2] {
        let with = |f: &dyn Fn(&mut EngineArgs)| {
            let mut e = base.clone();
            f(&mut e);
            e
        };
        match self {
            AbAxis::Kernels => [
                ("wgsl".into(), with(&|e| e.kernels = KernelChoice::Wgsl)),
                ("native".into(), with(&|e| e.kernels = KernelChoice::Native)),
            ],
            AbAxis::CoopMatrix => [
                ("coop off".into(), with(&|e| e.coop_matrix = CoopMatrix::Off)),
                ("coop on".into(), with(&|e| e.coop_matrix = CoopMatrix::On)),
            ],
        }
    }
}

/// What one benchmark run measured.
struct Report {
    kernels: String,
    notes: Vec<String>,
    coop_matrix: bool,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    ms_mean: f64,
    ms_p50: f64,
    ms_p95: f64,
    dispatches_per_token: usize,
    dispatches_per_chunk: usize,
    prefill_chunk: usize,
    weight_bytes: u64,
    profile: Option<Vec<LaunchTime>>,
    prefill_profile: Option<Vec<LaunchTime>>,
    ablation: Option<Vec<Ablation>>,
}

/// A kernel's share of a decode step: p50 ms per token with and without its launches.
struct Ablation {
    label: String,
    launches: usize,
    ms_with: f64,
    ms_without: f64,
}

impl Ablation {
    fn saved_us(&self) -> f64 {
        1e3 * (self.ms_with - self.ms_without)
    }
}

/// For each kernel of the decode step, `n` tokens decoded without its launches, then `n` with
/// everything, so each pair is measured back to back.
fn ablate(e: &mut Engine, rng: &mut StdRng, depth: usize, n: usize) -> Result<Vec<Ablation>> {
    let p50 = |mut gaps: Vec<f64>| {
        gaps.sort_by(f64::total_cmp);
        1e3 * percentile(&gaps, 0.5)
    };
    let mut rows = Vec::new();
    for (label, launches) in e.decode_labels() {
        e.leave_out(Some(&label));
        let without = decode(e, rng, depth, n);
        e.leave_out(None);
        let ms_without = p50(without?);
        let ms_with = p50(decode(e, rng, depth, n)?);
        rows.push(Ablation { label, launches, ms_with, ms_without });
    }
    Ok(rows)
}

fn print_ablation(rows: &[Ablation]) {
    let mut rows: Vec<&Ablation> = rows.iter().collect();
    rows.sort_by(|x, y| y.saved_us().total_cmp(&x.saved_us()));
    println!("\ndecode step with each kernel left out (p50 ms/token, against steps with everything run just after):");
    println!(
        "{:<24} {:>8} {:>9} {:>9} {:>12} {:>11}",
        "kernel", "launches", "with", "without", "saved µs", "µs/launch"
    );
    for r in rows {
        println!(
            "{:<24} {:>8} {:>9.3} {:>9.3} {:>12.1} {:>11.2}",
            r.label,
            r.launches,
            r.ms_with,
            r.ms_without,
            r.saved_us(),
            r.saved_us() / r.launches as f64
        );
    }
}

/// The model file, or the config of a synthetic one.
struct Subject {
    model: Option<Model>,
    config: ModelConfig,
    name: String,
    format: String,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    ensure!(a.reps > 0, "--reps must be at least 1");
    ensure!(!a.ablate || a.n_gen > 0, "--ablate times decode steps: -n must be at least 1");
    let subject = match (&a.model, &a.synthetic) {
        (Some(path), _) => {
            let m = Model::open(path)?;
            let (config, format) = (m.config.clone(), m.format_name().to_string());
            Subject { model: Some(m), config, name: path.display().to_string(), format }
        }
        (None, Some(path)) => Subject {
            model: None,
            config: ModelConfig::from_hf_file(path)?,
            name: format!("synthetic {}", path.display()),
            format: format!("random {} weights", a.quant.name()),
        },
        (None, None) => unreachable!("clap requires --model or --synthetic"),
    };
    let needed = a.depth + a.prompt.max(a.n_gen) + 1;
    let ctx_len = a.ctx.unwrap_or(needed);
    let max = subject.config.max_ctx;
    ensure!(needed <= ctx_len, "depth + tokens = {needed} exceed --ctx {ctx_len}");
    ensure!(ctx_len <= max, "a context of {ctx_len} exceeds the model's context of {max}");
    let runs = match a.ab {
        None => vec![("".to_string(), a.engine.clone())],
        Some(axis) => axis.runs(&a.engine).into(),
    };
    let mut reports = Vec::new();
    let mut device = String::new();
    for (label, engine) in &runs {
        let ctx = GpuContext::new(a.device.as_deref())?;
        device = ctx.describe();
        eprintln!("gpu: {device}");
        let r = measure(&a, engine, &subject, ctx, ctx_len)?;
        println!("model: {} ({})", subject.name, subject.format);
        println!("gpu: {device}");
        if !label.is_empty() {
            println!("run: {label}");
        }
        print_report(&a, engine, ctx_len, &r);
        reports.push(r);
    }
    if let [x, y] = &reports[..] {
        print_comparison(&a, [&runs[0].0, &runs[1].0], [x, y]);
    }
    if let Some(path) = &a.json {
        let run = |r: &Report, engine: &EngineArgs| {
            serde_json::json!({
                "model": subject.name,
                "format": subject.format,
                "gpu": device,
                "checked_kernels": engine.checked_kernels,
                "int8_activations": !engine.f32_activations,
                "kernels": format!("{:?}", engine.kernels).to_lowercase(),
                "coop_matrix": r.coop_matrix,
                "kernel_notes": r.notes,
                "depth": a.depth,
                "ctx": ctx_len,
                "reps": a.reps,
                "prompt_tokens": a.prompt,
                "gen_tokens": a.n_gen,
                "prefill_tok_s": r.prefill_tok_s,
                "decode_tok_s": r.decode_tok_s,
                "ms_per_token": { "mean": r.ms_mean, "p50": r.ms_p50, "p95": r.ms_p95 },
                "dispatches_per_token": r.dispatches_per_token,
                "weight_bytes_per_token": r.weight_bytes,
                "weight_gb_s": r.weight_bytes as f64 * r.decode_tok_s / 1e9,
                "profile": r.profile.as_deref().map(json_times),
                "prefill_chunk": r.prefill_chunk,
                "prefill_dispatches_per_chunk": r.dispatches_per_chunk,
                "prefill_profile": r.prefill_profile.as_deref().map(json_times),
                "ablation": r.ablation.as_ref().map(|rows| rows.iter().map(|a| serde_json::json!({
                    "label": a.label,
                    "launches": a.launches,
                    "ms_per_token_with": a.ms_with,
                    "ms_per_token_without": a.ms_without,
                    "saved_us_per_token": a.saved_us(),
                })).collect::<Vec<_>>()),
            })
        };
        let report = match &reports[..] {
            [r] => run(r, &runs[0].1),
            [x, y] => {
                serde_json::json!({ "a": run(x, &runs[0].1), "b": run(y, &runs[1].1), "a_label": runs[0].0, "b_label": runs[1].0 })
            }
            _ => unreachable!("one or two runs"),
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn json_times(t: &[LaunchTime]) -> Vec<serde_json::Value> {
    t.iter()
        .map(|l| serde_json::json!({ "label": l.label, "micros": l.micros, "weight_bytes": l.weight_bytes }))
        .collect()
}

/// Loads the engine with `engine`'s options and measures it.
fn measure(a: &BenchArgs, engine: &EngineArgs, s: &Subject, ctx: GpuContext, ctx_len: usize) -> Result<Report> {
    let options = engine.options(ctx_len);
    let mut e = match &s.model {
        Some(m) => Engine::load(ctx, m, options)?,
        None => Engine::synthetic(ctx, &s.config, a.quant, options)?,
    };
    let mut rng = StdRng::seed_from_u64(0);

    // Warm-up: first use of every pipeline, buffer and the driver's caches.
    prefill(&mut e, &mut rng, 0, 4.min(ctx_len - 1))?;
    decode(&mut e, &mut rng, 0, 4.min(ctx_len - 1))?;

    fill(&mut e, &mut rng, a.depth)?;
    let (mut pp, mut tg, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.reps {
        if a.prompt > 0 {
            pp.push(prefill(&mut e, &mut rng, a.depth, a.prompt)?);
        }
        if a.n_gen > 0 {
            let g = decode(&mut e, &mut rng, a.depth, a.n_gen)?;
            tg.push(a.n_gen as f64 / g.iter().sum::<f64>());
            gaps.extend(g);
        }
    }
    gaps.sort_by(f64::total_cmp);
    let (mut profile, mut prefill_profile) = (None, None);
    if a.profile {
        at_depth(&mut e, &mut rng, a.depth, 1)?;
        profile = Some(e.step_profiled(StepOutput::Greedy)?);
        if a.prompt > 0 {
            let n = a.prompt.min(e.options.prefill_chunk);
            at_depth(&mut e, &mut rng, a.depth, n)?;
            prefill_profile = Some(e.prefill_profiled(n)?);
        }
    }
    let ablation = if a.ablate { Some(ablate(&mut e, &mut rng, a.depth, a.n_gen)?) } else { None };
    Ok(Report {
        kernels: match engine.kernels {
            KernelChoice::Wgsl => "WGSL",
            KernelChoice::Native => "native matrix products (passthrough: SPIR-V on Vulkan, MSL on Metal), other WGSL",
            KernelChoice::Auto => "native matrix products where the backend has them, other WGSL",
        }
        .to_string(),
        notes: e.kernel_notes.clone(),
        coop_matrix: e.options.coop_matrix == CoopMatrix::On,
        prefill_tok_s: median(&mut pp),
        decode_tok_s: median(&mut tg),
        ms_mean: 1e3 * gaps.iter().sum::<f64>() / gaps.len().max(1) as f64,
        ms_p50: 1e3 * percentile(&gaps, 0.5),
        ms_p95: 1e3 * percentile(&gaps, 0.95),
        dispatches_per_token: e.dispatches_per_token(),
        dispatches_per_chunk: e.dispatches_per_chunk(),
        prefill_chunk: e.options.prefill_chunk,
        weight_bytes: e.weight_bytes_per_token(),
        profile,
        prefill_profile,
        ablation,
    })
}

fn print_report(a: &BenchArgs, engine: &EngineArgs, ctx_len: usize, r: &Report) {
    println!(
        "kernels: {}, {}, {} activations",
        r.kernels,
        if engine.checked_kernels { "checked" } else { "trusted (no runtime bounds checks)" },
        if engine.f32_activations { "f32" } else { "int8" }
    );
    r.notes.iter().for_each(|n| println!("kernels: {n}"));
    println!("depth {}, context {}, {} reps (medians)", a.depth, ctx_len, a.reps);
    if a.prompt > 0 {
        println!("prefill: {:.1} tok/s over {} tokens (chunks of {})", r.prefill_tok_s, a.prompt, r.prefill_chunk);
    }
    if a.n_gen > 0 {
        println!("decode: {:.1} tok/s over {} tokens", r.decode_tok_s, a.n_gen);
        println!("ms/token: mean {:.3}, p50 {:.3}, p95 {:.3}", r.ms_mean, r.ms_p50, r.ms_p95);
    }
    println!("dispatches/token: {} (decode), {} per prefill chunk", r.dispatches_per_token, r.dispatches_per_chunk);
    let gbs = r.weight_bytes as f64 * r.decode_tok_s / 1e9;
    println!("weights read/token: {:.3} GB, {gbs:.1} GB/s at the decode rate", r.weight_bytes as f64 / 1e9);
    if let Some(t) = &r.profile {
        print_profile("one decode step", t);
    }
    if let Some(t) = &r.prefill_profile {
        print_profile(&format!("one prefill chunk of {} tokens", a.prompt.min(r.prefill_chunk)), t);
    }
    if let Some(rows) = &r.ablation {
        print_ablation(rows);
    }
    println!();
}

/// The two runs of `--ab` side by side: the headline numbers, then each profiled kernel.
fn print_comparison(a: &BenchArgs, [la, lb]: [&String; 2], [x, y]: [&Report; 2]) {
    let ratio = |p: f64, q: f64| if p > 0.0 { format!("{:.3}", q / p) } else { "-".into() };
    println!("A/B: {la} vs {lb}");
    println!("{:<28} {:>12} {:>12} {:>8}", "", la, lb, "b / a");
    let row = |what: &str, p: f64, q: f64| println!("{what:<28} {p:>12.1} {q:>12.1} {:>8}", ratio(p, q));
    if a.prompt > 0 {
        row("prefill tok/s", x.prefill_tok_s, y.prefill_tok_s);
    }
    if a.n_gen > 0 {
        row("decode tok/s", x.decode_tok_s, y.decode_tok_s);
        row("ms/token p50", x.ms_p50, y.ms_p50);
    }
    for (what, p, q) in
        [("decode step", &x.profile, &y.profile), ("prefill chunk", &x.prefill_profile, &y.prefill_profile)]
    {
        let (Some(p), Some(q)) = (p, q) else { continue };
        let sum = |t: &[LaunchTime]| {
            let mut by: BTreeMap<String, f64> = BTreeMap::new();
            t.iter().for_each(|l| *by.entry(l.label.clone()).or_default() += l.micros);
            by
        };
        let (p, q) = (sum(p), sum(q));
        let mut labels: Vec<&String> =
            p.keys().chain(q.keys()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        labels.sort_by(|m, n| q.get(*n).unwrap_or(&0.0).total_cmp(q.get(*m).unwrap_or(&0.0)));
        println!("\n{what}, µs per kernel:");
        println!("{:<28} {:>12} {:>12} {:>8}", "kernel", la, lb, "b / a");
        for l in labels {
            let (u, v) = (p.get(l).copied().unwrap_or(0.0), q.get(l).copied().unwrap_or(0.0));
            println!("{l:<28} {u:>12.1} {v:>12.1} {:>8}", ratio(u, v));
        }
        let (u, v) = (p.values().sum::<f64>(), q.values().sum::<f64>());
        println!("{:<28} {u:>12.1} {v:>12.1} {:>8}", "all kernels", ratio(u, v));
    }
}
