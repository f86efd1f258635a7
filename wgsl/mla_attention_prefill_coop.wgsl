// Prefill: causal MLA attention of a chunk on cooperative matrices. The (token, head) rows of the
// chunk (row r = t·N_HEADS + h, the layout of q_rope, q_lat and out) all attend the same latent cache, so
// a workgroup takes 32 consecutive rows (the latest first) and runs them against blocks of 64 cache
// positions as matrix products: S = Q·Kᵀ over the KV_W query/key columns (q_lat and the roped query
// against the cache row), in steps of DC columns staged as f16 in workgroup memory, then O = P·V over
// the KV_LORA latent. Two passes over the blocks: the first finds each row's maximum and sum of
// e^(s - max), the second sums P = e^(s - max) / sum times V, so the accumulators never need a
// per-row rescale (which cooperative matrices cannot do). The 2·DVG subgroups own 16 rows × 64
// latent columns of O each; each S tile of 16 rows × 16 positions is computed by the subgroups
// sg ≡ tile (mod 8), which write the same values.
// Host constants: DVG (= KV_LORA / 64), DC (columns per S step: 64, or 32 where KV_W is not whole 64s),
// N_HEADS, KV_LORA, ROPE, KV_W, SCALE, KV_F16.
// A16, B16, C32: the 16 × 16 tile types of COOP_PRELUDE (src/kernels/mod.rs).

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q_rope: array<f32>;
@group(0) @binding(2) var<storage, read> q_lat: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u * DVG;
const BR: u32 = 32u;
const BKV: u32 = 64u;
// Invocations per row in the row statistics, and positions each takes.
const PARTS: u32 = WG / BR;
const PER_PART: u32 = BKV / PARTS;
// Padded row lengths (f16) of the staged tiles: each row starts 16 bytes past the previous one's bank.
const LQ: u32 = DC + 8u;
const LP: u32 = BKV + 8u;
const LV: u32 = KV_LORA + 8u;
// Cache positions per V step.
const VK: u32 = 16u;

// Every workgroup variable is a whole number of 16 bytes (the cooperative loads need aligned tiles).
var<workgroup> qs: array<f16, BR * LQ>;
var<workgroup> ks: array<f16, BKV * LQ>;
// S of the block, [position][row].
var<workgroup> ss: array<f32, BKV * BR>;
// P of the block, [row][position].
var<workgroup> ps: array<f16, BR * LP>;
// VK cache rows' latent, [position][column].
var<workgroup> vs: array<f16, VK * LV>;
var<workgroup> row_max: array<f32, BR>;
var<workgroup> row_sum: array<f32, BR>;
// Each part's maximum and sum of one block, [part][row].
var<workgroup> part_max: array<f32, WG>;
var<workgroup> part_sum: array<f32, WG>;

var<private> tid: u32;

// The workgroup's rows [row0, row0 + BR) of the chunk's `rows` (uniform values, passed along so the
// cooperative operations stay in uniform control flow).
struct Tile {
    row0: u32,
    rows: u32,
}

// The position of row i of the tile (rows past the chunk's take its last row's).
fn row_pos(t: Tile, i: u32) -> u32 {
    return step.pos + min(t.row0 + i, t.rows - 1u) / N_HEADS;
}

// Stages columns [d0, d0 + DC) of the tile's queries and of positions [k0, k0 + BKV) (past `end`,
// the last one again) as f16.
fn stage_qk(t: Tile, d0: u32, k0: u32, end: u32) {
    for (var e = tid; e < BR * DC / 2u; e += WG) {
        let i = e / (DC / 2u);
        let j = d0 + 2u * (e % (DC / 2u));
        let r = min(t.row0 + i, t.rows - 1u);
        var v: vec2<f32>;
        if j < KV_LORA {
            v = vec2<f32>(q_lat[r * KV_LORA + j], q_lat[r * KV_LORA + j + 1u]);
        } else {
            let a = q_rope[r * ROPE + j - KV_LORA];
            let b = q_rope[r * ROPE + j - KV_LORA + 1u];
            let cs = rope[row_pos(t, i) * (ROPE / 2u) + (j - KV_LORA) / 2u];
            v = rope_rotate(a, b, cs);
        }
        qs[i * LQ + j - d0] = f16(v.x);
        qs[i * LQ + j - d0 + 1u] = f16(v.y);
    }
    for (var e = tid; e < BKV * DC / 2u; e += WG) {
        let i = e / (DC / 2u);
        let j = 2u * (e % (DC / 2u));
        let v = cache_load2(min(k0 + i, end - 1u) * KV_W + d0 + j);
        ks[i * LQ + j] = f16(v.x);
        ks[i * LQ + j + 1u] = f16(v.y);
    }
}

// S of positions [k0, k0 + BKV) into ss, unscaled.
fn scores(t: Tile, sg: u32, k0: u32, end: u32) {
    let sr = (sg % 8u) / 4u * 16u;
    let sk = (sg % 4u) * 16u;
    var s = C32();
    for (var d0 = 0u; d0 < KV_W; d0 += DC) {
        workgroupBarrier();
        stage_qk(t, d0, k0, end);
        workgroupBarrier();
        for (var kk = 0u; kk < DC; kk += 16u) {
            let a = coopLoadT<A16>(&qs[sr * LQ + kk], LQ);
            let b = coopLoad<B16>(&ks[sk * LQ + kk], LQ);
            s = coopMultiplyAdd(a, b, s);
        }
    }
    // Column-major with stride BR: (row, position) at ss[position · BR + row].
    coopStore(s, &ss[sk * BR + sr], BR);
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    tid = local;
    let rows = step.n * N_HEADS;
    let tiles = (rows + BR - 1u) / BR;
    if wid.x >= tiles {
        return;
    }
    // The latest rows (most positions) first.
    let t = Tile((tiles - 1u - wid.x) * BR, rows);
    let end = row_pos(t, BR - 1u) + 1u;

    if tid < BR {
        row_max[tid] = -3.0e38;
        row_sum[tid] = 0.0;
    }
    for (var k0 = 0u; k0 < end; k0 += BKV) {
        scores(t, sg, k0, end);
        // PARTS invocations per row each take PER_PART positions of the block, then one per row
        // folds the parts into the running maximum and sum.
        let i = tid % BR;
        let part = tid / BR;
        let last = row_pos(t, i);
        var m = -3.0e38;
        var l = 0.0;
        for (var j = part * PER_PART; j < (part + 1u) * PER_PART && k0 + j <= last; j++) {
            let s = ss[j * BR + i] * SCALE;
            let mn = max(m, s);
            l = l * exp(m - mn) + exp(s - mn);
            m = mn;
        }
        part_max[tid] = m;
        part_sum[tid] = l;
        workgroupBarrier();
        if tid < BR {
            var m = row_max[tid];
            var l = row_sum[tid];
            for (var k = 0u; k < PARTS; k++) {
                let pm = part_max[k * BR + tid];
                let mn = max(m, pm);
                l = l * exp(m - mn) + part_sum[k * BR + tid] * exp(pm - mn);
                m = mn;
            }
            row_max[tid] = m;
            row_sum[tid] = l;
        }
    }

    let rg = sg / DVG * 16u;
    let dv = (sg % DVG) * 64u;
    var o0 = C32();
    var o1 = C32();
    var o2 = C32();
    var o3 = C32();
    for (var k0 = 0u; k0 < end; k0 += BKV) {
        scores(t, sg, k0, end);
        for (var e = tid; e < BR * BKV; e += WG) {
            let i = e % BR;
            let j = e / BR;
            var w = 0.0;
            if k0 + j <= row_pos(t, i) {
                w = exp(ss[e] * SCALE - row_max[i]) / row_sum[i];
            }
            ps[i * LP + j] = f16(w);
        }
        for (var v0 = 0u; v0 < BKV; v0 += VK) {
            workgroupBarrier();
            for (var e = tid; e < VK * KV_LORA / 2u; e += WG) {
                let i = e / (KV_LORA / 2u);
                let j = 2u * (e % (KV_LORA / 2u));
                let v = cache_load2(min(k0 + v0 + i, end - 1u) * KV_W + j);
                vs[i * LV + j] = f16(v.x);
                vs[i * LV + j + 1u] = f16(v.y);
            }
            workgroupBarrier();
            let p = coopLoadT<A16>(&ps[rg * LP + v0], LP);
            o0 = coopMultiplyAdd(p, coopLoadT<B16>(&vs[dv], LV), o0);
            o1 = coopMultiplyAdd(p, coopLoadT<B16>(&vs[dv + 16u], LV), o1);
            o2 = coopMultiplyAdd(p, coopLoadT<B16>(&vs[dv + 32u], LV), o2);
            o3 = coopMultiplyAdd(p, coopLoadT<B16>(&vs[dv + 48u], LV), o3);
        }
    }
    // out has room for whole tiles of rows: rows past the chunk's are scratch.
    let o = (t.row0 + rg) * KV_LORA + dv;
    coopStoreT(o0, &out[o], KV_LORA);
    coopStoreT(o1, &out[o + 16u], KV_LORA);
    coopStoreT(o2, &out[o + 32u], KV_LORA);
    coopStoreT(o3, &out[o + 48u], KV_LORA);
}
