// The output of matvec.wgsl's ROUND variant: stored as a prepared input (PREP_WORDS words per 32
// values, slots back to back, then a norm scale of 1), so that the product reading it next finds it
// rounded once instead of rounding it again in each of its workgroups. A workgroup owns whole
// chunks (TEAMS * ROWS rows, a multiple of 32, of a matrix of whole chunks): each team's lane 0
// stages its rows, then one thread per chunk rounds them. ROUND_NORM: for a reader with an RMSNorm,
// the chunk is rounded times the norm's weights, and its Σ x² (before them) stored in word 10.

var<workgroup> staged: array<f32, TEAMS * ROWS>;

fn round_rows(tid: u32, group: u32, slot: u32, second: bool) {
    workgroupBarrier();
    // W1's workgroups (STACK) stored their rows as they are.
    if second {
        return;
    }
    let per_group = TEAMS * ROWS / 32u;
    if tid < per_group {
        let chunk = group * per_group + tid;
        var xs: array<vec4<f32>, 8>;
        var sumsq = 0.0;
        for (var i = 0u; i < 8u; i++) { // unroll
            let at = tid * 32u + i * 4u;
            xs[i] = vec4<f32>(staged[at], staged[at + 1u], staged[at + 2u], staged[at + 3u]);
            if ROUND_NORM {
                sumsq += dot(xs[i], xs[i]);
                xs[i] *= out_norm[chunk * 8u + i];
            }
        }
        let q = round_to_int8(xs);
        let out = (slot * (p.rows / 32u) + chunk) * PREP_WORDS;
        let words = prepared_words(q);
        for (var i = 0u; i < 10u; i++) { // unroll
            y[out + i] = words[i];
        }
        if ROUND_NORM {
            y[out + 10u] = sumsq;
        }
    }
    if tid == 0u && group == 0u && slot == 0u {
        y[p.n_slots * (p.rows / 32u) * PREP_WORDS] = 1.0;
    }
}
