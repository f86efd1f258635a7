// Q8_0 (repacked, see src/quant/q8_0.rs): a chunk is one block of 32 weights: the int8 quants in
// WEIGHTS[2c], WEIGHTS[2c + 1] (two vec4<u32>), the scale as f32 bits in SCALES[c].
fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let d = bitcast<f32>(SCALES[c]);
    let a = WEIGHTS[2u * c];
    let b = WEIGHTS[2u * c + 1u];
    return array<vec4<f32>, 8>(
        d * i8x4(a.x), d * i8x4(a.y), d * i8x4(a.z), d * i8x4(a.w),
        d * i8x4(b.x), d * i8x4(b.y), d * i8x4(b.z), d * i8x4(b.w),
    );
}

// The chunk's dot with xs, the scale applied once.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let a = WEIGHTS[2u * c];
    let b = WEIGHTS[2u * c + 1u];
    let d = dot(i8x4(a.x), xs[0]) + dot(i8x4(a.y), xs[1]) + dot(i8x4(a.z), xs[2]) + dot(i8x4(a.w), xs[3])
        + dot(i8x4(b.x), xs[4]) + dot(i8x4(b.y), xs[5]) + dot(i8x4(b.z), xs[6]) + dot(i8x4(b.w), xs[7]);
    return bitcast<f32>(SCALES[c]) * d;
}

// The chunk's dot with int8 inputs xq, in units of the inputs' scale.
fn dot_chunk_q8(c: u32, xq: array<u32, 8>, qsum: i32) -> f32 {
    let a = WEIGHTS[2u * c];
    let b = WEIGHTS[2u * c + 1u];
    let sum = dot4I8Packed(a.x, xq[0]) + dot4I8Packed(a.y, xq[1]) + dot4I8Packed(a.z, xq[2])
        + dot4I8Packed(a.w, xq[3]) + dot4I8Packed(b.x, xq[4]) + dot4I8Packed(b.y, xq[5])
        + dot4I8Packed(b.z, xq[6]) + dot4I8Packed(b.w, xq[7]);
    return bitcast<f32>(SCALES[c]) * f32(sum);
}
