// BF16: a chunk is 8 weights, one vec4<u32> holding two bf16 per word, low half first.
// A bf16 is the top 16 bits of an f32, so widening is a shift.
fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

fn load_chunk(c: u32) -> array<vec4<f32>, 2> {
    let q = WEIGHTS[c];
    return array<vec4<f32>, 2>(
        vec4<f32>(bf16_pair(q.x), bf16_pair(q.y)),
        vec4<f32>(bf16_pair(q.z), bf16_pair(q.w)),
    );
}
