// reduce_team through shared memory, for adapters without a fixed subgroup size: sums each of a
// lane's NV values over its team; lane 0 of each team gets the totals. team_max: the largest of one
// value per lane, to every lane of the team. Every invocation must call them.

var<workgroup> team_red: array<array<f32, NV>, WG>;

fn reduce_team(v: ptr<function, array<f32, NV>>, tid: u32, lane: u32) {
    team_red[tid] = *v;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s /= 2u) {
        if lane < s {
            for (var k = 0u; k < NV; k++) { // unroll
                team_red[tid][k] += team_red[tid + s][k];
            }
        }
        workgroupBarrier();
    }
    *v = team_red[tid];
}

fn team_max(x: f32, tid: u32, lane: u32) -> f32 {
    team_red[tid][0] = x;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s /= 2u) {
        if lane < s {
            team_red[tid][0] = max(team_red[tid][0], team_red[tid + s][0]);
        }
        workgroupBarrier();
    }
    let m = team_red[tid - lane][0];
    workgroupBarrier();
    return m;
}
