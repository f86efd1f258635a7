//! `glm-wgpu perplexity` against transformers, and KL divergence between files of the same model.

mod common;

use common::fixture_dir;
use common::quantized::{q4_k_m_plan, quantized_model};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    fixture_dir().parent().unwrap().to_path_buf()
}

/// Runs `perplexity` and returns its stdout's `name: value` numbers.
fn perplexity(model: &Path, text: &Path, extra: &[&str]) -> std::collections::HashMap<String, f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_glm-wgpu"))
        .args(["perplexity", "-m", model.to_str().unwrap(), "-f", text.to_str().unwrap(), "--ctx", "128"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "perplexity failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim_end_matches('%').parse().ok()?))
        })
        .collect()
}

#[test]
fn perplexity_equals_transformers() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("perplexity.json")).unwrap()).unwrap();
    let want = want["perplexity"].as_f64().unwrap();
    let got = perplexity(&fixture_dir(), &fixtures().join("perplexity.txt"), &[])["perplexity"];
    let rel = (got - want).abs() / want;
    eprintln!("perplexity {got:.6}, transformers {want:.6}, relative difference {rel:.2e}");
    assert!(rel < 2e-4, "perplexity {got} vs transformers' {want}");
}

#[test]
fn kl_divergence_against_saved_logits() {
    let dir = tempfile::tempdir().unwrap();
    // Two chunks of the text keep this quick on a CPU Vulkan driver.
    let text = dir.path().join("short.txt");
    let full = std::fs::read_to_string(fixtures().join("perplexity.txt")).unwrap();
    std::fs::write(&text, full.split("\n\n").take(2).collect::<Vec<_>>().join("\n\n")).unwrap();
    let base = dir.path().join("bf16.kl");
    perplexity(&fixture_dir(), &text, &["--save-logits", base.to_str().unwrap()]);
    let kl_arg = ["--kl-base", base.to_str().unwrap()];

    let same = perplexity(&fixtures().join("glm-tiny-bf16.gguf"), &text, &kl_arg);
    assert!(same["mean KL divergence"] < 1e-5, "the bf16 GGUF is the same model: {same:?}");
    assert_eq!(same["same top token"], 100.0);

    let q8 = perplexity(&fixtures().join("glm-tiny-q8_0.gguf"), &text, &kl_arg);
    assert!(q8["mean KL divergence"] > 1e-5 && q8["mean KL divergence"] < 0.05, "{q8:?}");
    assert!(q8["same top token"] > 70.0, "{q8:?}");

    let q4km = perplexity(&quantized_model(dir.path(), "q4_k_m.gguf", q4_k_m_plan), &text, &kl_arg);
    eprintln!("KL from bf16: Q8_0 {q8:?}, Q4_K_M {q4km:?}");
    assert!(q8["mean KL divergence"] < q4km["mean KL divergence"], "Q8_0 must be closer to bf16 than Q4_K_M");
    assert!(q8["same top token"] >= q4km["same top token"]);
}
