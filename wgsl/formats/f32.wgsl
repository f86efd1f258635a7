// F32: a chunk is 4 weights, one vec4<u32> of their bits.
fn load_chunk(c: u32) -> array<vec4<f32>, 1> {
    return array<vec4<f32>, 1>(bitcast<vec4<f32>>(WEIGHTS[c]));
}
