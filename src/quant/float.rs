//! Plain float encodings: F32, F16 (IEEE half) and BF16 (the top half of an f32).

use super::{GgmlType, Repacked};
use half::{bf16, f16};

pub fn to_f32(t: GgmlType, data: &[u8]) -> Vec<f32> {
    match t {
        GgmlType::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        GgmlType::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        GgmlType::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => unreachable!(),
    }
}

pub fn from_f32(t: GgmlType, values: &[f32]) -> Vec<u8> {
    match t {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        GgmlType::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        _ => unreachable!(),
    }
}

/// Float rows are already word aligned: the GPU reads the bytes as they are.
pub fn repack(data: &[u8]) -> Repacked {
    let mut words = vec![0u32; data.len().div_ceil(4)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..data.len()].copy_from_slice(data);
    Repacked { words, scales: Vec::new() }
}
