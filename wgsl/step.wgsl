// The per-step uniform every position-dependent kernel reads: the (first) position, and for a
// prefill chunk the number of its tokens at positions pos, pos + 1, …; for a decode step the
// attention's positions per split (mla_attention.wgsl).
struct Step {
    pos: u32,
    n: u32,
    split: u32,
}
