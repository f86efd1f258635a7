// The input of matvec.wgsl's MERGE variant: per slot (head) x holds x_stride vec4s of
// mla_attention.wgsl's splits, each one vec4 (max, sum, -, -) then chunks * CHUNK_V4 vec4s of
// context. Each workgroup merges its head's splits into workgroup memory before the product (the
// merge pass's work, mla_attention_combine.wgsl, without its launch).
// Host constants: MERGED_V4 (the context's vec4s), MERGE_UNROLL.

// The step, whose position and split length give the number of splits.
@group(0) @binding(13) var<uniform> step: Step;

var<workgroup> merged: array<vec4<f32>, MERGED_V4>;

// ctx = Σ_s e^(m_s - M) c_s / Σ_s e^(m_s - M) l_s over the head's splits, each thread folding its
// vec4s' splits MERGE_UNROLL at a time (their loads in flight together) into a running max and sums.
fn merge_splits(tid: u32, slot: u32) {
    let splits = (step.pos + step.split) / step.split;
    let width = p.chunks * CHUNK_V4;
    let head = slot * p.x_stride;
    for (var v = tid; v < width; v += WG) {
        var m = -3.0e38;
        var l = 0.0;
        var acc = vec4<f32>(0.0);
        for (var s0 = 0u; s0 < splits; s0 += MERGE_UNROLL) {
            // Steps past the last split read it again with a max of -inf, so they weigh nothing.
            var ml: array<vec4<f32>, MERGE_UNROLL>;
            var cs: array<vec4<f32>, MERGE_UNROLL>;
            for (var u = 0u; u < MERGE_UNROLL; u++) { // unroll
                let at = head + min(s0 + u, splits - 1u) * (width + 1u);
                ml[u] = x[at];
                cs[u] = x[at + 1u + v];
                ml[u].x = select(-3.0e38, ml[u].x, s0 + u < splits);
            }
            var m_new = m;
            for (var u = 0u; u < MERGE_UNROLL; u++) { // unroll
                m_new = max(m_new, ml[u].x);
            }
            let keep = exp(m - m_new);
            l *= keep;
            acc *= keep;
            for (var u = 0u; u < MERGE_UNROLL; u++) { // unroll
                let e = exp(ml[u].x - m_new);
                l += ml[u].y * e;
                acc += cs[u] * e;
            }
            m = m_new;
        }
        merged[v] = acc / l;
    }
    workgroupBarrier();
}

