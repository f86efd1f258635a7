// MoE routing from the router logits (computed by matvec): scores by sigmoid (or softmax), top-k
// chosen by score + bias, weights = chosen scores (without bias), optionally normalized, times SCALE.
// One workgroup; the selection is serial over N_EXP experts, which is tiny next to any matvec.
// Host constants: N_EXP, TOPK, SOFTMAX, NORM_TOPK, SCALE.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
// Expert ids in [0, 8), weights (f32 bits) in [8, 16).
@group(0) @binding(2) var<storage, read_write> route: array<u32>;

var<workgroup> score: array<f32, N_EXP>;

@compute @workgroup_size(1)
fn main() {
    if SOFTMAX {
        var m = -3.0e38;
        for (var e = 0u; e < N_EXP; e++) {
            m = max(m, logits[e]);
        }
        var sum = 0.0;
        for (var e = 0u; e < N_EXP; e++) {
            score[e] = exp(logits[e] - m);
            sum += score[e];
        }
        for (var e = 0u; e < N_EXP; e++) {
            score[e] /= sum;
        }
    } else {
        for (var e = 0u; e < N_EXP; e++) {
            score[e] = 1.0 / (1.0 + exp(-logits[e]));
        }
    }
    var taken: array<bool, N_EXP>;
    var ids: array<u32, TOPK>;
    var total = 0.0;
    for (var k = 0u; k < TOPK; k++) {
        var best = -3.0e38;
        var bi = 0u;
        for (var e = 0u; e < N_EXP; e++) {
            let v = score[e] + bias[e];
            if !taken[e] && v > best {
                best = v;
                bi = e;
            }
        }
        taken[bi] = true;
        ids[k] = bi;
        total += score[bi];
    }
    var norm = 1.0;
    if NORM_TOPK {
        norm = 1.0 / (total + 1e-20);
    }
    for (var k = 0u; k < TOPK; k++) {
        route[k] = ids[k];
        route[8u + k] = bitcast<u32>(score[ids[k]] * norm * SCALE);
    }
}
