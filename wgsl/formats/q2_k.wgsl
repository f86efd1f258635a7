// Q2_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block pair j = c % 8 (weights 32j .. 32j + 31, two
// 16-weight scales) of super-block s = c / 8. Its 2-bit quants are half c % 2 of WEIGHTS[c / 2]: word h holds
// weights 16h + 4k + b at bits 8b + 2k. SCALES[6s ..= 6s + 3]: the 16 scale bytes (low nibble: scale, high
// nibble: min); SCALES[6s + 4], SCALES[6s + 5]: d and dmin as f32 bits. Weight = d * sc * q - dmin * m.

// Chunk c unpacked: its quants as bytes (weights 4k .. 4k + 3 in word k), d * sc and dmin * m of each half.
struct Int8Chunk {
    q: array<u32, 8>,
    d0: f32,
    d1: f32,
    m0: f32,
    m1: f32,
}

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let s = 6u * (c >> 3u);
    let j = c & 7u;
    let d = bitcast<f32>(SCALES[s + 4u]);
    let dmin = bitcast<f32>(SCALES[s + 5u]);
    let sc = SCALES[s + (j >> 1u)] >> (16u * (j & 1u));
    let w = WEIGHTS[c >> 1u];
    let q = select(w.xy, w.zw, (c & 1u) == 1u);
    let shift = vec4<u32>(0u, 2u, 4u, 6u);
    let lo = (vec4<u32>(q.x) >> shift) & vec4<u32>(0x03030303u);
    let hi = (vec4<u32>(q.y) >> shift) & vec4<u32>(0x03030303u);
    return Int8Chunk(
        array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w),
        d * f32(sc & 15u),
        d * f32((sc >> 8u) & 15u),
        dmin * f32((sc >> 4u) & 15u),
        dmin * f32((sc >> 12u) & 15u),
    );
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let w = load_int8_chunk(c);
    var v: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) { // unroll
        v[k] = w.d0 * bytes4(w.q[k]) - w.m0;
        v[4u + k] = w.d1 * bytes4(w.q[4u + k]) - w.m1;
    }
    return v;
}

// The chunk's dot with int8 inputs xq (their sum qsum), in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    let ones = 0x01010101u;
    let q0 = dot4I8Packed(xq[0], ones) + dot4I8Packed(xq[1], ones) + dot4I8Packed(xq[2], ones)
        + dot4I8Packed(xq[3], ones);
    let sum0 = dot4I8Packed(w.q[0], xq[0]) + dot4I8Packed(w.q[1], xq[1]) + dot4I8Packed(w.q[2], xq[2])
        + dot4I8Packed(w.q[3], xq[3]);
    let sum1 = dot4I8Packed(w.q[4], xq[4]) + dot4I8Packed(w.q[5], xq[5]) + dot4I8Packed(w.q[6], xq[6])
        + dot4I8Packed(w.q[7], xq[7]);
    return w.d0 * f32(sum0) + w.d1 * f32(sum1) - w.m0 * f32(q0) - w.m1 * f32(qsum - q0);
}
