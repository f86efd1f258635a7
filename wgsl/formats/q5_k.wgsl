// Q5_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8.
// WEIGHTS[c]: the low 4 bits of its 32 quants in split-nibble order. SCALES[12s]: d | dmin << 16 (f16 bits);
// SCALES[12s + 1 ..= 12s + 3]: ggml's 12 packed 6-bit scale/min bytes; SCALES[12s + 4 + j]: bit i is the
// 5th bit of weight i. Weight = d * sc * q - dmin * m.
fn scale_byte(base: u32, k: u32) -> u32 {
    return (SCALES[base + (k >> 2u)] >> (8u * (k & 3u))) & 0xffu;
}

// ggml's get_scale_min_k4 over the 12 bytes starting at word `base`.
fn scale_min(base: u32, j: u32) -> vec2<u32> {
    if j < 4u {
        return vec2<u32>(scale_byte(base, j) & 63u, scale_byte(base, j + 4u) & 63u);
    }
    let b = scale_byte(base, j + 4u);
    return vec2<u32>((b & 15u) | ((scale_byte(base, j - 4u) >> 6u) << 4u), (b >> 4u) | ((scale_byte(base, j) >> 6u) << 4u));
}

fn q5(lo: vec4<u32>, qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(lo | (bits4(qh, first) << vec4<u32>(4u)));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 12u * (c >> 3u);
    let j = c & 7u;
    let dm = SCALES[s];
    let sm = scale_min(s + 1u, j);
    let ds = half_to_f32(dm) * f32(sm.x);
    let mn = half_to_f32(dm >> 16u) * f32(sm.y);
    let qh = SCALES[s + 4u + j];
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        ds * q5(lo_nibbles(q.x), qh, 0u) - mn, ds * q5(lo_nibbles(q.y), qh, 4u) - mn,
        ds * q5(lo_nibbles(q.z), qh, 8u) - mn, ds * q5(lo_nibbles(q.w), qh, 12u) - mn,
        ds * q5(hi_nibbles(q.x), qh, 16u) - mn, ds * q5(hi_nibbles(q.y), qh, 20u) - mn,
        ds * q5(hi_nibbles(q.z), qh, 24u) - mn, ds * q5(hi_nibbles(q.w), qh, 28u) - mn,
    );
}
