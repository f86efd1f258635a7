// IQ4_XS (see src/quant/iq4_xs.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8. WEIGHTS[c]: its
// 32 4-bit grid indices in split-nibble order. SCALES[2s]: d (f16 bits) | scales_h << 16; SCALES[2s + 1]:
// scales_l. The scale of sub-block j is nibble j of scales_l | (bits 2j, 2j + 1 of scales_h) << 4.
// Weight = d * (scale - 32) * KVALUES[q].
const KVALUES = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

fn grid(q: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(KVALUES[q.x], KVALUES[q.y], KVALUES[q.z], KVALUES[q.w]);
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 2u * (c >> 3u);
    let j = c & 7u;
    let dh = SCALES[s];
    let ls = ((SCALES[s + 1u] >> (4u * j)) & 15u) | (((dh >> (16u + 2u * j)) & 3u) << 4u);
    let dl = half_to_f32(dh) * f32(i32(ls) - 32);
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        dl * grid(lo_nibbles(q.x)), dl * grid(lo_nibbles(q.y)), dl * grid(lo_nibbles(q.z)), dl * grid(lo_nibbles(q.w)),
        dl * grid(hi_nibbles(q.x)), dl * grid(hi_nibbles(q.y)), dl * grid(hi_nibbles(q.z)), dl * grid(hi_nibbles(q.w)),
    );
}
