//! Tokenizer: GLM-4.7-Flash's byte-level BPE, loaded either from a Hugging Face checkpoint directory
//! (`tokenizer.json`) or from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Both paths build a [`tokenizers::Tokenizer`] with the same model, pre-tokenizer and decoder, so they
//! encode identically. Text is encoded exactly as given: special tokens written in the text (`<|user|>`,
//! `<think>`, …) are recognised, and nothing (no BOS, no post-processor addition) is prepended; chat
//! prompts carry their own `[gMASK]<sop>` prefix.

mod gguf;

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::DecoderWrapper;

/// A loaded tokenizer plus the ids that end generation.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_ids: Vec<u32>,
    vocab_size: usize,
    /// Byte-level alphabet: the printable char standing for each byte, reversed.
    char_bytes: HashMap<char, u8>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("eos_ids", &self.eos_ids)
            .finish_non_exhaustive()
    }
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the others map to
/// U+0100 onwards in byte order.
fn byte_level_chars() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut out = ['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = char::from_u32(c).expect("byte-level chars are valid scalar values");
    }
    out
}

fn tk_err(e: tokenizers::Error) -> anyhow::Error {
    anyhow::Error::from_boxed(e)
}

/// `eos_token_id` as found in `config.json` / `generation_config.json`: an integer or a list of them.
fn ids_from_json(v: &serde_json::Value) -> Result<Vec<u32>> {
    let one = |x: &serde_json::Value| -> Result<u32> {
        x.as_u64().and_then(|i| u32::try_from(i).ok()).with_context(|| format!("expected a token id, found {x}"))
    };
    match v {
        serde_json::Value::Array(a) => a.iter().map(one).collect(),
        serde_json::Value::Null => Ok(vec![]),
        x => Ok(vec![one(x)?]),
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(Some(v))
}

fn dedup(ids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl Tokenizer {
    fn new(inner: tokenizers::Tokenizer, eos_ids: Vec<u32>) -> Result<Self> {
        // The stream decoder (and `token_bytes`) replay the byte-level decoder; anything else is not GLM.
        match inner.get_decoder() {
            Some(DecoderWrapper::ByteLevel(_)) => {}
            other => {
                bail!("unsupported tokenizer decoder {other:?}: only byte-level BPE (GLM-4) tokenizers are supported")
            }
        }
        let vocab_size = inner.get_vocab_size(true);
        for &id in &eos_ids {
            if inner.id_to_token(id).is_none() {
                bail!("end-of-sequence id {id} is not in the vocabulary ({vocab_size} tokens)");
            }
        }
        let char_bytes = byte_level_chars().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Self { inner, eos_ids: dedup(eos_ids), vocab_size, char_bytes })
    }

    /// Loads `tokenizer.json` from a Hugging Face checkpoint directory. The end-of-sequence ids come from
    /// `config.json`'s `eos_token_id` (an integer or a list), else `generation_config.json`'s, else the
    /// `eos_token` of `tokenizer_config.json`.
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(tk_err)
            .with_context(|| format!("cannot load tokenizer {}", path.display()))?;

        let mut eos_ids = Vec::new();
        for name in ["config.json", "generation_config.json"] {
            let p = dir.join(name);
            if let Some(v) = read_json(&p)? {
                if let Some(e) = v.get("eos_token_id") {
                    eos_ids = ids_from_json(e).with_context(|| format!("eos_token_id in {}", p.display()))?;
                }
            }
            if !eos_ids.is_empty() {
                break;
            }
        }
        if eos_ids.is_empty() {
            let p = dir.join("tokenizer_config.json");
            if let Some(v) = read_json(&p)? {
                let tok = match v.get("eos_token") {
                    Some(serde_json::Value::String(s)) => Some(s.as_str()),
                    Some(o @ serde_json::Value::Object(_)) => o.get("content").and_then(|c| c.as_str()),
                    _ => None,
                };
                if let Some(tok) = tok {
                    let id = inner
                        .token_to_id(tok)
                        .with_context(|| format!("eos_token {tok:?} of {} is not in the vocabulary", p.display()))?;
                    eos_ids.push(id);
                }
            }
        }
        Self::new(inner, eos_ids).with_context(|| format!("tokenizer in {}", dir.display()))
    }

    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata (as llama.cpp's converter writes
    /// it). The end-of-sequence ids are the `eos`, `eot` and `eom` ids that are present.
    pub fn from_gguf(g: &crate::gguf::GgufFile) -> Result<Self> {
        let (inner, eos_ids) = gguf::build(g).with_context(|| format!("tokenizer of {}", g.path.display()))?;
        Self::new(inner, eos_ids).with_context(|| format!("tokenizer of {}", g.path.display()))
    }

    /// Token ids for `text`, exactly as given: special tokens in the text are recognised, nothing is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(tk_err)
            .with_context(|| format!("cannot tokenize {:?}", text.chars().take(60).collect::<String>()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included. Invalid UTF-8 becomes U+FFFD; unknown ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        // The byte-level decoder cannot fail; fall back to the replay in `token_bytes` if it ever does.
        self.inner.decode(ids, false).unwrap_or_else(|_| {
            let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id).unwrap_or_default()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    /// The vocabulary entry for `id` as stored (byte-level form, e.g. `Ġthe` for " the").
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The raw bytes `id` decodes to (a byte-level token may hold part of a UTF-8 character).
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let tok = self.inner.id_to_token(id)?;
        // Same rule as the ByteLevel decoder: map every char back to its byte, or, when some char is not
        // in the byte alphabet (added tokens may be written plainly), take the text's own UTF-8.
        let mapped: Option<Vec<u8>> = tok.chars().map(|c| self.char_bytes.get(&c).copied()).collect();
        Some(mapped.unwrap_or_else(|| tok.into_bytes()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of distinct tokens (normal + added). The model's embedding table may be larger (padded).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Turns generated ids into printable text one id at a time. Bytes of a UTF-8 character split across
/// tokens are held back until the character is complete, so the pieces concatenate to
/// `Tokenizer::decode(all ids)` (call [`StreamDecoder::finish`] at the end to flush an incomplete tail).
/// Special tokens are shown (`<think>` …).
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The new text after `id` (possibly empty).
    pub fn step(&mut self, tok: &Tokenizer, id: u32) -> String {
        if let Some(b) = tok.token_bytes(id) {
            self.pending.extend_from_slice(&b);
        }
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("prefix checked valid"));
                    match e.error_len() {
                        // An invalid sequence: replaced like `String::from_utf8_lossy` does.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        self.pending.drain(..self.pending.len() - keep);
        out
    }

    /// Flushes the held-back bytes (an incomplete character becomes U+FFFD, as in `decode`).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
