// Q4_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 of super-block s = c / 8.
// WEIGHTS[c]: its 32 4-bit quants in split-nibble order. SCALES[4s]: d | dmin << 16 (f16 bits);
// SCALES[4s + 1 ..= 4s + 3]: ggml's 12 packed 6-bit scale/min bytes. Weight = d * sc * q - dmin * m.
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 4u * (c >> 3u);
    let dm = SCALES[s];
    let sm = scale_min_k4(vec3<u32>(SCALES[s + 1u], SCALES[s + 2u], SCALES[s + 3u]), c & 7u);
    let ds = half_to_f32(dm) * f32(sm.x);
    let mn = half_to_f32(dm >> 16u) * f32(sm.y);
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        ds * vec4<f32>(lo_nibbles(q.x)) - mn, ds * vec4<f32>(lo_nibbles(q.y)) - mn,
        ds * vec4<f32>(lo_nibbles(q.z)) - mn, ds * vec4<f32>(lo_nibbles(q.w)) - mn,
        ds * vec4<f32>(hi_nibbles(q.x)) - mn, ds * vec4<f32>(hi_nibbles(q.y)) - mn,
        ds * vec4<f32>(hi_nibbles(q.z)) - mn, ds * vec4<f32>(hi_nibbles(q.w)) - mn,
    );
}

// The chunk's dot with xs, scales applied once: d * sc * Σ q x - dmin * m * Σ x.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let s = 4u * (c >> 3u);
    let dm = SCALES[s];
    let sm = scale_min_k4(vec3<u32>(SCALES[s + 1u], SCALES[s + 2u], SCALES[s + 3u]), c & 7u);
    let q = WEIGHTS[c];
    let lo = dot(vec4<f32>(lo_nibbles(q.x)), xs[0]) + dot(vec4<f32>(lo_nibbles(q.y)), xs[1])
        + dot(vec4<f32>(lo_nibbles(q.z)), xs[2]) + dot(vec4<f32>(lo_nibbles(q.w)), xs[3]);
    let hi = dot(vec4<f32>(hi_nibbles(q.x)), xs[4]) + dot(vec4<f32>(hi_nibbles(q.y)), xs[5])
        + dot(vec4<f32>(hi_nibbles(q.z)), xs[6]) + dot(vec4<f32>(hi_nibbles(q.w)), xs[7]);
    return half_to_f32(dm) * f32(sm.x) * (lo + hi) - half_to_f32(dm >> 16u) * f32(sm.y) * xsum;
}

// Chunk c unpacked for int8 products: its quants as bytes (low nibbles, then high), d * sc, dmin * m.
struct Int8Chunk {
    q: array<u32, 8>,
    ds: f32,
    mn: f32,
}

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let s = 4u * (c >> 3u);
    let dm = SCALES[s];
    let sm = scale_min_k4(vec3<u32>(SCALES[s + 1u], SCALES[s + 2u], SCALES[s + 3u]), c & 7u);
    let q = WEIGHTS[c];
    let lo = q & vec4<u32>(0x0f0f0f0fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    return Int8Chunk(
        array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w),
        half_to_f32(dm) * f32(sm.x),
        half_to_f32(dm >> 16u) * f32(sm.y),
    );
}

// The chunk's dot with int8 inputs xq (their sum qsum), in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    let sum = dot4I8Packed(w.q[0], xq[0]) + dot4I8Packed(w.q[1], xq[1]) + dot4I8Packed(w.q[2], xq[2])
        + dot4I8Packed(w.q[3], xq[3]) + dot4I8Packed(w.q[4], xq[4]) + dot4I8Packed(w.q[5], xq[5])
        + dot4I8Packed(w.q[6], xq[6]) + dot4I8Packed(w.q[7], xq[7]);
    return w.ds * f32(sum) - w.mn * f32(qsum);
}
