// Prefill products on cooperative matrices (tensor cores, simdgroup matrices): the same products,
// tiles and outputs as matmul.wgsl, on f32 input rows. A workgroup of 4 subgroups of 32 owns BM
// output rows × BN tile inputs; each step of BK columns dequantises the weight tile (load_chunk of
// format.rs, so every format) and the input tile to f16 in workgroup memory, and each subgroup
// accumulates its 32 × 16·SN block as 2 × SN products of 16 × 16 × 16 in f32. The next step's tiles
// are fetched into registers while the current one is multiplied. The block goes out through
// workgroup memory, where the row scale, SiLU(gate)·up and the residual add are applied.
// Host constants: GM × GN subgroups (BM = 32·GM rows, BN = 16·SN·GN inputs), SN, BK, CHUNK (values
// per format chunk), CHUNK_V4, WL and XL (weight chunks and input vec4s each invocation fetches per
// step), GLU, ADD, GROUPED, HEADS, SCALED; W1_LEN (the up tile, 8 without GLU).
// A16, B16, C32: the 16 × 16 tile types of COOP_PRELUDE (src/kernels/mod.rs).

struct Params {
    rows: u32,      // rows per matrix
    chunks: u32,    // chunks per row
    y_stride: u32,  // floats between output rows
    x_stride: u32,  // vec4s between input rows
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> xf: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> tiles: array<u32>;
@group(0) @binding(6) var<storage, read> entries: array<u32>;
@group(0) @binding(7) var<storage, read> weights0: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> scales0: array<u32>;
@group(0) @binding(9) var<storage, read> weights1: array<vec4<u32>>;
@group(0) @binding(10) var<storage, read> scales1: array<u32>;

const WG: u32 = 128u;
const BM: u32 = 32u * GM;
const BN: u32 = 16u * SN * GN;
// Tile rows are padded so each starts 16 bytes past the previous row's bank.
const LDS: u32 = BK + 8u;
const KC: u32 = BK / CHUNK;

// Weight tiles, row-major [row][column]; the input tile, [input][column]; each subgroup's staging.
// Every workgroup variable is a whole number of 16 bytes, so each tile starts 16-byte aligned as the
// cooperative loads need (an H200 read a tile that followed a 2-byte one shifted by an element).
var<workgroup> w0: array<vec4<f16>, BM * LDS / 4u>;
var<workgroup> w1: array<vec4<f16>, W1_LEN>;
var<workgroup> xt: array<vec4<f16>, BN * LDS / 4u>;
var<workgroup> stage: array<f32, 4u * 512u>;
// The tile's inputs: input row, output row and row scale (BN = 32 or 64 words each).
var<workgroup> input_row: array<u32, BN>;
var<workgroup> output_row: array<u32, BN>;
var<workgroup> row_scale: array<f32, BN>;
var<workgroup> tile: vec4<u32>;

var<private> tid: u32;
var<private> count: u32;
var<private> row0: u32;
var<private> m: u32;
// The next step's tiles, dequantised, in registers.
var<private> wr0: array<array<vec4<f32>, CHUNK_V4>, WL>;
var<private> wr1: array<array<vec4<f32>, CHUNK_V4>, WL>;
var<private> xr: array<vec4<f32>, XL>;

fn fetch(k0: u32) {
    for (var j = 0u; j < WL; j++) { // unroll
        let i = tid + j * WG;
        // Rows past the end read the last row (in range) and are never stored.
        let c = (m * p.rows + min(row0 + i / KC, p.rows - 1u)) * p.chunks + k0 / CHUNK + i % KC;
        wr0[j] = load_chunk0(c);
        if GLU {
            wr1[j] = load_chunk1(c);
        }
    }
    for (var j = 0u; j < XL; j++) { // unroll
        let i = tid + j * WG;
        xr[j] = xf[input_row[i / (BK / 4u)] * p.x_stride + k0 / 4u + i % (BK / 4u)];
    }
}

fn stash() {
    for (var j = 0u; j < WL; j++) { // unroll
        let i = tid + j * WG;
        let o = ((i / KC) * LDS + (i % KC) * CHUNK) / 4u;
        for (var v = 0u; v < CHUNK_V4; v++) { // unroll
            w0[o + v] = vec4<f16>(wr0[j][v]);
            if GLU {
                w1[o + v] = vec4<f16>(wr1[j][v]);
            }
        }
    }
    for (var j = 0u; j < XL; j++) { // unroll
        let i = tid + j * WG;
        xt[(i / (BK / 4u)) * (LDS / 4u) + i % (BK / 4u)] = vec4<f16>(xr[j]);
    }
}

// Subgroup block (bm, bn) of the workgroup's tile: its accumulated gate (or only) and up parts out
// to y. Every invocation calls it (barriers): the invocations of stage q = tid / 32 write block q.
fn store_block(g: C32, u: C32, sg: u32, bm: u32, bn: u32) {
    coopStore(g, &stage[sg * 512u], 16u);
    if GLU {
        coopStore(u, &stage[sg * 512u + 256u], 16u);
    }
    workgroupBarrier();
    let q = tid / 32u;
    let m0 = row0 + (q / GN) * 32u + bm;
    let n0 = (q % GN) * 16u * SN + bn;
    for (var e = tid % 32u; e < 256u; e += 32u) {
        // Column-major staging: consecutive invocations take consecutive output rows.
        let row = m0 + e % 16u;
        let n = n0 + e / 16u;
        if n < count && row < p.rows {
            let sc = row_scale[n];
            var out = stage[q * 512u + e] * sc;
            if GLU {
                out = out / (1.0 + exp(-out)) * stage[q * 512u + 256u + e] * sc;
            }
            let o = output_row[n] * p.y_stride + row;
            if ADD {
                y[o] += out;
            } else {
                y[o] = out;
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    tid = local;
    // The tile (matrix, inputs, first input, unused), made uniform for the cooperative operations.
    if tid == 0u {
        var info = vec4<u32>(wid.z, 0u, wid.y * BN, 0u);
        if GROUPED == 0u {
            if info.z < step.n {
                info.y = min(BN, step.n - info.z);
            }
        } else if wid.y < tiles[0] {
            let t = tiles[1u + 2u * wid.y];
            info = vec4<u32>(t & 0xffffu, t >> 16u, tiles[2u + 2u * wid.y], 0u);
        }
        tile = info;
    }
    let info = workgroupUniformLoad(&tile);
    m = info.x;
    count = info.y;
    let first = info.z;
    if info.y == 0u {
        return;
    }
    // Inputs past the tile repeat its last one and are never stored.
    if tid < BN {
        let e = first + min(tid, count - 1u);
        var i = e;
        if GROUPED == 1u {
            i = entries[e] >> 16u;
        } else if HEADS > 0u {
            i = e * HEADS + m;
        }
        input_row[tid] = i;
        output_row[tid] = select(i, e, GROUPED == 1u);
        row_scale[tid] = 1.0;
        if SCALED {
            row_scale[tid] = s[i];
        }
    }
    row0 = wid.x * BM;
    workgroupBarrier();

    let bm = (sg / GN) * 32u;
    let bn = (sg % GN) * 16u * SN;
    var g00 = C32();
    var g01 = C32();
    var g10 = C32();
    var g11 = C32();
    var u00 = C32();
    var u01 = C32();
    var u10 = C32();
    var u11 = C32();
    let cols = p.chunks * CHUNK;
    fetch(0u);
    for (var k0 = 0u; k0 < cols; k0 += BK) {
        // The previous step's products are done with the tiles.
        workgroupBarrier();
        stash();
        workgroupBarrier();
        if k0 + BK < cols {
            fetch(k0 + BK);
        }
        for (var kk = 0u; kk < BK; kk += 16u) {
            let a0 = coopLoadT<A16>(&w0[(bm * LDS + kk) / 4u], LDS / 4u);
            let a1 = coopLoadT<A16>(&w0[((bm + 16u) * LDS + kk) / 4u], LDS / 4u);
            let b0 = coopLoad<B16>(&xt[(bn * LDS + kk) / 4u], LDS / 4u);
            g00 = coopMultiplyAdd(a0, b0, g00);
            g10 = coopMultiplyAdd(a1, b0, g10);
            if GLU {
                let c0 = coopLoadT<A16>(&w1[(bm * LDS + kk) / 4u], LDS / 4u);
                let c1 = coopLoadT<A16>(&w1[((bm + 16u) * LDS + kk) / 4u], LDS / 4u);
                u00 = coopMultiplyAdd(c0, b0, u00);
                u10 = coopMultiplyAdd(c1, b0, u10);
                if SN == 2u {
                    let b1 = coopLoad<B16>(&xt[((bn + 16u) * LDS + kk) / 4u], LDS / 4u);
                    u01 = coopMultiplyAdd(c0, b1, u01);
                    u11 = coopMultiplyAdd(c1, b1, u11);
                }
            }
            if SN == 2u {
                let b1 = coopLoad<B16>(&xt[((bn + 16u) * LDS + kk) / 4u], LDS / 4u);
                g01 = coopMultiplyAdd(a0, b1, g01);
                g11 = coopMultiplyAdd(a1, b1, g11);
            }
        }
    }
    store_block(g00, u00, sg, 0u, 0u);
    store_block(g10, u10, sg, 16u, 0u);
    if SN == 2u {
        store_block(g01, u01, sg, 0u, 16u);
        store_block(g11, u11, sg, 16u, 16u);
    }
}
