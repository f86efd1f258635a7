use super::{MetaValue, DEFAULT_ALIGNMENT, MAGIC};
use crate::quant::GgmlType;
use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One tensor's header entry. `dims` is ggml's `ne` order: `dims[0]` is the row length.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Shape in row-major order (numpy order: the last entry is the row length).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A memory-mapped GGUF file: metadata parsed, tensor data left in the mapping.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    mmap: Mmap,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!("file is truncated: needed {n} bytes at offset {} but the file has {}", self.pos, self.buf.len())
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().unwrap())
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        ensure!(len < 1 << 32, "corrupt file: string length {len} at offset {}", self.pos);
        let bytes = self.take(len as usize)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, type_id: u32, depth: usize) -> Result<MetaValue> {
        Ok(match type_id {
            0 => MetaValue::U8(self.arr::<1>()?[0]),
            1 => MetaValue::I8(self.arr::<1>()?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.arr()?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.arr()?)),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(i32::from_le_bytes(self.arr()?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.arr()?)),
            7 => MetaValue::Bool(self.arr::<1>()?[0] != 0),
            8 => MetaValue::String(self.string()?),
            9 => {
                ensure!(depth < 4, "corrupt file: arrays nested too deeply");
                let elem = self.u32()?;
                let n = self.u64()?;
                // Each element takes at least one byte: a larger count is corruption, not a big array.
                ensure!(
                    n <= (self.buf.len() - self.pos) as u64,
                    "corrupt file: array of {n} elements at offset {}",
                    self.pos
                );
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem, depth + 1)?);
                }
                MetaValue::Array(v)
            }
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(i64::from_le_bytes(self.arr()?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.arr()?)),
            t => bail!("corrupt file: unknown metadata value type {t}"),
        })
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: the mapping is read-only; a file changed under us by another process is outside our contract.
        let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        Self::parse(path, mmap).with_context(|| format!("{} is not a valid GGUF file", path.display()))
    }

    fn parse(path: &Path, mmap: Mmap) -> Result<Self> {
        let mut c = Cursor { buf: &mmap, pos: 0 };
        let magic = c.take(4).context("file is too short for a GGUF header")?;
        ensure!(magic == MAGIC, "bad magic {:?} (expected \"GGUF\")", String::from_utf8_lossy(magic));
        let version = c.u32()?;
        ensure!(version == 2 || version == 3, "unsupported GGUF version {version} (supported: 2, 3)");
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        ensure!(n_tensors < 1 << 24 && n_kv < 1 << 24, "corrupt header: {n_tensors} tensors, {n_kv} metadata entries");

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let t = c.u32()?;
            let v = c.value(t, 0).with_context(|| format!("reading metadata {key:?}"))?;
            metadata.insert(key, v);
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v.as_u64().context("general.alignment")?,
            None => DEFAULT_ALIGNMENT,
        };
        ensure!(alignment.is_power_of_two(), "general.alignment {alignment} is not a power of two");

        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()?;
            ensure!((1..=4).contains(&n_dims), "tensor {name}: {n_dims} dimensions");
            let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
            let type_id = c.u32()?;
            let ggml_type = GgmlType::from_id(type_id).with_context(|| format!("tensor {name}"))?;
            let rel = c.u64()?;
            infos.push((name, dims, ggml_type, rel));
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = mmap.len() as u64;

        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ggml_type, rel) in infos {
            let n_el = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let n_el = n_el.with_context(|| format!("tensor {name}: dims {dims:?} overflow"))?;
            ensure!(
                dims[0] % ggml_type.block_elems() as u64 == 0,
                "tensor {name}: row length {} is not a multiple of the {} block size {}",
                dims[0],
                ggml_type.name(),
                ggml_type.block_elems()
            );
            let n_bytes = n_el / ggml_type.block_elems() as u64 * ggml_type.block_bytes() as u64;
            let offset = data_start + rel;
            ensure!(
                offset.checked_add(n_bytes).is_some_and(|e| e <= file_len),
                "file is truncated: tensor {name} needs bytes {offset}..{} but the file has {file_len}",
                offset + n_bytes
            );
            tensors.push(TensorInfo { name, dims, ggml_type, offset, n_bytes });
        }
        Ok(Self { path: path.to_path_buf(), version, metadata, tensors, mmap })
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key).with_context(|| format!("missing metadata key {key}"))
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        &self.mmap[t.offset as usize..(t.offset + t.n_bytes) as usize]
    }

    pub fn architecture(&self) -> Result<&str> {
        self.require("general.architecture")?.as_str()
    }
}
