//! `wgsl/stream.wgsl`: a buffer read or copied at full bandwidth, the roofline the matvec sweep
//! (benches/matvec.rs) compares each product with at the same bytes per dispatch.

use crate::gpu::{compose, grid, Binding, Const, Dispatch, GpuContext, KernelCache};
use anyhow::{ensure, Result};

/// Threads per workgroup; a thread's words are WG apart.
pub const WG: u32 = 256;
/// Words each thread moves: four 16-byte loads in flight.
pub const PER_THREAD: u32 = 4;
/// What a read stores, where a thread's words xor to it in every component (random data: never).
pub const SENTINEL: u32 = 0x5eed_f00d;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stream {
    /// Every word read is written to `dst`.
    Copy,
    /// The words are only read (`dst` is written where they fold to [`SENTINEL`]).
    Read,
}

/// Streams `words` 16-byte words of `src`, from word `src_offset` on, into `dst` as `how` says.
pub fn stream(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    how: Stream,
    words: u64,
    src_offset: u64,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    ensure!(words > 0, "an empty stream");
    ensure!((src_offset + words) * 16 <= src.size(), "the stream reads past its source's {} bytes", src.size());
    ensure!(words * 16 <= dst.size(), "the stream may write past its destination's {} bytes", dst.size());
    ensure!(src_offset + words <= u32::MAX as u64, "the stream's words exceed u32 indices");
    let consts = [
        ("WG", Const::U32(WG)),
        ("PER_THREAD", Const::U32(PER_THREAD)),
        ("N", Const::U32(words as u32)),
        ("SRC_OFFSET", Const::U32(src_offset as u32)),
        ("COPY", Const::Bool(how == Stream::Copy)),
        ("SENTINEL", Const::U32(SENTINEL)),
    ];
    let source = compose(&consts, include_str!("../../wgsl/stream.wgsl"));
    let kernel = kc.get(ctx, "stream", source, &[Binding::Read, Binding::ReadWrite])?;
    let bind_group = kernel.bind(ctx, &[src, dst]);
    let [x, y] = grid((words as u32).div_ceil(WG * PER_THREAD));
    Ok(Dispatch::new(kernel, bind_group, [x, y, 1]))
}
