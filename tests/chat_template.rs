//! The chat template rendered with minijinja gives exactly what transformers' `apply_chat_template`
//! gives (tests/fixtures/chat/expectations.json, written by tools/make_chat_expectations.py), and the
//! template is found in, or missing from, each kind of model file.

use glm_wgpu::chat::{ChatTemplate, RenderOptions};
use glm_wgpu::gguf::{GgufFile, GgufWriter, MetaValue};
use glm_wgpu::model::Model;
use glm_wgpu::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expectations() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("chat/expectations.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn options(case: &Value) -> RenderOptions {
    RenderOptions {
        tools: case.get("tools").and_then(Value::as_array).cloned(),
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
        kwargs: case.get("kwargs").and_then(Value::as_object).cloned().unwrap_or_default(),
    }
}

#[test]
fn renders_exactly_as_transformers() {
    let dir = fixtures().join("glm-tiny");
    let model = Model::open(&dir).unwrap();
    let template = ChatTemplate::from_model(&model).unwrap();
    let tok = Tokenizer::from_hf_dir(&dir).unwrap();
    let cases = expectations();
    assert!(cases.len() >= 15);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let messages = case["messages"].as_array().unwrap();
        let got = template.render(messages, &options(case)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let want = case["expected"].as_str().unwrap();
        assert_eq!(got, want, "case {name}");
        let ids: Vec<u32> =
            case["expected_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(&got).unwrap(), ids, "token ids of case {name}");
    }
}

#[test]
fn explicit_template_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.jinja");
    std::fs::write(&f, "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}").unwrap();
    let model = Model::open(&fixtures().join("glm-tiny")).unwrap();
    let t = ChatTemplate::load(&model, Some(&f)).unwrap();
    let msgs = [serde_json::json!({"role": "user", "content": "hi"})];
    assert_eq!(t.render(&msgs, &RenderOptions::default()).unwrap(), "[user] hi\n");
    let err = ChatTemplate::load(&model, Some(&dir.path().join("missing.jinja"))).unwrap_err();
    assert!(format!("{err:#}").contains("cannot read the chat template"), "{err:#}");
}

#[test]
fn hf_directory_without_a_template_is_a_clear_error() {
    let src = fixtures().join("glm-tiny");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let model = Model::open(dir.path()).unwrap();
    let err = format!("{:#}", ChatTemplate::from_model(&model).unwrap_err());
    assert!(err.contains("has no chat template") && err.contains("--chat-template FILE"), "{err}");
}

#[test]
fn gguf_template_metadata() {
    let g = GgufFile::open(&fixtures().join("glm-tiny-bf16.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Without the key: a clear error.
    let mut w = GgufWriter::from_file(&g);
    w.remove("tokenizer.chat_template");
    let without = dir.path().join("without.gguf");
    std::fs::write(&without, w.to_bytes()).unwrap();
    let err = format!("{:#}", ChatTemplate::from_model(&Model::open(&without).unwrap()).unwrap_err());
    assert!(err.contains("no tokenizer.chat_template") && err.contains("--chat-template FILE"), "{err}");
    // With the real template under tokenizer.chat_template: renders like the HF directory.
    let source = std::fs::read_to_string(fixtures().join("glm-tiny/tokenizer_config.json")).unwrap();
    let source: Value = serde_json::from_str(&source).unwrap();
    let mut w = GgufWriter::from_file(&g);
    w.set("tokenizer.chat_template", MetaValue::String(source["chat_template"].as_str().unwrap().into()));
    let with = dir.path().join("with.gguf");
    std::fs::write(&with, w.to_bytes()).unwrap();
    let t = ChatTemplate::from_model(&Model::open(&with).unwrap()).unwrap();
    let case = &expectations()[0];
    assert_eq!(
        t.render(case["messages"].as_array().unwrap(), &options(case)).unwrap(),
        case["expected"].as_str().unwrap()
    );
}
