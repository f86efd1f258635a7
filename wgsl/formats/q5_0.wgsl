// Q5_0 (repacked, see src/quant/legacy.rs): chunk c is block c: its 16 split-nibble quant bytes in WEIGHTS[c];
// for the pair p = c / 2, SCALES[3p + c % 2] is the block's qh (bit i: 5th bit of weight i) and half c % 2
// of SCALES[3p + 2] the f16 bits of d. Weight = d * (q - 16).
fn q5(lo: vec4<u32>, qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(lo | (bits4(qh, first) << vec4<u32>(4u))) - vec4<f32>(16.0);
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let p = 3u * (c >> 1u);
    let h = c & 1u;
    let qh = SCALES[p + h];
    let d = half_to_f32(SCALES[p + 2u] >> (16u * h));
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        d * q5(lo_nibbles(q.x), qh, 0u), d * q5(lo_nibbles(q.y), qh, 4u),
        d * q5(lo_nibbles(q.z), qh, 8u), d * q5(lo_nibbles(q.w), qh, 12u),
        d * q5(hi_nibbles(q.x), qh, 16u), d * q5(hi_nibbles(q.y), qh, 20u),
        d * q5(hi_nibbles(q.z), qh, 24u), d * q5(hi_nibbles(q.w), qh, 28u),
    );
}
