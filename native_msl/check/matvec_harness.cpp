// Runs the Metal matvec kernel whole on the CPU (tests/msl_matvec.rs): the composed source named by
// MSL_SOURCE, compiled by clang against the metal_stdlib stand-in next to this file. Each threadgroup
// runs as WG std::threads; its threadgroup arrays are statics they share; threadgroup_barrier is a
// std::barrier, and simd_shuffle_xor and simd_sum exchange through memory between two of them
// (every thread of the threadgroup reaches both, as the kernel's reductions require). Threadgroups
// run one at a time.
// Reads from stdin the kernel's BUFFERS buffers in binding order (a u32 word count, then the words)
// and the grid (3 u32); writes the buffers as they are after the run.
// The standard headers first: the stand-in defines Metal's address-space words (thread, device, ...)
// away.
#include <barrier>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>
#include <metal_stdlib>

#define threadgroup_array static
#include MSL_SOURCE
#undef thread

// The merging variant binds the step too.
#define BUFFERS (MERGE ? 14 : 13)

static std::barrier<>* group_barrier;
static thread_local uint thread_id;
static float exchange[1024];

float metal::exp(float a) { return std::exp(a); }
float metal::rsqrt(float a) { return 1.0f / std::sqrt(a); }
void metal::threadgroup_barrier(mem_flags) { group_barrier->arrive_and_wait(); }

// Lanes differ in their low five bits (mask < 32), so the partner is in the same simdgroup.
float metal::simd_shuffle_xor(float v, ushort mask) {
    exchange[thread_id] = v;
    group_barrier->arrive_and_wait();
    float r = exchange[thread_id ^ mask];
    group_barrier->arrive_and_wait();
    return r;
}

float metal::simd_sum(float v) {
    exchange[thread_id] = v;
    group_barrier->arrive_and_wait();
    float r = 0.0f;
    for (uint i = thread_id & ~31u; i < (thread_id | 31u) + 1; i++) {
        r += exchange[i];
    }
    group_barrier->arrive_and_wait();
    return r;
}

int main() {
    static_assert(WG <= sizeof exchange / sizeof exchange[0], "exchange holds a threadgroup");
    std::vector<std::vector<uint>> b(BUFFERS);
    for (auto& words : b) {
        uint n;
        if (fread(&n, 4, 1, stdin) != 1) return 2;
        words.resize(n + 4);
        if (fread(words.data(), 4, n, stdin) != n) return 2;
        words.resize(n);
    }
    uint grid[3];
    if (fread(grid, 4, 3, stdin) != 3) return 2;
    for (uint z = 0; z < grid[2]; z++) {
        for (uint y = 0; y < grid[1]; y++) {
            for (uint x = 0; x < grid[0]; x++) {
                std::barrier<> bar(WG);
                group_barrier = &bar;
                std::vector<std::thread> threads;
                for (uint t = 0; t < WG; t++) {
                    threads.emplace_back([&b, t, x, y, z] {
                        thread_id = t;
                        matvec(*reinterpret_cast<Params*>(b[0].data()), reinterpret_cast<const float4*>(b[1].data()),
                               reinterpret_cast<float*>(b[2].data()), b[3].data(),
                               reinterpret_cast<const uint4*>(b[4].data()), b[5].data(),
                               reinterpret_cast<const uint4*>(b[6].data()), b[7].data(),
                               reinterpret_cast<const float4*>(b[8].data()), reinterpret_cast<float*>(b[9].data()),
                               reinterpret_cast<const float*>(b[10].data()),
                               reinterpret_cast<const float*>(b[11].data()),
                               reinterpret_cast<const float4*>(b[12].data()),
#if MERGE
                               *reinterpret_cast<Step*>(b[13].data()),
#endif
                               t, uint3(x, y, z));
                    });
                }
                for (auto& t : threads) t.join();
            }
        }
    }
    for (auto& words : b) {
        fwrite(words.data(), 4, words.size(), stdout);
    }
    return 0;
}
