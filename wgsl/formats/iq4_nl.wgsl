// IQ4_NL (repacked, see src/quant/iq4.rs): chunk c is block c: its 16 split-nibble grid-index bytes in
// WEIGHTS[c], the f16 bits of d in half c % 2 of SCALES[c / 2]. Weight = d * grid[q] (iq4_grid in
// quant_common.wgsl).
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let d = half_to_f32(SCALES[c >> 1u] >> (16u * (c & 1u)));
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        d * iq4_grid(lo_nibbles(q.x)), d * iq4_grid(lo_nibbles(q.y)), d * iq4_grid(lo_nibbles(q.z)), d * iq4_grid(lo_nibbles(q.w)),
        d * iq4_grid(hi_nibbles(q.x)), d * iq4_grid(hi_nibbles(q.y)), d * iq4_grid(hi_nibbles(q.z)), d * iq4_grid(hi_nibbles(q.w)),
    );
}
