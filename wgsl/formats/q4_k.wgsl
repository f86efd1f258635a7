// Q4_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8.
// WEIGHTS[10s + j]: its 32 4-bit quants in split-nibble order. WEIGHTS[10s + 8 + j / 4]: d and dmin as f32
// bits, then in byte j % 4 of .z and .w the sub-block's 6-bit scale sc and min m. Weight = d * sc * q - dmin * m.

fn q4k_quants(c: u32) -> vec4<u32> {
    return WEIGHTS[c + 2u * (c >> 3u)];
}

// Chunk c's d * sc and dmin * m: one load, shared by the super-block's half.
fn chunk_scale_min(c: u32) -> vec2<f32> {
    return k_scale_min(WEIGHTS[10u * (c >> 3u) + 8u + ((c >> 2u) & 1u)], c);
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let dsm = chunk_scale_min(c);
    let ds = dsm.x;
    let mn = dsm.y;
    let q = q4k_quants(c);
    return array<vec4<f32>, 8>(
        ds * vec4<f32>(lo_nibbles(q.x)) - mn, ds * vec4<f32>(lo_nibbles(q.y)) - mn,
        ds * vec4<f32>(lo_nibbles(q.z)) - mn, ds * vec4<f32>(lo_nibbles(q.w)) - mn,
        ds * vec4<f32>(hi_nibbles(q.x)) - mn, ds * vec4<f32>(hi_nibbles(q.y)) - mn,
        ds * vec4<f32>(hi_nibbles(q.z)) - mn, ds * vec4<f32>(hi_nibbles(q.w)) - mn,
    );
}

// The chunk's dot with xs, scales applied once: d * sc * Σ q x - dmin * m * Σ x.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let dsm = chunk_scale_min(c);
    let q = q4k_quants(c);
    let lo = dot(vec4<f32>(lo_nibbles(q.x)), xs[0]) + dot(vec4<f32>(lo_nibbles(q.y)), xs[1])
        + dot(vec4<f32>(lo_nibbles(q.z)), xs[2]) + dot(vec4<f32>(lo_nibbles(q.w)), xs[3]);
    let hi = dot(vec4<f32>(hi_nibbles(q.x)), xs[4]) + dot(vec4<f32>(hi_nibbles(q.y)), xs[5])
        + dot(vec4<f32>(hi_nibbles(q.z)), xs[6]) + dot(vec4<f32>(hi_nibbles(q.w)), xs[7]);
    return dsm.x * (lo + hi) - dsm.y * xsum;
}

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = OffsetChunk;

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let dsm = chunk_scale_min(c);
    return Int8Chunk(nibble_bytes(q4k_quants(c)), dsm.x, dsm.y);
}

// The chunk's dot with int8 inputs xq (their sum qsum), in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_offset_chunk(w, xq, qsum);
}
