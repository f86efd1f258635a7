// Prefill: stores the latent-cache rows of a chunk's tokens before its attention reads them.
// Workgroup t builds the row of position step.pos + t from kv_a's output ckv[t]
// (mla_cache_row.wgsl). Host constants: WG, KV_LORA, ROPE, KV_W, EPS, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> ckv: array<f32>;
@group(0) @binding(2) var<storage, read> kv_norm: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> cache: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.x;
    if t >= step.n {
        return;
    }
    let inv = cache_row_inv_rms(t * KV_W, tid);
    for (var j = tid; j < KV_W / 2u; j += WG) {
        cache_store_pair(step.pos + t, j, cache_row_pair(t * KV_W, step.pos + t, j, inv));
    }
}
