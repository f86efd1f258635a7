// F16: a chunk is 8 weights, one vec4<u32> holding two halves per word, low half first.
fn load_chunk(c: u32) -> array<vec4<f32>, 2> {
    let q = WEIGHTS[c];
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
        vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)),
    );
}
