// Writes the current position into the latent cache: RMSNorm of the latent part of ckv, RoPE
// (interleaved pairs) on the shared key part. One workgroup.
// Host constants: WG, KV_LORA, ROPE, KV_W, EPS, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> ckv: array<f32>;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
// (cos, sin) per position and rope pair.
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> cache: array<u32>;

fn cache_store2(i: u32, v: vec2<f32>) {
    if KV_F16 {
        cache[i / 2u] = pack2x16float(v);
    } else {
        cache[i] = bitcast<u32>(v.x);
        cache[i + 1u] = bitcast<u32>(v.y);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32) {
    var acc = 0.0;
    for (var i = tid; i < KV_LORA; i += WG) {
        acc += ckv[i] * ckv[i];
    }
    let inv = inverseSqrt(workgroup_sum(acc, tid) / f32(KV_LORA) + EPS);
    let row = step.pos * KV_W;
    for (var j = tid; j < KV_W / 2u; j += WG) {
        let i = 2u * j;
        let a = ckv[i];
        let b = ckv[i + 1u];
        var v: vec2<f32>;
        if i < KV_LORA {
            v = vec2<f32>(a * inv * norm[i], b * inv * norm[i + 1u]);
        } else {
            let cs = rope[step.pos * (ROPE / 2u) + (i - KV_LORA) / 2u];
            v = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
        }
        cache_store2(row + i, v);
    }
}
