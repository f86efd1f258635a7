// Q5_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8.
// WEIGHTS[c]: the low 4 bits of its 32 quants in split-nibble order. SCALES[12s]: d | dmin << 16 (f16 bits);
// SCALES[12s + 1 ..= 12s + 3]: ggml's 12 packed 6-bit scale/min bytes; SCALES[12s + 4 + j]: bit i is the
// 5th bit of weight i. Weight = d * sc * q - dmin * m.
fn q5(lo: vec4<u32>, qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(lo | (bits4(qh, first) << vec4<u32>(4u)));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 12u * (c >> 3u);
    let j = c & 7u;
    let dm = SCALES[s];
    let sm = scale_min_k4(vec3<u32>(SCALES[s + 1u], SCALES[s + 2u], SCALES[s + 3u]), j);
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
