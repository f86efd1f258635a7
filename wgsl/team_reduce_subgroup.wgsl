// reduce_team with subgroup shuffles, for adapters whose subgroups are always SG lanes (host
// constant) and laid out along local_invocation_index: sums each of a lane's NV values over its
// team, across subgroups through shared memory when a team spans several. Lane 0 of each team gets
// the totals. team_max: the largest of one value per lane, to every lane of the team. Every
// invocation must call them.

const SPAN: u32 = min(LANES, SG);

var<workgroup> team_red: array<array<f32, NV>, max(WG / SG, 1u)>;

fn reduce_team(v: ptr<function, array<f32, NV>>, tid: u32, lane: u32) {
    for (var m = 1u; m < SPAN; m <<= 1u) {
        for (var k = 0u; k < NV; k++) { // unroll
            (*v)[k] += subgroupShuffleXor((*v)[k], m);
        }
    }
    if LANES > SG {
        if tid % SG == 0u {
            team_red[tid / SG] = *v;
        }
        workgroupBarrier();
        if lane == 0u {
            for (var j = 1u; j < LANES / SG; j++) {
                for (var k = 0u; k < NV; k++) { // unroll
                    (*v)[k] += team_red[tid / SG + j][k];
                }
            }
        }
        // A caller in a loop may write team_red again next.
        workgroupBarrier();
    }
}

fn team_max(x: f32, tid: u32, lane: u32) -> f32 {
    var m = x;
    for (var s = 1u; s < SPAN; s <<= 1u) {
        m = max(m, subgroupShuffleXor(m, s));
    }
    if LANES > SG {
        workgroupBarrier();
        if tid % SG == 0u {
            team_red[tid / SG][0] = m;
        }
        workgroupBarrier();
        let first = (tid - lane) / SG;
        for (var j = 0u; j < LANES / SG; j++) {
            m = max(m, team_red[first + j][0]);
        }
        workgroupBarrier();
    }
    return m;
}
