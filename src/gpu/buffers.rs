//! Buffer creation with the checks wgpu would otherwise turn into panics.

use super::GpuContext;
use anyhow::{bail, Result};
use wgpu::util::DeviceExt;

impl GpuContext {
    fn check_size(&self, label: &str, size: u64) -> Result<()> {
        let max = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if size > max {
            bail!(
                "{label} needs a {size}-byte buffer, larger than this adapter's limit of {max} bytes ({})",
                self.describe()
            );
        }
        Ok(())
    }

    /// A storage buffer holding `data` (padded to 16 bytes so `vec4` views stay in range).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let padded = data.len().div_ceil(16).max(1) * 16;
        self.check_size(label, padded as u64)?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        if padded == data.len() {
            return Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: data,
                usage,
            }));
        }
        let mut v = data.to_vec();
        v.resize(padded, 0);
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &v,
            usage,
        }))
    }

    /// A zeroed storage buffer of `size` bytes (rounded up to 16).
    pub fn storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        let size = size.div_ceil(16).max(1) * 16;
        self.check_size(label, size)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A uniform buffer holding `data`. Written through the queue, not mapped at creation: on a lost
    /// device (a broken kernel can lose it) that is an error at the next wait, not a panic here.
    pub fn uniform(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let padded = data.len().div_ceil(16).max(1) * 16;
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded as u64,
            // COPY_SRC: tests read a kernel's uniforms back to run its Metal twin on the CPU.
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut v = data.to_vec();
        v.resize(padded, 0);
        self.queue.write_buffer(&buf, 0, &v);
        buf
    }

    /// A buffer the CPU maps to read results back.
    pub fn readback(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.div_ceil(4).max(1) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copies `size` bytes of `src` to the CPU (blocking): for tests and the non-greedy samplers.
    pub fn read_buffer(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.readback("read_buffer", size);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, size.div_ceil(4) * 4);
        self.queue.submit([enc.finish()]);
        map_read(self, &staging, size)
    }
}

/// Maps `staging` after the work that fills it and returns its first `size` bytes.
pub fn map_read(ctx: &GpuContext, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    rx.recv()??;
    let out = slice.get_mapped_range()?[..size as usize].to_vec();
    staging.unmap();
    Ok(out)
}

pub fn read_f32(ctx: &GpuContext, src: &wgpu::Buffer, offset_elems: u64, n: u64) -> Result<Vec<f32>> {
    let bytes = ctx.read_buffer(src, offset_elems * 4, n * 4)?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}
