// Q5_1 (repacked, see src/quant/legacy.rs): chunk c is block c: its 16 split-nibble quant bytes in WEIGHTS[c],
// d | m << 16 (f16 bits) in SCALES[2c], qh (bit i: 5th bit of weight i) in SCALES[2c + 1]. Weight = d * q + m.
fn q5(lo: vec4<u32>, qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(lo | (bits4(qh, first) << vec4<u32>(4u)));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let dm = SCALES[2u * c];
    let qh = SCALES[2u * c + 1u];
    let d = half_to_f32(dm);
    let m = half_to_f32(dm >> 16u);
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        d * q5(lo_nibbles(q.x), qh, 0u) + m, d * q5(lo_nibbles(q.y), qh, 4u) + m,
        d * q5(lo_nibbles(q.z), qh, 8u) + m, d * q5(lo_nibbles(q.w), qh, 12u) + m,
        d * q5(hi_nibbles(q.x), qh, 16u) + m, d * q5(hi_nibbles(q.y), qh, 20u) + m,
        d * q5(hi_nibbles(q.z), qh, 24u) + m, d * q5(hi_nibbles(q.w), qh, 28u) + m,
    );
}
