// Q6_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 (32 weights, two 16-weight
// scales) of super-block s = c / 8. WEIGHTS[c]: the low 4 bits of its quants in split-nibble order.
// SCALES[21s + 2j + h]: the top 2 bits of weights 16h .. 16h + 15 (field i at bits 2i);
// SCALES[21s + 16 ..= 21s + 19]: the 16 int8 scales; SCALES[21s + 20]: d as f32 bits.
// Weight = d * sc * (q - 32).
fn q6(lo: vec4<u32>, hi: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(lo | (crumbs4(hi, first) << vec4<u32>(4u))) - vec4<i32>(32));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 21u * (c >> 3u);
    let j = c & 7u;
    let d = bitcast<f32>(SCALES[s + 20u]);
    let sw = SCALES[s + 16u + (j >> 1u)];
    let k = 2u * (j & 1u);
    let d0 = d * f32(i8_of(sw, k));
    let d1 = d * f32(i8_of(sw, k + 1u));
    let h0 = SCALES[s + 2u * j];
    let h1 = SCALES[s + 2u * j + 1u];
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        d0 * q6(lo_nibbles(q.x), h0, 0u), d0 * q6(lo_nibbles(q.y), h0, 4u),
        d0 * q6(lo_nibbles(q.z), h0, 8u), d0 * q6(lo_nibbles(q.w), h0, 12u),
        d1 * q6(hi_nibbles(q.x), h1, 0u), d1 * q6(hi_nibbles(q.y), h1, 4u),
        d1 * q6(hi_nibbles(q.z), h1, 8u), d1 * q6(hi_nibbles(q.w), h1, 12u),
    );
}

// The chunk's dot with xs, each 16-weight scale applied once.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let s = 21u * (c >> 3u);
    let j = c & 7u;
    let d = bitcast<f32>(SCALES[s + 20u]);
    let sw = SCALES[s + 16u + (j >> 1u)];
    let k = 2u * (j & 1u);
    let h0 = SCALES[s + 2u * j];
    let h1 = SCALES[s + 2u * j + 1u];
    let q = WEIGHTS[c];
    let lo = dot(q6(lo_nibbles(q.x), h0, 0u), xs[0]) + dot(q6(lo_nibbles(q.y), h0, 4u), xs[1])
        + dot(q6(lo_nibbles(q.z), h0, 8u), xs[2]) + dot(q6(lo_nibbles(q.w), h0, 12u), xs[3]);
    let hi = dot(q6(hi_nibbles(q.x), h1, 0u), xs[4]) + dot(q6(hi_nibbles(q.y), h1, 4u), xs[5])
        + dot(q6(hi_nibbles(q.z), h1, 8u), xs[6]) + dot(q6(hi_nibbles(q.w), h1, 12u), xs[7]);
    return d * (f32(i8_of(sw, k)) * lo + f32(i8_of(sw, k + 1u)) * hi);
}
