// Merges the splits of mla_attention.wgsl for head h: ctx = Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s.
// Workgroup (h, g) writes context floats [g * DIMS, (g + 1) * DIMS); its WG / DIMS groups of DIMS
// threads each sum every GROUPS-th split, so deep contexts do not run one long chain of loads per
// thread, and meet in shared memory. Workgroup (0, 0) also stores the current position's cache row
// (the split pass read the cache, so it could not).
// Host constants: WG, DIMS, N_SPLITS, KV_LORA, ROPE, KV_W, EPS, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(3) var<storage, read> ckv: array<f32>;
@group(0) @binding(4) var<storage, read> kv_norm: array<f32>;
@group(0) @binding(5) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> cache: array<u32>;

const PART: u32 = KV_LORA + 4u;
const GROUPS: u32 = WG / DIMS;

// Each split's share e^(m_s - M) / L.
var<workgroup> share: array<f32, N_SPLITS>;
// Each group's sums.
var<workgroup> group_sum: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if wid.x == 0u && wid.y == 0u {
        let inv = cache_row_inv_rms(0u, tid);
        for (var j = tid; j < KV_W / 2u; j += WG) {
            cache_store_pair(step.pos, j, cache_row_pair(0u, step.pos, j, inv));
        }
    }
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
