// MLA attention of one token in the absorbed form, split over the context (flash-decoding):
// workgroup (h, s) scores positions [s * SPLIT, (s + 1) * SPLIT) ∩ [0, pos] for head h,
// score(t) = SCALE * (q_lat · latent(t) + rope(q_rope) · k_rope(t)), and writes the split's max m,
// sum l = Σ exp(score - m) and unnormalised context Σ exp(score - m) latent(t) to `partials`;
// mla_attention_combine.wgsl merges the splits. A team of LANES threads scores one position.
// The current position is not in the cache yet: the splits that hold it build its row
// (mla_cache_row.wgsl) in workgroup memory; the merge pass stores it.
// Host constants: WG, LANES, NV (= 1), SPLIT, N_SPLITS, KV_LORA, ROPE, KV_W, NOPE, QK, SCALE, EPS, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> q_lat: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(0) @binding(6) var<storage, read> ckv: array<f32>;
@group(0) @binding(7) var<storage, read> kv_norm: array<f32>;

const TEAMS: u32 = WG / LANES;
const PAIRS: u32 = KV_W / 2u;
const PAIRS_PER_LANE: u32 = (PAIRS + LANES - 1u) / LANES;
// Per (head, split): m, l, two pad floats, then KV_LORA context floats.
const PART: u32 = KV_LORA + 4u;

// The query against one cache row: q_lat pairs, then the roped query pairs.
var<workgroup> qv: array<vec2<f32>, PAIRS>;
var<workgroup> p: array<f32, SPLIT>;
// The current position's cache row, as the cache will hold it.
var<workgroup> cur: array<vec2<f32>, PAIRS>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let start = wid.y * SPLIT;
    let n = step.pos + 1u;
    if start >= n {
        return;
    }
    let end = min(n, start + SPLIT);
    // Positions read from the cache: all but the current one.
    let cached_end = select(end, end - 1u, end == n);
    if end == n {
        let inv = cache_row_inv_rms(0u, tid);
        for (var j = tid; j < PAIRS; j += WG) {
            cur[j] = cache_row_pair(0u, step.pos, j, inv);
        }
    }
    for (var i = tid; i < KV_LORA / 2u; i += WG) {
        qv[i] = vec2<f32>(q_lat[h * KV_LORA + 2u * i], q_lat[h * KV_LORA + 2u * i + 1u]);
    }
    for (var j = tid; j < ROPE / 2u; j += WG) {
        let a = q[h * QK + NOPE + 2u * j];
        let b = q[h * QK + NOPE + 2u * j + 1u];
        let cs = rope[step.pos * (ROPE / 2u) + j];
        qv[KV_LORA / 2u + j] = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
    }
    workgroupBarrier();

    let team = tid / LANES;
    let lane = tid % LANES;
    var m = -3.0e38;
    for (var t0 = start; t0 < end; t0 += TEAMS) {
        // Teams past the end score the last position again and drop it.
        let t = min(t0 + team, end - 1u);
        var v: array<f32, NV>;
        if t < cached_end {
            for (var k = 0u; k < PAIRS_PER_LANE; k++) {
                let i = lane + k * LANES;
                if i < PAIRS {
                    v[0] += dot(qv[i], cache_load2(t * KV_W + 2u * i));
                }
            }
        } else {
            for (var k = 0u; k < PAIRS_PER_LANE; k++) {
                let i = lane + k * LANES;
                if i < PAIRS {
                    v[0] += dot(qv[i], cur[i]);
                }
            }
        }
        reduce_team(&v, tid, lane);
        if lane == 0u && t0 + team < end {
            p[t - start] = v[0] * SCALE;
        }
    }
    workgroupBarrier();
    for (var t = start + tid; t < end; t += WG) {
        m = max(m, p[t - start]);
    }
    m = workgroup_max(m, tid);
    var l = 0.0;
    for (var t = start + tid; t < end; t += WG) {
        let e = exp(p[t - start] - m);
        p[t - start] = e;
        l += e;
    }
    l = workgroup_sum(l, tid);

    let base = (h * N_SPLITS + wid.y) * PART;
    if tid == 0u {
        partials[base] = m;
        partials[base + 1u] = l;
    }
    for (var d = tid; d < KV_LORA / 2u; d += WG) {
        var acc = vec2<f32>(0.0);
        for (var t = start; t < cached_end; t++) {
            acc += p[t - start] * cache_load2(t * KV_W + 2u * d);
        }
        if cached_end < end {
            acc += p[cached_end - start] * cur[d];
        }
        partials[base + 4u + 2u * d] = acc.x;
        partials[base + 5u + 2u * d] = acc.y;
    }
}
