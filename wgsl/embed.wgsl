// Embedding lookup of the tokens at positions step.pos + t, t < step.n: x[t] = token_embd[tokens[pos + t]].
// Host constants: WG, CHUNKS (format chunks per row), CHUNK_V4.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> weights0: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> scales0: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if c < CHUNKS && t < step.n {
        let v = load_chunk0(tokens[step.pos + t] * CHUNKS + c);
        for (var i = 0u; i < CHUNK_V4; i++) {
            x[(t * CHUNKS + c) * CHUNK_V4 + i] = v[i];
        }
    }
}
