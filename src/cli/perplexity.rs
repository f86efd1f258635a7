//! `glm-wgpu perplexity`: perplexity of a text, and KL divergence / top-1 agreement against logits
//! saved from another file of the same model (llama.cpp's `llama-perplexity --kl-divergence`).
//!
//! As llama.cpp does, the text is cut into chunks of `--ctx` tokens, each evaluated from an empty
//! cache, and only the second half of each chunk is scored (the first half is context).

use super::run::{engine_options, load_engine, open};
use super::ModelArgs;
use crate::engine::StepOutput;
use anyhow::{ensure, Context, Result};
use clap::Args;
use half::f16;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score.
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// Save the scored positions' log-probabilities, for `--kl-base` runs of other files.
    #[arg(long)]
    pub save_logits: Option<PathBuf>,
    /// Log-probabilities saved by `--save-logits` from another file of the same model: report the
    /// KL divergence from them and how often both agree on the most likely token.
    #[arg(long)]
    pub kl_base: Option<PathBuf>,
}

const MAGIC: &[u8; 8] = b"GLMKLV01";

// Saved log-probabilities: the magic, then vocab, chunk length and chunk count (u64 each), the
// text's token ids (u32), then per scored position the vocabulary's log-probabilities as f16.

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + logits.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln();
    logits.iter().map(|&l| l as f64 - lse).collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

pub fn perplexity(a: PerplexityArgs) -> Result<()> {
    let (model, tokenizer) = open(&a.model)?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let tokens = tokenizer.encode(&text)?;
    let mut options = engine_options(&a.model, &model);
    options.ctx_len = a.model.ctx.unwrap_or(512.min(model.config.max_ctx));
    let chunk = options.ctx_len;
    ensure!(chunk >= 4, "--ctx must be at least 4 for perplexity");
    let n_chunks = tokens.len() / chunk;
    ensure!(
        n_chunks > 0,
        "{} has {} tokens, fewer than one chunk of {chunk} (lower --ctx)",
        a.file.display(),
        tokens.len()
    );
    let vocab = model.config.vocab;

    let mut base = match &a.kl_base {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            let mut r = BufReader::new(f);
            let mut head = [0u8; 32];
            r.read_exact(&mut head).with_context(|| format!("{} is too short", p.display()))?;
            ensure!(&head[..8] == MAGIC, "{} was not written by --save-logits", p.display());
            let word = |i: usize| u64::from_le_bytes(head[8 + 8 * i..16 + 8 * i].try_into().unwrap()) as usize;
            let (v, c, n) = (word(0), word(1), word(2));
            ensure!(v == vocab, "{} holds a vocabulary of {v}, this model has {vocab}", p.display());
            ensure!(c == chunk, "{} was saved with --ctx {c}; use the same here", p.display());
            let mut ids = vec![0u8; n * c * 4];
            r.read_exact(&mut ids).with_context(|| format!("{} is truncated", p.display()))?;
            let saved: Vec<u32> = bytemuck::pod_collect_to_vec(&ids);
            ensure!(saved == tokens[..n * c], "{} was saved from another text", p.display());
            ensure!(n == n_chunks, "{} holds {n} chunks, this text has {n_chunks}", p.display());
            Some(r)
        }
        None => None,
    };
    let mut save = match &a.save_logits {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            let mut w = BufWriter::new(f);
            w.write_all(MAGIC)?;
            for v in [vocab, chunk, n_chunks] {
                w.write_all(&(v as u64).to_le_bytes())?;
            }
            w.write_all(bytemuck::cast_slice(&tokens[..n_chunks * chunk]))?;
            Some(w)
        }
        None => None,
    };

    let mut engine = load_engine(&a.model, &model, options)?;
    let first = chunk / 2;
    let (mut nll, mut kl, mut same_top, mut scored) = (0f64, 0f64, 0usize, 0usize);
    let mut row = vec![0u8; vocab * 2];
    for c in 0..n_chunks {
        let ids = &tokens[c * chunk..(c + 1) * chunk];
        engine.reset();
        engine.write_tokens(0, ids)?;
        // The unscored first half only fills the cache.
        engine.prefill(first)?;
        for pos in first..chunk - 1 {
            engine.step(StepOutput::Logits)?;
            let lp = log_softmax(&engine.logits()?);
            nll -= lp[ids[pos + 1] as usize];
            scored += 1;
            if let Some(w) = save.as_mut() {
                let halves: Vec<u16> = lp.iter().map(|&x| f16::from_f64(x).to_bits()).collect();
                w.write_all(bytemuck::cast_slice(&halves))?;
            }
            if let Some(r) = base.as_mut() {
                r.read_exact(&mut row).context("the --kl-base file is truncated")?;
                let bp: Vec<f64> =
                    bytemuck::cast_slice::<u8, u16>(&row).iter().map(|&h| f16::from_bits(h).to_f64()).collect();
                kl += bp.iter().zip(&lp).map(|(&b, &l)| if b > -60.0 { b.exp() * (b - l) } else { 0.0 }).sum::<f64>();
                // Compared at the saved precision, so near-ties round the same way on both sides.
                let lp16: Vec<f64> = lp.iter().map(|&x| f16::from_f64(x).to_f64()).collect();
                same_top += (argmax(&bp) == argmax(&lp16)) as usize;
            }
        }
        eprint!("\rchunk {}/{n_chunks}: ppl {:.4}", c + 1, (nll / scored as f64).exp());
    }
    eprintln!();
    if let Some(mut w) = save {
        w.flush()?;
    }
    let ppl = (nll / scored as f64).exp();
    println!("tokens: {} ({n_chunks} chunks of {chunk}, {scored} scored)", tokens.len());
    println!("perplexity: {ppl:.6}");
    if base.is_some() {
        println!("mean KL divergence: {:.6}", kl / scored as f64);
        println!("same top token: {:.3}%", 100.0 * same_top as f64 / scored as f64);
    }
    Ok(())
}
