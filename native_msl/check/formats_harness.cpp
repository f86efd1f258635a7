// Runs the Metal format and input code (native_msl/formats.metal, inputs.metal) on the CPU, compiled
// by clang against the metal_stdlib stand-in next to this file (tests/msl_formats.rs). Reads from
// stdin: the format struct's name (8 bytes, NUL-padded), then u32 counts of chunks, values per chunk
// (32, or 4 / 8 for the float formats), quant words and scale words, the quant words, the scale words
// and the inputs. Writes per chunk the f32 dot and the int8 dot (inputs rounded by round_to_int8; 0
// for formats without one) as two f32.
#include <metal_stdlib>
using namespace metal;
#include "../inputs.metal"
#include "../formats.metal"
#include <cstdio>
#include <cstring>
#include <vector>

template <typename F, bool INT8>
static void run(uint chunks, uint n, const std::vector<uint>& words, const std::vector<uint>& scales, const std::vector<float>& x) {
    for (uint c = 0; c < chunks; c++) {
        ChunkInput in = {};
        for (uint i = 0; i < n / 4; i++) {
            const float* v = &x[n * c + 4 * i];
            in.xs[i] = float4(v[0], v[1], v[2], v[3]);
            in.xsum += metal::dot(in.xs[i], float4(1.0f));
        }
        if constexpr (INT8) {
            in.q = round_to_int8(in.xs);
        }
        const uint4* w = reinterpret_cast<const uint4*>(words.data());
        float out[2] = {F::dot(w, scales.data(), c, in), 0.0f};
        if constexpr (INT8) {
            out[1] = F::dot_int8(w, scales.data(), c, in.q);
        }
        fwrite(out, sizeof out, 1, stdout);
    }
}

int main() {
    char name[8];
    uint n[4];
    if (fread(name, 8, 1, stdin) != 1 || fread(n, 4, 4, stdin) != 4) return 2;
    if (n[1] != 32 && n[1] != 8 && n[1] != 4) return 2;
    std::vector<uint> words(n[2]), scales(n[3] + 1);
    std::vector<float> x(n[1] * n[0]);
    if (fread(words.data(), 4, n[2], stdin) != n[2] || fread(scales.data(), 4, n[3], stdin) != n[3]) return 2;
    if (fread(x.data(), 4, x.size(), stdin) != x.size()) return 2;
    if (!strcmp(name, "F32")) run<F32, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "F16")) run<F16, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "BF16")) run<BF16, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q8_0")) run<Q8_0, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q4_K")) run<Q4_K, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q5_K")) run<Q5_K, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q6_K")) run<Q6_K, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q4_0")) run<Q4_0, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q4_1")) run<Q4_1, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q5_0")) run<Q5_0, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q5_1")) run<Q5_1, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "IQ4_NL")) run<IQ4_NL, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "IQ4_XS")) run<IQ4_XS, false>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q2_K")) run<Q2_K, true>(n[0], n[1], words, scales, x);
    else if (!strcmp(name, "Q3_K")) run<Q3_K, true>(n[0], n[1], words, scales, x);
    else return 3;
    return 0;
}
