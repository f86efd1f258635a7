// f16 bits to f32, for the kernels that decode them by hand (the quantized formats' scales, the
// latent cache's rounding).

// The f16 in the low 16 bits of h, widened exactly (subnormals included, whatever the device does with
// f16 denormals); the high bits are ignored.
fn half_to_f32(h: u32) -> f32 {
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    var v = bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
    v = select(v, f32(m) * 5.9604644775390625e-8, e == 0u);
    v = select(v, bitcast<f32>(0x7f800000u | (m << 13u)), e == 31u);
    return bitcast<f32>(bitcast<u32>(v) | ((h & 0x8000u) << 16u));
}

// v rounded to f16, as the cache holds it. Not unpack2x16float(pack2x16float(v)): on the H200's
// Vulkan driver that round trip came back unrounded (the current row then scored 3e-4 off its
// stored copy), so the f16 bits are widened by hand.
fn round_f16(v: vec2<f32>) -> vec2<f32> {
    let h = pack2x16float(v);
    return vec2<f32>(half_to_f32(h), half_to_f32(h >> 16u));
}
