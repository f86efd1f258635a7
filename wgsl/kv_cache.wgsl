// The latent KV cache: per position KV_W = KV_LORA + ROPE values (normalized latent, then roped key),
// stored as f16 pairs packed in a u32 (KV_F16) or as f32 bits. Accessed two values at a time.
// src/kernels/mod.rs appends wgsl/rope.wgsl and wgsl/half.wgsl.

fn cache_load2(i: u32) -> vec2<f32> {
    if KV_F16 {
        return unpack2x16float(cache[i / 2u]);
    }
    return vec2<f32>(bitcast<f32>(cache[i]), bitcast<f32>(cache[i + 1u]));
}
