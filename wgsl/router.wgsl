// MoE routing from the router logits (computed by matvec): scores by sigmoid (or softmax), top-k
// chosen by score + bias, weights = chosen scores (without bias), optionally normalized, times SCALE.
// One workgroup, one thread per expert; each of the TOPK picks is a tree arg-max in shared memory
// (ties go to the lower expert id, as a serial scan would).
// With SHARED_SLOT, slot TOPK is the shared expert, stored as expert N_EXP, with weight 1.
// Workgroup t routes token t of a prefill chunk (logits N_EXP floats and route 16 words per token).
// Host constants: WG (a power of two ≥ N_EXP), N_EXP, TOPK, SOFTMAX, NORM_TOPK, SCALE, SHARED_SLOT.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
// Expert ids in [0, 8), weights (f32 bits) in [8, 16).
@group(0) @binding(2) var<storage, read_write> route: array<u32>;

var<workgroup> picked: array<u32, TOPK>;
var<workgroup> picked_score: array<f32, TOPK>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) e: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let live = e < N_EXP;
    let r = wid.x * 16u;
    var logit = -3.0e38;
    if live {
        logit = logits[wid.x * N_EXP + e];
    }
    var score: f32;
    if SOFTMAX {
        let m = workgroup_max(logit, e);
        var ex = 0.0;
        if live {
            ex = exp(logit - m);
        }
        score = ex / workgroup_sum(ex, e);
    } else {
        score = 1.0 / (1.0 + exp(-logit));
    }
    var choice = -3.0e38;
    if live {
        choice = score + bias[e];
    }
    for (var k = 0u; k < TOPK; k++) {
        let winner = workgroup_argmax(choice, e, e);
        if e == winner {
            picked[k] = e;
            picked_score[k] = score;
            choice = -3.4e38;
        }
        workgroupBarrier();
    }
    if e == 0u {
        var total = 0.0;
        for (var k = 0u; k < TOPK; k++) {
            total += picked_score[k];
        }
        var norm = 1.0;
        if NORM_TOPK {
            norm = 1.0 / (total + 1e-20);
        }
        for (var k = 0u; k < TOPK; k++) {
            route[r + k] = picked[k];
            route[r + 8u + k] = bitcast<u32>(picked_score[k] * norm * SCALE);
        }
        if SHARED_SLOT {
            route[r + TOPK] = N_EXP;
            route[r + 8u + TOPK] = bitcast<u32>(1.0);
        }
    }
}
