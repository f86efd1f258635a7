//! The subcommands end to end on the tiny fixture: output shapes, not speed.

mod common;

use common::{fixture_dir, load_reference};
use std::process::Command;

fn glm(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_glm-wgpu")).args(args).output().expect("spawn glm-wgpu");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn run_jsonl_streams_the_greedy_tokens() {
    let r = load_reference();
    let prompt = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap(),
    )
    .unwrap()["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    let model = fixture_dir();
    let out =
        glm(&["run", "-m", model.to_str().unwrap(), "-p", &prompt, "-n", "32", "--ignore-eos", "--format", "jsonl"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<u32> = lines[..32].iter().map(|l| l["id"].as_u64().unwrap() as u32).collect();
    assert_eq!(ids, r.greedy_tokens);
    let summary = &lines[32];
    assert_eq!(summary["generated_tokens"], 32);
    assert_eq!(summary["prompt_tokens"], r.prompt_ids.len());
    assert_eq!(summary["stop"], "length");
    assert!(summary["decode_tok_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_text_ends_with_a_speed_summary() {
    let model = fixture_dir();
    let out = glm(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "[gMASK]<sop>hello",
        "-n",
        "8",
        "--temp",
        "0.8",
        "--top-k",
        "50",
        "--seed",
        "7",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("prompt: 4 tokens,") && last.contains("decode:") && last.contains("tok/s"), "{stderr}");
    let again = glm(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "[gMASK]<sop>hello",
        "-n",
        "8",
        "--temp",
        "0.8",
        "--top-k",
        "50",
        "--seed",
        "7",
    ]);
    assert_eq!(out.stdout, again.stdout, "same seed, same text");
}

#[test]
fn info_describes_the_model() {
    let out = glm(&["info", "-m", fixture_dir().parent().unwrap().join("glm-tiny-q8_0.gguf").to_str().unwrap()]);
    let s = String::from_utf8(out.stdout).unwrap();
    for want in ["3 layers (1 dense, 2 MoE)", "Q8_0", "F32", "memory: weights", "gpu: "] {
        assert!(s.contains(want), "info output lacks {want:?}:\n{s}");
    }
}

#[test]
fn bench_writes_a_json_report_with_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let model = fixture_dir();
    let args = [
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "4",
        "-n",
        "4",
        "--reps",
        "1",
        "--profile",
        "--ablate",
        "--json",
    ];
    let out = glm(&[&args[..], &[json.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("profile of one decode step"), "{stdout}");
    assert!(stdout.contains("decode step with each kernel left out"), "{stdout}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(r["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(r["prefill_tok_s"].as_f64().unwrap() > 0.0);
    let profile = r["profile"].as_array().unwrap();
    assert_eq!(profile.len() as u64, r["dispatches_per_token"].as_u64().unwrap());
    assert!(profile.iter().any(|l| l["label"] == "lm_head"));
    // Every kernel of the step left out once, with its launches per step, and timed both ways.
    let ablation = r["ablation"].as_array().unwrap();
    for l in profile {
        let row =
            ablation.iter().find(|a| a["label"] == l["label"]).unwrap_or_else(|| panic!("{} not ablated", l["label"]));
        let launches = profile.iter().filter(|m| m["label"] == l["label"]).count() as u64;
        assert_eq!(row["launches"].as_u64().unwrap(), launches, "{}", l["label"]);
        assert!(
            row["ms_per_token_with"].as_f64().unwrap() > 0.0 && row["ms_per_token_without"].as_f64().unwrap() > 0.0
        );
    }
    let launches: u64 = ablation.iter().map(|a| a["launches"].as_u64().unwrap()).sum();
    assert_eq!(launches, r["dispatches_per_token"].as_u64().unwrap());
    let prefill = r["prefill_profile"].as_array().unwrap();
    assert_eq!(prefill.len() as u64, r["prefill_dispatches_per_chunk"].as_u64().unwrap());
    assert!(prefill.iter().any(|l| l["label"] == "moe_group"));
    assert!(r["weight_bytes_per_token"].as_u64().unwrap() > 0);
}

#[test]
fn bench_fills_a_synthetic_model_from_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let config = fixture_dir().join("config.json");
    let args =
        ["bench", "--synthetic", config.to_str().unwrap(), "--quant", "q8_0", "-p", "2", "-n", "4", "--reps", "1"];
    let out = glm(&[&args[..], &["--ctx", "40", "--json", json.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("random Q8_0 weights") && stdout.contains("context 40"), "{stdout}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(r["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert_eq!(r["format"], "random Q8_0 weights");
    assert_eq!(r["ctx"], 40);
}

/// `--ab kernels`: the same benchmark with WGSL and native kernels, printed side by side, kernel by
/// kernel with `--profile`, and both runs in the JSON report.
#[test]
fn bench_ab_runs_wgsl_and_native_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ab.json");
    let model = fixture_dir();
    let args = ["bench", "-m", model.to_str().unwrap(), "-p", "4", "-n", "4", "--reps", "1", "--ab", "kernels"];
    let out = glm(&[&args[..], &["--profile", "--json", json.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("A/B: wgsl vs native"), "{stdout}");
    assert!(stdout.contains("prefill chunk, µs per kernel:") && stdout.contains("all kernels"), "{stdout}");
    assert!(stdout.contains("native pipelines:"), "the native run's start-up check: {stdout}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!((r["a"]["kernels"].as_str(), r["b"]["kernels"].as_str()), (Some("wgsl"), Some("native")));
    for run in ["a", "b"] {
        assert!(r[run]["decode_tok_s"].as_f64().unwrap() > 0.0);
        assert_eq!(
            r[run]["profile"].as_array().unwrap().len() as u64,
            r[run]["dispatches_per_token"].as_u64().unwrap()
        );
    }
}
