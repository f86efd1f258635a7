// Q6_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block j = c % 8 (32 weights, two 16-weight
// scales) of super-block s = c / 8. WEIGHTS[c]: the low 4 bits of its quants in split-nibble order.
// SCALES[21s + 2j + h]: the top 2 bits of weights 16h .. 16h + 15, byte-interleaved (weight 16h + 4k + b
// at bits 8b + 2k); SCALES[21s + 16 ..= 21s + 19]: the 16 int8 scales; SCALES[21s + 20]: d as f32 bits.
// Weight = d * sc * (q - 32).

// Byte b of the result: the 6-bit quant (0 ..= 63) of weight 4k + b of the 16 whose low nibbles are
// the bytes of lo (nibble word k) and whose high bits are hi.
fn q6_bytes(lo: u32, hi: u32, k: u32) -> u32 {
    return lo | (((hi >> (2u * k)) & 0x03030303u) << 4u);
}

fn q6(lo: u32, hi: u32, k: u32) -> vec4<f32> {
    let b = q6_bytes(lo, hi, k);
    return vec4<f32>((vec4<u32>(b) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu)) - vec4<f32>(32.0);
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
    let lo = q & vec4<u32>(0x0f0f0f0fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    return array<vec4<f32>, 8>(
        d0 * q6(lo.x, h0, 0u), d0 * q6(lo.y, h0, 1u), d0 * q6(lo.z, h0, 2u), d0 * q6(lo.w, h0, 3u),
        d1 * q6(hi.x, h1, 0u), d1 * q6(hi.y, h1, 1u), d1 * q6(hi.z, h1, 2u), d1 * q6(hi.w, h1, 3u),
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
    let l = q & vec4<u32>(0x0f0f0f0fu);
    let h = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    let lo = dot(q6(l.x, h0, 0u), xs[0]) + dot(q6(l.y, h0, 1u), xs[1]) + dot(q6(l.z, h0, 2u), xs[2])
        + dot(q6(l.w, h0, 3u), xs[3]);
    let hi = dot(q6(h.x, h1, 0u), xs[4]) + dot(q6(h.y, h1, 1u), xs[5]) + dot(q6(h.z, h1, 2u), xs[6])
        + dot(q6(h.w, h1, 3u), xs[7]);
    return d * (f32(i8_of(sw, k)) * lo + f32(i8_of(sw, k + 1u)) * hi);
}

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = HalvesChunk;

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
            q6_bytes(lo.x, h0, 0u), q6_bytes(lo.y, h0, 1u), q6_bytes(lo.z, h0, 2u), q6_bytes(lo.w, h0, 3u),
            q6_bytes(hi.x, h1, 0u), q6_bytes(hi.y, h1, 1u), q6_bytes(hi.z, h1, 2u), q6_bytes(hi.w, h1, 3u),
        ),
        bitcast<f32>(SCALES[s + 20u]),
        f32(i8_of(sw, k)),
        f32(i8_of(sw, k + 1u)),
    );
}

// The chunk's dot with int8 inputs xq, in units of the inputs' scale: Σ (q - 32) x per 16-weight half.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_halves_chunk(w, 32, xq, qsum);
}
