// Q4_1 (repacked, see src/quant/legacy.rs): chunk c is block c: its 16 split-nibble quant bytes in WEIGHTS[c],
// d | m << 16 (f16 bits) in SCALES[c]. Weight = d * q + m.
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let dm = SCALES[c];
    let d = half_to_f32(dm);
    let m = half_to_f32(dm >> 16u);
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        d * vec4<f32>(lo_nibbles(q.x)) + m, d * vec4<f32>(lo_nibbles(q.y)) + m,
        d * vec4<f32>(lo_nibbles(q.z)) + m, d * vec4<f32>(lo_nibbles(q.w)) + m,
        d * vec4<f32>(hi_nibbles(q.x)) + m, d * vec4<f32>(hi_nibbles(q.y)) + m,
        d * vec4<f32>(hi_nibbles(q.z)) + m, d * vec4<f32>(hi_nibbles(q.w)) + m,
    );
}
