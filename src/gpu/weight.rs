//! Weights on the GPU in the repacked layout of their format (src/quant).

use super::{GpuContext, KernelCache};
use crate::kernels::random_weight::{layout, random_weight};
use crate::model::TensorData;
use crate::quant::{self, GgmlType};
use anyhow::{ensure, Result};

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

    /// A tensor of random, valid weights of type `t` filled on the GPU (`bench --synthetic`).
    pub fn random(
        ctx: &GpuContext,
        kc: &mut KernelCache,
        name: &str,
        t: GgmlType,
        shape: &[usize],
        seed: u32,
    ) -> Result<Self> {
        let l = layout(t)?;
        let elems: usize = shape.iter().product();
        ensure!(
            shape.last().is_some_and(|&n| n % l.block_elems == 0),
            "{name}: rows of {shape:?} are not whole {} blocks of {} weights",
            t.name(),
            l.block_elems
        );
        let groups = l.groups(elems);
        let (n_words, n_scales) = (groups * l.words_per_group, groups * l.scales_per_group);
        let words = ctx.storage(name, n_words as u64 * 4)?;
        let scales = ctx.storage(&format!("{name} scales"), n_scales as u64 * 4)?;
        let mut fills = vec![random_weight(ctx, kc, n_words as u32, seed.wrapping_mul(2), l.words, &words)?];
        if n_scales > 0 {
            fills.push(random_weight(ctx, kc, n_scales as u32, seed.wrapping_mul(2) + 1, l.scales, &scales)?);
        }
        ctx.run(&fills.iter().collect::<Vec<_>>())?;
        Ok(Self { ggml_type: t, shape: shape.to_vec(), words, scales })
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
