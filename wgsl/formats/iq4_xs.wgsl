// IQ4_XS (see src/quant/iq4.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8. WEIGHTS[c]: its
// 32 4-bit grid indices in split-nibble order. SCALES[2s]: d (f16 bits) | scales_h << 16; SCALES[2s + 1]:
// scales_l. The scale of sub-block j is nibble j of scales_l | (bits 2j, 2j + 1 of scales_h) << 4.
// Weight = d * (scale - 32) * grid[q] (iq4_grid in quant_common.wgsl).
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 2u * (c >> 3u);
    let j = c & 7u;
    let dh = SCALES[s];
    let ls = ((SCALES[s + 1u] >> (4u * j)) & 15u) | (((dh >> (16u + 2u * j)) & 3u) << 4u);
    let dl = half_to_f32(dh) * f32(i32(ls) - 32);
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        dl * iq4_grid(lo_nibbles(q.x)), dl * iq4_grid(lo_nibbles(q.y)), dl * iq4_grid(lo_nibbles(q.z)), dl * iq4_grid(lo_nibbles(q.w)),
        dl * iq4_grid(hi_nibbles(q.x)), dl * iq4_grid(hi_nibbles(q.y)), dl * iq4_grid(hi_nibbles(q.z)), dl * iq4_grid(hi_nibbles(q.w)),
    );
}
