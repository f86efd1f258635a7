// The top-k expert choice of wgsl/route_choice.wgsl for matvec.metal (MATRIX 3), with the same
// operations in the same order, so both pick the same experts with the same weights.
// Host #defines: WG, N_EXP, TOPK, SOFTMAX, NORM_TOPK, SCALE, SHARED_SLOT.

// Threadgroup tables of the choice (declared in the kernel body, as Metal requires).
struct RouteTables {
    threadgroup float* key;    // N_EXP
    threadgroup float* score;  // N_EXP
    threadgroup uint* expert;  // TOPK + 1
    threadgroup float* weight; // TOPK + 1
};

// Fills t.expert / t.weight from the logits at `at`. Every thread of the threadgroup calls it (barriers).
inline void choose_route(RouteTables t, device const float* logits, device const float* bias, uint tid, uint at) {
    for (uint e = tid; e < N_EXP; e += WG) {
        t.key[e] = logits[at + e];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float m = -3.0e38f;
    float total = 0.0f;
    if (SOFTMAX) {
        for (uint j = 0; j < N_EXP; j++) {
            m = max(m, t.key[j]);
        }
        for (uint j = 0; j < N_EXP; j++) {
            total += exp(t.key[j] - m);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint e = tid; e < N_EXP; e += WG) {
        float l = t.key[e];
        float s = SOFTMAX ? exp(l - m) / total : 1.0f / (1.0f + exp(-l));
        t.score[e] = s;
        // A NaN key would rank ambiguously and leave a slot unpicked: it ranks last instead.
        float k = s + bias[e];
        t.key[e] = k == k ? k : -3.4e38f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint e = tid; e < N_EXP; e += WG) {
        float k = t.key[e];
        uint rank = 0;
        for (uint j = 0; j < N_EXP; j++) {
            float o = t.key[j];
            rank += uint(o > k || (o == k && j < e));
        }
        if (rank < TOPK) {
            t.expert[rank] = e;
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) {
        float picked = 0.0f;
        for (uint k = 0; k < TOPK; k++) {
            picked += t.score[t.expert[k]];
        }
        float norm = NORM_TOPK ? 1.0f / (picked + 1e-20f) : 1.0f;
        for (uint k = 0; k < TOPK; k++) {
            t.weight[k] = t.score[t.expert[k]] * norm * SCALE;
        }
        if (SHARED_SLOT) {
            t.expert[TOPK] = N_EXP;
            t.weight[TOPK] = 1.0f;
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

// Stores the choice as the route buffer holds it: expert ids in [0, 8), weights (f32 bits) in [8, 16).
inline void store_route(RouteTables t, device uint* route) {
    for (uint k = 0; k < TOPK + uint(SHARED_SLOT); k++) {
        route[k] = t.expert[k];
        route[8 + k] = as_type<uint>(t.weight[k]);
    }
}
