//! wgpu plumbing: the device, buffers, and kernels built from WGSL.

mod buffers;
mod context;
mod kernel;
pub mod native;
mod weight;

pub use buffers::{map_read, read_f32};
pub use context::{describe, GpuContext, DEVICE_ENV};
pub use kernel::{compose, grid, Binding, Bound, Build, Const, Dispatch, Kernel, KernelCache};
pub use weight::GpuWeight;
