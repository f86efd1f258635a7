// Q3_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block pair j = c % 8 (weights 32j .. 32j + 31, two
// 16-weight scales) of super-block s = c / 8. The low 2 bits of its quants are half c % 2 of WEIGHTS[c / 2]:
// word h holds weights 16h + 4k + b at bits 8b + 2k. SCALES[13s + j]: their high bits, weight 4k + b at bit
// 8b + k; SCALES[13s + 8 ..= 13s + 11]: the 16 scales less 32 as i8 (scale i at byte i % 4 of word 8 + i / 4);
// SCALES[13s + 12]: d as f32 bits. Weight = d * (sc - 32) * (q - 4).

// Chunk c's 3-bit quants (0 ..= 7) as bytes, weights 4k .. 4k + 3 in word k.
fn q3_bytes(c: u32) -> array<u32, 8> {
    let w = WEIGHTS[c >> 1u];
    let q = select(w.xy, w.zw, (c & 1u) == 1u);
    let hm = vec4<u32>(SCALES[13u * (c >> 3u) + (c & 7u)]);
    let shift = vec4<u32>(0u, 2u, 4u, 6u);
    let lo = ((vec4<u32>(q.x) >> shift) & vec4<u32>(0x03030303u)) | (((hm >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(0x01010101u)) << vec4<u32>(2u));
    let hi = ((vec4<u32>(q.y) >> shift) & vec4<u32>(0x03030303u)) | (((hm >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(0x01010101u)) << vec4<u32>(2u));
    return array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
}

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = HalvesChunk;

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let s = 13u * (c >> 3u);
    let j = c & 7u;
    let sw = SCALES[s + 8u + (j >> 1u)];
    let k = 2u * (j & 1u);
    return Int8Chunk(q3_bytes(c), bitcast<f32>(SCALES[s + 12u]), f32(i8_of(sw, k)), f32(i8_of(sw, k + 1u)));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    return halves_weights(load_int8_chunk(c), 4.0);
}

// The chunk's dot with int8 inputs xq, in units of the inputs' scale: Σ (q - 4) x per 16-weight half.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_halves_chunk(w, 4, xq, qsum);
}
