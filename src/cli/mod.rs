//! The `glm-wgpu` command line.

mod bench;
mod chat;
mod info;
mod perplexity;
mod run;
mod serve;

use crate::engine::{CoopMatrix, EngineOptions};
use crate::gpu::native::KernelChoice;
use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "glm-wgpu", version, about = "GLM-4.7-Flash inference on the GPU through wgpu/WGSL")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Print a model's shape, tensor types, memory needs and the GPU adapter.
    Info(info::InfoArgs),
    /// Chat with the model in the terminal.
    Chat(chat::ChatArgs),
    /// Serve an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Measure prompt and decode speed (and, with --profile, every kernel's GPU time).
    Bench(bench::BenchArgs),
    /// Perplexity of a text file; KL divergence against logits saved from another file.
    Perplexity(perplexity::PerplexityArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KvCacheType {
    F16,
    F32,
}

/// Options shared by the commands that load a model onto the GPU.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF file or a Hugging Face checkpoint directory.
    #[arg(short, long)]
    pub model: PathBuf,
    /// GPU adapter: an index or part of its name (default: $GLM_WGPU_DEVICE, else the best one).
    #[arg(long)]
    pub device: Option<String>,
    /// KV cache positions [default: the model's maximum, capped at 4096].
    #[arg(long)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// How the engine is built: options of every command that loads a model, `bench` included.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Element type of the latent KV cache.
    #[arg(long, value_enum, default_value_t = KvCacheType::F16)]
    pub kv_cache: KvCacheType,
    /// Build the kernels with wgpu's runtime bounds checks (slower; for debugging, or to measure
    /// what the checks cost).
    #[arg(long)]
    pub checked_kernels: bool,
    /// Multiply Q4_K/Q5_K/Q6_K/Q8_0 weights with f32 inputs instead of inputs rounded to int8 per
    /// 32-block (slower; to A/B the accuracy, e.g. with `perplexity`).
    #[arg(long)]
    pub f32_activations: bool,
    /// Prompt tokens processed together: each chunk reads the weights once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=3000))]
    pub prefill_chunk: u64,
    /// WGSL or native pipelines for the matrix products (native: naga's SPIR-V on Vulkan, the
    /// hand-written MSL matvec on Metal; auto: native where the backend has them). Native pipelines
    /// are checked against their WGSL twins at start-up; one that disagrees or does not build is
    /// built from WGSL instead, and the user is told.
    #[arg(long, value_enum, default_value_t = KernelChoice::Wgsl)]
    pub kernels: KernelChoice,
    /// The prefill's products and attention on cooperative matrices (tensor cores): auto uses them
    /// where the adapter has them (through wgpu) and they agree with the plain kernels at start-up.
    #[arg(long, value_enum, default_value_t = CoopMatrix::Auto)]
    pub coop_matrix: CoopMatrix,
}

impl EngineArgs {
    pub fn options(&self, ctx_len: usize) -> EngineOptions {
        EngineOptions {
            ctx_len,
            kv_f16: self.kv_cache == KvCacheType::F16,
            capture_hidden: false,
            checked_kernels: self.checked_kernels,
            int8_activations: !self.f32_activations,
            prefill_chunk: self.prefill_chunk as usize,
            kernels: self.kernels,
            coop_matrix: self.coop_matrix,
        }
    }
}

pub fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Info(a) => info::info(a),
        Command::Chat(a) => chat::chat(a),
        Command::Serve(a) => serve::serve(a),
        Command::Bench(a) => bench::bench(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
    }
}
