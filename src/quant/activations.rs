//! Int8 activations: the input of a matrix-vector product over Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or Q8_0 weights is rounded
//! to int8 per 32-element block, so the GPU can multiply packed bytes (`dot4I8Packed`) instead of
//! widening every weight to f32 (llama.cpp's CUDA and CPU backends do the same with Q8_1/Q8_K).
//!
//! The block scale is a power of two, 2^(e−7) with |x| < 2^e for the block's largest |x| (frexp), so
//! `x · 2^(7−e)` is exact and only the rounding (ties to even, then at most 127; −128 can occur) decides
//! each int8: the GPU kernel (`wgsl/matvec.wgsl`) and this CPU version agree bit for bit on every
//! device. The price is up to one bit of resolution against an amax/127 scale.

use super::GgmlType;

/// Elements per int8 block: one GPU chunk of the quantized formats.
pub const Q8_BLOCK: usize = 32;

/// Whether matrix-vector products over weights of type `t` take int8 activations. The per-head
/// attention product v_b keeps f32 inputs in decode whatever its type: the CPU reference expands
/// the values per position, where that input never exists.
pub fn takes_int8_input(t: GgmlType) -> bool {
    matches!(
        t,
        GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::Q8_0
    )
}

/// The frexp exponent e of `amax` (amax = f · 2^e, f in [0.5, 1)) for normal values, at least −100
/// (so 2^(7−e) stays finite for zero and subnormal blocks): the kernel's bit arithmetic.
fn block_exponent(amax: f32) -> i32 {
    (((amax.to_bits() >> 23) & 0xff) as i32 - 126).max(-100)
}

/// `x` rounded to int8 per 32-element block and scaled back: what the kernels multiply. `x.len()`
/// must be a multiple of 32.
pub fn round_to_int8(x: &[f32]) -> Vec<f32> {
    assert!(x.len().is_multiple_of(Q8_BLOCK), "int8 activations come in blocks of {Q8_BLOCK}");
    x.chunks_exact(Q8_BLOCK)
        .flat_map(|b| {
            let e = block_exponent(b.iter().fold(0f32, |m, v| m.max(v.abs())));
            let (up, down) = (2f32.powi(7 - e), 2f32.powi(e - 7));
            b.iter().map(move |&v| (v * up).round_ties_even().min(127.0) * down)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_two_scale_and_ties_to_even() {
        // amax 1.0: e = 1, step 2^-6.
        let mut x = vec![0f32; 32];
        x[0] = 1.0;
        x[1] = 1.5 / 64.0; // a tie: 1.5 steps → 2
        x[2] = 2.5 / 64.0; // a tie: 2.5 steps → 2
        x[3] = -0.3;
        let r = round_to_int8(&x);
        assert_eq!(r[0], 1.0);
        assert_eq!(r[1], 2.0 / 64.0);
        assert_eq!(r[2], 2.0 / 64.0);
        assert_eq!(r[3], -19.0 / 64.0);
        // Just under a power of two: ±0.9999 · 2^7 rounds to ±128; +128 is clamped to 127.
        let mut y = vec![0f32; 32];
        y[5] = -0.9999;
        y[6] = 0.9999;
        assert_eq!(round_to_int8(&y)[5], -1.0);
        assert_eq!(round_to_int8(&y)[6], 127.0 / 128.0);
        assert!(round_to_int8(&[0.0; 32]).iter().all(|&v| v == 0.0));
    }
}
