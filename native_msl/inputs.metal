// One chunk of a product's input (32 values; the float formats' chunks, 4 or 8 values, fill the first
// float4s): the f32 values and their sum, and for int8 products (chunks of 32) the same values rounded
// exactly as wgsl/int8_input.wgsl and src/quant/activations.rs do:
// q = min(round(x · 2^(7-e)), 127) with e the frexp exponent of the chunk's largest |x| (at least
// -100), packed four to a word (byte k = element k), with Σ q and the scale dx = 2^(e-7).

// Signed bytes of w (byte k = element k).
inline int4 i8x4(uint w) {
    return as_type<int4>(uint4(w << 24, w << 16, w << 8, w)) >> 24;
}

// Σ of the products of the signed bytes of a and b (WGSL's dot4I8Packed).
inline int dot4i8(uint a, uint b) {
    int4 p = i8x4(a) * i8x4(b);
    return p.x + p.y + p.z + p.w;
}

struct Int8Input {
    uint xq[8];
    int qsum;
    float dx;
};

// As wgsl/int8_input.wgsl: scaling by a power of two is exact, so one fma adds 1.5 · 2^23 + 128 with a
// single rounding (ties to even) and the clamp at 127 follows; each lane's bits are then
// 0x4b400000 + 128 + q, so the word packs by shifted adds less the lanes' constant bits, and flipping each
// byte's top bit turns q + 128 into q's two's complement.
inline Int8Input round_to_int8(thread const float4 (&xs)[8]) {
    float4 amax = float4(0.0f);
    for (uint i = 0; i < 8; i++) {
        amax = max(amax, abs(xs[i]));
    }
    uint biased = (as_type<uint>(max(max(amax.x, amax.y), max(amax.z, amax.w))) >> 23) & 0xffu;
    int e = max(int(biased) - 126, -100);
    float4 up = float4(as_type<float>(uint(134 - e) << 23));
    const float4 bias = float4(12583040.0f);
    Int8Input r;
    r.qsum = 0;
    for (uint i = 0; i < 8; i++) {
        uint4 b = as_type<uint4>(min(metal::fma(xs[i], up, bias), bias + 127.0f));
        uint w = ((b.x + (b.y << 8) + (b.z << 16) + (b.w << 24)) - 0x8b400000u) ^ 0x80808080u;
        r.xq[i] = w;
        r.qsum += dot4i8(w, 0x01010101u);
    }
    r.dx = as_type<float>(uint(120 + e) << 23);
    return r;
}

struct ChunkInput {
    float4 xs[8];
    float xsum;
    Int8Input q;
};
