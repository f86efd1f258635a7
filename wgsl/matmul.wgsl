// Prefill products over int8 input rows (quantize_rows.wgsl): out[i][row] = s_i · Σ_c dx_ic ·
// dot(W[row, c], xq_ic) for the inputs i of a tile of up to NT, with SiLU(gate)·up for GLU. A team of
// LANES threads owns ROWS output rows of the tile; its lanes split the row's chunks, and each weight
// chunk is unpacked once (load_int8_chunk) for all NT inputs.
// Tiles: GROUPED 0: tile j is token rows [j·NT, j·NT + NT) ∩ [0, step.n), output row = input row.
// GROUPED 1, 2: tile j of moe_group.wgsl's list (one expert, up to NT consecutive entries); output row =
// entry, input row = the entry's token (1) or the entry (2).
// Host constants: LANES, TEAMS, ROWS, NT, NV (= ROWS·NT, twice with GLU), GLU, ADD, GROUPED.

struct Params {
    rows: u32,      // rows per matrix
    chunks: u32,    // chunks per row
    y_stride: u32,  // floats between output rows
    groups_x: u32,  // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> xd: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> s: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
// GROUPED: moe_group.wgsl's tiles (count, then expert | entries << 16 and first entry per tile) and entries.
@group(0) @binding(6) var<storage, read> tiles: array<u32>;
@group(0) @binding(7) var<storage, read> entries: array<u32>;
@group(0) @binding(8) var<storage, read> weights0: array<vec4<u32>>;
@group(0) @binding(9) var<storage, read> scales0: array<u32>;
@group(0) @binding(10) var<storage, read> weights1: array<vec4<u32>>;
@group(0) @binding(11) var<storage, read> scales1: array<u32>;

const WG: u32 = LANES * TEAMS;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let team = tid / LANES;
    let lane = tid % LANES;
    let tile = wid.y;
    var m = 0u;
    var first = tile * NT;
    var count = 0u;
    if GROUPED == 0u {
        if first >= step.n {
            return;
        }
        count = min(NT, step.n - first);
    } else {
        if tile >= tiles[0] {
            return;
        }
        let t = tiles[1u + 2u * tile];
        m = t & 0xffffu;
        count = t >> 16u;
        first = tiles[2u + 2u * tile];
    }
    // Inputs past the tile repeat its last one and are never stored.
    var input: array<u32, NT>;
    for (var n = 0u; n < NT; n++) { // unroll
        let e = first + min(n, count - 1u);
        if GROUPED == 1u {
            input[n] = entries[e] >> 16u;
        } else {
            input[n] = e;
        }
    }
    let row0 = ((wid.x) * TEAMS + team) * ROWS;
    var v: array<f32, NV>;
    for (var c = lane; c < p.chunks; c += LANES) {
        var w0: array<Int8Chunk0, ROWS>;
        var w1: array<Int8Chunk1, ROWS>;
        for (var r = 0u; r < ROWS; r++) { // unroll
            // Rows past the end read the last row (in range) and are never stored.
            let base = (m * p.rows + min(row0 + r, p.rows - 1u)) * p.chunks + c;
            w0[r] = load_int8_chunk0(base);
            if GLU {
                w1[r] = load_int8_chunk1(base);
            }
        }
        for (var n = 0u; n < NT; n++) { // unroll
            let o = input[n] * p.chunks + c;
            let a = xq[2u * o];
            let b = xq[2u * o + 1u];
            let q = array<u32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
            let d = xd[o];
            let qsum = bitcast<i32>(d.y);
            for (var r = 0u; r < ROWS; r++) { // unroll
                v[r * NT + n] += d.x * dot_int8_chunk0(w0[r], q, qsum);
                if GLU {
                    v[(ROWS + r) * NT + n] += d.x * dot_int8_chunk1(w1[r], q, qsum);
                }
            }
        }
    }
    reduce_team(&v, tid, lane);
    if lane != 0u {
        return;
    }
    for (var n = 0u; n < NT; n++) { // unroll
        if n < count {
            let sc = s[input[n]];
            for (var r = 0u; r < ROWS; r++) { // unroll
                let row = row0 + r;
                if row < p.rows {
                    var out = v[r * NT + n] * sc;
                    if GLU {
                        out = out / (1.0 + exp(-out)) * v[(ROWS + r) * NT + n] * sc;
                    }
                    let o = (first + n) * p.y_stride + row;
                    if ADD {
                        y[o] += out;
                    } else {
                        y[o] = out;
                    }
                }
            }
        }
    }
}
