//! The file variants users have: sharded HF checkpoints, both config.json spellings, MTP layers,
//! GGUFs without `expert_gating_func`.

mod common;

use common::fixture_dir;
use common::quantized::bf16_gguf;
use glm_wgpu::gguf::{GgufFile, GgufWriter, MetaValue};
use glm_wgpu::model::{expected_tensors, Gating, Model};
use std::collections::HashMap;
use std::path::Path;

/// Every tensor the forward reads, as bytes, by name.
fn all_tensors(m: &Model) -> HashMap<String, Vec<u8>> {
    expected_tensors(&m.config)
        .into_iter()
        .map(|(n, _)| (n.clone(), m.tensor(&n).unwrap().bytes.into_owned()))
        .collect()
}

fn copy_tokenizer(dst: &Path) {
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture_dir().join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn sharded_checkpoint_with_index_and_mtp_layer() {
    let one = Model::open(&fixture_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    // Two shards, plus an MTP layer after the last layer, as the real checkpoint has.
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let mut views: Vec<(String, safetensors::tensor::TensorView)> =
            part.iter().map(|n| (n.clone(), st.tensor(n).unwrap())).collect();
        if i == 1 {
            let mtp = st.tensor("model.layers.2.self_attn.q_a_proj.weight").unwrap();
            views.push(("model.layers.3.self_attn.q_a_proj.weight".into(), mtp.clone()));
            views.push(("model.layers.3.eh_proj.weight".into(), mtp));
        }
        for (n, _) in &views {
            weight_map.insert(n.clone(), serde_json::Value::String(file.clone()));
        }
        safetensors::serialize_to_file(views, None, &dir.path().join(&file)).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("config.json")).unwrap()).unwrap();
    cfg["num_nextn_predict_layers"] = 1.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    copy_tokenizer(dir.path());

    let sharded = Model::open(dir.path()).unwrap();
    assert_eq!(sharded.config, one.config);
    assert_eq!(all_tensors(&sharded), all_tensors(&one));
}

#[test]
fn both_config_spellings_agree() {
    let v5: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("config.json")).unwrap()).unwrap();
    let mut v4 = v5.clone();
    let o = v4.as_object_mut().unwrap();
    let theta = o.remove("rope_parameters").unwrap()["rope_theta"].clone();
    o.remove("mlp_layer_types");
    o.insert("rope_theta".into(), theta);
    o.insert("first_k_dense_replace".into(), 1.into());
    let a = glm_wgpu::model::ModelConfig::from_hf_json(&v5).unwrap();
    let b = glm_wgpu::model::ModelConfig::from_hf_json(&v4).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.moe_layers, vec![false, true, true]);
    assert_eq!(a.rope_theta, 1e4);
}

#[test]
fn gguf_and_hf_give_the_same_config() {
    let hf = Model::open(&fixture_dir()).unwrap();
    let gguf = Model::open(&bf16_gguf()).unwrap();
    assert_eq!(hf.config, gguf.config);
    // The converter stores norms and the router in F32 where the checkpoint has BF16: compare values.
    let values = |m: &Model, n: &str| m.tensor(n).unwrap().to_f32().unwrap();
    let names: Vec<String> = expected_tensors(&hf.config).into_iter().map(|(n, _)| n).collect();
    let differ: Vec<&String> = names.iter().filter(|n| values(&hf, n) != values(&gguf, n)).collect();
    assert!(differ.is_empty(), "HF and GGUF tensors differ (k_b/v_b split, expert stacking): {differ:?}");
}

fn rewrite(dir: &Path, edit: impl FnOnce(&mut GgufWriter, &GgufFile)) -> std::path::PathBuf {
    let g = GgufFile::open(&bf16_gguf()).unwrap();
    let mut w = GgufWriter::from_file(&g);
    edit(&mut w, &g);
    let p = dir.join("variant.gguf");
    std::fs::write(&p, w.to_bytes()).unwrap();
    p
}

#[test]
fn missing_gating_func_means_sigmoid() {
    let dir = tempfile::tempdir().unwrap();
    let p = rewrite(dir.path(), |w, _| w.remove("deepseek2.expert_gating_func"));
    assert_eq!(Model::open(&p).unwrap().config.gating, Gating::Sigmoid);
    let p = rewrite(dir.path(), |w, _| w.set("deepseek2.expert_gating_func", MetaValue::U32(1)));
    assert_eq!(Model::open(&p).unwrap().config.gating, Gating::Softmax);
}

#[test]
fn gguf_mtp_block_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let p = rewrite(dir.path(), |w, g| {
        // A fourth block holding a copy of block 2 plus the nextn tensors, counted in block_count.
        for t in g.tensors.iter().filter(|t| t.name.starts_with("blk.2.")) {
            w.add_tensor(&t.name.replace("blk.2.", "blk.3."), t.dims.clone(), t.ggml_type, g.tensor_data(t).to_vec())
                .unwrap();
        }
        let norm = g.tensor_info("output_norm.weight").unwrap();
        w.add_tensor("blk.3.nextn.enorm.weight", norm.dims.clone(), norm.ggml_type, g.tensor_data(norm).to_vec())
            .unwrap();
        w.set("deepseek2.block_count", MetaValue::U32(4));
        w.set("deepseek2.nextn_predict_layers", MetaValue::U32(1));
    });
    let m = Model::open(&p).unwrap();
    assert_eq!(m.config, Model::open(&bf16_gguf()).unwrap().config);
}
