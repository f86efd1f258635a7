// Q6_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 (32 weights, two 16-weight
// scales) of super-block s = c / 8. WEIGHTS[c]: the low 4 bits of its quants in split-nibble order.
// SCALES[21s + 2j + h]: the top 2 bits of weights 16h .. 16h + 15 (field i at bits 2i);
// SCALES[21s + 16 ..= 21s + 19]: the 16 int8 scales; SCALES[21s + 20]: d as f32 bits.
// Weight = d * sc * (q - 32).
fn q6(lo: vec4<u32>, hi: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(lo | (crumbs4(hi, first) << vec4<u32>(4u))) - vec4<i32>(32));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 21u * (c >> 3u);
    let j = c & 7u;
    let d = bitcast<f32>(SCALES[s + 20u]);
    let sw = SCALES[s + 16u + (j >> 1u)];
    let k = 2u * (j & 1u);
    let d0 = d * f32(i8_of(sw, k));
    let d1 = d * f32(i8_of(sw, k + 1u));
    let h0 = SCALES[s + 2u * j];
    let h1 = SCALES[s + 2u * j + 1u];
    let q = WEIGHTS[c];
    return array<vec4<f32>, 8>(
        d0 * q6(lo_nibbles(q.x), h0, 0u), d0 * q6(lo_nibbles(q.y), h0, 4u),
        d0 * q6(lo_nibbles(q.z), h0, 8u), d0 * q6(lo_nibbles(q.w), h0, 12u),
        d1 * q6(hi_nibbles(q.x), h1, 0u), d1 * q6(hi_nibbles(q.y), h1, 4u),
        d1 * q6(hi_nibbles(q.z), h1, 8u), d1 * q6(hi_nibbles(q.w), h1, 12u),
    );
}

// The chunk's dot with xs, each 16-weight scale applied once.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let s = 21u * (c >> 3u);
    let j = c & 7u;
    let d = bitcast<f32>(SCALES[s + 20u]);
    let sw = SCALES[s + 16u + (j >> 1u)];
    let k = 2u * (j & 1u);
    let h0 = SCALES[s + 2u * j];
    let h1 = SCALES[s + 2u * j + 1u];
    let q = WEIGHTS[c];
    let lo = dot(q6(lo_nibbles(q.x), h0, 0u), xs[0]) + dot(q6(lo_nibbles(q.y), h0, 4u), xs[1])
        + dot(q6(lo_nibbles(q.z), h0, 8u), xs[2]) + dot(q6(lo_nibbles(q.w), h0, 12u), xs[3]);
    let hi = dot(q6(hi_nibbles(q.x), h1, 0u), xs[4]) + dot(q6(hi_nibbles(q.y), h1, 4u), xs[5])
        + dot(q6(hi_nibbles(q.z), h1, 8u), xs[6]) + dot(q6(hi_nibbles(q.w), h1, 12u), xs[7]);
    return d * (f32(i8_of(sw, k)) * lo + f32(i8_of(sw, k + 1u)) * hi);
}

// Byte k of the result: the 6-bit quant (0 ..= 63) of weight k of the 4 in lo (low nibbles in bytes)
// and the 2-bit fields `first` ..= `first + 3` of hi.
fn q6_bytes(lo: u32, hi: u32, first: u32) -> u32 {
    let t = hi >> (2u * first);
    return lo | ((t << 4u) & 0x30u) | ((t << 10u) & 0x3000u) | ((t << 16u) & 0x300000u) | ((t << 22u) & 0x30000000u);
}

// Chunk c unpacked for int8 products: its 6-bit quants (0 ..= 63) as bytes, d and the two int8 scales.
struct Int8Chunk {
    q: array<u32, 8>,
    d: f32,
    sc0: f32,
    sc1: f32,
}

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let s = 21u * (c >> 3u);
    let j = c & 7u;
    let sw = SCALES[s + 16u + (j >> 1u)];
    let k = 2u * (j & 1u);
    let h0 = SCALES[s + 2u * j];
    let h1 = SCALES[s + 2u * j + 1u];
    let q = WEIGHTS[c];
    let lo = q & vec4<u32>(0x0f0f0f0fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    return Int8Chunk(
        array<u32, 8>(
            q6_bytes(lo.x, h0, 0u), q6_bytes(lo.y, h0, 4u), q6_bytes(lo.z, h0, 8u), q6_bytes(lo.w, h0, 12u),
            q6_bytes(hi.x, h1, 0u), q6_bytes(hi.y, h1, 4u), q6_bytes(hi.z, h1, 8u), q6_bytes(hi.w, h1, 12u),
        ),
        bitcast<f32>(SCALES[s + 20u]),
        f32(i8_of(sw, k)),
        f32(i8_of(sw, k + 1u)),
    );
}

// The chunk's dot with int8 inputs xq, in units of the inputs' scale: Σ (q - 32) x per 16-weight half.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    let ones = 0x01010101u;
    // Σ of the first half's inputs; the second half's is qsum minus it.
    let q0 = dot4I8Packed(xq[0], ones) + dot4I8Packed(xq[1], ones) + dot4I8Packed(xq[2], ones)
        + dot4I8Packed(xq[3], ones);
    let sum0 = dot4I8Packed(w.q[0], xq[0]) + dot4I8Packed(w.q[1], xq[1]) + dot4I8Packed(w.q[2], xq[2])
        + dot4I8Packed(w.q[3], xq[3]) - 32 * q0;
    let sum1 = dot4I8Packed(w.q[4], xq[4]) + dot4I8Packed(w.q[5], xq[5]) + dot4I8Packed(w.q[6], xq[6])
        + dot4I8Packed(w.q[7], xq[7]) - 32 * (qsum - q0);
    return w.d * (w.sc0 * f32(sum0) + w.sc1 * f32(sum1));
}
