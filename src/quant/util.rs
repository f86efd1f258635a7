//! Small helpers shared by the quantized formats: f16 fields, ggml's rounding, word packing.

use half::f16;

/// The little-endian f16 at `b[at..at + 2]`, widened to f32 (exact, subnormals included).
pub fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The little-endian u32 at `b[at..at + 4]`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// f32 → f16 bits (round to nearest even), as ggml's `GGML_FP32_TO_FP16`.
pub fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// ggml's `nearest_int`: round to nearest, ties to even, through the f32 mantissa trick
/// (valid for |v| ≤ 4194303).
pub fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}
