// Helpers of the quantized formats, prepended to their snippets by src/kernels/format.rs (after
// wgsl/half.wgsl).

// Split-nibble words (byte k: weight k low, weight k + 16 high): the low / high nibbles of w's 4 bytes.
fn lo_nibbles(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u);
}

fn hi_nibbles(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u);
}

// Four 2-bit fields of w starting with field `first` (field i at bits 2i).
fn crumbs4(w: u32, first: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> (vec4<u32>(0u, 2u, 4u, 6u) + vec4<u32>(2u * first))) & vec4<u32>(3u);
}

// Four 1-bit fields of w starting with bit `first`.
fn bits4(w: u32, first: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(first))) & vec4<u32>(1u);
}

// Byte k of w, sign-extended.
fn i8_of(w: u32, k: u32) -> i32 {
    return bitcast<i32>(w << (24u - 8u * k)) >> 24u;
}

// The IQ4 grid (ggml's kvalues_iq4nl) at 4-bit indices q. The table is 16 int8 in four words, picked with
// selects: indexing an array would put a local copy of the table in memory.
fn iq4_grid(q: vec4<u32>) -> vec4<f32> {
    let mid = (q & vec4<u32>(4u)) != vec4<u32>(0u);
    let lo = select(vec4<u32>(0xbfad9881u), vec4<u32>(0xf6eaddcfu), mid);
    let hi = select(vec4<u32>(0x26190d01u), vec4<u32>(0x71594535u), mid);
    let w = select(lo, hi, q >= vec4<u32>(8u));
    return vec4<f32>(bitcast<vec4<i32>>(w << (vec4<u32>(24u) - 8u * (q & vec4<u32>(3u)))) >> vec4<u32>(24u));
}

// Byte k (0..11) of the 12 packed scale bytes of a K-quant super-block, held in three words.
fn packed_byte(w: vec3<u32>, k: u32) -> u32 {
    return (w[k >> 2u] >> (8u * (k & 3u))) & 0xffu;
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q5_K super-block as the file packs
// them (Q4_K's GPU layout holds them unpacked).
// Sub-blocks j and j + 4 share byte j & 3 of each word, so one shift serves all three words and
// the two halves are selected, not branched (a warp's lanes hold different j).
fn scale_min_k4(w: vec3<u32>, j: u32) -> vec2<u32> {
    let b = (w >> vec3<u32>(8u * (j & 3u))) & vec3<u32>(0xffu);
    let low = vec2<u32>(b.x, b.y) & vec2<u32>(63u);
    let high = vec2<u32>(b.z & 15u, b.z >> 4u) | ((vec2<u32>(b.x, b.y) >> vec2<u32>(6u)) << vec2<u32>(4u));
    return select(low, high, j >= 4u);
}
