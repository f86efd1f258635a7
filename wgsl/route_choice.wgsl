// The top-k expert choice of one token from its router logits, shared by router.wgsl (a workgroup per
// token of a prefill chunk) and matvec.wgsl (decode: every expert gate/up workgroup chooses for
// itself, so no dispatch stands between the router logits and the experts).
// Scores by sigmoid (or softmax); the TOPK largest score + bias are picked, slot k holding the one
// that k others beat (ties to the lower expert id, as a serial scan would); weights = the picked
// scores (without bias), optionally normalised over the picks, times SCALE. With SHARED_SLOT, slot
// TOPK is the shared expert, stored as expert N_EXP with weight 1.
// FOLDED: router_logits holds, instead of the logits, the attention output's partial sums
// (matvec.wgsl's PARTIALS): per group of FOLD_GROUPS, N_EXP sums Σ_j router[e, j] · norm[j] · x_j over
// its rows and Σ x_j²; the logits are their totals times 1 / rms(x) (FOLD_HIDDEN values, FOLD_EPS).
// Host constants: WG, CHOOSE, N_EXP, TOPK, SOFTMAX, NORM_TOPK, SCALE, SHARED_SLOT, FOLDED, FOLD_SLICES,
// FOLD_GROUPS, FOLD_HIDDEN, FOLD_EPS.
// The includer declares the bindings router_logits, router_bias and (read-write) route.

// Keys four to a vector, so ranking reads and compares four at a time; past the last expert, below
// every key (so never picked).
const N_EXP4: u32 = (N_EXP + 3u) / 4u;
const NO_KEY: f32 = -3.402823e38;

// In workgroup memory only where the includer chooses routes (CHOOSE): unused workgroup arrays slow
// NVIDIA's kernels (BENCHMARKS.md session 10).
var<workgroup> route_key: array<vec4<f32>, N_EXP4>; // if CHOOSE
var<workgroup> route_score: array<f32, N_EXP>; // if CHOOSE
var<workgroup> route_expert: array<u32, TOPK + 1u>; // if CHOOSE
var<private> route_key: array<vec4<f32>, 1>; // if !CHOOSE
var<private> route_score: array<f32, 1>; // if !CHOOSE
var<private> route_expert: array<u32, 2>; // if !CHOOSE

// FOLDED: the partial sums totalled in FOLD_SLICES slices of the groups, one thread per slice and
// expert, so that no thread waits on all FOLD_GROUPS loads in turn (H200, the routed gate/up in the
// profile: 930 us per token one thread per expert, 860 by slices; 731 after the router's own pass).
var<workgroup> fold_sums: array<f32, FOLD_SLICES * (N_EXP + 1u)>; // if FOLDED

fn sum_router_partials(tid: u32) {
    for (var i = tid; i < FOLD_SLICES * (N_EXP + 1u); i += WG) { // if FOLDED
        let k = i / (N_EXP + 1u); // if FOLDED
        let e = i % (N_EXP + 1u); // if FOLDED
        var s = 0.0; // if FOLDED
        for (var w = k * (FOLD_GROUPS / FOLD_SLICES); w < (k + 1u) * (FOLD_GROUPS / FOLD_SLICES); w++) { // if FOLDED
            s += router_logits[w * (N_EXP + 1u) + e]; // if FOLDED
        } // if FOLDED
        fold_sums[i] = s; // if FOLDED
    } // if FOLDED
    workgroupBarrier();
}

fn route_logit(at: u32, e: u32) -> f32 {
    var logit = router_logits[at + e]; // if !FOLDED
    var s = 0.0; // if FOLDED
    var q = 0.0; // if FOLDED
    for (var k = 0u; k < FOLD_SLICES; k++) { // if FOLDED
        s += fold_sums[k * (N_EXP + 1u) + e]; // if FOLDED
        q += fold_sums[k * (N_EXP + 1u) + N_EXP]; // if FOLDED
    } // if FOLDED
    let logit = s * inverseSqrt(q / f32(FOLD_HIDDEN) + FOLD_EPS); // if FOLDED
    return logit;
}

// Fills route_expert from the logits at `at` (store_route makes the weights). Every invocation must
// call it (barriers).
fn choose_route(tid: u32, at: u32) {
    sum_router_partials(tid); // if FOLDED
    // Softmax scores need the max and the sum over all logits first; sigmoid scores (GLM's) do
    // not, so their keys are made straight from the loads, one barrier before the ranking.
    var m = -3.0e38;
    var total = 0.0;
    if SOFTMAX {
        for (var e = tid; e < N_EXP; e += WG) {
            route_score[e] = route_logit(at, e);
        }
        workgroupBarrier();
        for (var j = 0u; j < N_EXP; j++) {
            m = max(m, route_score[j]);
        }
        for (var j = 0u; j < N_EXP; j++) {
            total += exp(route_score[j] - m);
        }
        workgroupBarrier();
    }
    for (var e = tid; e < 4u * N_EXP4; e += WG) {
        var key = NO_KEY;
        if e < N_EXP {
            // Softmax logits were made above (this invocation's, into route_score).
            var s: f32;
            if SOFTMAX {
                s = exp(route_score[e] - m) / total;
            } else {
                s = 1.0 / (1.0 + exp(-route_logit(at, e)));
            }
            route_score[e] = s;
            // A NaN key would rank ambiguously and leave a slot unpicked: it ranks last instead
            // (above NO_KEY).
            let k = s + router_bias[e];
            key = select(-3.4e38, k, k == k);
        }
        route_key[e / 4u][e % 4u] = key;
    }
    workgroupBarrier();
    for (var e = tid; e < N_EXP; e += WG) {
        let k = vec4<f32>(route_key[e / 4u][e % 4u]);
        var beaten = vec4<u32>(0u);
        for (var j = 0u; j < N_EXP4; j++) {
            let o = route_key[j];
            let ids = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
            beaten += select(vec4<u32>(0u), vec4<u32>(1u), (o > k) | ((o == k) & (ids < vec4<u32>(e))));
        }
        let rank = beaten.x + beaten.y + beaten.z + beaten.w;
        if rank < TOPK {
            route_expert[rank] = e;
        }
    }
    if SHARED_SLOT && tid == 0u {
        route_expert[TOPK] = N_EXP;
    }
    workgroupBarrier();
}

// Stores the choice as the route buffer holds it: expert ids in [0, 8), weights (f32 bits) in [8, 16):
// the picked scores (normalised), the shared expert's 1. Made here, by the one invocation that
// stores, so the expert passes' products do not wait for them (only the passes after read them).
fn store_route(r: u32) {
    var picked = 0.0;
    for (var k = 0u; k < TOPK; k++) {
        picked += route_score[route_expert[k]];
    }
    var norm = 1.0;
    if NORM_TOPK {
        norm = 1.0 / (picked + 1e-20);
    }
    for (var k = 0u; k < TOPK; k++) {
        route[r + k] = route_expert[k];
        route[r + 8u + k] = bitcast<u32>(route_score[route_expert[k]] * norm * SCALE);
    }
    if SHARED_SLOT {
        route[r + TOPK] = N_EXP;
        route[r + 8u + TOPK] = bitcast<u32>(1.0f);
    }
}
