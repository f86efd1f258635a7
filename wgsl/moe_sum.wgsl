// Prefill: adds each token's routed experts into the residual stream, x[t] += Σ_k w(t, k) · y[e(t, k)],
// where y holds the down projection of every entry (moe_group.wgsl) and w is the route weight.
// Thread (i, t) owns vec4 i of token t. Host constants: WG, H4 (vec4s per hidden row), KS.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> route: array<u32>;
@group(0) @binding(2) var<storage, read> slot_entry: array<u32>;
@group(0) @binding(3) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    if i >= H4 || t >= step.n {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < KS; k++) {
        let w = bitcast<f32>(route[t * 16u + 8u + k]);
        s += w * y[slot_entry[t * KS + k] * H4 + i];
    }
    x[t * H4 + i] += s;
}
