//! wgpu plumbing: the device, buffers, and kernels built from WGSL.

mod buffers;
mod context;
mod kernel;
mod weight;

pub use buffers::{map_read, read_f32};
pub use context::{describe, GpuContext, DEVICE_ENV};
pub use kernel::{compose, grid, Binding, Const, Dispatch, Kernel, KernelCache};
pub use weight::GpuWeight;
