use super::{GgufFile, MetaValue, DEFAULT_ALIGNMENT, MAGIC};
use crate::quant::GgmlType;
use anyhow::{ensure, Result};
use std::io::Write;

/// Writes GGUF v3 files: used to re-export models and by the tests to make malformed variants.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(a) => {
            let elem = a.first().map_or(4, MetaValue::type_id);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for x in a {
                put_value(out, x);
            }
        }
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer holding everything `g` holds, to be modified and written again.
    pub fn from_file(g: &GgufFile) -> Self {
        let metadata = g.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let tensors = g
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.dims.clone(), t.ggml_type, g.tensor_data(t).to_vec()))
            .collect();
        Self { metadata, tensors }
    }

    /// Drops a tensor by name.
    pub fn remove_tensor(&mut self, name: &str) {
        self.tensors.retain(|t| t.0 != name);
    }

    pub fn set(&mut self, key: &str, value: MetaValue) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    /// `dims` in ggml `ne` order (row length first); `data` in the type's block encoding.
    pub fn add_tensor(&mut self, name: &str, dims: Vec<u64>, ggml_type: GgmlType, data: Vec<u8>) -> Result<()> {
        let n: u64 = dims.iter().product();
        let expect = n / ggml_type.block_elems() as u64 * ggml_type.block_bytes() as u64;
        ensure!(data.len() as u64 == expect, "tensor {name}: {} bytes, expected {expect}", data.len());
        self.tensors.push((name.to_string(), dims, ggml_type, data));
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let align = DEFAULT_ALIGNMENT;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_string(&mut out, k);
            out.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        for (name, dims, t, data) in &self.tensors {
            put_string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + data.len() as u64).div_ceil(align) * align;
        }
        out.resize((out.len() as u64).div_ceil(align) as usize * align as usize, 0);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize((out.len() as u64).div_ceil(align) as usize * align as usize, 0);
        }
        out
    }

    pub fn write(&self, w: &mut impl Write) -> Result<()> {
        w.write_all(&self.to_bytes())?;
        Ok(())
    }
}
