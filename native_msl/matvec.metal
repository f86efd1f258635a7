// Matrix-vector products for Apple GPUs, the twin of wgsl/matvec.wgsl: the same bindings (buffer i
// = WGSL binding i), host constants (as #defines) and results, so the engine swaps one for the other
// per pipeline. A workgroup is TEAMS teams of LANES threads; a team owns ROWS rows, its lanes split
// the row's 32-weight chunks, each lane loads a chunk of x once for all ROWS rows, and the team's
// partial sums meet through simd_sum (teams of 32 or more lanes) or simdgroup shuffles (fewer), and
// threadgroup memory beyond a simdgroup.
// Host #defines: LANES, TEAMS, ROWS, NV, CHUNK_V4, MATRIX, GLU, OUT, NORM, STACK, INT8, PREPARE,
// PREPARED, PREP_WORDS, ROUND, ROUND_NORM, SHARED_IN, IN_CHUNKS, PARTIALS, PART_EXP, PART_SLICES, MERGE, MERGED_V4, MERGE_UNROLL, INT8_0, INT8_1, EPS, FORMAT0, FORMAT1
// (formats.metal structs of the two weight bindings), and route_choice.metal's; see matvec.wgsl for
// each.

struct Params {
    uint rows;      // rows per matrix
    uint chunks;    // format chunks per row
    uint x_stride;  // float4s between the inputs of consecutive slots
    uint y_stride;  // floats between the outputs of consecutive slots
    uint n_slots;   // slots (summed in OUT = 2)
    uint groups_x;  // workgroups along x (the grid spills into y)
    uint groups0;   // STACK: the workgroups of W0; the rest are W1's
    uint rows1;     // STACK: rows of W1
};

// wgsl/step.wgsl: the decode step (MERGE: its position and split length give the number of splits).
struct Step {
    uint pos;
    uint n;
    uint split;
};

// Threadgroup arrays, declared in the kernel body as Metal requires; the CPU harness that runs this
// kernel whole (check/matvec_harness.cpp) makes them statics its threads share.
#ifndef threadgroup_array
#define threadgroup_array threadgroup
#endif

#define SG 32u
// The pass that prepares an input (PREPARE, the router's) has no Metal twin: src/kernels/matvec.rs
// leaves it to WGSL.
#if PREPARE
#error "PREPARE has no Metal twin"
#endif
#define SPAN (LANES < SG ? LANES : SG)
#define RED_SLOTS (WG / SG > 0 ? WG / SG : 1)

// Sums each of a lane's NV values over its team; lane 0 of each team gets the totals. Every thread
// of the workgroup calls it (barriers).
inline void reduce_team(thread float (&v)[NV], threadgroup float (*red)[NV], uint tid, uint lane) {
    if (SPAN == SG) {
        // The team spans whole simdgroups: one hardware sum each.
        for (uint k = 0; k < NV; k++) {
            v[k] = simd_sum(v[k]);
        }
    } else {
        for (uint m = 1; m < SPAN; m <<= 1) {
            for (uint k = 0; k < NV; k++) {
                v[k] += simd_shuffle_xor(v[k], ushort(m));
            }
        }
    }
    if (LANES > SG) {
        if (tid % SG == 0) {
            for (uint k = 0; k < NV; k++) {
                red[tid / SG][k] = v[k];
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (lane == 0) {
            for (uint j = 1; j < LANES / SG; j++) {
                for (uint k = 0; k < NV; k++) {
                    v[k] += red[tid / SG + j][k];
                }
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
}

// MERGE: ctx = Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s over the slot's (head's) splits, into
// threadgroup memory, each thread folding its float4s' splits MERGE_UNROLL at a time.
inline void merge_splits(threadgroup float4* merged, device const float4* x, constant Params& p, constant Step& step,
                         uint tid, uint slot) {
    uint splits = (step.pos + step.split) / step.split;
    uint width = p.chunks * CHUNK_V4;
    uint head = slot * p.x_stride;
    for (uint v = tid; v < width; v += WG) {
        float m = -3.0e38f;
        float l = 0.0f;
        float4 acc = float4(0.0f);
        for (uint s0 = 0; s0 < splits; s0 += MERGE_UNROLL) {
            // Steps past the last split read it again with a max of -inf, so they weigh nothing.
            float4 ml[MERGE_UNROLL];
            float4 cs[MERGE_UNROLL];
            for (uint u = 0; u < MERGE_UNROLL; u++) {
                uint at = head + min(s0 + u, splits - 1u) * (width + 1u);
                ml[u] = x[at];
                cs[u] = x[at + 1u + v];
                ml[u].x = s0 + u < splits ? ml[u].x : -3.0e38f;
            }
            float m_new = m;
            for (uint u = 0; u < MERGE_UNROLL; u++) {
                m_new = max(m_new, ml[u].x);
            }
            float keep = exp(m - m_new);
            l *= keep;
            acc *= keep;
            for (uint u = 0; u < MERGE_UNROLL; u++) {
                float e = exp(ml[u].x - m_new);
                l += ml[u].y * e;
                acc += cs[u] * e;
            }
            m = m_new;
        }
        merged[v] = acc / l;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

// SHARED_IN: the input normalised and rounded once for the workgroup's teams, as a prepared input's
// chunks (words 0-10 in three uint4s), Σ x² before the norm's weights (wgsl/matvec.wgsl).
inline void round_shared_input(threadgroup uint4* shared_in, device const float4* x, device const float4* gnorm,
                               uint tid) {
    for (uint c = tid; c < IN_CHUNKS; c += WG) {
        float4 xs[8];
        float sumsq = 0.0f;
        for (uint i = 0; i < 8; i++) {
            xs[i] = x[c * 8 + i];
            if (NORM) {
                sumsq += dot(xs[i], xs[i]);
                xs[i] *= gnorm[c * 8 + i];
            }
        }
        Int8Input q = round_to_int8(xs);
        shared_in[3 * c] = uint4(q.xq[0], q.xq[1], q.xq[2], q.xq[3]);
        shared_in[3 * c + 1] = uint4(q.xq[4], q.xq[5], q.xq[6], q.xq[7]);
        shared_in[3 * c + 2] = uint4(as_type<uint>(q.qsum), as_type<uint>(q.dx), as_type<uint>(sumsq), 0u);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

// PARTIALS: the workgroup's rows of the new y (32) enter the router of the experts after it: per expert
// e, Σ_j router[e, j] · norm[j] · y_j by PART_SLICES slices of the rows, then Σ y_j², stored in y1 per workgroup
// (wgsl/matvec.wgsl).
inline void store_router_partials(threadgroup const float* rows, threadgroup float* sums, device const float* router,
                                  device const float* norm, device float* out, constant Params& p, uint tid,
                                  uint group) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint per = TEAMS * ROWS / PART_SLICES;
    for (uint i = tid; i < PART_SLICES * (PART_EXP + 1); i += WG) {
        uint e = i / PART_SLICES;
        uint k = i % PART_SLICES;
        float acc = 0.0f;
        for (uint j = 0; j < per; j++) {
            uint r = k * per + j;
            uint row = group * TEAMS * ROWS + r;
            float v = rows[r];
            acc += e < PART_EXP ? router[e * p.rows + row] * norm[row] * v : v * v;
        }
        sums[i] = acc;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid <= PART_EXP) {
        float acc = 0.0f;
        for (uint k = 0; k < PART_SLICES; k++) {
            acc += sums[tid * PART_SLICES + k];
        }
        out[group * (PART_EXP + 1) + tid] = acc;
    }
}

// ROUND: the workgroup's staged outputs (whole 32-row chunks) stored as a prepared input, one thread
// per chunk, slots back to back, then a norm scale of 1; ROUND_NORM: times the reader's norm weights,
// Σ x² in word 10; with STACK, W0's only (wgsl/matvec_round.wgsl).
inline void round_rows(threadgroup const float* staged, device float* y, device const float4* out_norm,
                       constant Params& p, uint tid, uint group, uint slot, bool second) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (second) {
        return;
    }
    uint per_group = TEAMS * ROWS / 32;
    if (tid < per_group) {
        uint chunk = group * per_group + tid;
        float4 xs[8];
        float sumsq = 0.0f;
        for (uint i = 0; i < 8; i++) {
            uint at = tid * 32 + i * 4;
            xs[i] = float4(staged[at], staged[at + 1], staged[at + 2], staged[at + 3]);
            if (ROUND_NORM) {
                sumsq += dot(xs[i], xs[i]);
                xs[i] *= out_norm[chunk * 8 + i];
            }
        }
        Int8Input q = round_to_int8(xs);
        uint out = (slot * (p.rows / 32) + chunk) * PREP_WORDS;
        for (uint i = 0; i < 8; i++) {
            y[out + i] = as_type<float>(q.xq[i]);
        }
        y[out + 8] = as_type<float>(q.qsum);
        y[out + 9] = q.dx;
        if (ROUND_NORM) {
            y[out + 10] = sumsq;
        }
    }
    if (tid == 0 && group == 0 && slot == 0) {
        y[p.n_slots * (p.rows / 32) * PREP_WORDS] = 1.0f;
    }
}

// The dot products of the two weight bindings with the lane's input chunk: int8 or f32 inputs.
#if INT8_0
#define DOT0(base) FORMAT0::dot_int8(weights0, scales0, base, xin.q)
#else
#define DOT0(base) FORMAT0::dot(weights0, scales0, base, xin)
#endif
#if INT8_1
#define DOT1(base) FORMAT1::dot_int8(weights1, scales1, base, xin.q)
#else
#define DOT1(base) FORMAT1::dot(weights1, scales1, base, xin)
#endif

// As naga's MSL for the WGSL twin: the compiler must fit WG threads in a threadgroup (spilling
// registers if it has to) instead of leaving the pipeline a smaller limit than the dispatch asks.
[[max_total_threads_per_threadgroup(WG)]] kernel void matvec(
    constant Params& p [[buffer(0)]],
    device const float4* x [[buffer(1)]],
    device float* y [[buffer(2)]],
    device uint* route [[buffer(3)]],
    device const uint4* weights0 [[buffer(4)]],
    device const uint* scales0 [[buffer(5)]],
    device const uint4* weights1 [[buffer(6)]],
    device const uint* scales1 [[buffer(7)]],
    device const float4* gnorm [[buffer(8)]],
    device float* y1 [[buffer(9)]],
    device const float* router_logits [[buffer(10)]],
    device const float* router_bias [[buffer(11)]],
    device const float4* out_norm [[buffer(12)]],
#if MERGE
    constant Step& step [[buffer(13)]],
#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]) {
    threadgroup_array float red[RED_SLOTS][NV];
    threadgroup_array float4 route_key[N_EXP4];
    threadgroup_array float route_score[N_EXP];
    threadgroup_array uint route_expert[TOPK + 1];
#if MERGE
    threadgroup_array float4 merged[MERGED_V4];
#endif
#if ROUND
    threadgroup_array float staged[TEAMS * ROWS];
#endif
#if SHARED_IN
    threadgroup_array uint4 shared_in[3 * IN_CHUNKS];
#endif
#if FOLDED
    threadgroup_array float fold_sums[FOLD_SLICES * (N_EXP + 1)];
    RouteTables chosen = {route_key, route_score, route_expert, fold_sums};
#else
    RouteTables chosen = {route_key, route_score, route_expert, nullptr};
#endif
#if PARTIALS
    threadgroup_array float part_rows[TEAMS * ROWS];
    threadgroup_array float part_sums[PART_SLICES * (PART_EXP + 1)];
#endif
    if (MATRIX == 3) {
        choose_route(chosen, router_logits, router_bias, tid, 0);
        if (tid == 0 && wid.x == 0 && wid.y == 0 && wid.z == 0) {
            store_route(chosen, route);
        }
    }
    uint team = tid / LANES;
    uint lane = tid % LANES;
    uint group = wid.x + wid.y * p.groups_x;
    uint rows = p.rows;
    // Whether this workgroup works on W1 (uniform over the workgroup).
    bool second = false;
    if (STACK && group >= p.groups0) {
        second = true;
        group -= p.groups0;
        rows = p.rows1;
    }
    uint row0 = (group * TEAMS + team) * ROWS;
    uint slot = wid.z;
#if MERGE
    merge_splits(merged, x, p, step, tid, slot);
#endif
#if SHARED_IN
    round_shared_input(shared_in, x, gnorm, tid);
#endif
    // v[r]: row r (gate), v[ROWS + r]: row r of W1 (up), v[NV - 1]: sum of x² (NORM).
    float v[NV] = {};
    uint items = OUT == 2 ? p.chunks * p.n_slots : p.chunks;
    for (uint it = lane; it < items; it += LANES) {
        uint s = slot;
        uint c = it;
        float wgt = 1.0f;
        if (OUT == 2) {
            s = it / p.chunks;
            c = it - s * p.chunks;
            wgt = as_type<float>(route[8 + s]);
        }
        ChunkInput xin;
        xin.xsum = 0.0f;
        if (PREPARED || SHARED_IN) {
#if SHARED_IN
            uint4 lo = shared_in[3 * c];
            uint4 hi = shared_in[3 * c + 1];
            float4 t = as_type<float4>(shared_in[3 * c + 2]);
#else
            uint at = s * p.x_stride + c * (PREP_WORDS / 4);
            uint4 lo = as_type<uint4>(x[at]);
            uint4 hi = as_type<uint4>(x[at + 1]);
            float4 t = x[at + 2];
#endif
            xin.q = Int8Input{{lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w}, as_type<int>(t.x), t.y};
            if (NORM) {
                v[NV - 1] += t.z;
            }
        } else {
            for (uint i = 0; i < CHUNK_V4; i++) {
#if MERGE
                float4 xi = merged[c * CHUNK_V4 + i];
#else
                float4 xi = x[s * p.x_stride + c * CHUNK_V4 + i];
#endif
                if (NORM) {
                    v[NV - 1] += dot(xi, xi);
                    xi *= gnorm[c * CHUNK_V4 + i];
                }
                xin.xs[i] = xi;
                xin.xsum += dot(xi, float4(1.0f));
            }
            if (INT8) {
                xin.q = round_to_int8(xin.xs);
            }
        }
        uint m = MATRIX == 1 ? s : (MATRIX == 2 ? route[s] : (MATRIX == 3 ? route_expert[s] : 0u));
        for (uint r = 0; r < ROWS; r++) {
            // Rows past the end read the last row (in range) and are never stored.
            uint base = (m * rows + min(row0 + r, rows - 1)) * p.chunks + c;
            float d1 = 0.0f;
            if ((STACK && second) || GLU) {
                d1 = DOT1(base);
            }
            if (STACK && second) {
                v[r] += d1;
            } else {
                v[r] += wgt * DOT0(base);
            }
            if (GLU) {
                v[ROWS + r] += d1;
            }
        }
    }
    reduce_team(v, red, tid, lane);
    if (lane == 0) {
        float scale = NORM ? rsqrt(v[NV - 1] / float(p.chunks * CHUNK_V4 * 4) + EPS) : 1.0f;
        if (PREPARED && !NORM) {
            scale = x[(p.n_slots - 1) * p.x_stride + p.chunks * (PREP_WORDS / 4)].x;
        }
        for (uint r = 0; r < ROWS; r++) {
            uint row = row0 + r;
            if (row < rows) {
                float out = v[r] * scale;
                if (GLU) {
                    out = out / (1.0f + exp(-out)) * v[ROWS + r] * scale;
                }
                uint o = slot * p.y_stride + row;
                if (STACK && second) {
                    y1[row] = out;
                } else if (ROUND) {
#if ROUND
                    staged[team * ROWS + r] = out;
#endif
                } else if (OUT == 0) {
                    y[o] = out;
                } else {
                    y[o] += out;
#if PARTIALS
                    part_rows[team * ROWS + r] = y[o];
#endif
                }
            }
        }
    }
#if ROUND
    round_rows(staged, y, out_norm, p, tid, group, slot, second);
#endif
#if PARTIALS
    store_router_partials(part_rows, part_sums, router_logits, router_bias, y1, p, tid, group);
#endif
}
