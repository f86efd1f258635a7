// The per-token uniform every position-dependent kernel reads.
struct Step {
    pos: u32,
}
