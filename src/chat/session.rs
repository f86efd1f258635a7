//! One conversation's KV cache: which tokens it holds, so that the next prompt only runs what is new.

use crate::engine::Engine;
use crate::generate::{generate_from, GenerateRequest, GenerationStats};
use anyhow::Result;

/// The tokens whose keys and values are in the engine's cache, at positions `0..len`.
#[derive(Debug, Clone, Default)]
pub struct Session {
    cached: Vec<u32>,
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the cache (the next generation starts from position 0).
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// The tokens in the cache.
    pub fn cached(&self) -> &[u32] {
        &self.cached
    }

    /// Generates from `req.prompt`, running only what follows the longest prefix the cache already
    /// holds (at least the prompt's last token is run, for its logits).
    pub fn generate(
        &mut self,
        engine: &mut Engine,
        req: &GenerateRequest,
        mut on_token: impl FnMut(u32) -> Result<bool>,
    ) -> Result<GenerationStats> {
        let prompt = req.prompt;
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let reuse = common.min(prompt.len().saturating_sub(1)).min(engine.pos());
        // Until this generation succeeds the cache holds no known tokens.
        self.cached.clear();
        let mut generated = Vec::new();
        let stats = generate_from(engine, reuse, req, |id| {
            generated.push(id);
            on_token(id)
        })?;
        // Run through the model: the prompt but its last token, then (once a token was generated) the
        // last prompt token and every generated token but the last.
        let mut fed = prompt[..prompt.len() - 1].to_vec();
        if let Some((_, before_last)) = generated.split_last() {
            fed.push(prompt[prompt.len() - 1]);
            fed.extend_from_slice(before_last);
        }
        self.cached = fed;
        Ok(stats)
    }
}
