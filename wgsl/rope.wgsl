// RoPE of an interleaved pair (a, b) by the table's (cos, sin): how the cached keys and the queries
// against them are rotated.
fn rope_rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}
