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

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = OffsetChunk;

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let dm = SCALES[c];
    return Int8Chunk(nibble_bytes(WEIGHTS[c]), half_to_f32(dm), -half_to_f32(dm >> 16u));
}

// The chunk's dot with int8 inputs xq (their sum qsum), in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_offset_chunk(w, xq, qsum);
}
