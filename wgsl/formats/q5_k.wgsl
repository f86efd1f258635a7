// Q5_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8, 12
// vec4s per super-block. WEIGHTS[12s + j]: the low 4 bits of its quants in split-nibble order;
// WEIGHTS[12s + 8 + j / 4][j % 4]: their 5th bits, weight 4k + b at bit 8b + k; WEIGHTS[12s + 10 + j / 4]:
// d and dmin as f32 bits, then in byte j % 4 of .z and .w the 6-bit scale sc and min m (as Q4_K).
// Weight = d * sc * q - dmin * m.

// Chunk c's 5-bit quants (0 ..= 31) as bytes, weights 4k .. 4k + 3 in word k: each nibble word with its
// 5th bits shifted beside it.
fn q5_bytes(c: u32) -> array<u32, 8> {
    let s = 12u * (c >> 3u);
    let j = c & 7u;
    let q = WEIGHTS[s + j];
    let qh = vec4<u32>(WEIGHTS[s + 8u + (j >> 2u)][j & 3u]);
    let lo = (q & vec4<u32>(0x0f0f0f0fu)) | (((qh >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(0x01010101u)) << vec4<u32>(4u));
    let hi = ((q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu)) | (((qh >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(0x01010101u)) << vec4<u32>(4u));
    return array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
}

// Chunk c's d * sc and dmin * m.
fn q5_scale_min(c: u32) -> vec2<f32> {
    return k_scale_min(WEIGHTS[12u * (c >> 3u) + 10u + ((c >> 2u) & 1u)], c);
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let dsm = q5_scale_min(c);
    let q = q5_bytes(c);
    var w: array<vec4<f32>, 8>;
    for (var k = 0u; k < 8u; k++) { // unroll
        w[k] = dsm.x * bytes4(q[k]) - dsm.y;
    }
    return w;
}

// The chunk's dot with xs, scales applied once: d * sc * Σ q x - dmin * m * Σ x.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let dsm = q5_scale_min(c);
    let q = q5_bytes(c);
    var d = 0.0;
    for (var k = 0u; k < 8u; k++) { // unroll
        d += dot(bytes4(q[k]), xs[k]);
    }
    return dsm.x * d - dsm.y * xsum;
}

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = OffsetChunk;

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let dsm = q5_scale_min(c);
    return Int8Chunk(q5_bytes(c), dsm.x, dsm.y);
}

// The chunk's dot with int8 inputs xq (their sum qsum), in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_offset_chunk(w, xq, qsum);
}
