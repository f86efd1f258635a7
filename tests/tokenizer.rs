//! Tokenizer tests against the tiny GLM fixture (tests/fixtures/glm-tiny).

use glm_wgpu::gguf::{GgufFile, GgufWriter, MetaValue};
use glm_wgpu::tokenizer::{StreamDecoder, Tokenizer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm-tiny")
}

fn fixture_gguf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm-tiny-bf16.gguf")
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn reference() -> (String, Vec<u32>) {
    let r = read_json(&fixture_dir().join("reference.json"));
    let prompt = r["prompt"].as_str().unwrap().to_string();
    let ids = r["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    (prompt, ids)
}

fn hf() -> Tokenizer {
    Tokenizer::from_hf_dir(fixture_dir()).unwrap()
}

/// The `tokenizer.ggml.*` metadata as llama.cpp's convert_hf_to_gguf.py writes it for GLM-4 MoE models:
/// `vocab_size` tokens with `[PAD{i}]` fillers (UNUSED), added tokens as CONTROL, merges as "a b".
fn converter_writer() -> GgufWriter {
    let dir = fixture_dir();
    let tj = read_json(&dir.join("tokenizer.json"));
    let config = read_json(&dir.join("config.json"));
    let vocab_size = config["vocab_size"].as_u64().unwrap() as usize;

    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    for (tok, id) in tj["model"]["vocab"].as_object().unwrap() {
        tokens[id.as_u64().unwrap() as usize] = Some((tok.clone(), 1));
    }
    let mut added = std::collections::HashMap::new();
    for a in tj["added_tokens"].as_array().unwrap() {
        let id = a["id"].as_u64().unwrap() as usize;
        let content = a["content"].as_str().unwrap().to_string();
        let ty = if a["special"].as_bool().unwrap() { 3 } else { 4 };
        added.insert(content.clone(), id as u32);
        tokens[id] = Some((content, ty));
    }
    let (toks, types): (Vec<MetaValue>, Vec<MetaValue>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (s, ty) = t.unwrap_or_else(|| (format!("[PAD{i}]"), 5));
            (MetaValue::String(s), MetaValue::I32(ty))
        })
        .unzip();
    let merges = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => MetaValue::String(s.clone()),
            a => MetaValue::String(format!("{} {}", a[0].as_str().unwrap(), a[1].as_str().unwrap())),
        })
        .collect();

    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::String("deepseek2".into()));
    w.set("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    w.set("tokenizer.ggml.pre", MetaValue::String("glm4".into()));
    w.set("tokenizer.ggml.tokens", MetaValue::Array(toks));
    w.set("tokenizer.ggml.token_type", MetaValue::Array(types));
    w.set("tokenizer.ggml.merges", MetaValue::Array(merges));
    w.set("tokenizer.ggml.bos_token_id", MetaValue::U32(added["[gMASK]"]));
    w.set("tokenizer.ggml.eos_token_id", MetaValue::U32(added["<|endoftext|>"]));
    w.set("tokenizer.ggml.eot_token_id", MetaValue::U32(added["<|user|>"]));
    w.set("tokenizer.ggml.eom_token_id", MetaValue::U32(added["<|observation|>"]));
    w.set("tokenizer.ggml.unknown_token_id", MetaValue::U32(added["<|endoftext|>"]));
    w.set("tokenizer.ggml.padding_token_id", MetaValue::U32(added["[MASK]"]));
    w
}

fn open_written(w: &GgufWriter, name: &str) -> GgufFile {
    // A path per call: tests run in parallel threads of one process, and one test's write must not
    // truncate the file another is opening.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("glm-wgpu-tokenizer-{}-{call}-{name}.gguf", std::process::id()));
    std::fs::write(&path, w.to_bytes()).unwrap();
    let g = GgufFile::open(&path).unwrap();
    let _ = std::fs::remove_file(&path); // the mapping stays valid on unix
    g
}

fn converted() -> Tokenizer {
    Tokenizer::from_gguf(&open_written(&converter_writer(), "converted")).unwrap()
}

fn gguf_error(w: &GgufWriter, name: &str) -> String {
    let err = Tokenizer::from_gguf(&open_written(w, name)).unwrap_err();
    format!("{err:#}")
}

const TEXTS: &[&str] = &[
    "héllo wörld — 日本語 🙂",
    "Hello, World! It's 12345 o'clock; we'll SEE what they've DONE.\n\n  indented\tcode()\r\n",
    "def f(x):\n    return x**2  # square\n\n\n",
    "   leading spaces and trailing   ",
    "<|system|>\nYou are helpful.<|user|>\nHi<|assistant|>\n<think>hmm</think>\nHello!<|endoftext|>",
    "数字123456789和English混合，标点！？",
    "I'M DON'T YOU'LL 'S 'Re",
    "",
];

#[test]
fn hf_encodes_reference_prompt() {
    let (prompt, ids) = reference();
    let t = hf();
    assert_eq!(t.encode(&prompt).unwrap(), ids);
    assert_eq!(t.decode(&ids), prompt);
}

#[test]
fn gguf_converted_encodes_reference_prompt() {
    let (prompt, ids) = reference();
    let t = converted();
    assert_eq!(t.encode(&prompt).unwrap(), ids);
    assert_eq!(t.decode(&ids), prompt);
}

#[test]
fn gguf_fixture_encodes_reference_prompt() {
    let path = fixture_gguf();
    assert!(path.exists(), "missing fixture {}", path.display());
    let g = GgufFile::open(&path).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    let (prompt, ids) = reference();
    assert_eq!(t.encode(&prompt).unwrap(), ids);
    assert_eq!(t.decode(&ids), prompt);
    let h = hf();
    assert_eq!(t.eos_ids(), h.eos_ids());
    assert_eq!(t.vocab_size(), h.vocab_size());
    for text in TEXTS {
        assert_eq!(t.encode(text).unwrap(), h.encode(text).unwrap(), "{text:?}");
    }
}

#[test]
fn gguf_and_hf_agree() {
    let h = hf();
    let g = converted();
    assert_eq!(h.vocab_size(), g.vocab_size());
    assert_eq!(h.vocab_size(), 1532);
    for id in 0..h.vocab_size() as u32 + 8 {
        assert_eq!(h.token_str(id), g.token_str(id), "id {id}");
        assert_eq!(h.token_bytes(id), g.token_bytes(id), "id {id}");
    }
    for text in TEXTS {
        let ids = h.encode(text).unwrap();
        assert_eq!(g.encode(text).unwrap(), ids, "{text:?}");
        assert_eq!(h.decode(&ids), *text);
        assert_eq!(g.decode(&ids), *text);
    }
}

fn stream(t: &Tokenizer, ids: &[u32]) -> (String, bool) {
    let mut d = StreamDecoder::new();
    let mut out = String::new();
    let mut held = false;
    for &id in ids {
        out.push_str(&d.step(t, id));
        held |= d.pending() > 0;
    }
    out.push_str(&d.finish());
    (out, held)
}

#[test]
fn stream_decoder_matches_decode() {
    for t in [hf(), converted()] {
        for text in TEXTS {
            let ids = t.encode(text).unwrap();
            let (s, _) = stream(&t, &ids);
            assert_eq!(s, t.decode(&ids), "{text:?}");
            assert_eq!(s, *text);
        }
        // Multi-byte characters split over byte-level tokens are held back, never printed half.
        let text = "héllo wörld — 日本語 🙂";
        let ids = t.encode(text).unwrap();
        let (s, held) = stream(&t, &ids);
        assert_eq!(s, text);
        assert!(held, "expected some character to span tokens in {ids:?}");
        let mut d = StreamDecoder::new();
        for &id in &ids {
            let piece = d.step(&t, id);
            assert!(!piece.contains('\u{fffd}'), "piece {piece:?} of {text:?}");
        }
        assert_eq!(d.finish(), "");

        // Invalid output (a character's bytes with one token dropped) still matches decode's U+FFFD handling.
        let ids = t.encode("日本語🙂é").unwrap();
        for skip in 0..ids.len() {
            let mut broken = ids.clone();
            broken.remove(skip);
            assert_eq!(stream(&t, &broken).0, t.decode(&broken), "without token {skip}");
        }
        // Special tokens are shown.
        let think = t.token_id("<think>").unwrap();
        assert_eq!(stream(&t, &[think]).0, "<think>");
    }
}

#[test]
fn special_tokens_recognised_in_text() {
    for t in [hf(), converted()] {
        let user = t.token_id("<|user|>").unwrap();
        assert_eq!(user, 1507);
        assert_eq!(t.encode("<|user|>").unwrap(), vec![user]);
        let ids = t.encode("a<|user|>\nb<think></think>").unwrap();
        assert!(ids.contains(&user));
        assert!(ids.contains(&t.token_id("<think>").unwrap()));
        assert!(ids.contains(&t.token_id("</think>").unwrap()));
        assert_eq!(t.decode(&ids), "a<|user|>\nb<think></think>");
        // Nothing is prepended.
        assert_eq!(t.encode("[gMASK]<sop>").unwrap(), vec![1502, 1504]);
        assert_eq!(t.token_str(1502).as_deref(), Some("[gMASK]"));
        assert_eq!(t.token_id("no-such-token"), None);
    }
}

#[test]
fn eos_ids() {
    let h = hf();
    assert_eq!(h.eos_ids(), &[1500, 1507, 1509]);
    let g = converted();
    assert_eq!(g.eos_ids(), &[1500, 1507, 1509]);
    for t in [&h, &g] {
        assert!(t.is_eos(1500) && t.is_eos(1507) && t.is_eos(1509));
        assert!(!t.is_eos(1502) && !t.is_eos(0));
        for &id in t.eos_ids() {
            let s = t.decode(&[id]);
            assert_eq!(t.token_id(&s), Some(id));
            assert_eq!(t.encode(&s).unwrap(), vec![id]);
        }
    }

    // Without eos_token_id in config.json, tokenizer_config.json's eos_token is used.
    let dir = std::env::temp_dir().join(format!("glm-wgpu-tokenizer-{}-hfdir", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture_dir().join(f), dir.join(f)).unwrap();
    }
    let t = Tokenizer::from_hf_dir(&dir).unwrap();
    assert_eq!(t.eos_ids(), &[1500]);
    std::fs::write(dir.join("config.json"), r#"{"eos_token_id": 1509}"#).unwrap();
    assert_eq!(Tokenizer::from_hf_dir(&dir).unwrap().eos_ids(), &[1509]);
    std::fs::write(dir.join("config.json"), r#"{"eos_token_id": "x"}"#).unwrap();
    let err = format!("{:#}", Tokenizer::from_hf_dir(&dir).unwrap_err());
    assert!(err.contains("eos_token_id"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    // Only the eos/eot/eom ids present in the GGUF, deduplicated.
    let mut w = converter_writer();
    w.remove("tokenizer.ggml.eom_token_id");
    w.set("tokenizer.ggml.eot_token_id", MetaValue::U32(1500));
    assert_eq!(Tokenizer::from_gguf(&open_written(&w, "eos")).unwrap().eos_ids(), &[1500]);
}

#[test]
fn bad_files_give_clear_errors() {
    let mut w = converter_writer();
    w.set("tokenizer.ggml.model", MetaValue::String("llama".into()));
    let err = gguf_error(&w, "llama");
    assert!(err.contains("tokenizer.ggml.model") && err.contains("\"llama\""), "{err}");

    let mut w = converter_writer();
    w.set("tokenizer.ggml.pre", MetaValue::String("qwen2".into()));
    let err = gguf_error(&w, "qwen2");
    assert!(err.contains("tokenizer.ggml.pre") && err.contains("\"qwen2\""), "{err}");

    let mut w = converter_writer();
    w.remove("tokenizer.ggml.model");
    assert!(gguf_error(&w, "nomodel").contains("tokenizer.ggml.model"));

    let mut w = converter_writer();
    w.set("tokenizer.ggml.merges", MetaValue::Array(vec![MetaValue::String("nospace".into())]));
    assert!(gguf_error(&w, "merge").contains("tokenizer.ggml.merges[0]"));

    let mut w = converter_writer();
    w.set("tokenizer.ggml.merges", MetaValue::Array(vec![MetaValue::String("zzq zzq".into())]));
    assert!(gguf_error(&w, "merge-oov").contains("BPE"));

    let mut w = converter_writer();
    w.set("tokenizer.ggml.token_type", MetaValue::Array(vec![MetaValue::I32(1)]));
    assert!(gguf_error(&w, "types").contains("token_type"));

    let mut w = converter_writer();
    w.set("tokenizer.ggml.eos_token_id", MetaValue::U32(99999));
    assert!(gguf_error(&w, "eos-range").contains("eos_token_id"));

    let mut w = converter_writer();
    w.set("tokenizer.ggml.tokens", MetaValue::String("oops".into()));
    assert!(gguf_error(&w, "tokens").contains("tokenizer.ggml.tokens"));

    let err = format!("{:#}", Tokenizer::from_hf_dir("/nonexistent/glm").unwrap_err());
    assert!(err.contains("tokenizer.json"), "{err}");
}
