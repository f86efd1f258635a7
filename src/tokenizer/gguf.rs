//! Rebuilds the Hugging Face tokenizer from the `tokenizer.ggml.*` metadata that llama.cpp's converter
//! writes for GLM-4 models (`model = "gpt2"`, `pre = "glm4"`).

use crate::gguf::GgufFile;
use anyhow::{bail, ensure, Context, Result};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// GLM-4's pre-tokenizer split, as in the checkpoint's `tokenizer.json`. llama.cpp
/// (`LLAMA_VOCAB_PRE_TYPE_CHATGLM4`, selected by pre = "glm4" or "chatglm-bpe") spells the contractions
/// `'[sS]|'[tT]|'[rR][eE]|…` instead of `(?i:…)`; the rest is identical.
pub const GLM4_PRE_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

// llama.cpp's `llama_token_type`.
const TYPE_UNDEFINED: u64 = 0;
const TYPE_NORMAL: u64 = 1;
const TYPE_UNKNOWN: u64 = 2;
const TYPE_CONTROL: u64 = 3;
const TYPE_USER_DEFINED: u64 = 4;
const TYPE_UNUSED: u64 = 5;
const TYPE_BYTE: u64 = 6;

fn str_array<'a>(g: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let arr = g.require(key)?.as_array().with_context(|| key.to_string())?;
    arr.iter().enumerate().map(|(i, v)| v.as_str().with_context(|| format!("{key}[{i}]"))).collect()
}

fn opt_id(g: &GgufFile, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let id = v.as_u64().with_context(|| key.to_string())?;
    ensure!(id < n_tokens as u64, "{key} = {id} is out of range ({n_tokens} tokens)");
    Ok(Some(id as u32))
}

/// The tokenizer and its end-of-sequence ids (eos, eot, eom: those present, deduplicated).
pub(super) fn build(g: &GgufFile) -> Result<(tokenizers::Tokenizer, Vec<u32>)> {
    let model = g.require("tokenizer.ggml.model")?.as_str().context("tokenizer.ggml.model")?;
    if model != "gpt2" {
        bail!("unsupported tokenizer.ggml.model {model:?}: only \"gpt2\" (byte-level BPE, as GLM-4 uses) is supported");
    }
    let pre = match g.get("tokenizer.ggml.pre") {
        Some(v) => v.as_str().context("tokenizer.ggml.pre")?,
        None => bail!("missing tokenizer.ggml.pre: cannot tell which pre-tokenizer to use (supported: \"glm4\")"),
    };
    if pre != "glm4" && pre != "chatglm-bpe" {
        bail!("unsupported tokenizer.ggml.pre {pre:?}: only \"glm4\" (GLM-4) is supported");
    }

    let tokens = str_array(g, "tokenizer.ggml.tokens")?;
    ensure!(!tokens.is_empty(), "tokenizer.ggml.tokens is empty");
    ensure!(tokens.len() <= u32::MAX as usize, "tokenizer.ggml.tokens has {} entries", tokens.len());
    let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
        Some(v) => {
            let a = v.as_array().context("tokenizer.ggml.token_type")?;
            ensure!(
                a.len() == tokens.len(),
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                a.len(),
                tokens.len()
            );
            a.iter()
                .enumerate()
                .map(|(i, t)| t.as_u64().with_context(|| format!("tokenizer.ggml.token_type[{i}]")))
                .collect::<Result<_>>()?
        }
        None => vec![TYPE_NORMAL; tokens.len()],
    };

    // Every token but the converter's `[PAD{i}]` fillers (UNUSED) goes into the BPE vocabulary with its
    // id; control and user-defined tokens are also registered as added tokens, which then keep those ids.
    // (tokenizer.json keeps the added tokens outside the model's vocab, but the result is the same.)
    let mut vocab = Vocab::default();
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        match ty {
            TYPE_UNUSED => continue,
            TYPE_NORMAL | TYPE_UNDEFINED | TYPE_BYTE => {}
            TYPE_CONTROL | TYPE_UNKNOWN => special.push(AddedToken::from(tok, true).normalized(false)),
            TYPE_USER_DEFINED => user.push(AddedToken::from(tok, false).normalized(false)),
            t => bail!("tokenizer.ggml.token_type[{id}] = {t} is not a known token type"),
        }
        // A repeated string keeps its first id (the encoder can only produce one of them).
        vocab.entry(tok.to_string()).or_insert(id as u32);
    }

    let merges = str_array(g, "tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            // As llama.cpp: the separator is the first space after the first character.
            let pos = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(p, _)| p);
            let pos = pos.with_context(|| format!("tokenizer.ggml.merges[{i}] = {m:?} is not \"a b\""))?;
            Ok((m[..pos].to_string(), m[pos + 1..].to_string()))
        })
        .collect::<Result<Vec<_>>>()?;

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(anyhow::Error::from_boxed)
        .context("cannot build the BPE model from tokenizer.ggml.tokens/merges")?;

    let split = Split::new(SplitPattern::Regex(GLM4_PRE_REGEX.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map_err(anyhow::Error::from_boxed)
        .context("glm4 pre-tokenizer regex")?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()])));
    // As in tokenizer.json: ByteLevel post-processing only trims offsets; it adds no tokens.
    tk.with_post_processor(Some(ByteLevel::new(true, false, true)));
    tk.with_decoder(Some(ByteLevel::default()));
    tk.add_special_tokens(&special);
    tk.add_tokens(&user);

    let n = tokens.len();
    let mut eos = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = opt_id(g, key, n)? {
            ensure!(types[id as usize] != TYPE_UNUSED, "{key} = {id} is an unused (padding) token");
            eos.push(id);
        }
    }
    Ok((tk, eos))
}
