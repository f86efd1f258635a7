//! Weights on the GPU in the repacked layout of their format (src/quant).

use super::GpuContext;
use crate::model::TensorData;
use crate::quant::{self, GgmlType};
use anyhow::Result;

pub struct GpuWeight {
    pub ggml_type: GgmlType,
    /// Row-major shape; the last entry is the row length.
    pub shape: Vec<usize>,
    pub words: wgpu::Buffer,
    /// Per-chunk scales, or a placeholder for formats without them.
    pub scales: wgpu::Buffer,
}

impl GpuWeight {
    pub fn upload(ctx: &GpuContext, name: &str, t: &TensorData<'_>) -> Result<Self> {
        t.ggml_type.ensure_supported(name)?;
        let r = quant::repack(t.ggml_type, &t.bytes);
        let words = ctx.storage_init(name, bytemuck::cast_slice(&r.words))?;
        let scales = ctx.storage_init(&format!("{name} scales"), bytemuck::cast_slice(&r.scales))?;
        Ok(Self { ggml_type: t.ggml_type, shape: t.shape.clone(), words, scales })
    }

    pub fn row_len(&self) -> usize {
        *self.shape.last().unwrap()
    }

    /// Rows of one matrix (for 3-D tensors, of one expert or head).
    pub fn rows(&self) -> usize {
        if self.shape.len() >= 2 {
            self.shape[self.shape.len() - 2]
        } else {
            1
        }
    }

    pub fn n_matrices(&self) -> usize {
        if self.shape.len() == 3 {
            self.shape[0]
        } else {
            1
        }
    }

    pub fn chunks_per_row(&self) -> usize {
        self.row_len() / quant::gpu_chunk_elems(self.ggml_type)
    }

    pub fn bytes(&self) -> u64 {
        self.words.size() + self.scales.size()
    }
}
