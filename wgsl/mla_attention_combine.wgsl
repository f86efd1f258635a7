// Merges the splits of mla_attention.wgsl for head h: ctx = Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s.
// Host constants: WG, SPLIT, N_SPLITS, KV_LORA.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<f32>;

const PART: u32 = KV_LORA + 4u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let splits = (step.pos + SPLIT) / SPLIT;
    let head = h * N_SPLITS * PART;
    var big_m = -3.0e38;
    for (var s = 0u; s < splits; s++) {
        big_m = max(big_m, partials[head + s * PART]);
    }
    var l = 0.0;
    for (var s = 0u; s < splits; s++) {
        l += partials[head + s * PART + 1u] * exp(partials[head + s * PART] - big_m);
    }
    let inv = 1.0 / l;
    for (var d = tid; d < KV_LORA; d += WG) {
        var acc = 0.0;
        for (var s = 0u; s < splits; s++) {
            acc += partials[head + s * PART + 4u + d] * exp(partials[head + s * PART] - big_m);
        }
        ctx[h * KV_LORA + d] = acc * inv;
    }
}
