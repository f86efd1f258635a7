//! Fixture helpers shared by the integration tests: the tiny HF model in `tests/fixtures/glm-tiny`
//! and the outputs transformers computed for it (`reference.safetensors`, `reference.json`).
#![allow(dead_code)]

pub mod quantized;

use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Relative tolerance of every comparison against transformers: max|Δ| ≤ REL_TOL · max|reference|
/// per compared row.
pub const REL_TOL: f32 = 1e-3;

/// The tiny GLM-4.7-Flash-shaped model (HF directory).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm-tiny")
}

/// Compiles `harness`, a program of native_msl/check/ that runs Metal code on the CPU, with clang
/// against the metal_stdlib stand-in there and the `extra` arguments (defines), into `exe`.
pub fn metal_cpu_program(harness: &str, exe: &Path, extra: &[String]) {
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("native_msl/check");
    let out = Command::new("clang++")
        .args(["-std=c++20", "-O1", "-x", "c++", "-Wall", "-Wno-unknown-attributes", "-Werror", "-pthread", "-I"])
        .arg(&check)
        .args(extra)
        .arg(check.join(harness))
        .arg("-o")
        .arg(exe)
        .output()
        .expect("clang++ (apt-get install clang) runs the Metal kernels' code on Linux");
    assert!(out.status.success(), "{harness}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A 2-D f32 array, row-major.
pub struct Rows {
    pub width: usize,
    pub data: Vec<f32>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.width..(i + 1) * self.width]
    }
}

/// What transformers computed (fp32, eager attention) for the fixture model.
pub struct Reference {
    pub prompt_ids: Vec<u32>,
    /// `[prompt_len, vocab]`: the logits at every prompt position.
    pub prompt_logits: Rows,
    /// `n_layers + 1` entries of `[prompt_len, hidden]`: the embedding output, the output of each
    /// layer but the last, then the final-norm output.
    pub prompt_hidden: Vec<Rows>,
    /// 32 greedy tokens after the prompt (generate() with a KV cache).
    pub greedy_tokens: Vec<u32>,
    /// `[32, vocab]`: row i are the logits that chose `greedy_tokens[i]` (row 0 = last prompt position).
    pub greedy_logits: Rows,
    /// 300 random ids, run as one forward.
    pub long_ids: Vec<u32>,
    /// `[16, vocab]`: the logits at the last 16 positions of `long_ids`.
    pub long_logits_last16: Rows,
}

impl Reference {
    /// Hidden state `index` (0 = embedding output) at prompt position `pos`.
    pub fn hidden(&self, index: usize, pos: usize) -> &[f32] {
        self.prompt_hidden[index].row(pos)
    }
}

fn tensor_f64(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("reference.safetensors: no tensor {name}: {e}"));
    let d = t.data();
    let values: Vec<f64> = match t.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::I64 => d.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        Dtype::I32 => d.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        other => panic!("reference.safetensors: {name} has unexpected dtype {other:?}"),
    };
    (t.shape().to_vec(), values)
}

fn rows(st: &SafeTensors, name: &str) -> Rows {
    let (shape, v) = tensor_f64(st, name);
    assert_eq!(shape.len(), 2, "{name}: expected 2-D, got {shape:?}");
    Rows { width: shape[1], data: v.into_iter().map(|x| x as f32).collect() }
}

fn ids(st: &SafeTensors, name: &str) -> Vec<u32> {
    let (shape, v) = tensor_f64(st, name);
    assert_eq!(shape.len(), 1, "{name}: expected 1-D, got {shape:?}");
    v.into_iter()
        .map(|x| {
            assert!(x >= 0.0 && x.fract() == 0.0, "{name}: {x} is not a token id");
            x as u32
        })
        .collect()
}

pub fn load_reference() -> Reference {
    let dir = fixture_dir();
    let bytes = std::fs::read(dir.join("reference.safetensors")).expect("read reference.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parse reference.safetensors");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).expect("read reference.json"))
            .expect("parse reference.json");
    let prompt_ids = json["prompt_ids"]
        .as_array()
        .expect("reference.json: prompt_ids")
        .iter()
        .map(|v| v.as_u64().expect("prompt id") as u32)
        .collect();

    let (hshape, hvals) = tensor_f64(&st, "prompt_hidden_states");
    assert_eq!(hshape.len(), 3, "prompt_hidden_states: expected 3-D, got {hshape:?}");
    let per = hshape[1] * hshape[2];
    let prompt_hidden = hvals
        .chunks_exact(per)
        .map(|c| Rows { width: hshape[2], data: c.iter().map(|&x| x as f32).collect() })
        .collect();

    Reference {
        prompt_ids,
        prompt_logits: rows(&st, "prompt_logits"),
        prompt_hidden,
        greedy_tokens: ids(&st, "greedy_tokens"),
        greedy_logits: rows(&st, "greedy_logits"),
        long_ids: ids(&st, "long_ids"),
        long_logits_last16: rows(&st, "long_logits_last16"),
    }
}

/// max|got − want| / max|want|, and the index of the largest difference.
pub fn rel_err(got: &[f32], want: &[f32]) -> (f32, usize) {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    let (worst, diff) = got
        .iter()
        .zip(want)
        .map(|(g, w)| if g.is_nan() || w.is_nan() { f32::INFINITY } else { (g - w).abs() })
        .enumerate()
        .fold((0, 0.0f32), |(bi, bd), (i, d)| if d > bd { (i, d) } else { (bi, bd) });
    (diff / scale, worst)
}

/// Panics unless max|got − want| ≤ rel_tol · max|want|, naming the worst index and its values.
/// Returns the observed relative error.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], rel_tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{name}: got {} values, want {}", got.len(), want.len());
    let (err, i) = rel_err(got, want);
    assert!(
        err <= rel_tol,
        "{name}: relative error {err:.3e} > {rel_tol:.1e}; worst at index {i}: got {} want {} (max|want| {})",
        got[i],
        want[i],
        want.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    );
    err
}

/// Index of the largest value; the first one on ties (as torch.argmax).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}
