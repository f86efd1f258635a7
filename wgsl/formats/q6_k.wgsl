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

// Chunk c unpacked for int8 products (quant_common.wgsl).
alias Int8Chunk = HalvesChunk;

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let s = 21u * (c >> 3u);
    let j = c & 7u;
    let sw = SCALES[s + 16u + (j >> 1u)];
    let k = 2u * (j & 1u);
    let h0 = SCALES[s + 2u * j];
    let h1 = SCALES[s + 2u * j + 1u];
    var q = nibble_bytes(WEIGHTS[c]);
    for (var i = 0u; i < 4u; i++) { // unroll
        q[i] = q6_bytes(q[i], h0, i);
        q[4u + i] = q6_bytes(q[4u + i], h1, i);
    }
    return Int8Chunk(q, bitcast<f32>(SCALES[s + 20u]), f32(i8_of(sw, k)), f32(i8_of(sw, k + 1u)));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    return halves_weights(load_int8_chunk(c), 32.0);
}

// The chunk's dot with xs, each 16-weight scale applied once.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let w = load_int8_chunk(c);
    var lo = 0.0;
    var hi = 0.0;
    for (var i = 0u; i < 4u; i++) { // unroll
        lo += dot(bytes4(w.q[i]) - vec4<f32>(32.0), xs[i]);
        hi += dot(bytes4(w.q[4u + i]) - vec4<f32>(32.0), xs[4u + i]);
    }
    return w.d * (w.sc0 * lo + w.sc1 * hi);
}

// The chunk's dot with int8 inputs xq, in units of the inputs' scale: Σ (q - 32) x per 16-weight half.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    return dot_halves_chunk(w, 32, xq, qsum);
}
