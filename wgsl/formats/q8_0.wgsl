// Q8_0 (repacked, see src/quant/q8_0.rs): a chunk is one block of 32 weights, c = 4g + k: the int8 quants
// in WEIGHTS[9g + 2k], WEIGHTS[9g + 2k + 1] (two vec4<u32>), the scale as f32 bits in WEIGHTS[9g + 8][k].

// Chunk c's first quant vec4.
fn q8_at(c: u32) -> u32 {
    return 9u * (c >> 2u) + 2u * (c & 3u);
}

fn q8_scale(c: u32) -> f32 {
    return bitcast<f32>(WEIGHTS[9u * (c >> 2u) + 8u][c & 3u]);
}

fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 8> {
    let d = q8_scale(c);
    let a = WEIGHTS[q8_at(c)];
    let b = WEIGHTS[q8_at(c) + 1u];
    return array<vec4<f32>, 8>(
        d * i8x4(a.x), d * i8x4(a.y), d * i8x4(a.z), d * i8x4(a.w),
        d * i8x4(b.x), d * i8x4(b.y), d * i8x4(b.z), d * i8x4(b.w),
    );
}

// The chunk's dot with xs, the scale applied once.
fn dot_chunk(c: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let a = WEIGHTS[q8_at(c)];
    let b = WEIGHTS[q8_at(c) + 1u];
    let d = dot(i8x4(a.x), xs[0]) + dot(i8x4(a.y), xs[1]) + dot(i8x4(a.z), xs[2]) + dot(i8x4(a.w), xs[3])
        + dot(i8x4(b.x), xs[4]) + dot(i8x4(b.y), xs[5]) + dot(i8x4(b.z), xs[6]) + dot(i8x4(b.w), xs[7]);
    return q8_scale(c) * d;
}

// Chunk c unpacked for int8 products: its quants and d.
struct Int8Chunk {
    q: array<u32, 8>,
    d: f32,
}

fn load_int8_chunk(c: u32) -> Int8Chunk {
    let a = WEIGHTS[q8_at(c)];
    let b = WEIGHTS[q8_at(c) + 1u];
    return Int8Chunk(array<u32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w), q8_scale(c));
}

// The chunk's dot with int8 inputs xq, in units of the inputs' scale.
fn dot_int8_chunk(w: Int8Chunk, xq: array<u32, 8>, qsum: i32) -> f32 {
    let sum = dot4I8Packed(w.q[0], xq[0]) + dot4I8Packed(w.q[1], xq[1]) + dot4I8Packed(w.q[2], xq[2])
        + dot4I8Packed(w.q[3], xq[3]) + dot4I8Packed(w.q[4], xq[4]) + dot4I8Packed(w.q[5], xq[5])
        + dot4I8Packed(w.q[6], xq[6]) + dot4I8Packed(w.q[7], xq[7]);
    return w.d * f32(sum);
}
