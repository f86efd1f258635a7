//! `glm-wgpu run`: stream a completion of a prompt.

use super::ModelArgs;
use crate::engine::{Engine, EngineOptions};
use crate::generate::{check_prompt_fits, generate, GenerateRequest};
use crate::gpu::GpuContext;
use crate::model::{Checkpoint, Model};
use crate::sampling::SamplingParams;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The generated text, streamed, then a speed summary on stderr.
    Text,
    /// One JSON object per generated token, then a summary object.
    Jsonl,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt, tokenized exactly as written (special tokens such as [gMASK] are recognised;
    /// nothing is prepended).
    #[arg(short, long)]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_predict: usize,
    /// Sampling temperature; 0 is greedy (on the GPU).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Opens the model and its tokenizer (no GPU yet, so file errors come first).
pub fn open(args: &ModelArgs) -> Result<(Model, Tokenizer)> {
    let model = Model::open(&args.model)?;
    let tokenizer = match &model.files {
        Checkpoint::Gguf(g) => Tokenizer::from_gguf(g),
        Checkpoint::Hf(_) => Tokenizer::from_hf_dir(&args.model),
    }
    .with_context(|| format!("cannot load the tokenizer of {}", args.model.display()))?;
    Ok((model, tokenizer))
}

pub fn engine_options(args: &ModelArgs, model: &Model) -> EngineOptions {
    args.engine.options(args.ctx.unwrap_or(model.config.max_ctx.min(4096)))
}

/// Opens the GPU and uploads the weights.
pub fn load_engine(args: &ModelArgs, model: &Model, options: EngineOptions) -> Result<Engine> {
    let ctx = GpuContext::new(args.device.as_deref())?;
    eprintln!("gpu: {}", ctx.describe());
    let e = Engine::load(ctx, model, options)?;
    e.kernel_notes.iter().for_each(|n| eprintln!("kernels: {n}"));
    Ok(e)
}

pub fn run(a: RunArgs) -> Result<()> {
    let sampling =
        SamplingParams { temperature: a.temp, top_k: a.top_k, top_p: a.top_p, seed: a.seed, ..Default::default() };
    sampling.validate()?;
    let (model, tokenizer) = open(&a.model)?;
    let prompt = tokenizer.encode(&a.prompt)?;
    let options = engine_options(&a.model, &model);
    check_prompt_fits(prompt.len(), options.ctx_len, model.config.max_ctx)?;
    let mut engine = load_engine(&a.model, &model, options)?;
    let stop_ids = if a.ignore_eos { Vec::new() } else { tokenizer.eos_ids().to_vec() };
    let req = GenerateRequest { prompt: &prompt, max_new: a.n_predict, sampling, stop_ids: &stop_ids };
    let mut out = std::io::stdout().lock();
    let mut stream = StreamDecoder::new();
    let stats = generate(&mut engine, &req, |id| {
        let piece = stream.step(&tokenizer, id);
        match a.format {
            OutputFormat::Text => write!(out, "{piece}")?,
            OutputFormat::Jsonl => writeln!(out, "{}", serde_json::json!({ "id": id, "text": piece }))?,
        }
        out.flush()?;
        Ok(true)
    })?;
    match a.format {
        OutputFormat::Text => {
            writeln!(out, "{}", stream.finish())?;
            eprintln!(
                "prompt: {} tokens, {:.1} tok/s | decode: {} tokens, {:.1} tok/s | stop: {}",
                stats.prompt_tokens,
                stats.prompt_tok_s(),
                stats.generated,
                stats.decode_tok_s(),
                stats.stop.as_str()
            );
        }
        OutputFormat::Jsonl => writeln!(
            out,
            "{}",
            serde_json::json!({
                "summary": true,
                "prompt_tokens": stats.prompt_tokens,
                "generated_tokens": stats.generated,
                "prompt_tok_s": stats.prompt_tok_s(),
                "decode_tok_s": stats.decode_tok_s(),
                "stop": stats.stop.as_str(),
            })
        )?,
    }
    Ok(())
}
