//! Bad input gets a one-line error and a non-zero exit, never a panic.

use glm_wgpu::gguf::{GgufFile, GgufWriter, MetaValue};
use glm_wgpu::quant::GgmlType;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs `glm-wgpu args…` and returns its stderr, checking the failure is a clean one-line error.
fn run_err(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_glm-wgpu")).args(args).output().expect("spawn glm-wgpu");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}, stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "exit code for {args:?}; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("gpu: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line for {args:?}, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn info_err(path: &Path) -> String {
    run_err(&["info", "-m", path.to_str().unwrap()])
}

fn write_variant(dir: &Path, name: &str, edit: impl FnOnce(&mut GgufWriter)) -> PathBuf {
    let g = GgufFile::open(&fixture("glm-tiny-bf16.gguf")).unwrap();
    let mut w = GgufWriter::from_file(&g);
    edit(&mut w);
    let path = dir.join(name);
    std::fs::write(&path, w.to_bytes()).unwrap();
    path
}

fn assert_contains(err: &str, want: &str) {
    assert!(err.contains(want), "error {err:?} does not mention {want:?}");
}

#[test]
fn missing_path() {
    let err = info_err(Path::new("/nonexistent/model.gguf"));
    assert_contains(&err, "cannot read /nonexistent/model.gguf");
}

#[test]
fn directory_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let err = info_err(dir.path());
    assert_contains(&err, "no *.safetensors files");
}

#[test]
fn truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("glm-tiny-bf16.gguf")).unwrap();
    for keep in [10, 5000, bytes.len() * 3 / 5, bytes.len() - 1] {
        let p = dir.path().join("t.gguf");
        std::fs::write(&p, &bytes[..keep]).unwrap();
        assert_contains(&info_err(&p), "truncated");
    }
}

#[test]
fn bad_magic_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("glm-tiny-bf16.gguf")).unwrap();
    let mut b = bytes.clone();
    b[..4].copy_from_slice(b"GGML");
    let p = dir.path().join("magic.gguf");
    std::fs::write(&p, &b).unwrap();
    assert_contains(&info_err(&p), "bad magic");
    let mut b = bytes;
    b[4..8].copy_from_slice(&7u32.to_le_bytes());
    let p = dir.path().join("version.gguf");
    std::fs::write(&p, &b).unwrap();
    assert_contains(&info_err(&p), "unsupported GGUF version 7");
}

#[test]
fn unsupported_tensor_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let name = "blk.1.attn_q_b.weight";
    let p = write_variant(dir.path(), "iq2_xxs.gguf", |w| {
        let g = GgufFile::open(&fixture("glm-tiny-bf16.gguf")).unwrap();
        let dims = g.tensor_info(name).unwrap().dims.clone();
        let n: u64 = dims.iter().product();
        w.remove_tensor(name);
        w.add_tensor(name, dims, GgmlType::Iq2Xxs, vec![0x11; GgmlType::Iq2Xxs.bytes_for(n as usize)]).unwrap();
    });
    let err = info_err(&p);
    assert_contains(&err, name);
    assert_contains(&err, "IQ2_XXS");
}

#[test]
fn unknown_tensor_type_id() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_variant(dir.path(), "x.gguf", |_| {});
    let mut b = std::fs::read(&p).unwrap();
    // The type id follows the first tensor's name and dims; find it through the parsed offsets.
    let g = GgufFile::open(&p).unwrap();
    let t = &g.tensors[0];
    let name_pos = b.windows(t.name.len()).position(|w| w == t.name.as_bytes()).unwrap();
    let type_pos = name_pos + t.name.len() + 4 + 8 * t.dims.len();
    b[type_pos..type_pos + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    assert_contains(&info_err(&p), "unknown ggml tensor type id 99");
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_variant(dir.path(), "missing.gguf", |w| w.remove_tensor("blk.2.ffn_up_exps.weight"));
    assert_contains(&info_err(&p), "missing tensor blk.2.ffn_up_exps.weight");
}

#[test]
fn other_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let p =
        write_variant(dir.path(), "llama.gguf", |w| w.set("general.architecture", MetaValue::String("llama".into())));
    assert_contains(&info_err(&p), "unsupported architecture \"llama\"");

    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    std::fs::copy(fixture("glm-tiny/model.safetensors"), hf.join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(fixture("glm-tiny/config.json")).unwrap();
    std::fs::write(hf.join("config.json"), cfg.replace("glm4_moe_lite", "qwen3_moe")).unwrap();
    assert_contains(&info_err(&hf), "unsupported architecture \"qwen3_moe\"");
}

#[test]
fn inconsistent_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_variant(dir.path(), "shape.gguf", |w| w.set("deepseek2.attention.q_lora_rank", MetaValue::U32(128)));
    let err = info_err(&p);
    assert_contains(&err, "inconsistent");
    assert_contains(&err, "attn_q_a.weight");

    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    std::fs::copy(fixture("glm-tiny/model.safetensors"), hf.join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(fixture("glm-tiny/config.json")).unwrap();
    std::fs::write(hf.join("config.json"), cfg.replace("\"v_head_dim\": 96", "\"v_head_dim\": 64")).unwrap();
    assert_contains(&info_err(&hf), "inconsistent");
}

#[test]
fn corrupt_config_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("glm-tiny/model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    assert_contains(&info_err(dir.path()), "config.json is not valid JSON");
}

#[test]
fn prompt_longer_than_the_context() {
    let model = fixture("glm-tiny");
    let err = run_err(&["run", "-m", model.to_str().unwrap(), "--ctx", "8", "-p", "a b c d e f g h i j k l m n o p"]);
    assert_contains(&err, "but the context holds 8");
}

#[test]
fn bad_sampling_parameters() {
    let model = fixture("glm-tiny");
    let err = run_err(&["run", "-m", model.to_str().unwrap(), "-p", "hi", "--top-p", "1.5"]);
    assert_contains(&err, "top-p");
}

#[test]
fn bench_needs_a_model_or_a_readable_config() {
    assert_contains(
        &run_err(&["bench", "--synthetic", "/nonexistent/config.json"]),
        "cannot read /nonexistent/config.json",
    );
    let err = run_err(&["bench", "--synthetic", fixture("perplexity.txt").to_str().unwrap()]);
    assert_contains(&err, "is not valid JSON");
}

#[test]
fn bench_context_must_hold_the_measurement_and_fit_the_model() {
    let model = fixture("glm-tiny");
    let model = model.to_str().unwrap();
    assert_contains(&run_err(&["bench", "-m", model, "-p", "0", "-n", "4", "--ctx", "3"]), "exceed --ctx 3");
    let err = run_err(&["bench", "-m", model, "-p", "0", "-n", "4", "--ctx", "100000000"]);
    assert_contains(&err, "exceeds the model's context");
    assert_contains(&run_err(&["bench", "-m", model, "-p", "4", "-n", "0", "--ablate"]), "-n must be at least 1");
}

#[test]
fn coop_matrix_on_needs_an_adapter_that_has_them() {
    let ctx = glm_wgpu::gpu::GpuContext::new(None).expect("a GPU adapter");
    let model = fixture("glm-tiny");
    let args = ["run", "-m", model.to_str().unwrap(), "-p", "hi", "-n", "1", "--coop-matrix", "on"];
    if glm_wgpu::kernels::matmul_coop::supported(&ctx).is_ok() {
        // Where they exist (the H200) `on` loads and runs; tests/gpu_parity.rs checks the results.
        let out = Command::new(env!("CARGO_BIN_EXE_glm-wgpu")).args(args).output().expect("spawn glm-wgpu");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let err = run_err(&args);
    assert_contains(&err, "--coop-matrix on");
    assert_contains(&err, "no cooperative matrices");
}
