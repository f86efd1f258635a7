// Q4_0 (repacked, see src/quant/legacy.rs): chunk c is block c: its 16 split-nibble quant bytes in WEIGHTS[c],
// the f16 bits of d in half c % 2 of SCALES[c / 2]. Weight = d * (q - 8).
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let d = half_to_f32(SCALES[c >> 1u] >> (16u * (c & 1u)));
    let q = WEIGHTS[c];
    let o = vec4<f32>(8.0);
    return array<vec4<f32>, 8>(
        d * (vec4<f32>(lo_nibbles(q.x)) - o), d * (vec4<f32>(lo_nibbles(q.y)) - o),
        d * (vec4<f32>(lo_nibbles(q.z)) - o), d * (vec4<f32>(lo_nibbles(q.w)) - o),
        d * (vec4<f32>(hi_nibbles(q.x)) - o), d * (vec4<f32>(hi_nibbles(q.y)) - o),
        d * (vec4<f32>(hi_nibbles(q.z)) - o), d * (vec4<f32>(hi_nibbles(q.w)) - o),
    );
}

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = OffsetChunk;

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let d = half_to_f32(SCALES[c >> 1u] >> (16u * (c & 1u)));
    return Int8Chunk(nibble_bytes(WEIGHTS[c]), d, 8.0 * d);
}

// The chunk's dot with int8 inputs xq (their sum qsum), in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_offset_chunk(w, xq, qsum);
}
