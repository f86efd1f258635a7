// Prefill products over a chunk's input rows: out[i][row] = s_i · W[row] · x_i for the inputs i of a
// tile of up to NT, with SiLU(gate)·up for GLU. A team of LANES threads owns ROWS output rows of the
// tile; its lanes split the row's chunks, and each weight chunk is loaded once (load_w) for all NT
// inputs. INT8: the inputs are int8 rows from input_rows.wgsl, else f32 rows of `xf`; SCALED: each
// row's result is scaled by s_i (input_rows.wgsl's folded norm), else s_i = 1. The weight-side snippet
// (format.rs) defines WChunk, load_w and dot_w for the input kind.
// Tiles: GROUPED 0: tile j is token rows [j·NT, j·NT + NT) ∩ [0, step.n), output row = input row; with
// HEADS > 0, workgroup z is a head h, input and output row of token t are t·HEADS + h, matrix h.
// GROUPED 1, 2: tile j of moe_group.wgsl's list (one expert, up to NT consecutive entries); output row =
// entry, input row = the entry's token (1) or the entry (2).
// Host constants: LANES, TEAMS, ROWS, NT, NV (= ROWS·NT, twice with GLU), GLU, ADD, GROUPED, HEADS,
// INT8, SCALED, CHUNK_V4.

struct Params {
    rows: u32,      // rows per matrix
    chunks: u32,    // chunks per row
    y_stride: u32,  // floats between output rows
    x_stride: u32,  // vec4s between f32 input rows
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
@group(0) @binding(12) var<storage, read> xf: array<vec4<f32>>;

// Chunk c of input row r.
fn load_x(r: u32, c: u32) -> XChunk {
    var x: XChunk;
    if INT8 {
        let o = r * p.chunks + c;
        let a = xq[2u * o];
        let b = xq[2u * o + 1u];
        let d = xd[o];
        x.xq = array<u32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
        x.qsum = bitcast<i32>(d.y);
        x.dx = d.x;
    } else {
        for (var i = 0u; i < CHUNK_V4; i++) { // unroll
            x.xs[i] = xf[r * p.x_stride + c * CHUNK_V4 + i];
        }
    }
    return x;
}

const WG: u32 = LANES * TEAMS;

// A chunk of one input row: int8 quants with their sum and scale (INT8), or f32 values.
struct XChunk {
    xq: array<u32, 8>,
    qsum: i32,
    dx: f32,
    xs: array<vec4<f32>, CHUNK_V4>,
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let team = tid / LANES;
    let lane = tid % LANES;
    let tile = wid.y;
    var m = wid.z;
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
    var output_row: array<u32, NT>;
    for (var n = 0u; n < NT; n++) { // unroll
        let e = first + min(n, count - 1u);
        if GROUPED == 1u {
            input[n] = entries[e] >> 16u;
            output_row[n] = e;
        } else if HEADS > 0u {
            input[n] = e * HEADS + m;
            output_row[n] = input[n];
        } else {
            input[n] = e;
            output_row[n] = e;
        }
    }
    let row0 = (wid.x * TEAMS + team) * ROWS;
    var v: array<f32, NV>;
    for (var c = lane; c < p.chunks; c += LANES) {
        var w0: array<WChunk0, ROWS>;
        var w1: array<WChunk1, ROWS>;
        for (var r = 0u; r < ROWS; r++) { // unroll
            // Rows past the end read the last row (in range) and are never stored.
            let base = (m * p.rows + min(row0 + r, p.rows - 1u)) * p.chunks + c;
            w0[r] = load_w0(base);
            if GLU {
                w1[r] = load_w1(base);
            }
        }
        for (var n = 0u; n < NT; n++) { // unroll
            let x = load_x(input[n], c);
            for (var r = 0u; r < ROWS; r++) { // unroll
                v[r * NT + n] += dot_w0(w0[r], x);
                if GLU {
                    v[(ROWS + r) * NT + n] += dot_w1(w1[r], x);
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
            var sc = 1.0;
            if SCALED {
                sc = s[input[n]];
            }
            for (var r = 0u; r < ROWS; r++) { // unroll
                let row = row0 + r;
                if row < p.rows {
                    var out = v[r * NT + n] * sc;
                    if GLU {
                        out = out / (1.0 + exp(-out)) * v[(ROWS + r) * NT + n] * sc;
                    }
                    let o = output_row[n] * p.y_stride + row;
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
