// Greedy sampling on the GPU: tokens[pos + 1] = argmax(logits), lowest index on ties. One workgroup.
// Host constants: WG, N.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>;

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
    let best = workgroup_argmax(v, idx, tid);
    if tid == 0u {
        tokens[step.pos + 1u] = best;
    }
}
