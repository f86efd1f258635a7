// Prefill: causal MLA attention of a chunk's tokens in the absorbed form. Workgroup (g, t) attends
// heads [g·HG, (g + 1)·HG) of token t (position step.pos + t) over cache positions [0, step.pos + t]
// (kv_store.wgsl stored the chunk's rows first), in blocks of BLOCK positions with an online softmax:
// no score matrix and no partials. Each cache row is loaded once for the HG heads (the latent is
// shared by all heads): a team of LANES threads scores one position for every head of the group,
// and each thread owns a context pair of every head.
// Host constants: WG, LANES, HG (= NV), BLOCK, N_HEADS, KV_LORA, ROPE, KV_W, SCALE, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
// Per token and head: the unroped query q_rope (ROPE floats), q_lat and the output (KV_LORA floats each).
@group(0) @binding(1) var<storage, read> q_rope: array<f32>;
@group(0) @binding(2) var<storage, read> q_lat: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const TEAMS: u32 = WG / LANES;
const PAIRS: u32 = KV_W / 2u;
const PAIRS_PER_LANE: u32 = (PAIRS + LANES - 1u) / LANES;
const CTX_PAIRS: u32 = (KV_LORA / 2u + WG - 1u) / WG;

// The group's queries against one cache row: q_lat pairs, then the roped query pairs.
var<workgroup> qv: array<array<vec2<f32>, PAIRS>, HG>;
var<workgroup> p: array<array<f32, BLOCK>, HG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    // The latest tokens (most positions) first, so the short ones fill the tail.
    if wid.y >= step.n {
        return;
    }
    let t = step.n - 1u - wid.y;
    let pos = step.pos + t;
    let n = pos + 1u;
    let q0 = t * N_HEADS + wid.x * HG;
    for (var h = 0u; h < HG; h++) {
        let qh = q0 + h;
        for (var i = tid; i < KV_LORA / 2u; i += WG) {
            qv[h][i] = vec2<f32>(q_lat[qh * KV_LORA + 2u * i], q_lat[qh * KV_LORA + 2u * i + 1u]);
        }
        for (var j = tid; j < ROPE / 2u; j += WG) {
            let a = q_rope[qh * ROPE + 2u * j];
            let b = q_rope[qh * ROPE + 2u * j + 1u];
            let cs = rope[pos * (ROPE / 2u) + j];
            qv[h][KV_LORA / 2u + j] = rope_rotate(a, b, cs);
        }
    }
    workgroupBarrier();

    let team = tid / LANES;
    let lane = tid % LANES;
    var m: array<f32, HG>;
    var l: array<f32, HG>;
    var acc: array<array<vec2<f32>, CTX_PAIRS>, HG>;
    for (var h = 0u; h < HG; h++) {
        m[h] = -3.0e38;
    }
    for (var b0 = 0u; b0 < n; b0 += BLOCK) {
        let end = min(n, b0 + BLOCK);
        for (var t0 = b0; t0 < end; t0 += TEAMS) {
            // Teams past the end score the last position again and drop it.
            let s = min(t0 + team, end - 1u);
            var v: array<f32, HG>;
            for (var k = 0u; k < PAIRS_PER_LANE; k++) {
                let i = lane + k * LANES;
                if i < PAIRS {
                    let row = cache_load2(s * KV_W + 2u * i);
                    for (var h = 0u; h < HG; h++) { // unroll
                        v[h] += dot(qv[h][i], row);
                    }
                }
            }
            reduce_team(&v, tid, lane);
            if lane == 0u && t0 + team < end {
                for (var h = 0u; h < HG; h++) { // unroll
                    p[h][s - b0] = v[h] * SCALE;
                }
            }
        }
        workgroupBarrier();
        // Every thread takes the same new maxima; the block's weights e^(p - m) are computed once,
        // in place, and summed by every thread.
        var bm: array<f32, HG>;
        for (var h = 0u; h < HG; h++) { // unroll
            bm[h] = m[h];
            for (var i = 0u; i < end - b0; i++) {
                bm[h] = max(bm[h], p[h][i]);
            }
        }
        workgroupBarrier();
        for (var j = tid; j < HG * BLOCK; j += WG) {
            let h = j / BLOCK;
            let i = j % BLOCK;
            if i < end - b0 {
                p[h][i] = exp(p[h][i] - bm[h]);
            }
        }
        workgroupBarrier();
        for (var h = 0u; h < HG; h++) { // unroll
            let corr = exp(m[h] - bm[h]);
            l[h] *= corr;
            for (var k = 0u; k < CTX_PAIRS; k++) {
                acc[h][k] *= corr;
            }
            m[h] = bm[h];
            for (var i = 0u; i < end - b0; i++) {
                l[h] += p[h][i];
            }
        }
        for (var i = 0u; i < end - b0; i++) {
            for (var k = 0u; k < CTX_PAIRS; k++) {
                let d = tid + k * WG;
                if d < KV_LORA / 2u {
                    let row = cache_load2((b0 + i) * KV_W + 2u * d);
                    for (var h = 0u; h < HG; h++) { // unroll
                        acc[h][k] += p[h][i] * row;
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var h = 0u; h < HG; h++) {
        for (var k = 0u; k < CTX_PAIRS; k++) {
            let d = tid + k * WG;
            if d < KV_LORA / 2u {
                out[(q0 + h) * KV_LORA + 2u * d] = acc[h][k].x / l[h];
                out[(q0 + h) * KV_LORA + 2u * d + 1u] = acc[h][k].y / l[h];
            }
        }
    }
}
