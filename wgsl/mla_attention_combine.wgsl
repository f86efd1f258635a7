// Merges the splits of mla_attention.wgsl for head h: ctx = Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s.
// Workgroup (h, g) writes context floats [g * DIMS, (g + 1) * DIMS); its WG / DIMS groups of DIMS
// threads each sum every GROUPS-th split, so deep contexts do not run one long chain of loads per
// thread, and meet in shared memory.
// Host constants: WG, DIMS, N_SPLITS, KV_LORA.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<f32>;

const PART: u32 = KV_LORA + 4u;
const GROUPS: u32 = WG / DIMS;

// Each split's share e^(m_s - M) / L.
var<workgroup> share: array<f32, N_SPLITS>;
// Each group's sums.
var<workgroup> group_sum: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let splits = (step.pos + step.split) / step.split;
    let head = h * N_SPLITS * PART;
    var m = -3.0e38;
    for (var s = tid; s < splits; s += WG) {
        m = max(m, partials[head + s * PART]);
    }
    m = workgroup_max(m, tid);
    var l = 0.0;
    for (var s = tid; s < splits; s += WG) {
        let e = exp(partials[head + s * PART] - m);
        share[s] = e;
        l += partials[head + s * PART + 1u] * e;
    }
    let inv = 1.0 / workgroup_sum(l, tid);
    let dim = tid % DIMS;
    let group = tid / DIMS;
    let d = wid.y * DIMS + dim;
    var acc = 0.0;
    if d < KV_LORA {
        for (var s = group; s < splits; s += GROUPS) {
            acc += partials[head + s * PART + 4u + d] * share[s];
        }
    }
    group_sum[tid] = acc;
    workgroupBarrier();
    if group == 0u && d < KV_LORA {
        for (var g = 1u; g < GROUPS; g++) {
            acc += group_sum[g * DIMS + dim];
        }
        ctx[h * KV_LORA + d] = acc * inv;
    }
}
