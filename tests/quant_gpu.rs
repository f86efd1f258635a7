//! The quantized formats on the GPU: dequantization of gguf-py's test blocks (tests/fixtures/quant, extreme
//! scales included) bit for bit through the embedding kernel, and the tiny model quantized to each type and
//! to a Q4_K_M-style mix, GPU logits and greedy tokens against the CPU reference forward on the same file;
//! the synthetic (random, GPU-filled) weights of `bench --synthetic`.
//! (Every matvec path over every format on random shapes is in tests/kernels.rs.)

mod common;

use common::quantized::{q4_k_m_plan, quantized_model};
use common::{assert_close, load_reference, REL_TOL};
use glm_wgpu::engine::{Engine, EngineOptions, QuantMix, StepOutput};
use glm_wgpu::gpu::{GpuContext, GpuWeight, KernelCache};
use glm_wgpu::kernels::embed::embed;
use glm_wgpu::kernels::random_weight::{layout, word, Field};
use glm_wgpu::kernels::Step;
use glm_wgpu::model::{Model, ModelConfig, TensorData};
use glm_wgpu::quant::GgmlType;
use glm_wgpu::reference::CpuReference;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn gpu() -> GpuContext {
    GpuContext::new(None).expect("a GPU adapter (on CI: lavapipe)")
}

fn quant_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant").join(name)
}

/// Every block of gguf-py's vectors, as rows of an embedding table, looked up on the GPU: each element's
/// bits equal gguf-py's dequantization (NaN where it has NaN). This runs the format's WGSL `load_chunk` on
/// 65504 and subnormal f16 scales, ±0, ±inf, NaN and all-0 / all-1 quants.
#[test]
fn gpu_dequantization_matches_gguf_py_bit_for_bit() {
    let ctx = gpu();
    let mut kc = KernelCache::default();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(quant_fixture("index.json")).unwrap()).unwrap();
    for e in index["types"].as_array().unwrap() {
        let t = GgmlType::from_name(e["type"].as_str().unwrap()).unwrap();
        let mut data = std::fs::read(quant_fixture(e["data"].as_str().unwrap())).unwrap();
        let want: Vec<f32> = std::fs::read(quant_fixture(e["values"].as_str().unwrap()))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // Rows of 2048 weights; zero blocks pad the last row.
        let cols = 2048;
        let per_row = cols / t.block_elems();
        let blocks = data.len() / t.block_bytes();
        let rows = blocks.div_ceil(per_row);
        data.resize(rows * per_row * t.block_bytes(), 0);
        let td = TensorData { ggml_type: t, shape: vec![rows, cols], bytes: Cow::Owned(data) };
        let table = GpuWeight::upload(&ctx, "table", &td).unwrap();
        let tokens: Vec<u32> = (0..rows as u32).collect();
        let tb = ctx.storage_init("tokens", bytemuck::cast_slice(&tokens)).unwrap();
        let (mut nan, mut checked) = (0, 0);
        for row in 0..rows {
            let pad = 4;
            let x0 = vec![0x7fc0_0000u32; cols + pad];
            let xb = ctx.storage_init("x", bytemuck::cast_slice(&x0)).unwrap();
            let sb = ctx.uniform("step", bytemuck::bytes_of(&Step::at(row, false)));
            let d = embed(&ctx, &mut kc, &table, 1, &sb, &tb, &xb).unwrap();
            ctx.run(&[&d]).unwrap();
            let x: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_buffer(&xb, 0, (cols + pad) as u64 * 4).unwrap());
            for (i, &bits) in x[..cols].iter().enumerate() {
                let k = row * cols + i;
                if k >= want.len() {
                    break;
                }
                let (g, w) = (f32::from_bits(bits), want[k]);
                let ok = bits == w.to_bits() || (g.is_nan() && w.is_nan());
                assert!(
                    ok,
                    "{}: element {k} (block {}, index {}) is {g:e} ({:#010x}) on the GPU, gguf-py gives {w:e} ({:#010x})",
                    t.name(),
                    k / t.block_elems(),
                    k % t.block_elems(),
                    bits,
                    w.to_bits()
                );
                nan += w.is_nan() as usize;
                checked += 1;
            }
            assert!(x[cols..].iter().all(|&v| v == 0x7fc0_0000), "{}: embed wrote past the row", t.name());
        }
        println!("[quant_gpu] {:<7} {checked} values bit-exact on the GPU ({nan} NaN)", t.name());
    }
}

// ---------------------------------------------------------------------------------------------
// The tiny model, quantized
// ---------------------------------------------------------------------------------------------

/// The type where the row length allows it, else the fallback llama.cpp's quantizer picks for rows that are
/// not whole super-blocks (`tensor_type_fallback`): IQ4_NL for Q2_K, Q3_K and IQ4_XS, Q5_0 for Q4_K, Q5_1
/// for Q5_K, Q8_0 for Q6_K. Here that is `attn_k_b` (64-long rows) and `attn_output` (384).
fn uniform_plan(t: GgmlType) -> impl Fn(&str, usize) -> GgmlType {
    move |_, row| {
        if row.is_multiple_of(t.block_elems()) {
            return t;
        }
        match t {
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Iq4Xs => GgmlType::Iq4Nl,
            GgmlType::Q4K => GgmlType::Q5_0,
            GgmlType::Q5K => GgmlType::Q5_1,
            GgmlType::Q6K => GgmlType::Q8_0,
            _ => unreachable!("{} has 32-weight blocks", t.name()),
        }
    }
}

/// The fallback type the uniform `t` model also holds, if any.
fn fallback(t: GgmlType) -> Option<GgmlType> {
    (t.block_elems() == 256).then(|| uniform_plan(t)("", 64))
}

/// GPU logits at every prompt position and 32 greedy steps (logits and tokens) against the CPU reference
/// forward on the same file.
fn check_model(path: &Path, label: &str, expect_types: &[GgmlType]) {
    let start = Instant::now();
    let r = load_reference();
    let model = Model::open(path).unwrap();
    let mut present: Vec<GgmlType> = glm_wgpu::model::expected_tensors(&model.config)
        .into_iter()
        .map(|(n, _)| model.tensor_meta(&n).unwrap().0)
        .collect();
    present.sort_by_key(|t| t.id());
    present.dedup();
    for t in expect_types {
        assert!(present.contains(t), "{label}: the model has no {} tensor ({present:?})", t.name());
    }
    let cpu = CpuReference::load(&model).unwrap();
    // An f32 latent cache, as the CPU reference keeps: the f16 cache's rounding (≈5e-4 of the logits here)
    // would hide kernel errors and, on a near-tie, flip a routed expert (tests/gpu_parity.rs covers f16).
    let opts = EngineOptions { ctx_len: 64, kv_f16: false, int8_activations: false, ..Default::default() };
    let mut e = Engine::load(gpu(), &model, opts).unwrap();

    let mut cache = cpu.new_cache();
    e.reset();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    let mut worst = 0f32;
    let mut want = Vec::new();
    for (pos, &t) in r.prompt_ids.iter().enumerate() {
        want = cpu.step(&mut cache, t, None);
        e.step(StepOutput::Logits).unwrap();
        worst =
            worst.max(assert_close(&format!("{label} prompt logits at {pos}"), &e.logits().unwrap(), &want, REL_TOL));
    }

    // Greedy: the GPU picks and feeds its own tokens; each must be the CPU's choice.
    e.reset();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    for _ in 0..r.prompt_ids.len() - 1 {
        e.step(StepOutput::CacheOnly).unwrap();
    }
    let mut tokens = Vec::new();
    for i in 0..32 {
        e.step(StepOutput::Greedy).unwrap();
        let tok = e.next_token().unwrap();
        worst = worst.max(assert_close(&format!("{label} greedy logits {i}"), &e.logits().unwrap(), &want, REL_TOL));
        let cpu_tok = common::argmax(&want) as u32;
        assert_eq!(tok, cpu_tok, "{label}: greedy token {i} (after {tokens:?})");
        tokens.push(tok);
        want = cpu.step(&mut cache, tok, None);
    }
    println!(
        "[quant_gpu] {label:<8} worst logit error {worst:.2e} of max |logit|, 32 greedy tokens equal ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
}

fn uniform_model(t: GgmlType) {
    let dir = tempfile::tempdir().unwrap();
    let p = quantized_model(dir.path(), "m.gguf", uniform_plan(t));
    let expect: Vec<GgmlType> = [Some(t), fallback(t)].into_iter().flatten().collect();
    check_model(&p, t.name(), &expect);
}

#[test]
fn tiny_model_q4_0() {
    uniform_model(GgmlType::Q4_0);
}

#[test]
fn tiny_model_q5_0() {
    uniform_model(GgmlType::Q5_0);
}

#[test]
fn tiny_model_q2_k() {
    uniform_model(GgmlType::Q2K);
}

#[test]
fn tiny_model_q3_k() {
    uniform_model(GgmlType::Q3K);
}

#[test]
fn tiny_model_q4_k() {
    uniform_model(GgmlType::Q4K);
}

#[test]
fn tiny_model_q5_k() {
    uniform_model(GgmlType::Q5K);
}

#[test]
fn tiny_model_q6_k() {
    uniform_model(GgmlType::Q6K);
}

#[test]
fn tiny_model_iq4_xs() {
    uniform_model(GgmlType::Iq4Xs);
}

#[test]
fn tiny_model_q4_k_m_mix() {
    let dir = tempfile::tempdir().unwrap();
    let p = quantized_model(dir.path(), "q4_k_m.gguf", q4_k_m_plan);
    check_model(&p, "Q4_K_M", &[GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::F32]);
}

/// Int8 activations (the engine's default) on the Q4_K_M mix: teacher-forced prompt logits against the
/// CPU reference rounding the same inputs to int8. The rounding itself is bit-exact on both sides
/// (tests/kernels.rs), but it is a step function: where a sum that differs in its last bits between the
/// GPU's and the CPU's summation order lands next to a rounding boundary, one int8 moves by a step, and
/// on this random tiny model that grows to ~1-3e-2 of the logits within three layers (measured on
/// lavapipe: some step at nearly every position after the first). So: the first position, whose inputs
/// are identical on both sides, agrees to the parity tolerance (the engine against the f32-input reference
/// misses it by 2.5e-2: a missing or wrong rounding shows there); later ones within 5e-2, the size of
/// such steps. Except where such differences can change a discrete choice: at a position whose
/// reference routing came within NEAR_TIE of picking another expert, the GPU may pick it (position 20
/// of this prompt did, 1.5e-1 off, at margins of 2.7e-3 and 1.4e-3 once the absorbed query's Q8_0
/// rounding moved the trajectories; NEAR_TIE is twice the smaller): those are held to 0.5 only, and
/// may be at most a quarter of the prompt (3 of 25 now).
#[test]
fn int8_activations_match_the_cpu_reference() {
    const NEAR_TIE: f32 = 3e-3;
    let dir = tempfile::tempdir().unwrap();
    let p = quantized_model(dir.path(), "q4_k_m.gguf", q4_k_m_plan);
    let r = load_reference();
    let model = Model::open(&p).unwrap();
    let cpu = CpuReference::load_with(&model, true).unwrap();
    let opts = EngineOptions { ctx_len: 64, kv_f16: false, int8_activations: true, ..Default::default() };
    let mut e = Engine::load(gpu(), &model, opts).unwrap();
    let mut cache = cpu.new_cache();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    let (mut worst, mut near_ties) = (0f32, Vec::new());
    for (pos, &t) in r.prompt_ids.iter().enumerate() {
        let want = cpu.step(&mut cache, t, None);
        e.step(StepOutput::Logits).unwrap();
        let near_tie = pos > 0 && cpu.last_route_margin() < NEAR_TIE;
        let tol = if pos == 0 {
            REL_TOL
        } else if near_tie {
            near_ties.push(pos);
            0.5
        } else {
            5e-2
        };
        let err = assert_close(&format!("int8 Q4_K_M prompt logits at {pos}"), &e.logits().unwrap(), &want, tol);
        if !near_tie {
            worst = worst.max(err);
        }
    }
    assert!(
        near_ties.len() * 4 <= r.prompt_ids.len(),
        "routing near a tie at {} of {} positions ({near_ties:?}): too few left to check",
        near_ties.len(),
        r.prompt_ids.len()
    );
    println!(
        "[quant_gpu] int8 activations: worst prompt logit error {worst:.2e} of max |logit|, routing near a tie \
         (held to 0.5) at positions {near_ties:?}"
    );
}

/// `bench --synthetic`: every format's random fill equals its CPU twin word for word, and its scale
/// fields decode to the ranges the kernel promises.
#[test]
fn random_weights_match_their_cpu_twin() {
    let ctx = gpu();
    let mut kc = KernelCache::new(true);
    let cases: [(GgmlType, &[usize]); 9] = [
        (GgmlType::F32, &[3, 700]),
        (GgmlType::Q8_0, &[5, 96]),
        (GgmlType::Q4K, &[130, 512]),
        (GgmlType::Q5K, &[3, 768]),
        (GgmlType::Q3K, &[2, 512]),
        (GgmlType::Q2K, &[3, 256]),
        (GgmlType::Q4_0, &[5, 96]),
        (GgmlType::Q4_1, &[2, 64]),
        (GgmlType::Q6K, &[2, 3, 256]),
    ];
    for (t, shape) in cases {
        let seed = 7;
        let w = GpuWeight::random(&ctx, &mut kc, "w", t, shape, seed).unwrap();
        let l = layout(t).unwrap();
        let groups = l.groups(shape.iter().product());
        for (buf, n, seed, recipe) in [
            (&w.words, groups * l.words_per_group, 2 * seed, l.words),
            (&w.scales, groups * l.scales_per_group, 2 * seed + 1, l.scales),
        ] {
            let got: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_buffer(buf, 0, n as u64 * 4).unwrap());
            for (i, &g) in got.iter().enumerate() {
                let want = word(i as u32, seed, recipe);
                assert_eq!(g, want, "{}: word {i} of {n}", t.name());
                let place = i as u32 % recipe.stride;
                if place < recipe.at {
                    continue;
                }
                let ok = match recipe.field {
                    Field::Bits => true,
                    Field::ScaleMins => {
                        let k = place - recipe.at;
                        // d and dmin: the same in every vec4 of the super-block.
                        let first_vec4 = got[i - 4 * (k / 4) as usize];
                        match k % 4 {
                            0 => first_vec4 == g && (2f32.powi(-10)..2f32.powi(-8)).contains(&f32::from_bits(g)),
                            1 => first_vec4 == g && (2f32.powi(-11)..2f32.powi(-10)).contains(&f32::from_bits(g)),
                            _ => g & 0xc0c0_c0c0 == 0,
                        }
                    }
                    Field::F32Scale => (2f32.powi(-10)..2f32.powi(-8)).contains(&f32::from_bits(g)),
                    Field::F16Scales => [g as u16, (g >> 16) as u16]
                        .iter()
                        .all(|&h| (2f32.powi(-10)..2f32.powi(-8)).contains(&half::f16::from_bits(h).to_f32())),
                    Field::F32Weight => (2f32.powi(-7)..2f32.powi(-5)).contains(&f32::from_bits(g).abs()),
                };
                assert!(ok, "{}: word {i} = {g:#010x} is out of its field's range", t.name());
            }
        }
    }
}

/// A synthetic model of each mix (the tiny fixture's shape) has the mix's types and decodes greedy
/// tokens with finite, non-constant logits.
#[test]
fn synthetic_models_decode() {
    let c = ModelConfig::from_hf_file(&common::fixture_dir().join("config.json")).unwrap();
    for (mix, q_a, output) in
        [(QuantMix::Q4KM, GgmlType::Q4K, GgmlType::Q6K), (QuantMix::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0)]
    {
        let opts = EngineOptions { ctx_len: 16, ..Default::default() };
        let mut e = Engine::synthetic(gpu(), &c, mix, opts).unwrap();
        assert_eq!(e.weights.layers[1].q_a.ggml_type, q_a, "{mix:?}");
        assert_eq!(e.weights.output.ggml_type, output, "{mix:?}");
        e.write_tokens(0, &[3, 1000]).unwrap();
        e.step(StepOutput::CacheOnly).unwrap();
        for _ in 0..4 {
            e.step(StepOutput::Greedy).unwrap();
            let tok = e.next_token().unwrap();
            let logits = e.logits().unwrap();
            assert!(logits.iter().all(|v| v.is_finite()), "{mix:?}: non-finite logits");
            assert_eq!(tok as usize, common::argmax(&logits), "{mix:?}: greedy token");
            let (lo, hi) = logits.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            assert!(hi > lo, "{mix:?}: constant logits");
        }
    }
}
