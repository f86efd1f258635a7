// The output of matvec.wgsl's ROUND variant: stored as a prepared input (PREP_WORDS words per 32
// values, slots back to back, then a norm scale of 1), so that the product reading it next finds it
// rounded once instead of rounding it again in each of its workgroups. A workgroup owns whole
// chunks (TEAMS * ROWS rows, a multiple of 32, of a matrix of whole chunks): each team's lane 0
// stages its rows, then one thread per chunk rounds them.

var<workgroup> staged: array<f32, TEAMS * ROWS>;

fn round_rows(tid: u32, group: u32, slot: u32) {
    workgroupBarrier();
    let per_group = TEAMS * ROWS / 32u;
    if tid < per_group {
        var xs: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) { // unroll
            let at = tid * 32u + i * 4u;
            xs[i] = vec4<f32>(staged[at], staged[at + 1u], staged[at + 2u], staged[at + 3u]);
        }
        let q = round_to_int8(xs);
        let out = (slot * (p.rows / 32u) + group * per_group + tid) * PREP_WORDS;
        let words = prepared_words(q);
        for (var i = 0u; i < 10u; i++) { // unroll
            y[out + i] = words[i];
        }
    }
    if tid == 0u && group == 0u && slot == 0u {
        y[p.n_slots * (p.rows / 32u) * PREP_WORDS] = 1.0;
    }
}
