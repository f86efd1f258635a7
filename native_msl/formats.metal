// The weight formats of the hand-written kernels, one struct each, in the repacked GPU layout of
// src/quant (the layouts wgsl/formats/*.wgsl read; see there for the field-by-field description).
// Each defines, for chunk c (32 weights) of its matrix (w: quants, s: scales):
//   dot(w, s, c, x)   the chunk's dot with f32 inputs x (32 values, their sum in x.xsum);
// and the formats that take int8 inputs (src/quant/activations.rs: Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) also
//   dot_int8(w, s, c, q)  its dot with the inputs rounded to int8 (inputs.metal), scaled back.

// The f16 in the low 16 bits of h, widened exactly (subnormals included, whatever the GPU does with
// f16 denormals); as wgsl/half.wgsl.
inline float half_to_f32(uint h) {
    uint e = (h >> 10) & 0x1fu;
    uint m = h & 0x3ffu;
    float v = as_type<float>(((e + 112) << 23) | (m << 13));
    v = e == 0 ? float(m) * 5.9604644775390625e-8f : v;
    v = e == 31 ? as_type<float>(0x7f800000u | (m << 13)) : v;
    return as_type<float>(as_type<uint>(v) | ((h & 0x8000u) << 16));
}

// Split-nibble words (byte k: weight k low, weight k + 16 high).
inline float4 lo_nibbles(uint w) {
    return float4((uint4(w) >> uint4(0, 8, 16, 24)) & 15u);
}

inline float4 hi_nibbles(uint w) {
    return float4((uint4(w) >> uint4(4, 12, 20, 28)) & 15u);
}

// Q4_K's and Q5_K's scale vec4 r of chunk c's half super-block (d, dmin as f32; the 6-bit scales and mins
// as bytes): the chunk's d * sc and dmin * m.
inline float2 k_scale_min(uint4 r, uint c) {
    uint2 sm = (uint2(r.z, r.w) >> (8u * (c & 3u))) & 0xffu;
    return float2(as_type<float>(r.x), as_type<float>(r.y)) * float2(sm);
}

// A chunk's 32 split-nibble quants (byte k: weight k low, weight k + 16 high) as bytes, weights 4k .. 4k + 3
// in b[k].
inline void nibble_bytes(uint4 q, thread uint (&b)[8]) {
    uint4 lo = q & 0x0f0f0f0fu;
    uint4 hi = (q >> 4) & 0x0f0f0f0fu;
    b[0] = lo.x; b[1] = lo.y; b[2] = lo.z; b[3] = lo.w;
    b[4] = hi.x; b[5] = hi.y; b[6] = hi.z; b[7] = hi.w;
}

// The dot of weights ds * q - mn (q: unsigned quants as bytes, weights 4k .. 4k + 3 in word k) with the
// int8 inputs q, scaled back.
inline float dot_int8_offset(thread const uint (&w)[8], float ds, float mn, thread const Int8Input& q) {
    int sum = dot4i8(w[0], q.xq[0]) + dot4i8(w[1], q.xq[1]) + dot4i8(w[2], q.xq[2]) + dot4i8(w[3], q.xq[3])
        + dot4i8(w[4], q.xq[4]) + dot4i8(w[5], q.xq[5]) + dot4i8(w[6], q.xq[6]) + dot4i8(w[7], q.xq[7]);
    return q.dx * (ds * float(sum) - mn * float(q.qsum));
}

// The dot of weights d * sc0 * (b - offset) (the first 16) and d * sc1 * (b - offset) (the rest), b unsigned
// quants as bytes (weights 4k .. 4k + 3 in b[k]), with the int8 inputs q, scaled back.
inline float dot_int8_halves(thread const uint (&b)[8], int offset, float d, float sc0, float sc1, thread const Int8Input& q) {
    const uint ones = 0x01010101u;
    int q0 = dot4i8(q.xq[0], ones) + dot4i8(q.xq[1], ones) + dot4i8(q.xq[2], ones) + dot4i8(q.xq[3], ones);
    int sum0 = dot4i8(b[0], q.xq[0]) + dot4i8(b[1], q.xq[1]) + dot4i8(b[2], q.xq[2]) + dot4i8(b[3], q.xq[3]) - offset * q0;
    int sum1 = dot4i8(b[4], q.xq[4]) + dot4i8(b[5], q.xq[5]) + dot4i8(b[6], q.xq[6]) + dot4i8(b[7], q.xq[7])
        - offset * (q.qsum - q0);
    return q.dx * (d * (sc0 * float(sum0) + sc1 * float(sum1)));
}

// The same weights' dot with f32 inputs x, each half's scale applied once.
inline float dot_halves_f32(thread const uint (&b)[8], float offset, float d, float sc0, float sc1, thread const ChunkInput& x) {
    float lo = 0.0f;
    float hi = 0.0f;
    for (uint k = 0; k < 4; k++) {
        lo += metal::dot(float4(i8x4(b[k])) - offset, x.xs[k]);
        hi += metal::dot(float4(i8x4(b[4 + k])) - offset, x.xs[4 + k]);
    }
    return d * (sc0 * lo + sc1 * hi);
}

// Q8_0 (the GPU layout of src/quant/q8_0.rs): blocks in groups of four, nine uint4s per group g: chunk
// c = 4g + k's quants at 9g + 2k and 9g + 2k + 1, the four scales (f32) at 9g + 8.
inline uint q8_at(uint c) {
    return 9 * (c >> 2) + 2 * (c & 3);
}

inline float q8_scale(device const uint4* w, uint c) {
    return as_type<float>(w[9 * (c >> 2) + 8][c & 3]);
}

struct Q8_0 {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint4 a = w[q8_at(c)];
        uint4 b = w[q8_at(c) + 1];
        float d = metal::dot(float4(i8x4(a.x)), x.xs[0]) + metal::dot(float4(i8x4(a.y)), x.xs[1])
            + metal::dot(float4(i8x4(a.z)), x.xs[2]) + metal::dot(float4(i8x4(a.w)), x.xs[3])
            + metal::dot(float4(i8x4(b.x)), x.xs[4]) + metal::dot(float4(i8x4(b.y)), x.xs[5])
            + metal::dot(float4(i8x4(b.z)), x.xs[6]) + metal::dot(float4(i8x4(b.w)), x.xs[7]);
        return q8_scale(w, c) * d;
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint4 a = w[q8_at(c)];
        uint4 b = w[q8_at(c) + 1];
        int sum = dot4i8(a.x, q.xq[0]) + dot4i8(a.y, q.xq[1]) + dot4i8(a.z, q.xq[2]) + dot4i8(a.w, q.xq[3])
            + dot4i8(b.x, q.xq[4]) + dot4i8(b.y, q.xq[5]) + dot4i8(b.z, q.xq[6]) + dot4i8(b.w, q.xq[7]);
        return q.dx * (q8_scale(w, c) * float(sum));
    }
};

// Q4_K (the GPU layout of src/quant/k_quants.rs, scales among the quants): chunk c's quants, and its
// d * sc and dmin * m from its half super-block's vec4.
inline uint4 q4k_quants(device const uint4* w, uint c) {
    return w[c + 2 * (c >> 3)];
}

inline float2 q4k_scale_min(device const uint4* w, uint c) {
    return k_scale_min(w[10 * (c >> 3) + 8 + ((c >> 2) & 1)], c);
}

struct Q4_K {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        float2 dsm = q4k_scale_min(w, c);
        uint4 q = q4k_quants(w, c);
        float lo = metal::dot(lo_nibbles(q.x), x.xs[0]) + metal::dot(lo_nibbles(q.y), x.xs[1])
            + metal::dot(lo_nibbles(q.z), x.xs[2]) + metal::dot(lo_nibbles(q.w), x.xs[3]);
        float hi = metal::dot(hi_nibbles(q.x), x.xs[4]) + metal::dot(hi_nibbles(q.y), x.xs[5])
            + metal::dot(hi_nibbles(q.z), x.xs[6]) + metal::dot(hi_nibbles(q.w), x.xs[7]);
        return dsm.x * (lo + hi) - dsm.y * x.xsum;
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        float2 dsm = q4k_scale_min(w, c);
        uint b[8];
        nibble_bytes(q4k_quants(w, c), b);
        return dot_int8_offset(b, dsm.x, dsm.y, q);
    }
};

// Q5_K (the GPU layout of src/quant/k_quants.rs, 12 uint4s per super-block s): chunk c = 8s + j's 5-bit
// quants as bytes, weights 4k .. 4k + 3 in b[k]: nibble word j with its 5th bits (uint4 12s + 8 + j / 4,
// word j % 4; weight 4k + b at bit 8b + k) shifted beside them; its scales as Q4_K's at 12s + 10 + j / 4.
inline void q5_bytes(device const uint4* w, uint c, thread uint (&b)[8]) {
    uint s = 12 * (c >> 3);
    uint j = c & 7;
    uint4 q = w[s + j];
    uint4 qh = uint4(w[s + 8 + (j >> 2)][j & 3]);
    uint4 lo = (q & 0x0f0f0f0fu) | (((qh >> uint4(0, 1, 2, 3)) & 0x01010101u) << 4);
    uint4 hi = ((q >> 4) & 0x0f0f0f0fu) | (((qh >> uint4(4, 5, 6, 7)) & 0x01010101u) << 4);
    b[0] = lo.x; b[1] = lo.y; b[2] = lo.z; b[3] = lo.w;
    b[4] = hi.x; b[5] = hi.y; b[6] = hi.z; b[7] = hi.w;
}

inline float2 q5k_scale_min(device const uint4* w, uint c) {
    return k_scale_min(w[12 * (c >> 3) + 10 + ((c >> 2) & 1)], c);
}

struct Q5_K {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        float2 dsm = q5k_scale_min(w, c);
        uint b[8];
        q5_bytes(w, c, b);
        float d = 0.0f;
        for (uint k = 0; k < 8; k++) {
            d += metal::dot(float4(i8x4(b[k])), x.xs[k]);
        }
        return dsm.x * d - dsm.y * x.xsum;
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        float2 dsm = q5k_scale_min(w, c);
        uint b[8];
        q5_bytes(w, c, b);
        return dot_int8_offset(b, dsm.x, dsm.y, q);
    }
};

// Q6_K: four 6-bit quants (0 ..= 63), byte b that of weight 4k + b of the 16 whose low nibbles are lo's
// bytes (nibble word k) and whose high bits are hi, byte-interleaved (weight 4k + b at bits 8b + 2k).
inline uint q6_bytes(uint lo, uint hi, uint k) {
    return lo | (((hi >> (2 * k)) & 0x03030303u) << 4);
}

struct Q6_K {
    // The chunk's 6-bit quants as bytes (weights 4k .. 4k + 3 in b[k]); returns d and its two scales.
    static float4 unpack(device const uint4* w, device const uint* s, uint c, thread uint (&b)[8]) {
        uint p = 21 * (c >> 3);
        uint j = c & 7;
        uint h0 = s[p + 2 * j];
        uint h1 = s[p + 2 * j + 1];
        nibble_bytes(w[c], b);
        for (uint k = 0; k < 4; k++) {
            b[k] = q6_bytes(b[k], h0, k);
            b[4 + k] = q6_bytes(b[4 + k], h1, k);
        }
        int4 sc = i8x4(s[p + 16 + (j >> 1)]);
        uint k = 2 * (j & 1);
        return float4(as_type<float>(s[p + 20]), float(sc[k]), float(sc[k + 1]), 0.0f);
    }

    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint b[8];
        float4 d = unpack(w, s, c, b);
        return dot_halves_f32(b, 32.0f, d.x, d.y, d.z, x);
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint b[8];
        float4 d = unpack(w, s, c, b);
        return dot_int8_halves(b, 32, d.x, d.y, d.z, q);
    }
};

// The float formats: a chunk is one uint4 of weights, 4 f32 or 8 f16/bf16 (two per word, low half
// first), against the first one or two float4s of the input.
struct F32 {
    static float dot(device const uint4* w, device const uint*, uint c, thread const ChunkInput& x) {
        return metal::dot(as_type<float4>(w[c]), x.xs[0]);
    }
};

struct F16 {
    static float dot(device const uint4* w, device const uint*, uint c, thread const ChunkInput& x) {
        uint4 q = w[c];
        float4 a = float4(half_to_f32(q.x), half_to_f32(q.x >> 16), half_to_f32(q.y), half_to_f32(q.y >> 16));
        float4 b = float4(half_to_f32(q.z), half_to_f32(q.z >> 16), half_to_f32(q.w), half_to_f32(q.w >> 16));
        return metal::dot(a, x.xs[0]) + metal::dot(b, x.xs[1]);
    }
};

// A bf16 is the top 16 bits of an f32, so widening is a shift.
inline float2 bf16_pair(uint w) {
    return float2(as_type<float>(w << 16), as_type<float>(w & 0xffff0000u));
}

struct BF16 {
    static float dot(device const uint4* w, device const uint*, uint c, thread const ChunkInput& x) {
        uint4 q = w[c];
        float2 a = bf16_pair(q.x), b = bf16_pair(q.y), e = bf16_pair(q.z), f = bf16_pair(q.w);
        return metal::dot(float4(a.x, a.y, b.x, b.y), x.xs[0]) + metal::dot(float4(e.x, e.y, f.x, f.y), x.xs[1]);
    }
};

// The formats below take f32 inputs only: each dequantizes its chunk (`load`, as the WGSL
// load_chunk) and Dequantized<F> supplies the dot.
template <typename F>
struct Dequantized {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        float4 v[8];
        F::load(w, s, c, v);
        float d = 0.0f;
        for (uint i = 0; i < 8; i++) {
            d += metal::dot(v[i], x.xs[i]);
        }
        return d;
    }
};

// Four 1-bit fields of w starting with bit `first`.
inline uint4 bits4(uint w, uint first) {
    return (uint4(w) >> (uint4(0, 1, 2, 3) + first)) & 1u;
}

// ggml's kvalues_iq4nl: the IQ4 grid.
constant int iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

inline float4 iq4_grid(float4 q) {
    return float4(iq4_values[uint(q.x)], iq4_values[uint(q.y)], iq4_values[uint(q.z)], iq4_values[uint(q.w)]);
}

// Q4_0: split-nibble block c in w[c], d (f16) in half c % 2 of s[c / 2]. Weight = d * (q - 8).
struct Q4_0 : Dequantized<Q4_0> {
    static void load(device const uint4* w, device const uint* s, uint c, thread float4 (&v)[8]) {
        float d = half_to_f32(s[c >> 1] >> (16 * (c & 1)));
        uint4 q = w[c];
        for (uint i = 0; i < 4; i++) {
            v[i] = d * (lo_nibbles(q[i]) - 8.0f);
            v[4 + i] = d * (hi_nibbles(q[i]) - 8.0f);
        }
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        float d = half_to_f32(s[c >> 1] >> (16 * (c & 1)));
        uint b[8];
        nibble_bytes(w[c], b);
        return dot_int8_offset(b, d, 8.0f * d, q);
    }
};

// Q4_1: split-nibble block c in w[c], d | m << 16 (f16) in s[c]. Weight = d * q + m.
struct Q4_1 : Dequantized<Q4_1> {
    static void load(device const uint4* w, device const uint* s, uint c, thread float4 (&v)[8]) {
        float d = half_to_f32(s[c]);
        float m = half_to_f32(s[c] >> 16);
        uint4 q = w[c];
        for (uint i = 0; i < 4; i++) {
            v[i] = d * lo_nibbles(q[i]) + m;
            v[4 + i] = d * hi_nibbles(q[i]) + m;
        }
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint b[8];
        nibble_bytes(w[c], b);
        return dot_int8_offset(b, half_to_f32(s[c]), -half_to_f32(s[c] >> 16), q);
    }
};

// Q5_0, Q5_1: four 5-bit quants, the low nibbles of w's bytes (low or high half of the split nibbles)
// and bits first ..= first + 3 of qh.
inline float4 q5(uint w, uint shift, uint qh, uint first) {
    return float4(((uint4(w) >> (uint4(0, 8, 16, 24) + shift)) & 15u) | (((uint4(qh) >> (uint4(0, 1, 2, 3) + first)) & 1u) << 4));
}

// Q5_0: split-nibble block c in w[c]; for the pair p = c / 2, s[3p + c % 2] is the block's qh (bit i:
// 5th bit of weight i), half c % 2 of s[3p + 2] its d. Weight = d * (q - 16).
struct Q5_0 : Dequantized<Q5_0> {
    static void load(device const uint4* w, device const uint* s, uint c, thread float4 (&v)[8]) {
        uint p = 3 * (c >> 1);
        uint qh = s[p + (c & 1)];
        float d = half_to_f32(s[p + 2] >> (16 * (c & 1)));
        uint4 q = w[c];
        for (uint i = 0; i < 4; i++) {
            v[i] = d * (q5(q[i], 0, qh, 4 * i) - 16.0f);
            v[4 + i] = d * (q5(q[i], 4, qh, 16 + 4 * i) - 16.0f);
        }
    }
};

// Q5_1: split-nibble block c in w[c], d | m << 16 (f16) in s[2c], qh in s[2c + 1]. Weight = d * q + m.
struct Q5_1 : Dequantized<Q5_1> {
    static void load(device const uint4* w, device const uint* s, uint c, thread float4 (&v)[8]) {
        float d = half_to_f32(s[2 * c]);
        float m = half_to_f32(s[2 * c] >> 16);
        uint qh = s[2 * c + 1];
        uint4 q = w[c];
        for (uint i = 0; i < 4; i++) {
            v[i] = d * q5(q[i], 0, qh, 4 * i) + m;
            v[4 + i] = d * q5(q[i], 4, qh, 16 + 4 * i) + m;
        }
    }
};

// IQ4_NL: split-nibble grid indices of block c in w[c], d (f16) in half c % 2 of s[c / 2].
// Weight = d * grid[q].
struct IQ4_NL : Dequantized<IQ4_NL> {
    static void load(device const uint4* w, device const uint* s, uint c, thread float4 (&v)[8]) {
        float d = half_to_f32(s[c >> 1] >> (16 * (c & 1)));
        uint4 q = w[c];
        for (uint i = 0; i < 4; i++) {
            v[i] = d * iq4_grid(lo_nibbles(q[i]));
            v[4 + i] = d * iq4_grid(hi_nibbles(q[i]));
        }
    }
};

// IQ4_XS: sub-block j = c % 8 of super-block b = c / 8; s[2b]: d (f16) | scales_h << 16, s[2b + 1]:
// scales_l. Weight = d * (scale - 32) * grid[q].
struct IQ4_XS : Dequantized<IQ4_XS> {
    static void load(device const uint4* w, device const uint* s, uint c, thread float4 (&v)[8]) {
        uint b = 2 * (c >> 3);
        uint j = c & 7;
        uint dh = s[b];
        uint ls = ((s[b + 1] >> (4 * j)) & 15u) | (((dh >> (16 + 2 * j)) & 3u) << 4);
        float dl = half_to_f32(dh) * float(int(ls) - 32);
        uint4 q = w[c];
        for (uint i = 0; i < 4; i++) {
            v[i] = dl * iq4_grid(lo_nibbles(q[i]));
            v[4 + i] = dl * iq4_grid(hi_nibbles(q[i]));
        }
    }
};

// Q2_K: sub-block pair j = c % 8 of super-block b = c / 8; its 2-bit quants are half c % 2 of w[c / 2]
// (word h: weight 16h + 4k + i at bits 8i + 2k); s[6b ..= 6b + 3]: 16 scale bytes (low nibble scale, high
// nibble min), s[6b + 4], s[6b + 5]: d, dmin (f32). Weight = d * sc * q - dmin * m.
struct Q2_K {
    // The chunk's quants as bytes (weights 4k .. 4k + 3 in b[k]); returns d * sc and dmin * m of each half.
    static float4 unpack(device const uint4* w, device const uint* s, uint c, thread uint (&b)[8]) {
        uint p = 6 * (c >> 3);
        uint j = c & 7;
        float d = as_type<float>(s[p + 4]);
        float dmin = as_type<float>(s[p + 5]);
        uint sc = s[p + (j >> 1)] >> (16 * (j & 1));
        uint4 ww = w[c >> 1];
        uint2 q = (c & 1) ? uint2(ww.z, ww.w) : uint2(ww.x, ww.y);
        uint4 lo = (uint4(q.x) >> uint4(0, 2, 4, 6)) & 0x03030303u;
        uint4 hi = (uint4(q.y) >> uint4(0, 2, 4, 6)) & 0x03030303u;
        b[0] = lo.x; b[1] = lo.y; b[2] = lo.z; b[3] = lo.w;
        b[4] = hi.x; b[5] = hi.y; b[6] = hi.z; b[7] = hi.w;
        return float4(d * float(sc & 15u), d * float((sc >> 8) & 15u), dmin * float((sc >> 4) & 15u),
                      dmin * float((sc >> 12) & 15u));
    }

    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint b[8];
        float4 dm = unpack(w, s, c, b);
        float lo = 0.0f;
        float hi = 0.0f;
        for (uint k = 0; k < 4; k++) {
            lo += metal::dot(float4(i8x4(b[k])), x.xs[k]);
            hi += metal::dot(float4(i8x4(b[4 + k])), x.xs[4 + k]);
        }
        float4 ones = float4(1.0f);
        float s0 = metal::dot(x.xs[0] + x.xs[1] + x.xs[2] + x.xs[3], ones);
        return dm.x * lo + dm.y * hi - dm.z * s0 - dm.w * (x.xsum - s0);
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint b[8];
        float4 dm = unpack(w, s, c, b);
        const uint ones = 0x01010101u;
        int q0 = dot4i8(q.xq[0], ones) + dot4i8(q.xq[1], ones) + dot4i8(q.xq[2], ones) + dot4i8(q.xq[3], ones);
        int sum0 = dot4i8(b[0], q.xq[0]) + dot4i8(b[1], q.xq[1]) + dot4i8(b[2], q.xq[2]) + dot4i8(b[3], q.xq[3]);
        int sum1 = dot4i8(b[4], q.xq[4]) + dot4i8(b[5], q.xq[5]) + dot4i8(b[6], q.xq[6]) + dot4i8(b[7], q.xq[7]);
        return q.dx * (dm.x * float(sum0) + dm.y * float(sum1) - dm.z * float(q0) - dm.w * float(q.qsum - q0));
    }
};

// Q3_K: sub-block pair j = c % 8 of super-block b = c / 8; the low 2 bits of its quants are half c % 2
// of w[c / 2] (word h: weight 16h + 4k + i at bits 8i + 2k); s[13b + j]: the high bits (weight 4k + i at
// bit 8i + k); s[13b + 8 ..= 13b + 11]: the 16 scales less 32 as i8; s[13b + 12]: d (f32).
// Weight = d * (sc - 32) * (q - 4).
inline void q3_bytes(device const uint4* w, device const uint* s, uint c, thread uint (&b)[8]) {
    uint4 ww = w[c >> 1];
    uint2 q = (c & 1) ? uint2(ww.z, ww.w) : uint2(ww.x, ww.y);
    uint4 hm = uint4(s[13 * (c >> 3) + (c & 7)]);
    uint4 lo = ((uint4(q.x) >> uint4(0, 2, 4, 6)) & 0x03030303u) | (((hm >> uint4(0, 1, 2, 3)) & 0x01010101u) << 2);
    uint4 hi = ((uint4(q.y) >> uint4(0, 2, 4, 6)) & 0x03030303u) | (((hm >> uint4(4, 5, 6, 7)) & 0x01010101u) << 2);
    b[0] = lo.x; b[1] = lo.y; b[2] = lo.z; b[3] = lo.w;
    b[4] = hi.x; b[5] = hi.y; b[6] = hi.z; b[7] = hi.w;
}

struct Q3_K {
    // d, and the chunk's two scales less 32 (and an unused 0).
    static float4 scales(device const uint* s, uint c) {
        uint b = 13 * (c >> 3);
        uint j = c & 7;
        int4 sc = i8x4(s[b + 8 + (j >> 1)]);
        uint k = 2 * (j & 1);
        return float4(as_type<float>(s[b + 12]), float(sc[k]), float(sc[k + 1]), 0.0f);
    }

    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        float4 d = scales(s, c);
        uint b[8];
        q3_bytes(w, s, c, b);
        return dot_halves_f32(b, 4.0f, d.x, d.y, d.z, x);
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        float4 d = scales(s, c);
        uint b[8];
        q3_bytes(w, s, c, b);
        return dot_int8_halves(b, 4, d.x, d.y, d.z, q);
    }
};
