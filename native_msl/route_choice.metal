// The top-k expert choice of wgsl/route_choice.wgsl for matvec.metal (MATRIX 3), with the same
// operations in the same order, so both pick the same experts with the same weights.
// Host #defines: WG, N_EXP, TOPK, SOFTMAX, NORM_TOPK, SCALE, SHARED_SLOT, FOLDED, FOLD_SLICES, FOLD_GROUPS,
// FOLD_HIDDEN, FOLD_EPS (FOLDED: the logits are the attention output's partial sums, as in the WGSL).

// Keys four to a vector, so ranking reads and compares four at a time; past the last expert, below
// every key (so never picked).
#define N_EXP4 ((N_EXP + 3) / 4)
#define NO_KEY (-3.402823e38f)

// Threadgroup tables of the choice (declared in the kernel body, as Metal requires).
struct RouteTables {
    threadgroup float4* key;   // N_EXP4
    threadgroup float* score;  // N_EXP
    threadgroup uint* expert;  // TOPK + 1
    threadgroup float* fold;   // FOLDED: FOLD_SLICES * (N_EXP + 1)
};

// FOLDED: the partial sums totalled by slices of the groups, one thread per slice and expert.
inline void sum_router_partials(RouteTables t, device const float* partials, uint tid) {
    for (uint i = tid; i < FOLD_SLICES * (N_EXP + 1); i += WG) {
        uint k = i / (N_EXP + 1);
        uint e = i % (N_EXP + 1);
        float s = 0.0f;
        for (uint w = k * (FOLD_GROUPS / FOLD_SLICES); w < (k + 1) * (FOLD_GROUPS / FOLD_SLICES); w++) {
            s += partials[w * (N_EXP + 1) + e];
        }
        t.fold[i] = s;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

// Expert e's logit: the router's own, or with FOLDED the slices' totals times 1 / rms.
inline float route_logit(RouteTables t, device const float* logits, uint at, uint e) {
    if (!FOLDED) {
        return logits[at + e];
    }
    float s = 0.0f;
    float q = 0.0f;
    for (uint k = 0; k < FOLD_SLICES; k++) {
        s += t.fold[k * (N_EXP + 1) + e];
        q += t.fold[k * (N_EXP + 1) + N_EXP];
    }
    return s * rsqrt(q / float(FOLD_HIDDEN) + FOLD_EPS);
}

// Fills t.expert from the logits at `at` (store_route makes the weights). Every thread of the
// threadgroup calls it (barriers).
inline void choose_route(RouteTables t, device const float* logits, device const float* bias, uint tid, uint at) {
    // Softmax scores need the max and the sum over all logits first; sigmoid scores (GLM's) do
    // not, so their keys are made straight from the loads, one barrier before the ranking.
    if (FOLDED) {
        sum_router_partials(t, logits, tid);
    }
    float m = -3.0e38f;
    float total = 0.0f;
    if (SOFTMAX) {
        for (uint e = tid; e < N_EXP; e += WG) {
            t.score[e] = route_logit(t, logits, at, e);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint j = 0; j < N_EXP; j++) {
            m = max(m, t.score[j]);
        }
        for (uint j = 0; j < N_EXP; j++) {
            total += exp(t.score[j] - m);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (uint e = tid; e < 4 * N_EXP4; e += WG) {
        float key = NO_KEY;
        if (e < N_EXP) {
            // Softmax logits were made above (this thread's, into t.score).
            float s = SOFTMAX ? exp(t.score[e] - m) / total : 1.0f / (1.0f + exp(-route_logit(t, logits, at, e)));
            t.score[e] = s;
            // A NaN key would rank ambiguously and leave a slot unpicked: it ranks last instead (above NO_KEY).
            float k = s + bias[e];
            key = k == k ? k : -3.4e38f;
        }
        t.key[e / 4][e % 4] = key;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint e = tid; e < N_EXP; e += WG) {
        float4 k = float4(t.key[e / 4][e % 4]);
        uint4 beaten = uint4(0);
        for (uint j = 0; j < N_EXP4; j++) {
            float4 o = t.key[j];
            uint4 ids = uint4(4 * j) + uint4(0, 1, 2, 3);
            beaten += select(uint4(0), uint4(1), (o > k) | ((o == k) & (ids < uint4(e))));
        }
        uint rank = beaten.x + beaten.y + beaten.z + beaten.w;
        if (rank < TOPK) {
            t.expert[rank] = e;
        }
    }
    if (SHARED_SLOT && tid == 0) {
        t.expert[TOPK] = N_EXP;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

// Stores the choice as the route buffer holds it: expert ids in [0, 8), weights (f32 bits) in [8, 16):
// the picked scores (normalised), the shared expert's 1. Made here, by the one thread that stores,
// so the expert passes' products do not wait for them.
inline void store_route(RouteTables t, device uint* route) {
    float picked = 0.0f;
    for (uint k = 0; k < TOPK; k++) {
        picked += t.score[t.expert[k]];
    }
    float norm = NORM_TOPK ? 1.0f / (picked + 1e-20f) : 1.0f;
    for (uint k = 0; k < TOPK; k++) {
        route[k] = t.expert[k];
        route[8 + k] = as_type<uint>(t.score[t.expert[k]] * norm * SCALE);
    }
    if (SHARED_SLOT) {
        route[TOPK] = N_EXP;
        route[8 + TOPK] = as_type<uint>(1.0f);
    }
}
