// Merges the splits of mla_attention.wgsl for head h: ctx = Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s.
// Workgroup (h, g) writes context floats [g * DIMS, (g + 1) * DIMS). Its GROUPS = WG / DIMS groups of
// DIMS threads each fold every GROUPS-th split into a running max, sum and context float, UNROLL
// splits at a time (their loads in flight together), and group 0 merges the groups' results: one
// barrier (two workgroup-wide shared-memory reductions and a third pass over the splits before it:
// 262 -> 268 tok/s on the H200 without them).
// Host constants: WG, DIMS, N_SPLITS, KV_LORA, UNROLL.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<f32>;

const PART: u32 = KV_LORA + 4u;
const GROUPS: u32 = WG / DIMS;

// Each thread's (max, sum, context float).
var<workgroup> folded: array<vec3<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let splits = (step.pos + step.split) / step.split;
    let dim = tid % DIMS;
    let group = tid / DIMS;
    let d = wid.y * DIMS + dim;
    let head = h * N_SPLITS * PART;
    var m = -3.0e38;
    var l = 0.0;
    var acc = 0.0;
    for (var s0 = group; s0 < splits; s0 += GROUPS * UNROLL) {
        // Steps past the last split read it again with a max of -inf, so they weigh nothing.
        var ms: array<f32, UNROLL>;
        var ls: array<f32, UNROLL>;
        var cs: array<f32, UNROLL>;
        for (var u = 0u; u < UNROLL; u++) { // unroll
            let s = s0 + u * GROUPS;
            let base = head + min(s, splits - 1u) * PART;
            ms[u] = select(-3.0e38, partials[base], s < splits);
            ls[u] = partials[base + 1u];
            cs[u] = partials[base + 4u + min(d, KV_LORA - 1u)];
        }
        var m_new = m;
        for (var u = 0u; u < UNROLL; u++) { // unroll
            m_new = max(m_new, ms[u]);
        }
        let keep = exp(m - m_new);
        l *= keep;
        acc *= keep;
        for (var u = 0u; u < UNROLL; u++) { // unroll
            let e = exp(ms[u] - m_new);
            l += ls[u] * e;
            acc += cs[u] * e;
        }
        m = m_new;
    }
    folded[tid] = vec3<f32>(m, l, acc);
    workgroupBarrier();
    if group == 0u && d < KV_LORA {
        var top = m;
        for (var g = 1u; g < GROUPS; g++) {
            top = max(top, folded[g * DIMS + dim].x);
        }
        var total = vec2<f32>(0.0);
        for (var g = 0u; g < GROUPS; g++) {
            let f = folded[g * DIMS + dim];
            total += exp(f.x - top) * f.yz;
        }
        ctx[h * KV_LORA + d] = total.y / total.x;
    }
}
