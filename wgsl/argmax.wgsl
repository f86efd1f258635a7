// Greedy sampling on the GPU: tokens[pos + 1] = argmax(logits), lowest index on ties. One workgroup.
// Host constants: WG, N.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32) {
    var v = -3.4e38;
    var idx = 0u;
    for (var i = tid; i < N; i += WG) {
        if logits[i] > v {
            v = logits[i];
            idx = i;
        }
    }
    best_v[tid] = v;
    best_i[tid] = idx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if tid < s {
            let ov = best_v[tid + s];
            let oi = best_i[tid + s];
            if ov > best_v[tid] || (ov == best_v[tid] && oi < best_i[tid]) {
                best_v[tid] = ov;
                best_i[tid] = oi;
            }
        }
        workgroupBarrier();
    }
    if tid == 0u {
        tokens[step.pos + 1u] = best_i[0];
    }
}
