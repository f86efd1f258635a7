// Inputs of int8 products: a chunk of 32 values rounded as src/quant/activations.rs does,
// q = min(round(x · 2^(7-e)), 127) with e the frexp exponent of the chunk's largest |x| (at least
// -100), packed four to a word (byte k = element k), with Σ q and the scale dx = 2^(e-7).
// Host constants: CHUNK_V4 (the includer's chunk: 8 vec4s for the int8 formats).

struct Int8Input {
    xq: array<u32, 8>,
    qsum: i32,
    dx: f32,
}

// Scaling by a power of two is exact, so one fma adds ROUND_BIAS (1.5 * 2^23 + 128) with a single
// rounding (ties to even); the clamp at 127 moves after it. Each lane's bits are then
// 0x4b400000 + 128 + q, the byte q + 128 without a borrow into the bits above, so the four words pack
// by shifted adds less the four lanes' constant bits (0x4b400000 * 0x01010101 mod 2^32), and flipping
// each byte's top bit turns q + 128 into q's two's complement: ~10 operations per four values fewer
// than masking each lane.
const ROUND_BIAS: f32 = 12583040.0;
const BIAS_BITS: u32 = 0x8b400000u;

fn round_to_int8(xs: array<vec4<f32>, 8>) -> Int8Input {
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) { // unroll
        amax = max(amax, abs(xs[i]));
    }
    let biased = (bitcast<u32>(max(max(amax.x, amax.y), max(amax.z, amax.w))) >> 23u) & 0xffu;
    let e = max(i32(biased) - 126, -100);
    let up = vec4<f32>(bitcast<f32>(u32(134 - e) << 23u));
    let ones = 0x01010101u;
    var r: Int8Input;
    for (var i = 0u; i < 8u; i++) { // unroll
        let b = bitcast<vec4<u32>>(min(fma(xs[i], up, vec4<f32>(ROUND_BIAS)), vec4<f32>(ROUND_BIAS + 127.0)));
        let w = ((b.x + (b.y << 8u) + (b.z << 16u) + (b.w << 24u)) - BIAS_BITS) ^ 0x80808080u;
        r.xq[i] = w;
        r.qsum += dot4I8Packed(w, ones);
    }
    r.dx = bitcast<f32>(u32(120 + e) << 23u);
    return r;
}

// The first 10 words of a prepared input's chunk (matvec.wgsl: PREP_WORDS words per chunk, the last
// ones unused), as the f32 bits its buffers store: the 8 int8 words, Σ q, dx.
fn prepared_words(q: Int8Input) -> array<f32, 10> {
    return array<f32, 10>(
        bitcast<f32>(q.xq[0]), bitcast<f32>(q.xq[1]), bitcast<f32>(q.xq[2]), bitcast<f32>(q.xq[3]),
        bitcast<f32>(q.xq[4]), bitcast<f32>(q.xq[5]), bitcast<f32>(q.xq[6]), bitcast<f32>(q.xq[7]),
        bitcast<f32>(q.qsum), q.dx,
    );
}

// The includer's chunk as the rounding takes it. Kernels whose chunks are shorter (weights that take
// f32 inputs) round only in branches their constants rule out, which must still type-check.
fn chunk32(xs: array<vec4<f32>, CHUNK_V4>) -> array<vec4<f32>, 8> {
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < CHUNK_V4; i++) { // unroll
        r[min(i, 7u)] = xs[i];
    }
    return r;
}
