// Matrix-vector products over any weight format: y = W x, for one matrix or one per slot.
//
// A workgroup is TEAMS teams of LANES threads; a team owns ROWS consecutive rows and its lanes split
// the row length between them, so each thread loads one chunk of x and uses it for all ROWS rows
// (x is read once per team, and every thread keeps ROWS weight loads in flight).
//
// Host constants: LANES, TEAMS, ROWS, CHUNK_V4 (vec4s per format chunk),
// MATRIX (0: one matrix; 1: matrix = slot, e.g. attention heads; 2: matrix = routed expert id of the slot;
// 3: as 2, but each workgroup chooses the route from the router logits itself (route_choice.wgsl) and
// workgroup 0 stores it for the passes after),
// GLU (y = silu(W0 x) * (W1 x)), OUT (0: store; 1: add into y; 2: add the route-weighted sum over all slots),
// NORM (x is RMS-normalised with the weights `gnorm` first, EPS), NV (values each lane reduces),
// STACK (a second matrix, W1, of `rows1` rows after W0's, writing y1: two products of one input),
// INT8 (some matrix takes int8 inputs: round each input chunk as src/quant/activations.rs does),
// PREPARE (also store the input normalised and rounded to int8 by 32 values, as an int8 product
// would see it, in y1 for later passes over the same input: a workgroup of its own after the
// product's writes it, off the product's path, and workgroup 0 the norm's scale), PREPARED (x is
// such a stored input: no norm or rounding left to do; both matrices take int8 inputs; with slots,
// one per slot, back to back; with NORM, its producer applied the norm's weights and stored each
// chunk's Σ x² in its word 10, whose sum gives the rms), ROUND (store y as such an input, rounded by
// 32 rows, for a later PREPARED product: matvec_round.wgsl, included only then, and the lines marked
// for ROUND; ROUND_NORM: for one with NORM, with `out_norm` its norm's weights; with STACK only W0's
// output).
// SHARED_IN: the workgroup normalises and rounds x once into workgroup memory (IN_CHUNKS chunks, in
// the prepared form below), which its teams then read as a PREPARED input (one input, both matrices
// int8; the lines marked for SHARED_IN only then).
// PARTIALS (OUT = 1, the attention output): each workgroup (TEAMS * ROWS = 32 rows) also stores in y1, for
// the route choice of the experts after it (route_choice.wgsl's FOLDED), PART_EXP + 1 sums over its rows
// j of the new y: Σ_j router[e, j] · norm[j] · y_j for each expert e and Σ_j y_j², with the router's f32
// weights bound as `router_logits` and the experts' input norm as `router_bias`: the router's product
// without its own pass, each sum over PART_SLICES slices of the rows in parallel, then totalled
// (lines marked for PARTIALS only then).
// MERGE (MATRIX = 1): x holds mla_attention.wgsl's splits, which each workgroup merges first
// (matvec_merge.wgsl, included only then, and the lines marked for MERGE; the lines marked for
// !MERGE only without: its workgroup array, even unused, cost 2 % tok/s on the H200).
// A prepared input is PREP_WORDS (host constant) words per chunk: the 8 int8 words, Σ q (i32 bits),
// the scale dx, Σ x² (ROUND_NORM), one unused; after the last slot's chunks the norm's scale 1 / rms
// (1 without a norm).
// The reduction snippet (subgroup or shared memory) defines reduce_team; int8_input.wgsl the rounding; the format snippets define
// dot_input0 / dot_input1 over a ChunkInput.

struct Params {
    rows: u32,      // rows per matrix
    chunks: u32,    // format chunks per row
    x_stride: u32,  // vec4s between the inputs of consecutive slots
    y_stride: u32,  // floats between the outputs of consecutive slots
    n_slots: u32,   // slots (summed in OUT = 2)
    groups_x: u32,  // workgroups along x (the grid spills into y)
    groups0: u32,   // STACK: the workgroups of W0; the rest are W1's
    rows1: u32,     // STACK: rows of W1
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// Router output: expert ids in [0, 8), their weights (f32 bits) in [8, 16).
@group(0) @binding(3) var<storage, read_write> route: array<u32>;
@group(0) @binding(4) var<storage, read> weights0: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> scales0: array<u32>;
@group(0) @binding(6) var<storage, read> weights1: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> scales1: array<u32>;
@group(0) @binding(8) var<storage, read> gnorm: array<vec4<f32>>;
// STACK: W1's output; PREPARE: the prepared input.
@group(0) @binding(9) var<storage, read_write> y1: array<f32>;
// MATRIX = 3: the router's logits and bias.
@group(0) @binding(10) var<storage, read> router_logits: array<f32>;
@group(0) @binding(11) var<storage, read> router_bias: array<f32>;
// ROUND_NORM: the weights of the norm of the product that reads y.
@group(0) @binding(12) var<storage, read> out_norm: array<vec4<f32>>;

const WG: u32 = LANES * TEAMS;

// SHARED_IN: the input as a prepared input's chunks (words 0-10 in three vec4s).
var<workgroup> shared_in: array<vec4<u32>, 3u * IN_CHUNKS>; // if SHARED_IN

// Each thread one 32-value chunk at a time (a prepared input's chunking), Σ x² before the norm's
// weights as ROUND_NORM stores it.
fn round_shared_input(tid: u32) {
    for (var c = tid; c < IN_CHUNKS; c += WG) { // if SHARED_IN
        var xs: array<vec4<f32>, 8>; // if SHARED_IN
        var sumsq = 0.0; // if SHARED_IN
        for (var i = 0u; i < 8u; i++) { // if SHARED_IN
            xs[i] = x[c * 8u + i]; // if SHARED_IN
            if NORM { // if SHARED_IN
                sumsq += dot(xs[i], xs[i]); // if SHARED_IN
                xs[i] *= gnorm[c * 8u + i]; // if SHARED_IN
            } // if SHARED_IN
        } // if SHARED_IN
        let q = round_to_int8(xs); // if SHARED_IN
        shared_in[3u * c] = vec4<u32>(q.xq[0], q.xq[1], q.xq[2], q.xq[3]); // if SHARED_IN
        shared_in[3u * c + 1u] = vec4<u32>(q.xq[4], q.xq[5], q.xq[6], q.xq[7]); // if SHARED_IN
        shared_in[3u * c + 2u] = vec4<u32>(bitcast<u32>(q.qsum), bitcast<u32>(q.dx), bitcast<u32>(sumsq), 0u); // if SHARED_IN
    } // if SHARED_IN
    workgroupBarrier();
}

// One chunk of the input: f32 values and their sum; with INT8 also the chunk rounded to int8
// (int8_input.wgsl).
struct ChunkInput {
    xs: array<vec4<f32>, CHUNK_V4>,
    xsum: f32,
    q: Int8Input,
}

fn matrix_of(slot: u32) -> u32 {
    if MATRIX == 1u {
        return slot;
    }
    if MATRIX == 2u {
        return route[slot];
    }
    if MATRIX == 3u {
        return route_expert[slot];
    }
    return 0u;
}

// One item of a lane's share of the row: the slot and chunk it covers, the slot's route weight
// (OUT = 2) and the chunk of input. With NORM, adds the chunk's Σ x² to *sumsq.
struct Item {
    s: u32,
    c: u32,
    wgt: f32,
    xin: ChunkInput,
}

fn load_item(it: u32, slot: u32, sumsq: ptr<function, f32>) -> Item {
    var r: Item;
    r.s = slot;
    r.c = it;
    r.wgt = 1.0;
    if OUT == 2u {
        r.s = it / p.chunks;
        r.c = it - r.s * p.chunks;
        r.wgt = bitcast<f32>(route[8u + r.s]);
    }
    let s = r.s;
    let c = r.c;
    if PREPARED || SHARED_IN {
        var lo: vec4<u32>;
        var hi: vec4<u32>;
        var t: vec4<f32>;
        if SHARED_IN {
            lo = shared_in[3u * c]; // if SHARED_IN
            hi = shared_in[3u * c + 1u]; // if SHARED_IN
            t = bitcast<vec4<f32>>(shared_in[3u * c + 2u]); // if SHARED_IN
        } else {
            let at = s * p.x_stride + c * (PREP_WORDS / 4u);
            lo = bitcast<vec4<u32>>(x[at]);
            hi = bitcast<vec4<u32>>(x[at + 1u]);
            t = x[at + 2u];
        }
        r.xin.q = Int8Input(array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w), bitcast<i32>(t.x), t.y);
        if NORM {
            *sumsq += t.z;
        }
    } else {
        for (var i = 0u; i < CHUNK_V4; i++) { // unroll
            var xi = merged[c * CHUNK_V4 + i]; // if MERGE
            var xi = x[s * p.x_stride + c * CHUNK_V4 + i]; // if !MERGE
            if NORM {
                *sumsq += dot(xi, xi);
                xi *= gnorm[c * CHUNK_V4 + i];
            }
            r.xin.xs[i] = xi;
            r.xin.xsum += dot(xi, vec4<f32>(1.0));
        }
        if INT8 {
            r.xin.q = round_to_int8(chunk32(r.xin.xs));
        }
    }
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let team = tid / LANES;
    let lane = tid % LANES;
    var group = wid.x + wid.y * p.groups_x;
    var rows = p.rows;
    // Whether this workgroup works on W1 (uniform over the workgroup).
    var second = false;
    if STACK && group >= p.groups0 {
        second = true;
        group -= p.groups0;
        rows = p.rows1;
    }
    if PREPARE && group == p.groups0 {
        // By 32 values, whatever the weight's chunk.
        for (var c = tid; c < p.chunks * CHUNK_V4 / 8u; c += WG) {
            var xs: array<vec4<f32>, 8>;
            for (var i = 0u; i < 8u; i++) { // unroll
                xs[i] = x[c * 8u + i];
                if NORM {
                    xs[i] *= gnorm[c * 8u + i];
                }
            }
            let q = round_to_int8(xs);
            let words = prepared_words(q);
            for (var i = 0u; i < 10u; i++) { // unroll
                y1[c * PREP_WORDS + i] = words[i];
            }
        }
        return;
    }
    let row0 = (group * TEAMS + team) * ROWS;
    let slot = wid.z;
    var items = p.chunks;
    if OUT == 2u {
        items = p.chunks * p.n_slots;
    }
    // The values the outputs add to and the prepared input's norm scale are loaded first, so their
    // latency overlaps the route choice and the reduction (-30 us per token on the H200). Loading
    // the first input chunk before the route choice as well cost 4 %: it stays in the loop.
    var sumsq = 0.0;
    var acc_in: array<f32, ROWS>;
    if OUT != 0u && !(STACK && second) && lane == 0u {
        for (var r = 0u; r < ROWS; r++) { // unroll
            acc_in[r] = y[slot * p.y_stride + min(row0 + r, rows - 1u)];
        }
    }
    var scale = 1.0;
    round_shared_input(tid); // if SHARED_IN
    if PREPARED && !NORM {
        scale = x[(p.n_slots - 1u) * p.x_stride + p.chunks * (PREP_WORDS / 4u)].x;
    }
    if MATRIX == 3u {
        choose_route(tid, 0u);
        if tid == 0u && all(wid == vec3<u32>(0u)) {
            store_route(0u);
        }
    }
    merge_splits(tid, slot); // if MERGE
    // v[r]: row r (gate), v[ROWS + r]: row r of W1 (up), v[NV - 1]: sum of x² (NORM).
    var v: array<f32, NV>;
    for (var it = lane; it < items; it += LANES) {
        let item = load_item(it, slot, &sumsq);
        let m = matrix_of(item.s);
        for (var r = 0u; r < ROWS; r++) { // unroll
            // Rows past the end read the last row (in range) and are never stored.
            let base = (m * rows + min(row0 + r, rows - 1u)) * p.chunks + item.c;
            if STACK && second {
                v[r] += dot_input1(base, item.xin);
            } else {
                v[r] += item.wgt * dot_input0(base, item.xin);
            }
            if GLU {
                v[ROWS + r] += dot_input1(base, item.xin);
            }
        }
    }
    if NORM {
        v[NV - 1u] = sumsq;
    }
    reduce_team(&v, tid, lane);
    if lane == 0u {
        store_rows(v, acc_in, scale, team, row0, rows, slot, second, group);
    }
    round_rows(tid, group, slot, second); // if ROUND
    store_router_partials(tid, group); // if PARTIALS
}

// PARTIALS: the workgroup's new y, and the sums of PART_SLICES slices of its rows per expert (then Σ y²).
var<workgroup> part_rows: array<f32, TEAMS * ROWS>; // if PARTIALS

var<workgroup> part_sums: array<f32, PART_SLICES * (PART_EXP + 1u)>; // if PARTIALS

fn store_router_partials(tid: u32, group: u32) {
    workgroupBarrier();
    for (var i = tid; i < PART_SLICES * (PART_EXP + 1u); i += WG) { // if PARTIALS
        let e = i / PART_SLICES; // if PARTIALS
        let k = i % PART_SLICES; // if PARTIALS
        var acc = 0.0; // if PARTIALS
        for (var j = 0u; j < TEAMS * ROWS / PART_SLICES; j++) { // if PARTIALS
            let r = k * (TEAMS * ROWS / PART_SLICES) + j; // if PARTIALS
            let row = group * TEAMS * ROWS + r; // if PARTIALS
            let v = part_rows[r]; // if PARTIALS
            if e < PART_EXP { // if PARTIALS
                acc += router_logits[e * p.rows + row] * router_bias[row] * v; // if PARTIALS
            } else { // if PARTIALS
                acc += v * v; // if PARTIALS
            } // if PARTIALS
        } // if PARTIALS
        part_sums[i] = acc; // if PARTIALS
    } // if PARTIALS
    workgroupBarrier();
    if tid <= PART_EXP { // if PARTIALS
        var acc = 0.0; // if PARTIALS
        for (var k = 0u; k < PART_SLICES; k++) { // if PARTIALS
            acc += part_sums[tid * PART_SLICES + k]; // if PARTIALS
        } // if PARTIALS
        y1[group * (PART_EXP + 1u) + tid] = acc; // if PARTIALS
    } // if PARTIALS
}

// Lane 0 of each team: its rows' outputs from the team's sums.
fn store_rows(
    v: array<f32, NV>,
    acc_in: array<f32, ROWS>,
    prepared_scale: f32,
    team: u32,
    row0: u32,
    rows: u32,
    slot: u32,
    second: bool,
    group: u32,
) {
    var scale = prepared_scale;
    if NORM {
        scale = inverseSqrt(v[NV - 1u] / f32(p.chunks * CHUNK_V4 * 4u) + EPS);
    }
    if PREPARE && group == 0u && team == 0u && slot == 0u {
        y1[p.chunks * CHUNK_V4 / 8u * PREP_WORDS] = scale;
    }
    for (var r = 0u; r < ROWS; r++) { // unroll
        let row = row0 + r;
        if row < rows {
            var out = v[r] * scale;
            if GLU {
                out = out / (1.0 + exp(-out)) * v[ROWS + r] * scale;
            }
            let o = slot * p.y_stride + row;
            if STACK && second {
                y1[row] = out;
            } else if ROUND {
                staged[team * ROWS + r] = out; // if ROUND
            } else if OUT == 0u {
                y[o] = out;
            } else {
                y[o] = acc_in[r] + out;
                part_rows[team * ROWS + r] = acc_in[r] + out; // if PARTIALS
            }
        }
    }
}
