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

pub fn bench(a: BenchArgs) -> Result<()> {
    ensure!(a.reps > 0, "--reps must be at least 1");
    // The model file, or the config of a synthetic one; and how the report names it.
    let (model, config, name, format) = match (&a.model, &a.synthetic) {
        (Some(path), _) => {
            let m = Model::open(path)?;
            let (c, f) = (m.config.clone(), m.format_name().to_string());
            (Some(m), c, path.display().to_string(), f)
        }
        (None, Some(path)) => {
            let c = ModelConfig::from_hf_file(path)?;
            (None, c, format!("synthetic {}", path.display()), format!("random {} weights", a.quant.name()))
        }
        (None, None) => unreachable!("clap requires --model or --synthetic"),
    };
    let ctx_len = a.depth + a.prompt.max(a.n_gen) + 1;
    ensure!(ctx_len <= config.max_ctx, "depth + tokens = {ctx_len} exceeds the model's context of {}", config.max_ctx);
    let ctx = GpuContext::new(a.device.as_deref())?;
    let device = ctx.describe();
    eprintln!("gpu: {device}");
    let options = a.engine.options(ctx_len);
    let mut e = match &model {
        Some(m) => Engine::load(ctx, m, options)?,
        None => Engine::synthetic(ctx, &config, a.quant, options)?,
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
    let (pp, tg) = (median(&mut pp), median(&mut tg));
    gaps.sort_by(f64::total_cmp);
    let ms = |s: f64| s * 1e3;
    let mean_ms = ms(gaps.iter().sum::<f64>() / gaps.len().max(1) as f64);
    let bytes = e.weight_bytes_per_token();
    let gbs = bytes as f64 * tg / 1e9;
    println!("model: {name} ({format})");
    println!("gpu: {device}");
    println!(
        "kernels: {}, {}, {} activations",
        match a.engine.kernels {
            KernelChoice::Wgsl => "WGSL",
            KernelChoice::Native => "native matrix products (SPIR-V passthrough), other WGSL",
            KernelChoice::Auto => "native matrix products where the backend has them, other WGSL",
        },
        if a.engine.checked_kernels { "checked" } else { "trusted (no runtime bounds checks)" },
        if a.engine.f32_activations { "f32" } else { "int8" }
    );
    e.kernel_notes.iter().for_each(|n| println!("kernels: {n}"));
    println!("depth {}, {} reps (medians)", a.depth, a.reps);
    if a.prompt > 0 {
        println!("prefill: {pp:.1} tok/s over {} tokens (chunks of {})", a.prompt, e.options.prefill_chunk);
    }
    if a.n_gen > 0 {
        println!("decode: {tg:.1} tok/s over {} tokens", a.n_gen);
        println!(
            "ms/token: mean {mean_ms:.3}, p50 {:.3}, p95 {:.3}",
            ms(percentile(&gaps, 0.5)),
            ms(percentile(&gaps, 0.95))
        );
    }
    println!("dispatches/token: {} (decode), {} per prefill chunk", e.dispatches_per_token(), e.dispatches_per_chunk());
    println!("weights read/token: {:.3} GB, {gbs:.1} GB/s at the decode rate", bytes as f64 / 1e9);

    let json_times = |t: &[LaunchTime]| {
        t.iter()
            .map(|l| serde_json::json!({ "label": l.label, "micros": l.micros, "weight_bytes": l.weight_bytes }))
            .collect::<Vec<_>>()
    };
    let (mut profile, mut prefill_profile) = (None, None);
    if a.profile {
        at_depth(&mut e, &mut rng, a.depth, 1)?;
        let times = e.step_profiled(StepOutput::Greedy)?;
        print_profile("one decode step", &times);
        profile = Some(json_times(&times));
        if a.prompt > 0 {
            let n = a.prompt.min(e.options.prefill_chunk);
            at_depth(&mut e, &mut rng, a.depth, n)?;
            let times = e.prefill_profiled(n)?;
            print_profile(&format!("one prefill chunk of {n} tokens"), &times);
            prefill_profile = Some(json_times(&times));
        }
    }
    if let Some(path) = &a.json {
        let report = serde_json::json!({
            "model": name,
            "format": format,
            "gpu": device,
            "checked_kernels": a.engine.checked_kernels,
            "int8_activations": !a.engine.f32_activations,
            "kernels": format!("{:?}", a.engine.kernels).to_lowercase(),
            "coop_matrix": e.options.coop_matrix == CoopMatrix::On,
            "kernel_notes": e.kernel_notes,
            "depth": a.depth,
            "reps": a.reps,
            "prompt_tokens": a.prompt,
            "gen_tokens": a.n_gen,
            "prefill_tok_s": pp,
            "decode_tok_s": tg,
            "ms_per_token": { "mean": mean_ms, "p50": ms(percentile(&gaps, 0.5)), "p95": ms(percentile(&gaps, 0.95)) },
            "dispatches_per_token": e.dispatches_per_token(),
            "weight_bytes_per_token": bytes,
            "weight_gb_s": gbs,
            "profile": profile,
            "prefill_chunk": e.options.prefill_chunk,
            "prefill_dispatches_per_chunk": e.dispatches_per_chunk(),
            "prefill_profile": prefill_profile,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
