// The latent KV cache: per position KV_W = KV_LORA + ROPE values (normalized latent, then roped key),
// stored as f16 pairs packed in a u32 (KV_F16) or as f32 bits. Accessed two values at a time.
// src/kernels/mod.rs appends wgsl/half.wgsl.

// RoPE of an interleaved pair (a, b) by the table's (cos, sin): how the cached keys and the queries
// against them are rotated.
fn rope_rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

fn cache_load2(i: u32) -> vec2<f32> {
    if KV_F16 {
        return unpack2x16float(cache[i / 2u]);
    }
    return vec2<f32>(bitcast<f32>(cache[i]), bitcast<f32>(cache[i + 1u]));
}

// v rounded to f16, as the cache holds it. Not unpack2x16float(pack2x16float(v)): on the H200's
// Vulkan driver that round trip came back unrounded (the current row then scored 3e-4 off its
// stored copy), so the f16 bits are widened by hand.
fn round_f16(v: vec2<f32>) -> vec2<f32> {
    let h = pack2x16float(v);
    return vec2<f32>(half_to_f32(h), half_to_f32(h >> 16u));
}
