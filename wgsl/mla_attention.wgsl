// MLA attention of one token in the absorbed form, one workgroup per head:
// score(t) = SCALE * (q_lat · latent(t) + rope(q_rope) · k_rope(t)) over positions 0..=pos,
// ctx = softmax(score) · latent. Scores go through a scratch row so any context length fits.
// Host constants: WG, KV_LORA, ROPE, KV_W, NOPE, QK (q floats per head), MAX_CTX, SCALE, KV_F16.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> q_lat: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;
@group(0) @binding(6) var<storage, read_write> ctx: array<f32>;

var<workgroup> ql: array<f32, KV_LORA>;
var<workgroup> qr: array<f32, ROPE>;
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let n = step.pos + 1u;
    for (var i = tid; i < KV_LORA; i += WG) {
        ql[i] = q_lat[h * KV_LORA + i];
    }
    for (var j = tid; j < ROPE / 2u; j += WG) {
        let a = q[h * QK + NOPE + 2u * j];
        let b = q[h * QK + NOPE + 2u * j + 1u];
        let cs = rope[step.pos * (ROPE / 2u) + j];
        qr[2u * j] = a * cs.x - b * cs.y;
        qr[2u * j + 1u] = a * cs.y + b * cs.x;
    }
    workgroupBarrier();

    let row = h * MAX_CTX;
    var m = -3.0e38;
    for (var t = tid; t < n; t += WG) {
        let base = t * KV_W;
        var s = 0.0;
        for (var i = 0u; i < KV_LORA; i += 2u) {
            let v = cache_load2(base + i);
            s += ql[i] * v.x + ql[i + 1u] * v.y;
        }
        for (var i = 0u; i < ROPE; i += 2u) {
            let v = cache_load2(base + KV_LORA + i);
            s += qr[i] * v.x + qr[i + 1u] * v.y;
        }
        s *= SCALE;
        scores[row + t] = s;
        m = max(m, s);
    }
    m = workgroup_max(m, tid);
    var sum = 0.0;
    for (var t = tid; t < n; t += WG) {
        let e = exp(scores[row + t] - m);
        scores[row + t] = e;
        sum += e;
    }
    sum = workgroup_sum(sum, tid);
    storageBarrier();
    workgroupBarrier();

    let inv = 1.0 / sum;
    for (var d = 2u * tid; d < KV_LORA; d += 2u * WG) {
        var acc = vec2<f32>(0.0);
        for (var t = 0u; t < n; t++) {
            acc += scores[row + t] * cache_load2(t * KV_W + d);
        }
        ctx[h * KV_LORA + d] = acc.x * inv;
        ctx[h * KV_LORA + d + 1u] = acc.y * inv;
    }
}
