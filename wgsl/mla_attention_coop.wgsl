// The decode attention's split pass on cooperative matrices (mla_attention.wgsl's long-context
// variant where the adapter has them and the cache is f16): workgroup s takes positions
// [s·BKV, (s + 1)·BKV) ∩ [0, pos] for every head at once, as matrix products whose rows are the
// heads (head h is row h of 32; rows past N_HEADS hold whatever workgroup memory held and are never
// written out).
// Every invocation first loads its share of the split's cache rows (BKV × KV_W f16, as vec4<u32>)
// and of the queries into registers, all in flight together: one workgroup per split makes each
// split's chain of load latencies the pass's time, and cooperative loads straight from the cache
// (2-byte accesses across 16 rows) ran at a fraction of the coalesced loads' speed on the H200.
// S = Q·Kᵀ then runs over NC chunks of DC columns, each staged as f16 in workgroup memory, each
// subgroup accumulating its 16 × 16 tiles of S; the block's softmax in f32, P rounded to f16; O = P·V
// in 4 steps of 16 positions, V (the rows' latent, still in registers) staged per step: subgroup g
// owns latent columns [64g, 64g + 64) of both 16-row bands. Each head's max, sum and unnormalised
// context go to `partials` in mla_attention.wgsl's layout (rows past N_HEADS are dropped), for
// mla_attention_combine.wgsl.
// The split holding the current position builds its row (mla_cache_row.wgsl) in workgroup memory,
// scores it from there and stores it into the cache.
// Positions past pos in the last block (rows of an earlier sequence, or the padding rows past the
// context: the cache holds whole splits) are loaded, replaced by zeros, and weigh exactly 0.
// Host constants: DVG (= KV_LORA / 64, a power of two up to 8), ROUNDS (= 8 / DVG: S is two bands of
// 16 rows by BKV / 16 = 4 position tiles), NC and DC (column chunks: DC whole 16s), KC4 and QC4 (the
// cache vec4s and query vec4s each invocation holds per chunk), N_HEADS (at most 32), N_SPLITS,
// KV_LORA, ROPE (whole 4s), KV_W, SCALE, EPS.
// A16, B16, C32: the 16 × 16 tile types of COOP_PRELUDE (src/kernels/mod.rs).

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q_rope: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> q_lat: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> cache: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> ckv: array<f32>;
@group(0) @binding(7) var<storage, read> kv_norm: array<f32>;

const WG: u32 = 32u * DVG;
// Query rows (heads) and cache positions of a split.
const BR: u32 = 32u;
const BKV: u32 = 64u;
// A chunk's cache vec4s (8 f16 each) and query vec4s.
const K8: u32 = DC / 8u;
const Q4: u32 = DC / 4u;
// Invocations per row in the softmax: neighbouring lanes of one subgroup.
const PARTS: u32 = WG / BR;
const PER_PART: u32 = BKV / PARTS;
// Padded row lengths (f16) of the staged tiles: each row starts 16 bytes past the previous one's bank.
const LQ: u32 = DC + 8u;
const LP: u32 = BKV + 8u;
const LV: u32 = KV_LORA + 8u;
// Per (head, split): m, l, two pad floats, then KV_LORA context floats.
const PART: u32 = KV_LORA + 4u;
// Floats between two heads' partials of one split.
const HEAD_STRIDE: u32 = N_SPLITS * PART;

// A chunk of Q [row][column]; after the scores, P [row][position] with rows LP long.
var<workgroup> qp: array<f16, BR * max(LQ, LP)>;
// A chunk of K [position][column], or a step of V [position][latent column] with rows LV long.
var<workgroup> kv: array<f16, max(BKV * LQ, 16u * LV)>;
// S of the block, [position][row]; then each subgroup's two output tiles on their way out.
var<workgroup> ss: array<f32, max(BKV * BR, DVG * 2u * 256u)>;
// The current position's cache row, f16 pairs as the cache holds them.
var<workgroup> cur: array<u32, KV_W / 2u>;

var<private> tid: u32;
// The invocation's cache vec4s: chunk c's vec4 tid + k·WG at [c][k].
var<private> kr: array<array<vec4<u32>, KC4>, NC>;

// The largest of v over the PARTS neighbouring lanes of a row.
fn row_max(v: f32) -> f32 {
    var m = v;
    for (var o = 1u; o < PARTS; o *= 2u) {
        m = max(m, subgroupShuffleXor(m, o));
    }
    return m;
}

fn row_sum(v: f32) -> f32 {
    var s = v;
    for (var o = 1u; o < PARTS; o *= 2u) {
        s += subgroupShuffleXor(s, o);
    }
    return s;
}

// Head h's query vec4 at column d: q_lat, or the rope part rotated for this position.
fn query4(h: u32, d: u32) -> vec4<f32> {
    if d < KV_LORA {
        return q_lat[(h * KV_LORA + d) / 4u];
    }
    let x = q_rope[(h * ROPE + d - KV_LORA) / 4u];
    let cs = step.pos * (ROPE / 2u) + (d - KV_LORA) / 2u;
    return vec4<f32>(rope_rotate(x.x, x.y, rope[cs]), rope_rotate(x.z, x.w, rope[cs + 1u]));
}

// 8 f16 at kv[at..at + 8] from their packed pairs.
fn stage8(at: u32, v: vec4<u32>) {
    for (var i = 0u; i < 4u; i++) { // unroll
        let pair = unpack2x16float(v[i]);
        kv[at + 2u * i] = f16(pair.x);
        kv[at + 2u * i + 1u] = f16(pair.y);
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    tid = local;
    let split = wid.x;
    let k0 = split * BKV;
    let n = step.pos + 1u;
    if k0 >= n {
        return;
    }
    for (var c = 0u; c < NC; c++) { // unroll
        for (var k = 0u; k < KC4; k++) { // unroll
            let f = min(tid + k * WG, BKV * K8 - 1u);
            let v = cache[((k0 + f / K8) * KV_W + c * DC) / 8u + f % K8];
            kr[c][k] = select(vec4<u32>(0u), v, k0 + f / K8 <= step.pos);
        }
    }
    var q: array<array<vec4<f32>, QC4>, NC>;
    for (var c = 0u; c < NC; c++) { // unroll
        for (var k = 0u; k < QC4; k++) { // unroll
            let f = min(tid + k * WG, N_HEADS * Q4 - 1u);
            q[c][k] = query4(f / Q4, c * DC + f % Q4 * 4u);
        }
    }
    if n <= k0 + BKV {
        let inv = cache_row_inv_rms(0u, tid);
        for (var j = tid; j < KV_W / 2u; j += WG) {
            cur[j] = pack2x16float(cache_row_pair(0u, step.pos, j, inv));
        }
        workgroupBarrier();
        for (var j = tid; j < KV_W / 8u; j += WG) {
            cache[step.pos * (KV_W / 8u) + j] = vec4<u32>(cur[4u * j], cur[4u * j + 1u], cur[4u * j + 2u], cur[4u * j + 3u]);
        }
        // The current row's vec4s come from `cur`, not from the cache.
        for (var c = 0u; c < NC; c++) { // unroll
            for (var k = 0u; k < KC4; k++) { // unroll
                let f = tid + k * WG;
                if k0 + f / K8 == step.pos {
                    let j = (c * DC) / 2u + f % K8 * 4u;
                    kr[c][k] = vec4<u32>(cur[j], cur[j + 1u], cur[j + 2u], cur[j + 3u]);
                }
            }
        }
    }

    // Subgroup sg accumulates S tiles sg, sg + DVG, … over the chunks.
    var s: array<C32, ROUNDS>;
    for (var c = 0u; c < NC; c++) { // unroll
        for (var k = 0u; k < QC4; k++) { // unroll
            let f = tid + k * WG;
            if f < N_HEADS * Q4 {
                let at = f / Q4 * LQ + f % Q4 * 4u;
                qp[at] = f16(q[c][k].x);
                qp[at + 1u] = f16(q[c][k].y);
                qp[at + 2u] = f16(q[c][k].z);
                qp[at + 3u] = f16(q[c][k].w);
            }
        }
        for (var k = 0u; k < KC4; k++) { // unroll
            let f = tid + k * WG;
            if f < BKV * K8 {
                stage8(f / K8 * LQ + f % K8 * 8u, kr[c][k]);
            }
        }
        workgroupBarrier();
        for (var r = 0u; r < ROUNDS; r++) { // unroll
            let t = r * DVG + sg;
            let band = t / 4u * 16u;
            let pt = t % 4u * 16u;
            for (var d = 0u; d < DC; d += 16u) {
                let a = coopLoadT<A16>(&qp[band * LQ + d], LQ);
                let b = coopLoad<B16>(&kv[pt * LQ + d], LQ);
                s[r] = coopMultiplyAdd(a, b, s[r]);
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < ROUNDS; r++) { // unroll
        let t = r * DVG + sg;
        coopStore(s[r], &ss[t % 4u * 16u * BR + t / 4u * 16u], BR);
    }
    workgroupBarrier();

    // Row `row`'s softmax over the block's positions up to pos, PARTS invocations per row.
    let row = tid / PARTS;
    let part = tid % PARTS;
    let valid = n - k0;
    var m = -3.0e38;
    for (var j = part * PER_PART; j < (part + 1u) * PER_PART; j++) {
        m = max(m, select(-3.0e38, ss[j * BR + row], j < valid));
    }
    m = row_max(m);
    var l = 0.0;
    for (var j = part * PER_PART; j < (part + 1u) * PER_PART; j++) {
        let p = f16(select(0.0, exp((ss[j * BR + row] - m) * SCALE), j < valid));
        qp[row * LP + j] = p;
        l += f32(p);
    }
    l = row_sum(l);
    if part == 0u && row < N_HEADS {
        partials[(row * HEAD_STRIDE + split * PART) / 4u] = vec4<f32>(m * SCALE, l, 0.0, 0.0);
    }

    // o[b * 4 + c]: rows of band b, latent columns dv + 16c.
    let dv = sg * 64u;
    var o: array<C32, 8>;
    for (var st = 0u; st < 4u; st++) { // unroll
        // V of positions [16·st, 16·st + 16): the latent columns of those rows' vec4s.
        for (var c = 0u; c < NC; c++) { // unroll
            for (var k = 0u; k < KC4; k++) { // unroll
                let f = tid + k * WG;
                let d = c * DC + f % K8 * 8u;
                if f < BKV * K8 && f / K8 / 16u == st && d < KV_LORA {
                    stage8(f / K8 % 16u * LV + d, kr[c][k]);
                }
            }
        }
        workgroupBarrier();
        let p0 = coopLoadT<A16>(&qp[st * 16u], LP);
        let p1 = coopLoadT<A16>(&qp[16u * LP + st * 16u], LP);
        for (var c = 0u; c < 4u; c++) { // unroll
            let v = coopLoadT<B16>(&kv[dv + c * 16u], LV);
            o[c] = coopMultiplyAdd(p0, v, o[c]);
            o[4u + c] = coopMultiplyAdd(p1, v, o[4u + c]);
        }
        workgroupBarrier();
    }
    // Out through workgroup memory, column tile by column tile: four lanes per head, a vec4 each
    // (whole 32-byte sectors; the tiles' own stores scattered 4-byte pieces over 16 rows, and one lane
    // per head made each store touch 32 rows).
    let lane = tid % 32u;
    for (var c = 0u; c < 4u; c++) { // unroll
        coopStoreT(o[c], &ss[sg * 512u], 16u);
        coopStoreT(o[4u + c], &ss[sg * 512u + 256u], 16u);
        workgroupBarrier();
        for (var i = 0u; i < 4u; i++) { // unroll
            let h = i * 8u + lane / 4u;
            if h < N_HEADS {
                let at = sg * 512u + h * 16u + lane % 4u * 4u;
                let to = (h * HEAD_STRIDE + split * PART + 4u + dv + c * 16u) / 4u + lane % 4u;
                partials[to] = vec4<f32>(ss[at], ss[at + 1u], ss[at + 2u], ss[at + 3u]);
            }
        }
        workgroupBarrier();
    }
}
