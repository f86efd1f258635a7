//! `model::absorb_query`: the absorbed query against the two products it replaces, on random
//! weights of the types files hold, and the type it is stored in.

mod common;

use glm_wgpu::model::{absorb_query, absorbed_type, ModelConfig, TensorData};
use glm_wgpu::quant::{self, GgmlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;

fn config() -> ModelConfig {
    ModelConfig::from_hf_file(&common::fixture_dir().join("config.json")).unwrap()
}

fn tensor(t: GgmlType, shape: Vec<usize>, rng: &mut StdRng) -> TensorData<'static> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    TensorData { ggml_type: t, shape, bytes: Cow::Owned(quant::quantize(t, &values).unwrap()) }
}

fn matvec(m: &[f32], cols: usize, x: &[f64]) -> Vec<f64> {
    m.chunks_exact(cols).map(|row| row.iter().zip(x).map(|(&w, &v)| w as f64 * v).sum()).collect()
}

/// Largest |a - b| over the largest |b|.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let m = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max) / m
}

/// q_lat[h] = k_b[h] · (q_b_nope[h] · x) and q_rope[h] = q_b_rope[h] · x, from the absorbed pair, to
/// within the rounding of the stored type.
#[test]
fn absorbed_query_equals_the_two_products() {
    let c = config();
    let (heads, nope, rope, lora, width) = (c.n_heads, c.qk_nope, c.qk_rope, c.kv_lora_rank, c.q_lora_rank);
    let mut rng = StdRng::seed_from_u64(5);
    // (q_b, k_b, stored type, tolerance: the stored type's rounding of a sum of `nope` products)
    let cases = [
        (GgmlType::F32, GgmlType::F32, GgmlType::F32, 1e-6),
        (GgmlType::BF16, GgmlType::BF16, GgmlType::F16, 2e-3),
        (GgmlType::Q4K, GgmlType::Q8_0, GgmlType::Q8_0, 1e-2),
        (GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0, 1e-2),
    ];
    for (tq, tk, stored, tol) in cases {
        let q_b = tensor(tq, vec![heads * c.qk_head(), width], &mut rng);
        let k_b = tensor(tk, vec![heads, lora, nope], &mut rng);
        let a = absorb_query(&c, &q_b, &k_b).unwrap();
        let name = format!("q_b {} k_b {}", tq.name(), tk.name());
        assert_eq!((a.lat.ggml_type, a.rope.ggml_type), (stored, stored), "{name}: stored types");
        assert_eq!(a.lat.shape, vec![heads * lora, width], "{name}: q_lat shape");
        assert_eq!(a.rope.shape, vec![heads * rope, width], "{name}: q_rope shape");
        let x: Vec<f64> = (0..width).map(|_| rng.random_range(-1.0..1.0)).collect();
        let (qb, kb) = (q_b.to_f32().unwrap(), k_b.to_f32().unwrap());
        let q = matvec(&qb, width, &x);
        let (mut want_lat, mut want_rope) = (Vec::new(), Vec::new());
        for h in 0..heads {
            let qh = &q[h * c.qk_head()..(h + 1) * c.qk_head()];
            let q_nope: Vec<f64> = qh[..nope].to_vec();
            want_lat.extend(matvec(&kb[h * lora * nope..(h + 1) * lora * nope], nope, &q_nope));
            want_rope.extend_from_slice(&qh[nope..]);
        }
        let lat = rel_err(&matvec(&a.lat.to_f32().unwrap(), width, &x), &want_lat);
        let rope_err = rel_err(&matvec(&a.rope.to_f32().unwrap(), width, &x), &want_rope);
        assert!(lat <= tol, "{name}: q_lat off by {lat:.2e} > {tol:.0e}");
        assert!(rope_err <= tol, "{name}: q_rope off by {rope_err:.2e} > {tol:.0e}");
        println!("[query_absorb] {name} -> {}: q_lat {lat:.2e}, q_rope {rope_err:.2e}", stored.name());
    }
}

#[test]
fn absorbed_type_is_at_least_as_fine_as_the_finer_input() {
    use GgmlType::*;
    for (q_b, k_b, width, max_abs, want) in [
        (Q4K, Q8_0, 768, 3.0, Q8_0),
        (Q6K, Q4K, 768, 3.0, Q8_0),
        (Q4K, Q8_0, 100, 3.0, F32),
        (F32, Q8_0, 768, 3.0, F32),
        (BF16, BF16, 768, 3.0, F16),
        (F16, Q8_0, 768, 3.0, F16),
        (BF16, BF16, 768, 1e5, F32),
    ] {
        assert_eq!(absorbed_type(q_b, k_b, width, max_abs), want, "{} x {}, max {max_abs}", q_b.name(), k_b.name());
    }
}

#[test]
fn absorbing_tensors_of_the_wrong_size_is_an_error() {
    let c = config();
    let mut rng = StdRng::seed_from_u64(6);
    let q_b = tensor(GgmlType::F32, vec![c.n_heads * c.qk_head(), c.q_lora_rank], &mut rng);
    let k_b = tensor(GgmlType::F32, vec![c.n_heads, c.kv_lora_rank, c.qk_nope - 1], &mut rng);
    let e = absorb_query(&c, &q_b, &k_b).err().expect("a k_b one column short must be refused");
    assert!(e.to_string().contains("attn_k_b"), "{e}");
    let e = absorb_query(&c, &k_b, &k_b).err().expect("q_b of k_b's size must be refused");
    assert!(e.to_string().contains("attn_q_b"), "{e}");
}
