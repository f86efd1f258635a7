//! `wgsl/team_reduce_{subgroup,shared}.wgsl`: `reduce_team`, the sum of NV values over a team of
//! LANES consecutive threads, for kernels whose workgroups are teams (matvec rows, attention positions).

use crate::gpu::{Const, GpuContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Subgroup shuffles, for adapters whose subgroups always have this many lanes.
    Subgroup(u32),
    /// Shared memory only.
    Shared,
}

impl Reduce {
    /// Subgroups where the adapter has them with one fixed size, else shared memory.
    pub fn for_adapter(ctx: &GpuContext) -> Reduce {
        match ctx.fixed_subgroup_size() {
            Some(n) => Reduce::Subgroup(n),
            None => Reduce::Shared,
        }
    }

    /// The snippet and the constants it needs beyond LANES, WG and NV.
    pub fn source(self) -> (&'static str, Vec<(&'static str, Const)>) {
        match self {
            Reduce::Subgroup(sg) => {
                (include_str!("../../wgsl/team_reduce_subgroup.wgsl"), vec![("SG", Const::U32(sg))])
            }
            Reduce::Shared => (include_str!("../../wgsl/team_reduce_shared.wgsl"), vec![]),
        }
    }
}
