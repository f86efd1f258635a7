// Q3_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block pair j = c % 8 (weights 32j .. 32j + 31, two
// 16-weight scales) of super-block s = c / 8. The low 2 bits of its quants are half c % 2 of WEIGHTS[c / 2]:
// word h holds weights 16h .. 16h + 15 (field i at bits 2i). SCALES[12s + j]: bit i is the high bit of
// weight i; SCALES[12s + 8 ..= 12s + 10]: ggml's 12 packed 6-bit scale bytes; SCALES[12s + 11]: d as f32 bits.
// Weight = d * (sc - 32) * (q - 4).
// Scale i (0..16) of the 12 packed bytes, unbiased: low 4 bits at byte i % 8 (nibble i / 8), high 2 bits
// at byte 8 + i % 4 (bits 2 (i / 4)).
fn scale3(w: vec3<u32>, i: u32) -> f32 {
    let lo = (packed_byte(w, i & 7u) >> (4u * (i >> 3u))) & 15u;
    let hi = (packed_byte(w, 8u + (i & 3u)) >> (2u * (i >> 2u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn q3(q: u32, hm: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(crumbs4(q, first & 15u) | (bits4(hm, first) << vec4<u32>(2u))) - vec4<f32>(4.0);
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 12u * (c >> 3u);
    let j = c & 7u;
    let d = bitcast<f32>(SCALES[s + 11u]);
    let packed = vec3<u32>(SCALES[s + 8u], SCALES[s + 9u], SCALES[s + 10u]);
    let d0 = d * scale3(packed, 2u * j);
    let d1 = d * scale3(packed, 2u * j + 1u);
    let hm = SCALES[s + j];
    let w = WEIGHTS[c >> 1u];
    let q = select(w.xy, w.zw, (c & 1u) == 1u);
    return array<vec4<f32>, 8>(
        d0 * q3(q.x, hm, 0u), d0 * q3(q.x, hm, 4u), d0 * q3(q.x, hm, 8u), d0 * q3(q.x, hm, 12u),
        d1 * q3(q.y, hm, 16u), d1 * q3(q.y, hm, 20u), d1 * q3(q.y, hm, 24u), d1 * q3(q.y, hm, 28u),
    );
}
