// The weight formats of the hand-written kernels, one struct each, in the repacked GPU layout of
// src/quant (the layouts wgsl/formats/*.wgsl read; see there for the field-by-field description).
// Each defines, for chunk c (32 weights) of its matrix (w: quants, s: scales):
//   dot(w, s, c, x)   the chunk's dot with f32 inputs x (32 values, their sum in x.xsum);
// and the formats that take int8 inputs (src/quant/activations.rs: Q8_0, Q4_K, Q6_K) also
//   dot_int8(w, s, c, q)  its dot with the inputs rounded to int8 (inputs.metal), scaled back.

// The f16 in the low 16 bits of h, widened exactly (subnormals included, whatever the GPU does with
// f16 denormals); as quant_common.wgsl.
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

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j. Sub-blocks j and j + 4 share
// byte j & 3 of each word; the two halves are selected, not branched (a simdgroup holds several j).
inline uint2 scale_min_k4(uint3 w, uint j) {
    uint3 b = (w >> (8u * (j & 3u))) & 0xffu;
    uint2 low = uint2(b.x, b.y) & 63u;
    uint2 high = uint2(b.z & 15u, b.z >> 4) | ((uint2(b.x, b.y) >> 6) << 4);
    return j >= 4 ? high : low;
}

struct Q8_0 {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint4 a = w[2 * c];
        uint4 b = w[2 * c + 1];
        float d = metal::dot(float4(i8x4(a.x)), x.xs[0]) + metal::dot(float4(i8x4(a.y)), x.xs[1])
            + metal::dot(float4(i8x4(a.z)), x.xs[2]) + metal::dot(float4(i8x4(a.w)), x.xs[3])
            + metal::dot(float4(i8x4(b.x)), x.xs[4]) + metal::dot(float4(i8x4(b.y)), x.xs[5])
            + metal::dot(float4(i8x4(b.z)), x.xs[6]) + metal::dot(float4(i8x4(b.w)), x.xs[7]);
        return as_type<float>(s[c]) * d;
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint4 a = w[2 * c];
        uint4 b = w[2 * c + 1];
        int sum = dot4i8(a.x, q.xq[0]) + dot4i8(a.y, q.xq[1]) + dot4i8(a.z, q.xq[2]) + dot4i8(a.w, q.xq[3])
            + dot4i8(b.x, q.xq[4]) + dot4i8(b.y, q.xq[5]) + dot4i8(b.z, q.xq[6]) + dot4i8(b.w, q.xq[7]);
        return q.dx * (as_type<float>(s[c]) * float(sum));
    }
};

struct Q4_K {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint b = 4 * (c >> 3);
        uint dm = s[b];
        uint2 sm = scale_min_k4(uint3(s[b + 1], s[b + 2], s[b + 3]), c & 7);
        uint4 q = w[c];
        float lo = metal::dot(lo_nibbles(q.x), x.xs[0]) + metal::dot(lo_nibbles(q.y), x.xs[1])
            + metal::dot(lo_nibbles(q.z), x.xs[2]) + metal::dot(lo_nibbles(q.w), x.xs[3]);
        float hi = metal::dot(hi_nibbles(q.x), x.xs[4]) + metal::dot(hi_nibbles(q.y), x.xs[5])
            + metal::dot(hi_nibbles(q.z), x.xs[6]) + metal::dot(hi_nibbles(q.w), x.xs[7]);
        return half_to_f32(dm) * float(sm.x) * (lo + hi) - half_to_f32(dm >> 16) * float(sm.y) * x.xsum;
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint b = 4 * (c >> 3);
        uint dm = s[b];
        uint2 sm = scale_min_k4(uint3(s[b + 1], s[b + 2], s[b + 3]), c & 7);
        uint4 wq = w[c];
        uint4 lo = wq & 0x0f0f0f0fu;
        uint4 hi = (wq >> 4) & 0x0f0f0f0fu;
        int sum = dot4i8(lo.x, q.xq[0]) + dot4i8(lo.y, q.xq[1]) + dot4i8(lo.z, q.xq[2]) + dot4i8(lo.w, q.xq[3])
            + dot4i8(hi.x, q.xq[4]) + dot4i8(hi.y, q.xq[5]) + dot4i8(hi.z, q.xq[6]) + dot4i8(hi.w, q.xq[7]);
        return q.dx * (half_to_f32(dm) * float(sm.x) * float(sum) - half_to_f32(dm >> 16) * float(sm.y) * float(q.qsum));
    }
};

// Q5_K: four 5-bit quants, the low nibbles of w's bytes (low or high half of the split nibbles) and
// bits first ..= first + 3 of qh.
inline float4 q5(uint w, uint shift, uint qh, uint first) {
    return float4(((uint4(w) >> (uint4(0, 8, 16, 24) + shift)) & 15u) | (((uint4(qh) >> (uint4(0, 1, 2, 3) + first)) & 1u) << 4));
}

struct Q5_K {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint b = 12 * (c >> 3);
        uint j = c & 7;
        uint dm = s[b];
        uint2 sm = scale_min_k4(uint3(s[b + 1], s[b + 2], s[b + 3]), j);
        uint qh = s[b + 4 + j];
        uint4 q = w[c];
        float lo = metal::dot(q5(q.x, 0, qh, 0), x.xs[0]) + metal::dot(q5(q.y, 0, qh, 4), x.xs[1])
            + metal::dot(q5(q.z, 0, qh, 8), x.xs[2]) + metal::dot(q5(q.w, 0, qh, 12), x.xs[3]);
        float hi = metal::dot(q5(q.x, 4, qh, 16), x.xs[4]) + metal::dot(q5(q.y, 4, qh, 20), x.xs[5])
            + metal::dot(q5(q.z, 4, qh, 24), x.xs[6]) + metal::dot(q5(q.w, 4, qh, 28), x.xs[7]);
        return half_to_f32(dm) * float(sm.x) * (lo + hi) - half_to_f32(dm >> 16) * float(sm.y) * x.xsum;
    }
};

// Q6_K: four 6-bit quants (0 ..= 63) from lo's low nibbles (bytes) and hi's 2-bit fields first ..= first + 3.
inline uint q6_bytes(uint lo, uint hi, uint first) {
    uint t = hi >> (2 * first);
    return lo | ((t << 4) & 0x30u) | ((t << 10) & 0x3000u) | ((t << 16) & 0x300000u) | ((t << 22) & 0x30000000u);
}

inline float4 q6(uint lo, uint hi, uint first) {
    return float4(i8x4(q6_bytes(lo, hi, first))) - 32.0f;
}

struct Q6_K {
    static float dot(device const uint4* w, device const uint* s, uint c, thread const ChunkInput& x) {
        uint b = 21 * (c >> 3);
        uint j = c & 7;
        uint sw = s[b + 16 + (j >> 1)];
        uint k = 2 * (j & 1);
        uint h0 = s[b + 2 * j];
        uint h1 = s[b + 2 * j + 1];
        uint4 q = w[c];
        uint4 l = q & 0x0f0f0f0fu;
        uint4 h = (q >> 4) & 0x0f0f0f0fu;
        float lo = metal::dot(q6(l.x, h0, 0), x.xs[0]) + metal::dot(q6(l.y, h0, 4), x.xs[1])
            + metal::dot(q6(l.z, h0, 8), x.xs[2]) + metal::dot(q6(l.w, h0, 12), x.xs[3]);
        float hi = metal::dot(q6(h.x, h1, 0), x.xs[4]) + metal::dot(q6(h.y, h1, 4), x.xs[5])
            + metal::dot(q6(h.z, h1, 8), x.xs[6]) + metal::dot(q6(h.w, h1, 12), x.xs[7]);
        int4 sc = i8x4(sw);
        return as_type<float>(s[b + 20]) * (float(sc[k]) * lo + float(sc[k + 1]) * hi);
    }

    static float dot_int8(device const uint4* w, device const uint* s, uint c, thread const Int8Input& q) {
        uint b = 21 * (c >> 3);
        uint j = c & 7;
        uint sw = s[b + 16 + (j >> 1)];
        uint k = 2 * (j & 1);
        uint h0 = s[b + 2 * j];
        uint h1 = s[b + 2 * j + 1];
        uint4 wq = w[c];
        uint4 l = wq & 0x0f0f0f0fu;
        uint4 h = (wq >> 4) & 0x0f0f0f0fu;
        const uint ones = 0x01010101u;
        int q0 = dot4i8(q.xq[0], ones) + dot4i8(q.xq[1], ones) + dot4i8(q.xq[2], ones) + dot4i8(q.xq[3], ones);
        int sum0 = dot4i8(q6_bytes(l.x, h0, 0), q.xq[0]) + dot4i8(q6_bytes(l.y, h0, 4), q.xq[1])
            + dot4i8(q6_bytes(l.z, h0, 8), q.xq[2]) + dot4i8(q6_bytes(l.w, h0, 12), q.xq[3]) - 32 * q0;
        int sum1 = dot4i8(q6_bytes(h.x, h1, 0), q.xq[4]) + dot4i8(q6_bytes(h.y, h1, 4), q.xq[5])
            + dot4i8(q6_bytes(h.z, h1, 8), q.xq[6]) + dot4i8(q6_bytes(h.w, h1, 12), q.xq[7]) - 32 * (q.qsum - q0);
        int4 sc = i8x4(sw);
        return q.dx * (as_type<float>(s[b + 20]) * (float(sc[k]) * float(sum0) + float(sc[k + 1]) * float(sum1)));
    }
};
