// A position's latent-cache row from kv_a's output (`ckv` from float `base`): RMSNorm of the latent
// (weight `kv_norm`), RoPE of the shared key at position `pos`, rounded as the cache will hold it.
// Shared by the decode attention split (which scores the current row before the cache holds it,
// and stores it) and the prefill's row store.
// Needs `ckv`, `kv_norm`, `rope`, kv_cache.wgsl and reduce.wgsl. Host constants: KV_LORA, ROPE, EPS,
// KV_F16.

fn cache_row_inv_rms(base: u32, tid: u32) -> f32 {
    var acc = 0.0;
    for (var i = tid; i < KV_LORA; i += WG) {
        acc += ckv[base + i] * ckv[base + i];
    }
    return inverseSqrt(workgroup_sum(acc, tid) / f32(KV_LORA) + EPS);
}

// Pair j (values 2j, 2j + 1) of the row.
fn cache_row_pair(base: u32, pos: u32, j: u32, inv: f32) -> vec2<f32> {
    let i = 2u * j;
    let a = ckv[base + i];
    let b = ckv[base + i + 1u];
    var v: vec2<f32>;
    if i < KV_LORA {
        v = vec2<f32>(a * inv * kv_norm[i], b * inv * kv_norm[i + 1u]);
    } else {
        let cs = rope[pos * (ROPE / 2u) + (i - KV_LORA) / 2u];
        v = rope_rotate(a, b, cs);
    }
    if KV_F16 {
        v = round_f16(v);
    }
    return v;
}
