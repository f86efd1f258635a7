// Greedy sampling on the GPU: tokens[pos + 1] = argmax(logits), the lowest index on ties, in two
// launches: first (FINAL false) each of GROUPS workgroups takes the best of its WG * PER logits, a
// thread's PER loads in flight at once; then (FINAL true) one workgroup takes the best of theirs.
// One workgroup scanning all the logits was a chain of N / WG loads: 63 us of the H200's step.
// Host constants: WG, N, PER, GROUPS, FINAL.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;
// Each group's best: the logit's bits and its index.
@group(0) @binding(3) var<storage, read_write> group_best: array<vec2<u32>>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    var b = Best(-3.4e38, 0u);
    if FINAL {
        for (var g = tid; g < GROUPS; g += WG) {
            b = better(b, Best(bitcast<f32>(group_best[g].x), group_best[g].y));
        }
    } else {
        for (var k = 0u; k < PER; k++) { // unroll
            let i = (wid.x * PER + k) * WG + tid;
            if i < N {
                b = better(b, Best(logits[i], i));
            }
        }
    }
    b = workgroup_argmax(b, tid);
    if tid == 0u {
        if FINAL {
            tokens[step.pos + 1u] = b.i;
        } else {
            group_best[wid.x] = vec2<u32>(bitcast<u32>(b.v), b.i);
        }
    }
}
