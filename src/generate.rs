//! The token loop: prompt through the KV cache, then decoding with the GPU running ahead of the CPU.

use crate::engine::{Engine, StepOutput, MAX_IN_FLIGHT};
use crate::sampling::{Sampler, SamplingParams};
use anyhow::{ensure, Result};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-sequence token was generated.
    Eos,
    /// The requested number of tokens was generated.
    Length,
    /// The KV cache is full.
    Context,
    /// The caller's callback asked to stop.
    Caller,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::Context => "context",
            StopReason::Caller => "caller",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated: usize,
    /// From the first prompt step to the first generated token.
    pub prompt_time: Duration,
    /// From the first generated token to the last.
    pub decode_time: Duration,
    pub stop: StopReason,
}

impl GenerationStats {
    pub fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64()
    }

    /// Tokens after the first, over the time after the first.
    pub fn decode_tok_s(&self) -> f64 {
        if self.generated < 2 {
            return 0.0;
        }
        (self.generated - 1) as f64 / self.decode_time.as_secs_f64()
    }
}

pub struct GenerateRequest<'a> {
    pub prompt: &'a [u32],
    pub max_new: usize,
    pub sampling: SamplingParams,
    /// Tokens that end the generation (the EOS token itself is still reported).
    pub stop_ids: &'a [u32],
}

/// A prompt must leave room for at least one generated token.
pub fn check_prompt_fits(n: usize, ctx_len: usize, max_ctx: usize) -> Result<()> {
    ensure!(n > 0, "the prompt is empty");
    ensure!(
        n < ctx_len,
        "the prompt is {n} tokens but the context holds {ctx_len} (raise --ctx, up to the model's {max_ctx})"
    );
    Ok(())
}

/// Runs the prompt from position 0 and generates up to `max_new` tokens, calling `on_token` for each
/// as soon as it is known; `on_token` returns false to stop.
pub fn generate(
    engine: &mut Engine,
    req: &GenerateRequest,
    mut on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<GenerationStats> {
    let n = req.prompt.len();
    check_prompt_fits(n, engine.ctx_len(), engine.config.max_ctx)?;
    req.sampling.validate()?;
    engine.reset();
    engine.write_tokens(0, req.prompt)?;
    let start = Instant::now();
    for _ in 0..n - 1 {
        engine.step(StepOutput::CacheOnly)?;
    }
    let mut stats = GenerationStats {
        prompt_tokens: n,
        generated: 0,
        prompt_time: Duration::ZERO,
        decode_time: Duration::ZERO,
        stop: StopReason::Length,
    };
    if req.max_new == 0 {
        engine.ctx.wait()?;
        stats.prompt_time = start.elapsed();
        return Ok(stats);
    }
    let mut first_at = None;
    let mut emit = |stats: &mut GenerationStats, tok: u32| -> Result<Option<StopReason>> {
        let now = Instant::now();
        match first_at {
            None => {
                stats.prompt_time = now - start;
                first_at = Some(now);
            }
            Some(t0) => stats.decode_time = now - t0,
        }
        stats.generated += 1;
        let go_on = on_token(tok)?;
        Ok(if req.stop_ids.contains(&tok) {
            Some(StopReason::Eos)
        } else if !go_on {
            Some(StopReason::Caller)
        } else if stats.generated == req.max_new {
            Some(StopReason::Length)
        } else {
            None
        })
    };
    let ctx_len = engine.ctx_len();
    if req.sampling.is_greedy() {
        // Each greedy step reads the token the previous one wrote on the GPU, so several steps are
        // submitted before the first token is read back.
        let mut submitted = 0;
        let stop = loop {
            while engine.tokens_in_flight() < MAX_IN_FLIGHT && submitted < req.max_new && engine.pos() < ctx_len {
                engine.step(StepOutput::Greedy)?;
                submitted += 1;
            }
            if engine.tokens_in_flight() == 0 {
                break StopReason::Context;
            }
            let tok = engine.next_token()?;
            if let Some(s) = emit(&mut stats, tok)? {
                break s;
            }
        };
        while engine.tokens_in_flight() > 0 {
            engine.next_token()?;
        }
        stats.stop = stop;
    } else {
        let mut sampler = Sampler::new(req.sampling.clone());
        stats.stop = loop {
            if engine.pos() >= ctx_len {
                break StopReason::Context;
            }
            engine.step(StepOutput::Logits)?;
            let tok = sampler.sample(&engine.logits()?);
            if let Some(s) = emit(&mut stats, tok)? {
                break s;
            }
            if engine.pos() < ctx_len {
                engine.write_tokens(engine.pos(), &[tok])?;
            }
        };
    }
    Ok(stats)
}
