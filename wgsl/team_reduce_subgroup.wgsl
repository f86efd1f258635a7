// reduce_team with subgroup shuffles, for adapters whose subgroups are always SG lanes (host
// constant) and laid out along local_invocation_index: sums each of a lane's NV values over its
// team, across subgroups through shared memory when a team spans several. Lane 0 of each team gets
// the totals. Every invocation must call it.

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
