//! What can be checked of the Metal path on Linux: every kernel the engine launches (decode step
//! and prefill chunk, for the bf16 checkpoint and the Q8_0 file, with int8 and f32 inputs) is
//! translated to MSL by naga's Metal backend, the translator wgpu's Metal backend uses for WGSL
//! (asked for MSL 2.4, Apple7/M1; naga does not check what each construct needs of the version). A
//! kernel naga could not translate would fail to build on a Mac. The kernels are the ones built for
//! lavapipe's adapter (subgroups of 8), so the subgroup reductions are among them. The
//! cooperative-matrix kernels are left out: wgpu exposes only 8×8 f32 cooperative matrices on
//! Metal, so the engine never builds them there. Whether Metal's compiler accepts the MSL is not
//! checked (no Metal compiler on Linux).

mod common;

use common::*;
use glm_wgpu::engine::{CoopMatrix, Engine, EngineOptions};
use glm_wgpu::gpu::GpuContext;
use glm_wgpu::model::Model;
use std::path::PathBuf;

fn msl(source: &str) -> Result<String, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| format!("{e:?}"))?;
    let options = naga::back::msl::Options { lang_version: (2, 4), ..Default::default() };
    let pipeline = naga::back::msl::PipelineOptions { entry_point: None, ..Default::default() };
    naga::back::msl::write_string(&module, &info, &options, &pipeline).map(|(s, _)| s).map_err(|e| format!("{e:?}"))
}

#[test]
fn every_kernel_translates_to_msl() {
    let gguf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm-tiny-q8_0.gguf");
    let mut checked = std::collections::BTreeSet::new();
    for (path, int8) in [(fixture_dir(), false), (gguf.clone(), true), (gguf, false)] {
        let model = Model::open(&path).unwrap();
        let options = EngineOptions {
            ctx_len: 64,
            int8_activations: int8,
            prefill_chunk: 8,
            coop_matrix: CoopMatrix::Off,
            ..Default::default()
        };
        let e = Engine::load(GpuContext::new(None).unwrap(), &model, options).unwrap();
        for k in e.kernels() {
            let out = msl(&k.source)
                .unwrap_or_else(|err| panic!("{}: naga cannot write MSL for {}: {err}", path.display(), k.name));
            assert!(out.contains("kernel void"), "{}: no kernel entry point in the MSL", k.name);
            checked.insert(k.name.clone());
        }
    }
    eprintln!("translated to MSL: {checked:?}");
    for name in ["matvec", "matmul", "mla_attention", "mla_attention_prefill", "moe_group", "input_rows", "argmax"] {
        assert!(checked.contains(name), "{name} was not among the kernels checked: {checked:?}");
    }
}
