// One input vector normalised (its RMSNorm weights folded in) and rounded to int8 by 32 values, once,
// in the form matvec.wgsl's PREPARED products read: PREP_WORDS words per chunk (8 int8 words, Σ q,
// dx, two unused), then 1 / rms. For a product whose every workgroup would otherwise round the whole
// input itself (the LM head: thousands of workgroups). One workgroup.
// Host constants: WG (a power of two), CHUNKS (32-value chunks), PREP_WORDS, EPS.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gnorm: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32) {
    var sumsq = 0.0;
    for (var c = tid; c < CHUNKS; c += WG) {
        var xs: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) { // unroll
            let v = x[c * 8u + i];
            sumsq += dot(v, v);
            xs[i] = v * gnorm[c * 8u + i];
        }
        let q = round_to_int8(xs);
        let words = prepared_words(q);
        for (var i = 0u; i < 10u; i++) { // unroll
            y[c * PREP_WORDS + i] = words[i];
        }
    }
    let total = workgroup_sum(sumsq, tid);
    if tid == 0u {
        y[CHUNKS * PREP_WORDS] = inverseSqrt(total / f32(CHUNKS * 32u) + EPS);
    }
}
