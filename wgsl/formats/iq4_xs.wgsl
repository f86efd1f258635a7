// IQ4_XS (see src/quant/iq4_xs.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8. WEIGHTS[c]: its
// 32 4-bit grid indices in split-nibble order. SCALES[2s]: d (f16 bits) | scales_h << 16; SCALES[2s + 1]:
// scales_l. The scale of sub-block j is nibble j of scales_l | (bits 2j, 2j + 1 of scales_h) << 4.
// Weight = d * (scale - 32) * grid[q].
// The grid (ggml's kvalues_iq4nl) as int8 bytes, 4 per word: selected in registers rather than indexed
// from an array, which would put a local copy of the table in memory.
fn grid(q: vec4<u32>) -> vec4<f32> {
    let mid = (q & vec4<u32>(4u)) != vec4<u32>(0u);
    let lo = select(vec4<u32>(0xbfad9881u), vec4<u32>(0xf6eaddcfu), mid);
    let hi = select(vec4<u32>(0x26190d01u), vec4<u32>(0x71594535u), mid);
    let w = select(lo, hi, q >= vec4<u32>(8u));
    return vec4<f32>(bitcast<vec4<i32>>(w << (vec4<u32>(24u) - 8u * (q & vec4<u32>(3u)))) >> vec4<u32>(24u));
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
