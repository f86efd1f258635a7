//! The CPU reference forward against what transformers computed for the tiny fixture model.

mod common;

use common::{argmax, assert_close, fixture_dir, load_reference, REL_TOL};
use glm_wgpu::model::Model;
use glm_wgpu::reference::CpuReference;

fn reference_model() -> CpuReference {
    let model = Model::open(&fixture_dir()).expect("open fixture model");
    CpuReference::load(&model).expect("load CPU reference")
}

#[test]
fn prompt_logits_and_hidden_states() {
    let r = load_reference();
    let cpu = reference_model();
    let n_hidden = cpu.config().n_layers + 1;
    assert_eq!(r.prompt_hidden.len(), n_hidden);
    let mut cache = cpu.new_cache();
    let (mut worst_logits, mut worst_hidden) = (0.0f32, vec![0.0f32; n_hidden]);
    for (pos, &tok) in r.prompt_ids.iter().enumerate() {
        let mut hidden = Vec::new();
        let logits = cpu.step(&mut cache, tok, Some(&mut hidden));
        assert_eq!(hidden.len(), n_hidden);
        let e = assert_close(&format!("prompt logits @{pos}"), &logits, r.prompt_logits.row(pos), REL_TOL);
        worst_logits = worst_logits.max(e);
        for (i, h) in hidden.iter().enumerate() {
            let e = assert_close(&format!("hidden state {i} @{pos}"), h, r.hidden(i, pos), REL_TOL);
            worst_hidden[i] = worst_hidden[i].max(e);
        }
    }
    assert_eq!(cache.len(), r.prompt_ids.len());
    let hidden: Vec<String> = worst_hidden.iter().map(|e| format!("{e:.3e}")).collect();
    eprintln!("prompt logits: max rel err {worst_logits:.3e}; hidden states: [{}]", hidden.join(", "));
}

#[test]
fn greedy_decode_with_cache() {
    let r = load_reference();
    let cpu = reference_model();
    let mut cache = cpu.new_cache();
    let mut logits = Vec::new();
    for &tok in &r.prompt_ids {
        logits = cpu.step(&mut cache, tok, None);
    }
    let mut worst = 0.0f32;
    let mut got_tokens = Vec::new();
    for (i, &want_tok) in r.greedy_tokens.iter().enumerate() {
        worst = worst.max(assert_close(&format!("greedy logits {i}"), &logits, r.greedy_logits.row(i), REL_TOL));
        let tok = argmax(&logits) as u32;
        got_tokens.push(tok);
        assert_eq!(tok, want_tok, "greedy token {i} differs (so far {got_tokens:?})");
        logits = cpu.step(&mut cache, tok, None);
    }
    eprintln!("greedy: {} tokens match; logits max rel err {worst:.3e}", got_tokens.len());
}

#[test]
fn long_context_last_logits() {
    let r = load_reference();
    let cpu = reference_model();
    let mut cache = cpu.new_cache();
    let n = r.long_ids.len();
    let first = n - r.long_logits_last16.len();
    let mut worst = 0.0f32;
    for (pos, &tok) in r.long_ids.iter().enumerate() {
        let logits = cpu.step(&mut cache, tok, None);
        if pos >= first {
            let e =
                assert_close(&format!("long logits @{pos}"), &logits, r.long_logits_last16.row(pos - first), REL_TOL);
            worst = worst.max(e);
        }
    }
    eprintln!("long ({n} tokens): last 16 logits max rel err {worst:.3e}");
}
