// Q2_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block pair j = c % 8 (weights 32j .. 32j + 31, two
// 16-weight scales) of super-block s = c / 8. Its 2-bit quants are half c % 2 of WEIGHTS[c / 2]: word h holds
// weights 16h + 4k + b at bits 8b + 2k. SCALES[6s ..= 6s + 3]: the 16 scale bytes (low nibble: scale, high
// nibble: min); SCALES[6s + 4], SCALES[6s + 5]: d and dmin as f32 bits. Weight = d * sc * q - dmin * m.

// Chunk c's d * sc and d * sc of its two halves, then dmin * m of each.
fn q2_scales(c: u32) -> vec4<f32> {
    let s = 6u * (c >> 3u);
    let sc = SCALES[s + ((c & 7u) >> 1u)] >> (16u * (c & 1u));
    let dm = vec4<f32>(vec2<f32>(bitcast<f32>(SCALES[s + 4u])), vec2<f32>(bitcast<f32>(SCALES[s + 5u])));
    return dm * vec4<f32>((vec4<u32>(sc) >> vec4<u32>(0u, 8u, 4u, 12u)) & vec4<u32>(15u));
}

// Chunk c's two crumb words (weights 16h + 4k + b at bits 8b + 2k of word h).
fn q2_crumbs(c: u32) -> vec2<u32> {
    let w = WEIGHTS[c >> 1u];
    return select(w.xy, w.zw, (c & 1u) == 1u);
}

// The f32 path shifts the crumbs straight into lanes (the int8 path's bytes cost the prefill 5 %).
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let dm = q2_scales(c);
    let q = q2_crumbs(c);
    let lanes = vec4<u32>(0u, 8u, 16u, 24u);
    var v: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) { // unroll
        v[k] = dm.x * vec4<f32>((vec4<u32>(q.x) >> (lanes + vec4<u32>(2u * k))) & vec4<u32>(3u)) - dm.z;
        v[4u + k] = dm.y * vec4<f32>((vec4<u32>(q.y) >> (lanes + vec4<u32>(2u * k))) & vec4<u32>(3u)) - dm.w;
    }
    return v;
}

// Chunk c unpacked for int8 products: its quants as bytes (weights 4k .. 4k + 3 in word k) and q2_scales.
struct Int8Chunk {
    q: array<u32, 8>,
    dm: vec4<f32>,
}

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let q = q2_crumbs(c);
    let shift = vec4<u32>(0u, 2u, 4u, 6u);
    let lo = (vec4<u32>(q.x) >> shift) & vec4<u32>(0x03030303u);
    let hi = (vec4<u32>(q.y) >> shift) & vec4<u32>(0x03030303u);
    return Int8Chunk(array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w), q2_scales(c));
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
    return w.dm.x * f32(sum0) + w.dm.y * f32(sum1) - w.dm.z * f32(q0) - w.dm.w * f32(qsum - q0);
}
