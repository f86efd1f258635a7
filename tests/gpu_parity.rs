//! The GPU forward against transformers' reference outputs (tiny fixture) and, for quantized files,
//! against the CPU reference forward on the same dequantized weights.

mod common;

use common::{assert_close, fixture_dir, load_reference, Reference, REL_TOL};
use glm_wgpu::engine::{CoopMatrix, Engine, EngineOptions, StepOutput};
use glm_wgpu::generate::{generate, GenerateRequest};
use glm_wgpu::gpu::native::KernelChoice;
use glm_wgpu::gpu::GpuContext;
use glm_wgpu::kernels::mla_attention::{COOP_CONTEXT, MERGED_CONTEXT, SHORT_CONTEXT};
use glm_wgpu::model::{Model, ModelConfig};
use glm_wgpu::reference::{CpuReference, KvCache};
use glm_wgpu::sampling::SamplingParams;
use std::path::PathBuf;

fn gguf(name: &str) -> PathBuf {
    fixture_dir().parent().unwrap().join(name)
}

/// An engine with f32 activations, as the CPU reference computes (int8 activations: tests/quant_gpu.rs).
fn engine(model: &Model, kv_f16: bool, capture_hidden: bool) -> Engine {
    let options = EngineOptions { ctx_len: 320, kv_f16, capture_hidden, int8_activations: false, ..Default::default() };
    Engine::load(GpuContext::new(None).expect("a GPU adapter (on CI: lavapipe)"), model, options).unwrap()
}

/// Logits at every prompt position (and, with capture, every layer's output) against the reference.
fn check_prompt(e: &mut Engine, r: &Reference, check_hidden: bool) -> f32 {
    e.reset();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    let mut worst = 0f32;
    for pos in 0..r.prompt_ids.len() {
        e.step(StepOutput::Logits).unwrap();
        let err =
            assert_close(&format!("prompt logits at {pos}"), &e.logits().unwrap(), r.prompt_logits.row(pos), REL_TOL);
        worst = worst.max(err);
        if check_hidden {
            for (i, h) in e.hidden_states().unwrap().iter().enumerate() {
                assert_close(&format!("hidden state {i} at {pos}"), h, r.hidden(i, pos), REL_TOL);
            }
        }
    }
    worst
}

/// Greedy decoding one synchronous step at a time, checking each step's logits and token.
fn check_greedy(e: &mut Engine, r: &Reference) {
    e.reset();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    for _ in 0..r.prompt_ids.len() - 1 {
        e.step(StepOutput::CacheOnly).unwrap();
    }
    for (i, &want) in r.greedy_tokens.iter().enumerate() {
        e.step(StepOutput::Greedy).unwrap();
        let tok = e.next_token().unwrap();
        assert_close(&format!("greedy logits {i}"), &e.logits().unwrap(), r.greedy_logits.row(i), REL_TOL);
        assert_eq!(tok, want, "greedy token {i}");
    }
}

/// The pipelined token loop (GPU running ahead) produces the same tokens.
fn pipelined_greedy(e: &mut Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let req = GenerateRequest { prompt, max_new: n, sampling: SamplingParams::default(), stop_ids: &[] };
    let stats = generate(e, &req, |t| {
        out.push(t);
        Ok(true)
    })
    .unwrap();
    assert_eq!(stats.generated, n);
    out
}

fn check_long(e: &mut Engine, r: &Reference) {
    e.reset();
    e.write_tokens(0, &r.long_ids).unwrap();
    let n = r.long_ids.len();
    for pos in 0..n {
        let last16 = pos + 16 >= n;
        e.step(if last16 { StepOutput::Logits } else { StepOutput::CacheOnly }).unwrap();
        if last16 {
            let row = r.long_logits_last16.row(pos + 16 - n);
            assert_close(&format!("long logits at {pos}"), &e.logits().unwrap(), row, REL_TOL);
        }
    }
}

/// The 300-token sequence from an empty cache, all but its last 16 through `Engine::prefill`, then
/// token steps whose logits must match transformers' within `tol`; the largest error seen.
fn check_long_prefilled(e: &mut Engine, r: &Reference, label: &str, tol: f32) -> f32 {
    e.reset();
    let long = r.long_ids.len();
    e.write_tokens(0, &r.long_ids).unwrap();
    e.prefill(long - 16).unwrap();
    let mut worst = 0f32;
    for i in 0..16 {
        e.step(StepOutput::Logits).unwrap();
        let row = r.long_logits_last16.row(i);
        worst = worst.max(assert_close(&format!("{label}: long logits {i}"), &e.logits().unwrap(), row, tol));
    }
    worst
}

#[test]
fn hf_checkpoint_matches_transformers() {
    let r = load_reference();
    let model = Model::open(&fixture_dir()).unwrap();
    let mut e = engine(&model, true, true);
    let worst = check_prompt(&mut e, &r, true);
    eprintln!("f16 cache: worst prompt logit error {worst:.2e} of max |logit|");
    check_greedy(&mut e, &r);
    assert_eq!(pipelined_greedy(&mut e, &r.prompt_ids, r.greedy_tokens.len()), r.greedy_tokens);
    check_long(&mut e, &r);
}

#[test]
fn f32_kv_cache_matches_transformers() {
    let r = load_reference();
    let model = Model::open(&fixture_dir()).unwrap();
    let mut e = engine(&model, false, false);
    let worst = check_prompt(&mut e, &r, false);
    eprintln!("f32 cache: worst prompt logit error {worst:.2e} of max |logit|");
    check_greedy(&mut e, &r);
    check_long(&mut e, &r);
}

#[test]
fn bf16_gguf_matches_transformers() {
    let r = load_reference();
    let model = Model::open(&gguf("glm-tiny-bf16.gguf")).unwrap();
    let mut e = engine(&model, true, true);
    check_prompt(&mut e, &r, true);
    check_greedy(&mut e, &r);
}

#[test]
fn q8_0_gguf_matches_the_cpu_reference() {
    let r = load_reference();
    let model = Model::open(&gguf("glm-tiny-q8_0.gguf")).unwrap();
    let cpu = CpuReference::load(&model).unwrap();
    let mut e = engine(&model, true, false);

    let mut cache = cpu.new_cache();
    e.reset();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    for (pos, &t) in r.prompt_ids.iter().enumerate() {
        let want = cpu.step(&mut cache, t, None);
        e.step(StepOutput::Logits).unwrap();
        assert_close(&format!("q8_0 prompt logits at {pos}"), &e.logits().unwrap(), &want, REL_TOL);
    }

    let n = 32;
    let mut cpu_tokens = Vec::new();
    let mut cache = cpu.new_cache();
    let mut logits = Vec::new();
    for &t in &r.prompt_ids {
        logits = cpu.step(&mut cache, t, None);
    }
    for _ in 0..n {
        let t = common::argmax(&logits) as u32;
        cpu_tokens.push(t);
        logits = cpu.step(&mut cache, t, None);
    }
    assert_eq!(pipelined_greedy(&mut e, &r.prompt_ids, n), cpu_tokens);
}

/// The fixture's engine after a prefill of `first` tokens and the CPU reference after stepping through
/// the same ones, with the ids of those and of 8 more for decode steps on both sides of a boundary.
struct Prefilled {
    c: ModelConfig,
    cpu: CpuReference,
    cache: KvCache,
    e: Engine,
    ids: Vec<u32>,
    first: usize,
}

fn prefilled(options: EngineOptions, first: usize) -> Prefilled {
    let model = Model::open(&fixture_dir()).unwrap();
    let cpu = CpuReference::load(&model).unwrap();
    let c = model.config.clone();
    let mut e = Engine::load(GpuContext::new(None).expect("a GPU adapter (on CI: lavapipe)"), &model, options).unwrap();
    let ids: Vec<u32> = (0..first as u32 + 8).map(|i| i.wrapping_mul(2_654_435_761) % c.vocab as u32).collect();
    e.write_tokens(0, &ids).unwrap();
    e.prefill(first).unwrap();
    let mut cache = cpu.new_cache();
    for &t in &ids[..first] {
        cpu.step(&mut cache, t, None);
    }
    Prefilled { c, cpu, cache, e, ids, first }
}

/// The launches labelled `label` in the engine's next decode step, if any.
fn launches(e: &Engine, label: &str) -> Option<usize> {
    e.decode_labels().into_iter().find(|(l, _)| l == label).map(|(_, n)| n)
}

/// Decode steps on both sides of the position where the attention's split pass changes variant
/// (`mla_attention::SHORT_CONTEXT`, past the fixture's 300 positions): after a prefill up to just
/// below it, every step launches exactly one split pass per layer and its logits match the CPU
/// reference fed the same tokens.
#[test]
fn decode_across_the_split_variants_matches_the_cpu_reference() {
    let options =
        EngineOptions { ctx_len: SHORT_CONTEXT + 16, kv_f16: false, int8_activations: false, ..Default::default() };
    let Prefilled { c, cpu, mut cache, mut e, ids, first } = prefilled(options, SHORT_CONTEXT - 4);
    let dispatches = e.dispatches_per_token();
    for (pos, &t) in ids.iter().enumerate().skip(first) {
        assert_eq!(launches(&e, "mla_attention"), Some(c.n_layers), "split passes launched at position {pos}");
        assert_eq!(e.dispatches_per_token(), dispatches, "dispatches at position {pos}");
        let want = cpu.step(&mut cache, t, None);
        e.step(StepOutput::Logits).unwrap();
        assert_close(&format!("logits at position {pos}"), &e.logits().unwrap(), &want, REL_TOL);
    }
}

/// Decode steps on both sides of MERGED_CONTEXT, below which v_b merges the attention's splits itself:
/// there no merge pass launches and one merging v_b per layer does, from there the merge pass and
/// the plain v_b (one dispatch more per layer); the logits match the CPU reference fed the same
/// tokens on both sides.
#[test]
fn decode_across_the_merging_v_b_boundary_matches_the_cpu_reference() {
    let options =
        EngineOptions { ctx_len: MERGED_CONTEXT + 8, kv_f16: false, int8_activations: false, ..Default::default() };
    let Prefilled { c, cpu, mut cache, mut e, ids, first } = prefilled(options, MERGED_CONTEXT - 4);
    let below = e.dispatches_per_token();
    for (pos, &t) in ids.iter().enumerate().skip(first) {
        let got = (launches(&e, "attn_v_b_merging"), launches(&e, "mla_attention_combine"), launches(&e, "attn_v_b"));
        let layers = Some(c.n_layers);
        if pos < MERGED_CONTEXT {
            assert_eq!(got, (layers, None, None), "v_b and merge launches at position {pos}");
            assert_eq!(e.dispatches_per_token(), below, "dispatches at position {pos}");
        } else {
            assert_eq!(got, (None, layers, layers), "v_b and merge launches at position {pos}");
            assert_eq!(e.dispatches_per_token(), below + c.n_layers, "dispatches at position {pos}");
        }
        let want = cpu.step(&mut cache, t, None);
        e.step(StepOutput::Logits).unwrap();
        assert_close(&format!("logits at position {pos}"), &e.logits().unwrap(), &want, REL_TOL);
    }
}

/// Decode steps on both sides of COOP_CONTEXT with an f16 cache, where the cooperative split pass
/// takes over on an adapter that has cooperative matrices (on one without them, the plain long-context
/// pass serves both sides): one split pass per layer, of the right kind, and logits that match the CPU
/// reference fed the same tokens (to f16 precision: the cache, and the cooperative products' inputs).
#[test]
fn decode_across_the_cooperative_attention_boundary_matches_the_cpu_reference() {
    let options = EngineOptions { ctx_len: COOP_CONTEXT + 8, int8_activations: false, ..Default::default() };
    let Prefilled { c, cpu, mut cache, mut e, ids, first } = prefilled(options, COOP_CONTEXT - 4);
    let coop = e.options.coop_decode();
    assert!(coop || std::env::var(REQUIRE_COOP).is_err(), "{REQUIRE_COOP} is set but decode runs without them");
    let mut worst = 0f32;
    for (pos, &t) in ids.iter().enumerate().skip(first) {
        let (plain, cooperative) = (launches(&e, "mla_attention"), launches(&e, "mla_attention_coop"));
        if coop && pos >= COOP_CONTEXT {
            assert_eq!((plain, cooperative), (None, Some(c.n_layers)), "split passes at position {pos}");
        } else {
            assert_eq!((plain, cooperative), (Some(c.n_layers), None), "split passes at position {pos}");
        }
        let want = cpu.step(&mut cache, t, None);
        e.step(StepOutput::Logits).unwrap();
        worst = worst.max(assert_close(&format!("logits at position {pos}"), &e.logits().unwrap(), &want, COOP_TOL));
    }
    eprintln!("cooperative decode attention {coop}: {worst:.2e} of max |logit| across {COOP_CONTEXT}");
}

/// Prompts through `Engine::prefill` in chunks that do and do not divide them, from an empty cache
/// and after token-by-token steps: the logits that follow match transformers (prompt, the last 16
/// of the 300-token sequence) and the greedy continuation is the reference's.
#[test]
fn prefill_matches_transformers() {
    let r = load_reference();
    let model = Model::open(&fixture_dir()).unwrap();
    let n = r.prompt_ids.len();
    for (chunk, kv_f16) in [(1, true), (3, false), (4, true), (64, true), (512, false)] {
        let options = EngineOptions {
            ctx_len: 320,
            kv_f16,
            int8_activations: false,
            prefill_chunk: chunk,
            coop_matrix: CoopMatrix::Off,
            ..Default::default()
        };
        let mut e = Engine::load(GpuContext::new(None).unwrap(), &model, options).unwrap();
        let label = format!("chunk {chunk}, f16 cache {kv_f16}");
        e.write_tokens(0, &r.prompt_ids).unwrap();
        e.prefill(n - 1).unwrap();
        e.step(StepOutput::Logits).unwrap();
        assert_close(&format!("{label}: prompt logits"), &e.logits().unwrap(), r.prompt_logits.row(n - 1), REL_TOL);

        // Two steps, then a prefill that starts mid-cache.
        e.reset();
        e.step(StepOutput::CacheOnly).unwrap();
        e.step(StepOutput::Logits).unwrap();
        assert_close(&format!("{label}: logits at 1"), &e.logits().unwrap(), r.prompt_logits.row(1), REL_TOL);
        e.prefill(n - 3).unwrap();
        e.step(StepOutput::Logits).unwrap();
        assert_close(
            &format!("{label}: logits after steps"),
            &e.logits().unwrap(),
            r.prompt_logits.row(n - 1),
            REL_TOL,
        );

        check_long_prefilled(&mut e, &r, &label, REL_TOL);
        assert_eq!(pipelined_greedy(&mut e, &r.prompt_ids, r.greedy_tokens.len()), r.greedy_tokens, "{label}");
    }
}

/// With int8 activations the chunked products (tests/kernels.rs checks them exactly) round each
/// token's input as a decode step does, but sum in another order: last-bit differences that flip an
/// int8 rounding move the random tiny model's logits by up to a few 1e-2 (tests/quant_gpu.rs shows
/// the same against the CPU reference), so prefill and token steps agree to 5e-2 here.
#[test]
fn int8_prefill_matches_token_steps() {
    let r = load_reference();
    let model = Model::open(&gguf("glm-tiny-q8_0.gguf")).unwrap();
    let n = r.prompt_ids.len();
    let options = EngineOptions {
        ctx_len: 64,
        kv_f16: false,
        prefill_chunk: 5,
        coop_matrix: CoopMatrix::Off,
        ..Default::default()
    };
    let mut e = Engine::load(GpuContext::new(None).unwrap(), &model, options).unwrap();
    e.write_tokens(0, &r.prompt_ids).unwrap();
    for _ in 0..n {
        e.step(StepOutput::Logits).unwrap();
    }
    let want = e.logits().unwrap();
    e.reset();
    e.prefill(n - 1).unwrap();
    e.step(StepOutput::Logits).unwrap();
    let err = assert_close("int8 prefill logits", &e.logits().unwrap(), &want, 5e-2);
    eprintln!("int8: prefill vs token steps {err:.2e} of max |logit|");
}

/// `--kernels native`: the matrix products as naga's SPIR-V through wgpu's passthrough (Vulkan) give
/// the WGSL build's logits and greedy tokens, through the chunked prefill and decode, on f32 (bf16
/// checkpoint) and int8 (Q8_0 file) inputs.
#[test]
fn native_kernels_match_wgsl() {
    let r = load_reference();
    for (path, int8) in [(fixture_dir(), false), (gguf("glm-tiny-q8_0.gguf"), true)] {
        let model = Model::open(&path).unwrap();
        let run = |kernels| {
            let options = EngineOptions {
                ctx_len: 64,
                kv_f16: false,
                int8_activations: int8,
                prefill_chunk: 4,
                kernels,
                coop_matrix: CoopMatrix::Off,
                ..Default::default()
            };
            let mut e = Engine::load(GpuContext::new(None).unwrap(), &model, options).unwrap();
            // Every native pipeline agrees with its WGSL twin (none rebuilt from WGSL).
            let rejected: Vec<&String> = e.kernel_notes.iter().filter(|n| n.contains("disagrees")).collect();
            assert!(rejected.is_empty(), "{}: {rejected:?}", path.display());
            e.write_tokens(0, &r.prompt_ids).unwrap();
            e.prefill(r.prompt_ids.len() - 1).unwrap();
            e.step(StepOutput::Logits).unwrap();
            let logits = e.logits().unwrap();
            (logits, pipelined_greedy(&mut e, &r.prompt_ids, 16))
        };
        let (wgsl_logits, wgsl_tokens) = run(KernelChoice::Wgsl);
        let (native_logits, native_tokens) = run(KernelChoice::Native);
        let label = format!("{} (int8 {int8})", path.display());
        let err = assert_close(&format!("{label}: native vs WGSL logits"), &native_logits, &wgsl_logits, 1e-5);
        eprintln!("{label}: native vs WGSL {err:.2e} of max |logit|");
        assert_eq!(native_tokens, wgsl_tokens, "{label}: greedy tokens");
    }
}

/// Set to 1 where the adapter has cooperative matrices (the H200 runs), so that their absence fails.
const REQUIRE_COOP: &str = "GLM_WGPU_REQUIRE_COOP";
/// f16 inputs and weights on the cooperative matrices: the prefill's logits stay this close to
/// transformers' fp32 ones on the fixture (6.3e-4 measured on the H200, chunks 64 and 7).
const COOP_TOL: f32 = 3e-3;

/// `--coop-matrix on`: the prefill products on cooperative matrices pass their start-up check and
/// give transformers' logits (to f16 precision) and greedy tokens, in chunks that do and do not
/// divide the prompt. On an adapter without them (lavapipe), `on` is a clear load error and `auto`
/// loads with the plain kernel and says why.
#[test]
fn coop_matrix_prefill_matches_transformers() {
    let r = load_reference();
    let model = Model::open(&fixture_dir()).unwrap();
    let n = r.prompt_ids.len();
    let options = |coop_matrix, prefill_chunk| EngineOptions {
        ctx_len: 320,
        int8_activations: false,
        prefill_chunk,
        coop_matrix,
        ..Default::default()
    };
    let ctx = GpuContext::new(None).unwrap();
    if glm_wgpu::kernels::matmul_coop::supported(&ctx).is_err() {
        assert!(
            std::env::var(REQUIRE_COOP).is_err(),
            "{REQUIRE_COOP} is set but {} has no cooperative matrices",
            ctx.describe()
        );
        let err = Engine::load(ctx, &model, options(CoopMatrix::On, 64)).err().expect("--coop-matrix on without them");
        let msg = format!("{err:#}");
        assert!(msg.contains("--coop-matrix on") && msg.contains("cooperative matrices"), "{msg}");
        let e = Engine::load(GpuContext::new(None).unwrap(), &model, options(CoopMatrix::Auto, 64)).unwrap();
        assert_eq!(e.options.coop_matrix, CoopMatrix::Off);
        assert!(e.kernel_notes.iter().any(|n| n.contains("not cooperative matrices")), "{:?}", e.kernel_notes);
        eprintln!("no cooperative matrices here: checked the error and the fallback note only");
        return;
    }
    drop(ctx);
    for chunk in [64, 7] {
        let mut e = Engine::load(GpuContext::new(None).unwrap(), &model, options(CoopMatrix::On, chunk)).unwrap();
        assert_eq!(e.options.coop_matrix, CoopMatrix::On);
        eprintln!("{:?}", e.kernel_notes);
        e.write_tokens(0, &r.prompt_ids).unwrap();
        e.prefill(n - 1).unwrap();
        e.step(StepOutput::Logits).unwrap();
        let err = assert_close(
            &format!("chunk {chunk}: prompt logits"),
            &e.logits().unwrap(),
            r.prompt_logits.row(n - 1),
            COOP_TOL,
        );
        eprintln!("chunk {chunk}: cooperative prefill vs transformers {err:.2e} of max |logit|");
        let err = check_long_prefilled(&mut e, &r, &format!("chunk {chunk}"), COOP_TOL);
        eprintln!("chunk {chunk}: long sequence {err:.2e} of max |logit|");
        assert_eq!(pipelined_greedy(&mut e, &r.prompt_ids, r.greedy_tokens.len()), r.greedy_tokens, "chunk {chunk}");
    }
}
