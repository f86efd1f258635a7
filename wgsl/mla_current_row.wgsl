// The current position's latent-cache row from kv_a's output `ckv`: RMSNorm of the latent (weight
// `kv_norm`), RoPE of the shared key, rounded as the cache will hold it. Shared by the attention
// split (which uses the row before it is stored) and the merge pass (which stores it).
// Needs `step`, `ckv`, `kv_norm`, `rope` and reduce.wgsl. Host constants: KV_LORA, ROPE, EPS, KV_F16.

fn current_row_inv_rms(tid: u32) -> f32 {
    var acc = 0.0;
    for (var i = tid; i < KV_LORA; i += WG) {
        acc += ckv[i] * ckv[i];
    }
    return inverseSqrt(workgroup_sum(acc, tid) / f32(KV_LORA) + EPS);
}

// Pair j (values 2j, 2j + 1) of the row.
fn current_row_pair(j: u32, inv: f32) -> vec2<f32> {
    let i = 2u * j;
    let a = ckv[i];
    let b = ckv[i + 1u];
    var v: vec2<f32>;
    if i < KV_LORA {
        v = vec2<f32>(a * inv * kv_norm[i], b * inv * kv_norm[i + 1u]);
    } else {
        let cs = rope[step.pos * (ROPE / 2u) + (i - KV_LORA) / 2u];
        v = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
    }
    if KV_F16 {
        v = unpack2x16float(pack2x16float(v));
    }
    return v;
}
