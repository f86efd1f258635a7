// Helpers of the quantized formats, prepended to their snippets by src/kernels/format.rs (after
// wgsl/half.wgsl).

// Split-nibble words (byte k: weight k low, weight k + 16 high): the low / high nibbles of w's 4 bytes.
fn lo_nibbles(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u);
}

fn hi_nibbles(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u);
}

// Four 1-bit fields of w starting with bit `first`.
fn bits4(w: u32, first: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(first))) & vec4<u32>(1u);
}

// Byte k of w, sign-extended.
fn i8_of(w: u32, k: u32) -> i32 {
    return bitcast<i32>(w << (24u - 8u * k)) >> 24u;
}

// The IQ4 grid (ggml's kvalues_iq4nl) at 4-bit indices q. The table is 16 int8 in four words, picked with
// selects: indexing an array would put a local copy of the table in memory.
fn iq4_grid(q: vec4<u32>) -> vec4<f32> {
    let mid = (q & vec4<u32>(4u)) != vec4<u32>(0u);
    let lo = select(vec4<u32>(0xbfad9881u), vec4<u32>(0xf6eaddcfu), mid);
    let hi = select(vec4<u32>(0x26190d01u), vec4<u32>(0x71594535u), mid);
    let w = select(lo, hi, q >= vec4<u32>(8u));
    return vec4<f32>(bitcast<vec4<i32>>(w << (vec4<u32>(24u) - 8u * (q & vec4<u32>(3u)))) >> vec4<u32>(24u));
}

// Q4_K's and Q5_K's scale vec4 r of chunk c's half super-block (d, dmin as f32 bits, then the 6-bit
// scales and mins as bytes, sub-block c % 4 at byte c % 4 of .z and .w): the chunk's d * sc and dmin * m.
fn k_scale_min(r: vec4<u32>, c: u32) -> vec2<f32> {
    let sm = (r.zw >> vec2<u32>(8u * (c & 3u))) & vec2<u32>(0xffu);
    return bitcast<vec2<f32>>(r.xy) * vec2<f32>(sm);
}

// An int8-ready chunk of weights ds * q - mn (Q4_0, Q4_1, Q4_K, Q5_K): q its unsigned quants as bytes,
// weights 4k .. 4k + 3 in word k.
struct OffsetChunk {
    q: array<u32, 8>,
    ds: f32,
    mn: f32,
}

// Its dot with int8 inputs xq whose sum is qsum, in units of the inputs' scale.
fn dot_offset_chunk(w: OffsetChunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    let sum = dot4I8Packed(w.q[0], xq[0]) + dot4I8Packed(w.q[1], xq[1]) + dot4I8Packed(w.q[2], xq[2])
        + dot4I8Packed(w.q[3], xq[3]) + dot4I8Packed(w.q[4], xq[4]) + dot4I8Packed(w.q[5], xq[5])
        + dot4I8Packed(w.q[6], xq[6]) + dot4I8Packed(w.q[7], xq[7]);
    return w.ds * f32(sum) - w.mn * f32(qsum);
}

// A chunk's 32 split-nibble quants (byte k: weight k low, weight k + 16 high) as bytes, weights 4k .. 4k + 3
// in word k.
fn nibble_bytes(q: vec4<u32>) -> array<u32, 8> {
    let lo = q & vec4<u32>(0x0f0f0f0fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    return array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
}

// The four bytes of w, unsigned, as f32s.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu));
}

// An int8-ready chunk of weights d * sc0 * (q - offset) (its first 16) and d * sc1 * (q - offset) (the
// rest) (Q3_K: offset 4, Q6_K: 32): q its unsigned quants as bytes, weights 4k .. 4k + 3 in word k.
struct HalvesChunk {
    q: array<u32, 8>,
    d: f32,
    sc0: f32,
    sc1: f32,
}

// Its weights, dequantized.
fn halves_weights(w: HalvesChunk, offset: f32) -> array<vec4<f32>, 8> {
    let d0 = w.d * w.sc0;
    let d1 = w.d * w.sc1;
    var v: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) { // unroll
        v[k] = d0 * (bytes4(w.q[k]) - vec4<f32>(offset));
        v[4u + k] = d1 * (bytes4(w.q[4u + k]) - vec4<f32>(offset));
    }
    return v;
}

// Its dot with int8 inputs xq whose sum is qsum, in units of the inputs' scale.
fn dot_halves_chunk(w: HalvesChunk, offset: i32, xq: array<u32, 8>, qsum: i32) -> f32 {
    let ones = 0x01010101u;
    // Σ of the first half's inputs; the second half's is qsum minus it.
    let q0 = dot4I8Packed(xq[0], ones) + dot4I8Packed(xq[1], ones) + dot4I8Packed(xq[2], ones)
        + dot4I8Packed(xq[3], ones);
    let sum0 = dot4I8Packed(w.q[0], xq[0]) + dot4I8Packed(w.q[1], xq[1]) + dot4I8Packed(w.q[2], xq[2])
        + dot4I8Packed(w.q[3], xq[3]) - offset * q0;
    let sum1 = dot4I8Packed(w.q[4], xq[4]) + dot4I8Packed(w.q[5], xq[5]) + dot4I8Packed(w.q[6], xq[6])
        + dot4I8Packed(w.q[7], xq[7]) - offset * (qsum - q0);
    return w.d * (w.sc0 * f32(sum0) + w.sc1 * f32(sum1));
}
