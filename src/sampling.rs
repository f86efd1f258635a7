//! Token choice from logits. Greedy without penalties runs on the GPU (see `engine`); everything else
//! (penalties, temperature, top-k, top-p, min-p) runs here on logits read back from the GPU.

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    /// 1 means no nucleus cut.
    pub top_p: f32,
    pub seed: u64,
    /// Drop tokens whose probability is below `min_p` times the most likely one's; 0 is off.
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of every token already in the sequence,
    /// prompt included (as transformers and vLLM do); 1 is off.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already generated (OpenAI's); 0 is off.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated (OpenAI's); 0 is off.
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "temperature must be ≥ 0, got {}",
            self.temperature
        );
        ensure!(self.top_p > 0.0 && self.top_p <= 1.0, "top-p must be in (0, 1], got {}", self.top_p);
        ensure!((0.0..=1.0).contains(&self.min_p), "min-p must be in [0, 1], got {}", self.min_p);
        ensure!(
            self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite(),
            "repetition penalty must be > 0, got {}",
            self.repetition_penalty
        );
        ensure!(
            (-2.0..=2.0).contains(&self.presence_penalty),
            "presence penalty must be in [-2, 2], got {}",
            self.presence_penalty
        );
        ensure!(
            (-2.0..=2.0).contains(&self.frequency_penalty),
            "frequency penalty must be in [-2, 2], got {}",
            self.frequency_penalty
        );
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    pub fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }

    /// Greedy with nothing that needs the logits on the CPU: the token loop stays on the GPU.
    pub fn runs_on_gpu(&self) -> bool {
        self.is_greedy() && !self.has_penalties()
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Every token of the sequence so far (prompt and generated), for the repetition penalty.
    seen: HashSet<u32>,
    /// How often each token was generated, for the presence and frequency penalties.
    generated: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Self::with_history(params, &[])
    }

    /// A sampler whose repetition penalty also covers `prompt`.
    pub fn with_history(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        let seen = if params.repetition_penalty != 1.0 { prompt.iter().copied().collect() } else { HashSet::new() };
        Self { params, rng, seen, generated: HashMap::new() }
    }

    /// Applies the penalties to `logits` in place.
    pub fn penalize(&self, logits: &mut [f32]) {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            for &id in &self.seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&id, &n) in &self.generated {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
        }
    }

    /// Penalties, then (unless greedy) temperature, top-k, top-p, min-p and a draw from what is left.
    /// The chosen token joins the history the penalties look at.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let tok = if self.params.has_penalties() {
            let mut l = logits.to_vec();
            self.penalize(&mut l);
            self.choose(&l)
        } else {
            self.choose(logits)
        };
        self.accept(tok);
        tok
    }

    /// Records a token of the sequence (done by `sample` for the tokens it chooses).
    pub fn accept(&mut self, tok: u32) {
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(tok);
        }
        *self.generated.entry(tok).or_default() += 1;
    }

    fn choose(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.is_greedy() {
            // First maximum, as the GPU argmax picks.
            let mut best = 0;
            for (i, &l) in logits.iter().enumerate() {
                if l > logits[best] {
                    best = i;
                }
            }
            return best as u32;
        }
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            cand.truncate(p.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|&(_, l)| (((l - max) / p.temperature) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            // probs is sorted, probs[0] is the most likely token.
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f64>() * mass;
        for i in 0..keep {
            r -= probs[i];
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        f(&mut p);
        p
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, 1.0]), 1);
    }

    #[test]
    fn repetition_penalty_covers_the_prompt() {
        let p = params(|p| p.repetition_penalty = 4.0);
        let mut s = Sampler::with_history(p, &[1]);
        // 1 (logit 4 → 1) loses against 2 (logit 2).
        assert_eq!(s.sample(&[0.0, 4.0, 2.0]), 2);
        // Now 2 is seen too: 4/4 = 1 vs 2/4 = 0.5, and negative logits get more negative.
        let mut l = vec![-1.0, 4.0, 2.0];
        s.penalize(&mut l);
        assert_eq!(l, vec![-1.0, 1.0, 0.5]);
    }

    #[test]
    fn presence_and_frequency_penalties_count_generated_tokens() {
        let p = params(|p| {
            p.presence_penalty = 0.5;
            p.frequency_penalty = 1.0;
        });
        let mut s = Sampler::with_history(p, &[0]);
        s.accept(1);
        s.accept(1);
        s.accept(2);
        let mut l = vec![0.0; 3];
        s.penalize(&mut l);
        assert_eq!(l, vec![0.0, -2.5, -1.5]);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // With min-p 0.5 only tokens at least half as likely as the best remain: token 0 and 1.
        let p = params(|p| {
            p.temperature = 1.0;
            p.min_p = 0.5;
        });
        let logits = [1.0f32, 1.0 + (0.6f32).ln(), 1.0 + (0.1f32).ln()];
        let mut s = Sampler::new(p);
        for _ in 0..500 {
            assert_ne!(s.sample(&logits), 2);
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = params(|p| {
            p.temperature = 1.0;
            p.seed = 7;
        });
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(p.clone()), run(p.clone()));
        assert_ne!(run(p.clone()), run(SamplingParams { seed: 8, ..p }));
    }

    #[test]
    fn validation() {
        assert!(params(|p| p.min_p = 1.5).validate().is_err());
        assert!(params(|p| p.repetition_penalty = 0.0).validate().is_err());
        assert!(params(|p| p.presence_penalty = 2.5).validate().is_err());
        assert!(params(|p| p.frequency_penalty = -3.0).validate().is_err());
        assert!(params(|p| p.top_p = 0.0).validate().is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}
