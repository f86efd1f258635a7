use anyhow::{bail, Result};

/// One metadata value. Type ids follow `gguf_type` in ggml.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// Any integer type (and bool) as u64; negative values are an error.
    pub fn as_u64(&self) -> Result<u64> {
        Ok(match *self {
            MetaValue::U8(v) => v as u64,
            MetaValue::U16(v) => v as u64,
            MetaValue::U32(v) => v as u64,
            MetaValue::U64(v) => v,
            MetaValue::Bool(v) => v as u64,
            MetaValue::I8(v) if v >= 0 => v as u64,
            MetaValue::I16(v) if v >= 0 => v as u64,
            MetaValue::I32(v) if v >= 0 => v as u64,
            MetaValue::I64(v) if v >= 0 => v as u64,
            _ => bail!("expected a non-negative integer, found {self:?}"),
        })
    }

    pub fn as_f64(&self) -> Result<f64> {
        Ok(match *self {
            MetaValue::F32(v) => v as f64,
            MetaValue::F64(v) => v,
            _ => self.as_u64()? as f64,
        })
    }

    pub fn as_bool(&self) -> Result<bool> {
        match *self {
            MetaValue::Bool(v) => Ok(v),
            _ => Ok(self.as_u64()? != 0),
        }
    }

    pub fn as_str(&self) -> Result<&str> {
        match self {
            MetaValue::String(s) => Ok(s),
            _ => bail!("expected a string, found {}", self.short()),
        }
    }

    pub fn as_array(&self) -> Result<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Ok(a),
            _ => bail!("expected an array, found {}", self.short()),
        }
    }

    /// A short description for messages (arrays can hold 300k entries).
    pub fn short(&self) -> String {
        match self {
            MetaValue::Array(a) => format!("array[{}]", a.len()),
            MetaValue::String(s) if s.len() > 60 => format!("{:?}…", s.chars().take(60).collect::<String>()),
            v => format!("{v:?}"),
        }
    }
}
