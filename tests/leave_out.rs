//! `Engine::leave_out` (what `bench --ablate` times) leaves exactly the named kernel's launches out
//! of decode steps, and puts them back.

mod common;

use common::*;
use glm_wgpu::engine::{Engine, EngineOptions, StepOutput};
use glm_wgpu::gpu::GpuContext;
use glm_wgpu::model::Model;

#[test]
fn left_out_launches_do_not_run() {
    let model = Model::open(&fixture_dir()).unwrap();
    let options = EngineOptions { ctx_len: 8, ..Default::default() };
    let mut e = Engine::load(GpuContext::new(None).expect("a GPU adapter"), &model, options).unwrap();
    assert!(e.decode_labels().iter().any(|(l, n)| l == "lm_head" && *n == 1));
    e.write_tokens(0, &[11, 22]).unwrap();
    e.step(StepOutput::Logits).unwrap();
    let first = e.logits().unwrap();

    // Without the LM head the logits buffer keeps the first position's logits.
    e.leave_out(Some("lm_head"));
    e.step(StepOutput::Logits).unwrap();
    assert_eq!(e.logits().unwrap(), first);

    // Back in, the second position gets its own.
    e.leave_out(None);
    e.truncate(1).unwrap();
    e.step(StepOutput::Logits).unwrap();
    let second = e.logits().unwrap();
    assert!(second.iter().zip(&first).any(|(a, b)| a != b));
}
