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
    /// Leading prompt tokens that were already in the KV cache (not run again).
    pub cached_tokens: usize,
    pub generated: usize,
    /// From the first prompt step to the first generated token.
    pub prompt_time: Duration,
    /// From the first generated token to the last.
    pub decode_time: Duration,
    pub stop: StopReason,
}

impl GenerationStats {
    /// Prompt tokens run (those not already cached) per second.
    pub fn prompt_tok_s(&self) -> f64 {
        (self.prompt_tokens - self.cached_tokens) as f64 / self.prompt_time.as_secs_f64()
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
    on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<GenerationStats> {
    generate_from(engine, 0, req, on_token)
}

/// As [`generate`], but the first `cached` prompt tokens are already in the KV cache at positions
/// `0..cached` (from an earlier generation over the same tokens): only the rest of the prompt is run.
/// Whatever the cache holds past `cached` is forgotten. `cached` must be less than the prompt length.
pub fn generate_from(
    engine: &mut Engine,
    cached: usize,
    req: &GenerateRequest,
    mut on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<GenerationStats> {
    let n = req.prompt.len();
    check_prompt_fits(n, engine.ctx_len(), engine.config.max_ctx)?;
    req.sampling.validate()?;
    ensure!(cached < n, "{cached} cached tokens leave nothing of the {n}-token prompt to run");
    ensure!(cached <= engine.pos(), "{cached} cached tokens but the cache holds {}", engine.pos());
    engine.truncate(cached)?;
    engine.write_tokens(cached, &req.prompt[cached..])?;
    let start = Instant::now();
    engine.prefill(n - 1 - cached)?;
    let mut stats = GenerationStats {
        prompt_tokens: n,
        cached_tokens: cached,
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
    if req.sampling.runs_on_gpu() {
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
        let mut sampler = Sampler::with_history(req.sampling.clone(), req.prompt);
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

/// Finds stop strings in streamed text. Text is let through as soon as it cannot be the start of a
/// stop string; the stop string itself and everything after it are never let through.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    held: String,
    hit: bool,
}

impl StopStrings {
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new(), hit: false }
    }

    /// Adds `piece` and returns the text that is now safe to show; after a stop string was found
    /// (see [`StopStrings::hit`]) nothing more is returned.
    pub fn push(&mut self, piece: &str) -> String {
        if self.hit {
            return String::new();
        }
        if self.stops.is_empty() {
            return piece.to_string();
        }
        self.held.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.hit = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return out;
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        out
    }

    /// Whether a stop string was found.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// The held-back text, at the end of the generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::StopStrings;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect());
        let out = pieces.iter().map(|p| s.push(p)).collect();
        let hit = s.hit();
        (out, hit, s.finish())
    }

    #[test]
    fn stop_string_split_across_pieces() {
        let (out, hit, rest) = run(&["STOP"], &["ab S", "TO", "P cd", "ef"]);
        assert_eq!(out, ["ab ", "", "", ""]);
        assert!(hit);
        assert_eq!(rest, "");
    }

    #[test]
    fn false_start_is_released() {
        let (out, hit, rest) = run(&["STOP"], &["a ST", "x", "ST"]);
        assert_eq!(out, ["a ", "STx", ""]);
        assert!(!hit);
        assert_eq!(rest, "ST");
    }

    #[test]
    fn earliest_of_several_and_unicode() {
        let (out, hit, _) = run(&["«end»", "x"], &["héllo «en", "d» x"]);
        assert_eq!(out.concat(), "héllo ");
        assert!(hit);
        let (out, hit, _) = run(&[], &["a", "b"]);
        assert_eq!(out, ["a", "b"]);
        assert!(!hit);
    }
}
