// Matrix-vector products over any weight format: y = W x, for one matrix or one per slot.
//
// Host constants: WG (threads), ROWS (rows per workgroup), CHUNK_V4 (vec4s per format chunk),
// MATRIX (0: one matrix; 1: matrix = slot, e.g. attention heads; 2: matrix = routed expert id of the slot),
// GLU (y = silu(W0 x) * (W1 x)), OUT (0: store; 1: add into y; 2: add the route-weighted sum over all slots).
// The format snippets appended after this source define load_chunk0 / load_chunk1.

struct Params {
    rows: u32,      // rows per matrix
    chunks: u32,    // format chunks per row
    x_stride: u32,  // vec4s between the inputs of consecutive slots
    y_stride: u32,  // floats between the outputs of consecutive slots
    n_slots: u32,   // slots summed in OUT = 2
    groups_x: u32,  // workgroups along x (the grid spills into y)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// Router output: expert ids in [0, 8), their weights (f32 bits) in [8, 16).
@group(0) @binding(3) var<storage, read> route: array<u32>;
@group(0) @binding(4) var<storage, read> weights0: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> scales0: array<u32>;
@group(0) @binding(6) var<storage, read> weights1: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> scales1: array<u32>;

const LANES: u32 = WG / ROWS;

var<workgroup> part0: array<f32, WG>;
var<workgroup> part1: array<f32, WG>;

fn matrix_of(slot: u32) -> u32 {
    if MATRIX == 1u {
        return slot;
    }
    if MATRIX == 2u {
        return route[slot];
    }
    return 0u;
}

// This lane's share of row `row` of matrix `m` (and of W1 when GLU) against the input of `slot`.
fn partial_dot(m: u32, row: u32, slot: u32, lane: u32) -> vec2<f32> {
    let base = (m * p.rows + row) * p.chunks;
    let xb = slot * p.x_stride;
    var acc = vec2<f32>(0.0);
    for (var c = lane; c < p.chunks; c += LANES) {
        let w0 = load_chunk0(base + c);
        for (var i = 0u; i < CHUNK_V4; i++) {
            acc.x += dot(w0[i], x[xb + c * CHUNK_V4 + i]);
        }
        if GLU {
            let w1 = load_chunk1(base + c);
            for (var i = 0u; i < CHUNK_V4; i++) {
                acc.y += dot(w1[i], x[xb + c * CHUNK_V4 + i]);
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let team = tid / LANES;
    let lane = tid % LANES;
    let row = (wid.x + wid.y * p.groups_x) * ROWS + team;
    let slot = wid.z;
    var acc = vec2<f32>(0.0);
    if row < p.rows {
        if OUT == 2u {
            for (var s = 0u; s < p.n_slots; s++) {
                let wgt = bitcast<f32>(route[8u + s]);
                acc += wgt * partial_dot(matrix_of(s), row, s, lane);
            }
        } else {
            acc = partial_dot(matrix_of(slot), row, slot, lane);
        }
    }
    part0[tid] = acc.x;
    part1[tid] = acc.y;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if lane < stride {
            part0[tid] += part0[tid + stride];
            part1[tid] += part1[tid + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u && row < p.rows {
        var v = part0[tid];
        if GLU {
            v = v / (1.0 + exp(-v)) * part1[tid];
        }
        let o = slot * p.y_stride + row;
        if OUT == 0u {
            y[o] = v;
        } else {
            y[o] += v;
        }
    }
}
