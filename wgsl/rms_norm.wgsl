// RMSNorm of one vector: y = x / sqrt(mean(x²) + EPS) * w. One workgroup.
// Host constants: WG, N, EPS.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32) {
    var acc = 0.0;
    for (var i = tid; i < N; i += WG) {
        acc += x[i] * x[i];
    }
    let inv = inverseSqrt(workgroup_sum(acc, tid) / f32(N) + EPS);
    for (var i = tid; i < N; i += WG) {
        y[i] = x[i] * inv * w[i];
    }
}
