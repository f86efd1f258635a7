//! Model files as users have them: a GGUF file or an HF checkpoint directory, memory-mapped.
//! Both are presented through GGUF tensor names and layouts (k_b/v_b split, 3-D experts).

use super::{expected_tensors, ModelConfig};
use crate::gguf::GgufFile;
use crate::quant::GgmlType;
use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One tensor's bytes in its on-disk encoding, shape row-major (last = row length).
pub struct TensorData<'a> {
    pub ggml_type: GgmlType,
    pub shape: Vec<usize>,
    pub bytes: Cow<'a, [u8]>,
}

impl TensorData<'_> {
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        crate::quant::dequantize(self.ggml_type, &self.bytes)
    }
}

pub enum Checkpoint {
    Gguf(GgufFile),
    Hf(HfCheckpoint),
}

pub struct HfCheckpoint {
    pub dir: PathBuf,
    maps: Vec<Mmap>,
    /// name → (file index, type, shape, byte range in the mapping)
    index: HashMap<String, (usize, safetensors::Dtype, Vec<usize>, std::ops::Range<usize>)>,
}

pub struct Model {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub files: Checkpoint,
}

impl Model {
    /// Opens a GGUF file or an HF directory, reads its config and checks that every tensor the
    /// forward needs is present, of a supported type and of the shape the config implies.
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (config, files) = if meta.is_dir() {
            let hf = HfCheckpoint::open(path)?;
            (ModelConfig::from_hf_file(&path.join("config.json"))?, Checkpoint::Hf(hf))
        } else {
            let g = GgufFile::open(path)?;
            (ModelConfig::from_gguf(&g)?, Checkpoint::Gguf(g))
        };
        let model = Self { path: path.to_path_buf(), config, files };
        model.check_tensors()?;
        Ok(model)
    }

    fn check_tensors(&self) -> Result<()> {
        for (name, shape) in expected_tensors(&self.config) {
            let (t, s) = self.tensor_meta(&name)?;
            ensure!(
                s == shape,
                "tensor {name} has shape {s:?} but the config implies {shape:?} (inconsistent config and weights)"
            );
            t.ensure_supported(&name)?;
        }
        Ok(())
    }

    /// Type and shape without touching the data.
    pub fn tensor_meta(&self, name: &str) -> Result<(GgmlType, Vec<usize>)> {
        match &self.files {
            Checkpoint::Gguf(g) => {
                let t =
                    g.tensor_info(name).with_context(|| format!("missing tensor {name} in {}", self.path.display()))?;
                Ok((t.ggml_type, t.shape()))
            }
            Checkpoint::Hf(hf) => hf.meta(&self.config, name),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<TensorData<'_>> {
        match &self.files {
            Checkpoint::Gguf(g) => {
                let t =
                    g.tensor_info(name).with_context(|| format!("missing tensor {name} in {}", self.path.display()))?;
                Ok(TensorData { ggml_type: t.ggml_type, shape: t.shape(), bytes: Cow::Borrowed(g.tensor_data(t)) })
            }
            Checkpoint::Hf(hf) => hf.tensor(&self.config, name),
        }
    }

    pub fn format_name(&self) -> &'static str {
        match self.files {
            Checkpoint::Gguf(_) => "GGUF",
            Checkpoint::Hf(_) => "HF safetensors",
        }
    }
}

fn hf_dtype(d: safetensors::Dtype, name: &str) -> Result<GgmlType> {
    Ok(match d {
        safetensors::Dtype::F32 => GgmlType::F32,
        safetensors::Dtype::F16 => GgmlType::F16,
        safetensors::Dtype::BF16 => GgmlType::BF16,
        other => {
            bail!("tensor {name} has dtype {other:?}, which this build does not support (supported: F32, F16, BF16)")
        }
    })
}

/// HF name of a per-layer GGUF tensor (`blk.N.<suffix>`), for the tensors that map one to one.
fn hf_layer_name(suffix: &str) -> Option<&'static str> {
    Some(match suffix {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q_a.weight" => "self_attn.q_a_proj.weight",
        "attn_q_a_norm.weight" => "self_attn.q_a_layernorm.weight",
        "attn_q_b.weight" => "self_attn.q_b_proj.weight",
        "attn_kv_a_mqa.weight" => "self_attn.kv_a_proj_with_mqa.weight",
        "attn_kv_a_norm.weight" => "self_attn.kv_a_layernorm.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "ffn_gate_inp.weight" => "mlp.gate.weight",
        "exp_probs_b.bias" => "mlp.gate.e_score_correction_bias",
        "ffn_gate_shexp.weight" => "mlp.shared_experts.gate_proj.weight",
        "ffn_up_shexp.weight" => "mlp.shared_experts.up_proj.weight",
        "ffn_down_shexp.weight" => "mlp.shared_experts.down_proj.weight",
        _ => return None,
    })
}

/// How a GGUF tensor is built from HF tensors.
enum HfSource {
    Direct(String),
    /// Routed experts stacked into one [E, rows, cols] tensor.
    Experts(String, usize),
    /// `kv_b_proj` split per head into k_b (transposed) or v_b, as llama.cpp's converter does.
    KvB {
        name: String,
        value: bool,
    },
}

fn hf_source(c: &ModelConfig, name: &str) -> Result<HfSource> {
    let direct = |s: &str| Ok(HfSource::Direct(s.to_string()));
    match name {
        "token_embd.weight" => return direct("model.embed_tokens.weight"),
        "output_norm.weight" => return direct("model.norm.weight"),
        "output.weight" => return direct("lm_head.weight"),
        _ => {}
    }
    let rest = name.strip_prefix("blk.").with_context(|| format!("unknown tensor {name}"))?;
    let (layer, suffix) = rest.split_once('.').with_context(|| format!("unknown tensor {name}"))?;
    let p = format!("model.layers.{layer}.");
    if let Some(s) = hf_layer_name(suffix) {
        return Ok(HfSource::Direct(p + s));
    }
    let proj = |s: &str| format!("{p}mlp.experts.{{}}.{s}_proj.weight");
    Ok(match suffix {
        "ffn_gate_exps.weight" => HfSource::Experts(proj("gate"), c.n_experts),
        "ffn_up_exps.weight" => HfSource::Experts(proj("up"), c.n_experts),
        "ffn_down_exps.weight" => HfSource::Experts(proj("down"), c.n_experts),
        "attn_k_b.weight" => HfSource::KvB { name: p + "self_attn.kv_b_proj.weight", value: false },
        "attn_v_b.weight" => HfSource::KvB { name: p + "self_attn.kv_b_proj.weight", value: true },
        _ => bail!("unknown tensor {name}"),
    })
}

impl HfCheckpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path)?)
                .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
            let map = j.get("weight_map").and_then(|m| m.as_object()).context("index has no weight_map")?;
            let mut names: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            v.sort();
            v
        };
        ensure!(!files.is_empty(), "no *.safetensors files in {}", dir.display());
        let mut maps = Vec::new();
        let mut index = HashMap::new();
        for (fi, path) in files.iter().enumerate() {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            // SAFETY: read-only mapping of a file we do not modify.
            let mmap = unsafe { Mmap::map(&f) }.with_context(|| format!("cannot map {}", path.display()))?;
            let (header_len, meta) = safetensors::SafeTensors::read_metadata(&mmap)
                .map_err(|e| anyhow::anyhow!("{} is not a valid safetensors file: {e}", path.display()))?;
            let base = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (s, e) = info.data_offsets;
                ensure!(base + e <= mmap.len(), "{} is truncated (tensor {name})", path.display());
                // Unsupported dtypes are reported when a needed tensor is read; the MTP layer
                // (`model.layers.<n_layers>.*`) and other extras are never read.
                index.insert(name, (fi, info.dtype, info.shape.clone(), base + s..base + e));
            }
            maps.push(mmap);
        }
        Ok(Self { dir: dir.to_path_buf(), maps, index })
    }

    fn raw(&self, name: &str) -> Result<(GgmlType, &[usize], &[u8])> {
        let (fi, dtype, shape, range) =
            self.index.get(name).with_context(|| format!("missing tensor {name} in {}", self.dir.display()))?;
        Ok((hf_dtype(*dtype, name)?, shape, &self.maps[*fi][range.clone()]))
    }

    fn meta(&self, c: &ModelConfig, name: &str) -> Result<(GgmlType, Vec<usize>)> {
        Ok(match hf_source(c, name)? {
            HfSource::Direct(n) => {
                let (t, s, _) = self.raw(&n)?;
                (t, s.to_vec())
            }
            HfSource::Experts(pattern, n) => {
                let (t, s, _) = self.raw(&pattern.replace("{}", "0"))?;
                for e in 1..n {
                    let (te, se, _) = self.raw(&pattern.replace("{}", &e.to_string()))?;
                    ensure!(te == t && se == s, "expert {e} of {pattern} differs in type or shape from expert 0");
                }
                (t, [vec![n], s.to_vec()].concat())
            }
            HfSource::KvB { name: n, value } => {
                let (t, s, _) = self.raw(&n)?;
                let per_head = c.qk_nope + c.v_head;
                ensure!(
                    s.len() == 2 && s[0] == c.n_heads * per_head,
                    "tensor {n} has shape {s:?}, expected [{}, {}] (inconsistent config and weights)",
                    c.n_heads * per_head,
                    c.kv_lora_rank
                );
                let shape = if value { vec![c.n_heads, c.v_head, s[1]] } else { vec![c.n_heads, s[1], c.qk_nope] };
                (t, shape)
            }
        })
    }

    fn tensor(&self, c: &ModelConfig, name: &str) -> Result<TensorData<'_>> {
        let (ggml_type, shape) = self.meta(c, name)?;
        let bytes = match hf_source(c, name)? {
            HfSource::Direct(n) => Cow::Borrowed(self.raw(&n)?.2),
            HfSource::Experts(pattern, n) => {
                let mut out = Vec::new();
                for e in 0..n {
                    out.extend_from_slice(self.raw(&pattern.replace("{}", &e.to_string()))?.2);
                }
                Cow::Owned(out)
            }
            HfSource::KvB { name: n, value } => {
                let (_, s, data) = self.raw(&n)?;
                Cow::Owned(split_kv_b(data, ggml_type.block_bytes(), c, s[1], value))
            }
        };
        Ok(TensorData { ggml_type, shape, bytes })
    }
}

/// kv_b_proj is [heads × (nope + v), kv_lora]; per head the first `nope` rows are W_k, the rest W_v.
/// k_b is W_k transposed ([kv_lora, nope] per head), v_b is W_v as it is.
fn split_kv_b(data: &[u8], elem: usize, c: &ModelConfig, kv_lora: usize, value: bool) -> Vec<u8> {
    let per_head = c.qk_nope + c.v_head;
    let row = kv_lora * elem;
    let mut out = Vec::with_capacity(c.n_heads * if value { c.v_head } else { c.qk_nope } * row);
    for h in 0..c.n_heads {
        let head = &data[h * per_head * row..(h + 1) * per_head * row];
        if value {
            out.extend_from_slice(&head[c.qk_nope * row..]);
        } else {
            for j in 0..kv_lora {
                for i in 0..c.qk_nope {
                    out.extend_from_slice(&head[i * row + j * elem..i * row + (j + 1) * elem]);
                }
            }
        }
    }
    out
}
