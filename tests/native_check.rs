//! The start-up check of native pipelines against their WGSL twins rejects a deliberately broken one
//! (`GLM_WGPU_FAULT_NATIVE` turns the first float addition of that kernel's SPIR-V into a
//! subtraction): the engine says which pipeline and by how much, builds it from WGSL instead, and
//! gives the WGSL engine's logits and greedy tokens. Its own test binary: the variable is
//! process-wide.

mod common;

use common::*;
use glm_wgpu::engine::{CoopMatrix, Engine, EngineOptions, StepOutput};
use glm_wgpu::gpu::native::{KernelChoice, FAULT_ENV};
use glm_wgpu::gpu::GpuContext;
use glm_wgpu::model::Model;

fn run(model: &Model, prompt: &[u32], kernels: KernelChoice) -> (Vec<f32>, Vec<u32>, Vec<String>) {
    let options = EngineOptions {
        ctx_len: 64,
        kv_f16: false,
        prefill_chunk: 4,
        kernels,
        coop_matrix: CoopMatrix::Off,
        ..Default::default()
    };
    let mut e = Engine::load(GpuContext::new(None).unwrap(), model, options).unwrap();
    e.write_tokens(0, prompt).unwrap();
    e.prefill(prompt.len() - 1).unwrap();
    e.step(StepOutput::Logits).unwrap();
    let logits = e.logits().unwrap();
    e.reset();
    e.write_tokens(0, prompt).unwrap();
    e.prefill(prompt.len() - 1).unwrap();
    let mut tokens = Vec::new();
    for _ in 0..8 {
        e.step(StepOutput::Greedy).unwrap();
        tokens.push(e.next_token().unwrap());
    }
    (logits, tokens, e.kernel_notes.clone())
}

/// The checkpoint (f32 inputs) and the Q8_0 file (int8 inputs: products storing their outputs
/// rounded, compared quant by quant).
#[test]
fn broken_native_pipelines_are_rejected() {
    let r = load_reference();
    for path in [fixture_dir(), fixture_dir().with_file_name("glm-tiny-q8_0.gguf")] {
        let model = Model::open(&path).unwrap();
        let (want_logits, want_tokens, _) = run(&model, &r.prompt_ids, KernelChoice::Wgsl);
        let file = path.display();

        // Unbroken: every native pipeline passes.
        let (logits, tokens, notes) = run(&model, &r.prompt_ids, KernelChoice::Native);
        assert!(notes.iter().any(|n| n.starts_with("native pipelines:")), "{file}: {notes:?}");
        assert!(!notes.iter().any(|n| n.contains("disagrees")), "{file}: {notes:?}");
        assert_close(&format!("{file}: native logits"), &logits, &want_logits, 1e-5);
        assert_eq!(tokens, want_tokens, "{file}");

        // The decode matvec broken, then the prefill matmul.
        for kernel in ["matvec", "matmul"] {
            std::env::set_var(FAULT_ENV, kernel);
            let (logits, tokens, notes) = run(&model, &r.prompt_ids, KernelChoice::Native);
            std::env::remove_var(FAULT_ENV);
            let rejected: Vec<&String> = notes.iter().filter(|n| n.contains("disagrees")).collect();
            assert!(!rejected.is_empty(), "{file}, {kernel}: nothing rejected: {notes:?}");
            assert!(rejected.iter().all(|n| n.starts_with(&format!("native {kernel} at "))), "{rejected:?}");
            eprintln!("{file}, {kernel}: {rejected:?}");
            assert_close(&format!("{file}, {kernel} broken: logits"), &logits, &want_logits, 1e-5);
            assert_eq!(tokens, want_tokens, "{file}, {kernel} broken: greedy tokens");
        }
    }
}
