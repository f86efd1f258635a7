// Copies a vector into a slot of a capture buffer (hidden states per layer, for the parity tests).
// Host constants: WG, N, OFFSET.

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x < N {
        dst[OFFSET + gid.x] = src[gid.x];
    }
}
