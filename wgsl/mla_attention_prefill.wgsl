// Prefill: causal MLA attention of a chunk's tokens in the absorbed form. Workgroup (h, t) attends
// token t (position step.pos + t) over cache positions [0, step.pos + t] (kv_store.wgsl stored the
// chunk's rows first) in blocks of BLOCK positions with an online softmax: no score matrix and no
// partials. A team of LANES threads scores one position; each thread owns context pairs.
// Host constants: WG, LANES, NV (= 1), BLOCK, N_HEADS, KV_LORA, ROPE, KV_W, NOPE, QK, SCALE, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
// Per token and head: q (QK floats), q_lat and the output (KV_LORA floats each).
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> q_lat: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const TEAMS: u32 = WG / LANES;
const PAIRS: u32 = KV_W / 2u;
const PAIRS_PER_LANE: u32 = (PAIRS + LANES - 1u) / LANES;
const CTX_PAIRS: u32 = (KV_LORA / 2u + WG - 1u) / WG;

var<workgroup> qv: array<vec2<f32>, PAIRS>;
var<workgroup> p: array<f32, BLOCK>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let t = wid.y;
    if t >= step.n {
        return;
    }
    let pos = step.pos + t;
    let n = pos + 1u;
    let qh = t * N_HEADS + h;
    for (var i = tid; i < KV_LORA / 2u; i += WG) {
        qv[i] = vec2<f32>(q_lat[qh * KV_LORA + 2u * i], q_lat[qh * KV_LORA + 2u * i + 1u]);
    }
    for (var j = tid; j < ROPE / 2u; j += WG) {
        let a = q[qh * QK + NOPE + 2u * j];
        let b = q[qh * QK + NOPE + 2u * j + 1u];
        let cs = rope[pos * (ROPE / 2u) + j];
        qv[KV_LORA / 2u + j] = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
    }
    workgroupBarrier();

    let team = tid / LANES;
    let lane = tid % LANES;
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<vec2<f32>, CTX_PAIRS>;
    for (var b0 = 0u; b0 < n; b0 += BLOCK) {
        let end = min(n, b0 + BLOCK);
        for (var t0 = b0; t0 < end; t0 += TEAMS) {
            // Teams past the end score the last position again and drop it.
            let s = min(t0 + team, end - 1u);
            var v: array<f32, NV>;
            for (var k = 0u; k < PAIRS_PER_LANE; k++) {
                let i = lane + k * LANES;
                if i < PAIRS {
                    v[0] += dot(qv[i], cache_load2(s * KV_W + 2u * i));
                }
            }
            reduce_team(&v, tid, lane);
            if lane == 0u && t0 + team < end {
                p[s - b0] = v[0] * SCALE;
            }
        }
        workgroupBarrier();
        var bm = m;
        for (var i = 0u; i < end - b0; i++) {
            bm = max(bm, p[i]);
        }
        let corr = exp(m - bm);
        l *= corr;
        for (var k = 0u; k < CTX_PAIRS; k++) {
            acc[k] *= corr;
        }
        for (var i = 0u; i < end - b0; i++) {
            let e = exp(p[i] - bm);
            l += e;
            for (var k = 0u; k < CTX_PAIRS; k++) {
                let d = tid + k * WG;
                if d < KV_LORA / 2u {
                    acc[k] += e * cache_load2((b0 + i) * KV_W + 2u * d);
                }
            }
        }
        m = bm;
        workgroupBarrier();
    }
    for (var k = 0u; k < CTX_PAIRS; k++) {
        let d = tid + k * WG;
        if d < KV_LORA / 2u {
            out[qh * KV_LORA + 2u * d] = acc[k].x / l;
            out[qh * KV_LORA + 2u * d + 1u] = acc[k].y / l;
        }
    }
}
