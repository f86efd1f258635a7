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

var<workgroup> arg_v: array<f32, WG>;
var<workgroup> arg_i: array<u32, WG>;

// The index i of the largest v over the workgroup, the lowest index on ties.
fn workgroup_argmax(v: f32, i: u32, tid: u32) -> u32 {
    arg_v[tid] = v;
    arg_i[tid] = i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if tid < s {
            let ov = arg_v[tid + s];
            let oi = arg_i[tid + s];
            if ov > arg_v[tid] || (ov == arg_v[tid] && oi < arg_i[tid]) {
                arg_v[tid] = ov;
                arg_i[tid] = oi;
            }
        }
        workgroupBarrier();
    }
    let r = arg_i[0];
    workgroupBarrier();
    return r;
}
