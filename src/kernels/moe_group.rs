//! `wgsl/moe_group.wgsl`: a prefill chunk's routed slots grouped by expert.

use super::STEP;
use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::Result;

const WG: u32 = 256;

/// How a chunk's routed slots are grouped: `slots` per token (an appended shared expert included)
/// over `n_mat` experts, chunks of up to `chunk` tokens, tiles of up to `tile` entries.
#[derive(Debug, Clone, Copy)]
pub struct Grouping {
    pub chunk: u32,
    pub slots: u32,
    pub n_mat: u32,
    pub tile: u32,
}

impl Grouping {
    /// Words of `entries` and `slot_entry`.
    pub fn entries(&self) -> u32 {
        self.chunk * self.slots
    }

    /// Most tiles: at most one partial tile per expert.
    pub fn max_tiles(&self) -> u32 {
        self.entries().div_ceil(self.tile) + self.n_mat
    }

    /// Words of the tile list: its length, then two per tile.
    pub fn tile_words(&self) -> u32 {
        1 + 2 * self.max_tiles()
    }
}

/// Buffers: step, route, entries, slot_entry, tiles.
pub fn moe_group(ctx: &GpuContext, kc: &mut KernelCache, g: Grouping, bufs: [&wgpu::Buffer; 5]) -> Result<Dispatch> {
    let consts = [
        ("WG", Const::U32(WG)),
        ("KS", Const::U32(g.slots)),
        ("N_MAT", Const::U32(g.n_mat)),
        ("SLOTS", Const::U32(g.entries())),
        ("TILE", Const::U32(g.tile)),
    ];
    let source = compose(&consts, &[STEP, include_str!("../../wgsl/moe_group.wgsl")].concat());
    let rw = Binding::ReadWrite;
    let bindings = [Binding::Uniform, Binding::Read, rw, rw, rw];
    let kernel = kc.get(ctx, "moe_group", source, &bindings)?;
    let bind_group = kernel.bind(ctx, &bufs);
    Ok(Dispatch::new(kernel, bind_group, [1, 1, 1]))
}
