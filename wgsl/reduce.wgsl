// Workgroup-wide reductions through shared memory (no subgroup assumptions). Every invocation must
// call them (they hold barriers); all get the result. Host constant: WG, a power of two.

var<workgroup> red: array<f32, WG>;

fn reduce_tree(tid: u32, is_max: bool) -> f32 {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if tid < s {
            if is_max {
                red[tid] = max(red[tid], red[tid + s]);
            } else {
                red[tid] += red[tid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn workgroup_sum(v: f32, tid: u32) -> f32 {
    red[tid] = v;
    return reduce_tree(tid, false);
}

fn workgroup_max(v: f32, tid: u32) -> f32 {
    red[tid] = v;
    return reduce_tree(tid, true);
}

// A value and its index; `better` prefers the larger value, the lower index on ties.
struct Best {
    v: f32,
    i: u32,
}

fn better(a: Best, b: Best) -> Best {
    if b.v > a.v || (b.v == a.v && b.i < a.i) {
        return b;
    }
    return a;
}

var<workgroup> arg_best: array<Best, WG>;

// The best of the workgroup's `b`s.
fn workgroup_argmax(b: Best, tid: u32) -> Best {
    arg_best[tid] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if tid < s {
            arg_best[tid] = better(arg_best[tid], arg_best[tid + s]);
        }
        workgroupBarrier();
    }
    let r = arg_best[0];
    workgroupBarrier();
    return r;
}
