// Q2_K (repacked, see src/quant/k_quants.rs): chunk c is sub-block pair j = c % 8 (weights 32j .. 32j + 31, two
// 16-weight scales) of super-block s = c / 8. Its 2-bit quants are half c % 2 of WEIGHTS[c / 2]: word h holds
// weights 16h .. 16h + 15 (field i at bits 2i). SCALES[5s ..= 5s + 3]: the 16 scale bytes (low nibble: scale,
// high nibble: min); SCALES[5s + 4]: d | dmin << 16 (f16 bits). Weight = d * sc * q - dmin * m.
fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let s = 5u * (c >> 3u);
    let j = c & 7u;
    let dm = SCALES[s + 4u];
    let d = half_to_f32(dm);
    let dmin = half_to_f32(dm >> 16u);
    let sc = SCALES[s + (j >> 1u)] >> (16u * (j & 1u));
    let d0 = d * f32(sc & 15u);
    let m0 = dmin * f32((sc >> 4u) & 15u);
    let d1 = d * f32((sc >> 8u) & 15u);
    let m1 = dmin * f32((sc >> 12u) & 15u);
    let w = WEIGHTS[c >> 1u];
    let q = select(w.xy, w.zw, (c & 1u) == 1u);
    return array<vec4<f32>, 8>(
        d0 * vec4<f32>(crumbs4(q.x, 0u)) - m0, d0 * vec4<f32>(crumbs4(q.x, 4u)) - m0,
        d0 * vec4<f32>(crumbs4(q.x, 8u)) - m0, d0 * vec4<f32>(crumbs4(q.x, 12u)) - m0,
        d1 * vec4<f32>(crumbs4(q.y, 0u)) - m1, d1 * vec4<f32>(crumbs4(q.y, 4u)) - m1,
        d1 * vec4<f32>(crumbs4(q.y, 8u)) - m1, d1 * vec4<f32>(crumbs4(q.y, 12u)) - m1,
    );
}
