// Prefill: a product's input rows prepared once for matmul.wgsl. INT8: rounded as a decode matvec
// rounds its input; else copied as f32 (the bits in xq, row r at vec4 r·CHUNKS·CHUNK_V4). With NORM,
// row r's values are x ⊙ g and s[r] = 1 / rms(x_r) is kept for after the product; without, s[r] = 1. Workgroup r does row r (the grid spills into y); input rows are
// x_stride vec4s apart and may be longer than the CHUNKS chunks taken (per-head rows of q).
// Host constants: WG, CHUNK_V4 (8 with INT8, else 1), CHUNKS (per row), NORM, EPS, INT8.

struct Params {
    rows: u32,
    groups_x: u32,
    x_stride: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gnorm: array<vec4<f32>>;
// INT8: chunk c of row r has its int8 quants in xq[2(r·CHUNKS + c)], [.. + 1] and (dx, qsum bits) in
// xd[r·CHUNKS + c].
@group(0) @binding(3) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> xd: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> s: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x + wid.y * p.groups_x;
    if r >= p.rows {
        return;
    }
    var sumsq = 0.0;
    for (var c = tid; c < CHUNKS; c += WG) {
        var xs: array<vec4<f32>, CHUNK_V4>;
        for (var i = 0u; i < CHUNK_V4; i++) { // unroll
            let v = x[r * p.x_stride + c * CHUNK_V4 + i];
            sumsq += dot(v, v);
            if NORM {
                xs[i] = v * gnorm[c * CHUNK_V4 + i];
            } else {
                xs[i] = v;
            }
        }
        let o = r * CHUNKS + c;
        if INT8 {
            let q = round_to_int8(chunk32(xs));
            xq[2u * o] = vec4<u32>(q.xq[0], q.xq[1], q.xq[2], q.xq[3]);
            xq[2u * o + 1u] = vec4<u32>(q.xq[4], q.xq[5], q.xq[6], q.xq[7]);
            xd[o] = vec2<f32>(q.dx, bitcast<f32>(q.qsum));
        } else {
            for (var i = 0u; i < CHUNK_V4; i++) { // unroll
                xq[o * CHUNK_V4 + i] = bitcast<vec4<u32>>(xs[i]);
            }
        }
    }
    if NORM {
        let total = workgroup_sum(sumsq, tid);
        if tid == 0u {
            s[r] = inverseSqrt(total / f32(CHUNKS * CHUNK_V4 * 4u) + EPS);
        }
    } else if tid == 0u {
        s[r] = 1.0;
    }
}
