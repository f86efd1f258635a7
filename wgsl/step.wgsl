// The per-step uniform every position-dependent kernel reads: the (first) position, and for a
// prefill chunk the number of its tokens at positions pos, pos + 1, ….
struct Step {
    pos: u32,
    n: u32,
}
