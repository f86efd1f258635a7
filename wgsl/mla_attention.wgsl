// MLA attention of one token in the absorbed form, split over the context (flash-decoding):
// workgroup (g, s) scores positions [s * L, (s + 1) * L) ∩ [0, pos] for the HG heads
// [g * HG, (g + 1) * HG), score(t) = SCALE * (q_lat · latent(t) + rope(q_rope) · k_rope(t)), and
// writes each head's split max m, sum l = Σ exp(score - m) and unnormalised context
// Σ exp(score - m) latent(t) to `partials`; mla_attention_combine.wgsl merges the splits. The split
// length L = step.split (at most SPLIT_MAX) grows with the position so that short contexts still
// spread over many workgroups and long ones do not leave the merge thousands of splits.
// All heads attend to the same latent rows, so a workgroup serving HG heads reads each row once
// for all of them (one head per workgroup read the cache n_heads times over, from L2).
// A team of LANES threads scores one position: each lane holds its pairs of the HG queries in
// registers and loads its pairs of the row once.
// The current position is not in the cache yet: the splits that hold it build its row
// (mla_cache_row.wgsl) in workgroup memory, and the first head group's workgroup stores it (no
// workgroup of this pass reads that row from the cache).
// Host constants: WG, LANES, HG (= NV, at most WG / LANES), PAIRS_PER_LANE, SPLIT_MAX, N_SPLITS,
// KV_LORA, ROPE, KV_W, SCALE, EPS, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q_rope: array<f32>;
@group(0) @binding(2) var<storage, read> q_lat: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(0) @binding(6) var<storage, read> ckv: array<f32>;
@group(0) @binding(7) var<storage, read> kv_norm: array<f32>;

const TEAMS: u32 = WG / LANES;
const PAIRS: u32 = KV_W / 2u;
// Per (head, split): m, l, two pad floats, then KV_LORA context floats.
const PART: u32 = KV_LORA + 4u;

// Scores of head h at [h * SPLIT_MAX, h * SPLIT_MAX + L), then their exp(score - m).
var<workgroup> p: array<f32, HG * SPLIT_MAX>;
// The current position's cache row, as the cache will hold it.
var<workgroup> cur: array<vec2<f32>, PAIRS>;

// Pair i of head h's query against a cache row: q_lat, then the roped query.
fn query_pair(h: u32, i: u32) -> vec2<f32> {
    if i < KV_LORA / 2u {
        return vec2<f32>(q_lat[h * KV_LORA + 2u * i], q_lat[h * KV_LORA + 2u * i + 1u]);
    }
    let j = i - KV_LORA / 2u;
    let a = q_rope[h * ROPE + 2u * j];
    let b = q_rope[h * ROPE + 2u * j + 1u];
    let cs = rope[step.pos * (ROPE / 2u) + j];
    return rope_rotate(a, b, cs);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h0 = wid.x * HG;
    let start = wid.y * step.split;
    let n = step.pos + 1u;
    if start >= n {
        return;
    }
    let end = min(n, start + step.split);
    // Positions read from the cache: all but the current one.
    let cached_end = select(end, end - 1u, end == n);
    if end == n {
        let inv = cache_row_inv_rms(0u, tid);
        for (var j = tid; j < PAIRS; j += WG) {
            cur[j] = cache_row_pair(0u, step.pos, j, inv);
            if wid.x == 0u {
                cache_store_pair(step.pos, j, cur[j]);
            }
        }
    }
    let team = tid / LANES;
    let lane = tid % LANES;
    // Lane pairs past the row's end hold zeros (and read the last pair).
    var qr: array<array<vec2<f32>, HG>, PAIRS_PER_LANE>;
    for (var k = 0u; k < PAIRS_PER_LANE; k++) { // unroll
        let i = lane + k * LANES;
        if i < PAIRS {
            for (var h = 0u; h < HG; h++) { // unroll
                qr[k][h] = query_pair(h0 + h, i);
            }
        }
    }
    workgroupBarrier();

    for (var t0 = start; t0 < end; t0 += TEAMS) {
        // Teams past the end score the last position again and drop it.
        let t = min(t0 + team, end - 1u);
        // All of the row's loads first, so they are in flight together.
        var kv: array<vec2<f32>, PAIRS_PER_LANE>;
        if t < cached_end {
            for (var k = 0u; k < PAIRS_PER_LANE; k++) { // unroll
                kv[k] = cache_load2(t * KV_W + 2u * min(lane + k * LANES, PAIRS - 1u));
            }
        } else {
            for (var k = 0u; k < PAIRS_PER_LANE; k++) { // unroll
                kv[k] = cur[min(lane + k * LANES, PAIRS - 1u)];
            }
        }
        var v: array<f32, HG>;
        for (var k = 0u; k < PAIRS_PER_LANE; k++) { // unroll
            for (var h = 0u; h < HG; h++) { // unroll
                v[h] += dot(qr[k][h], kv[k]);
            }
        }
        reduce_team(&v, tid, lane);
        if lane == 0u && t0 + team < end {
            for (var h = 0u; h < HG; h++) { // unroll
                p[h * SPLIT_MAX + t - start] = v[h] * SCALE;
            }
        }
    }
    workgroupBarrier();
    // Team h turns head h's scores into exp(score - max), and its lane 0 stores the max and the sum.
    let len = end - start;
    var m = -3.0e38;
    if team < HG {
        for (var j = lane; j < len; j += LANES) {
            m = max(m, p[team * SPLIT_MAX + j]);
        }
    }
    m = team_max(m, tid, lane);
    var l: array<f32, NV>;
    if team < HG {
        for (var j = lane; j < len; j += LANES) {
            let e = exp(p[team * SPLIT_MAX + j] - m);
            p[team * SPLIT_MAX + j] = e;
            l[0] += e;
        }
    }
    reduce_team(&l, tid, lane);
    if team < HG && lane == 0u {
        let base = ((h0 + team) * N_SPLITS + wid.y) * PART;
        partials[base] = m;
        partials[base + 1u] = l[0];
    }
    workgroupBarrier();
    for (var d = tid; d < KV_LORA / 2u; d += WG) {
        var acc: array<vec2<f32>, HG>;
        for (var t = start; t < cached_end; t++) {
            let kv = cache_load2(t * KV_W + 2u * d);
            for (var h = 0u; h < HG; h++) { // unroll
                acc[h] += p[h * SPLIT_MAX + t - start] * kv;
            }
        }
        if cached_end < end {
            for (var h = 0u; h < HG; h++) { // unroll
                acc[h] += p[h * SPLIT_MAX + cached_end - start] * cur[d];
            }
        }
        for (var h = 0u; h < HG; h++) { // unroll
            let base = ((h0 + h) * N_SPLITS + wid.y) * PART + 4u + 2u * d;
            partials[base] = acc[h].x;
            partials[base + 1u] = acc[h].y;
        }
    }
}
