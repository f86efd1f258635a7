// MLA attention of one token in the absorbed form, split over the context (flash-decoding):
// workgroup (g, s) scores positions [s * SPLIT, (s + 1) * SPLIT) ∩ [0, pos] for heads
// [g * HG, (g + 1) * HG) (each cache row loaded once for the group),
// score(t) = SCALE * (q_lat · latent(t) + rope(q_rope) · k_rope(t)), and writes the split's max m,
// sum l = Σ exp(score - m) and unnormalised context Σ exp(score - m) latent(t) to `partials`;
// mla_attention_combine.wgsl merges the splits. A team of LANES threads scores one position.
// The current position is not in the cache yet: the splits that hold it build its row
// (mla_cache_row.wgsl) in workgroup memory; the merge pass stores it.
// Host constants: WG, LANES, HG (= NV), SPLIT, N_SPLITS, KV_LORA, ROPE, KV_W, NOPE, QK, SCALE, EPS, KV_F16.

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

// The group's queries against one cache row: q_lat pairs, then the roped query pairs.
var<workgroup> qv: array<array<vec2<f32>, PAIRS>, HG>;
var<workgroup> p: array<array<f32, SPLIT>, HG>;
// The current position's cache row, as the cache will hold it.
var<workgroup> cur: array<vec2<f32>, PAIRS>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h0 = wid.x * HG;
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
    for (var g = 0u; g < HG; g++) {
        let h = h0 + g;
        for (var i = tid; i < KV_LORA / 2u; i += WG) {
            qv[g][i] = vec2<f32>(q_lat[h * KV_LORA + 2u * i], q_lat[h * KV_LORA + 2u * i + 1u]);
        }
        for (var j = tid; j < ROPE / 2u; j += WG) {
            let a = q[h * QK + NOPE + 2u * j];
            let b = q[h * QK + NOPE + 2u * j + 1u];
            let cs = rope[step.pos * (ROPE / 2u) + j];
            qv[g][KV_LORA / 2u + j] = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
        }
    }
    workgroupBarrier();

    let team = tid / LANES;
    let lane = tid % LANES;
    for (var t0 = start; t0 < end; t0 += TEAMS) {
        // Teams past the end score the last position again and drop it.
        let t = min(t0 + team, end - 1u);
        var v: array<f32, HG>;
        if t < cached_end {
            for (var k = 0u; k < PAIRS_PER_LANE; k++) {
                let i = lane + k * LANES;
                if i < PAIRS {
                    let row = cache_load2(t * KV_W + 2u * i);
                    for (var g = 0u; g < HG; g++) { // unroll
                        v[g] += dot(qv[g][i], row);
                    }
                }
            }
        } else {
            for (var k = 0u; k < PAIRS_PER_LANE; k++) {
                let i = lane + k * LANES;
                if i < PAIRS {
                    for (var g = 0u; g < HG; g++) { // unroll
                        v[g] += dot(qv[g][i], cur[i]);
                    }
                }
            }
        }
        reduce_team(&v, tid, lane);
        if lane == 0u && t0 + team < end {
            for (var g = 0u; g < HG; g++) { // unroll
                p[g][t - start] = v[g] * SCALE;
            }
        }
    }
    workgroupBarrier();
    // Every thread takes the same maxima and sums from the split's SPLIT scores; the weights
    // e^(p - m) are computed once, in place.
    var m: array<f32, HG>;
    for (var g = 0u; g < HG; g++) { // unroll
        m[g] = -3.0e38;
        for (var i = 0u; i < end - start; i++) {
            m[g] = max(m[g], p[g][i]);
        }
    }
    workgroupBarrier();
    for (var j = tid; j < HG * SPLIT; j += WG) {
        let g = j / SPLIT;
        let i = j % SPLIT;
        if i < end - start {
            p[g][i] = exp(p[g][i] - m[g]);
        }
    }
    workgroupBarrier();
    for (var g = 0u; g < HG; g++) {
        if tid == 0u {
            var l = 0.0;
            for (var i = 0u; i < end - start; i++) {
                l += p[g][i];
            }
            let base = ((h0 + g) * N_SPLITS + wid.y) * PART;
            partials[base] = m[g];
            partials[base + 1u] = l;
        }
    }
    for (var d = tid; d < KV_LORA / 2u; d += WG) {
        var acc: array<vec2<f32>, HG>;
        for (var t = start; t < cached_end; t++) {
            let row = cache_load2(t * KV_W + 2u * d);
            for (var g = 0u; g < HG; g++) { // unroll
                acc[g] += p[g][t - start] * row;
            }
        }
        if cached_end < end {
            for (var g = 0u; g < HG; g++) { // unroll
                acc[g] += p[g][cached_end - start] * cur[d];
            }
        }
        for (var g = 0u; g < HG; g++) { // unroll
            let base = ((h0 + g) * N_SPLITS + wid.y) * PART;
            partials[base + 4u + 2u * d] = acc[g].x;
            partials[base + 5u + 2u * d] = acc[g].y;
        }
    }
}
