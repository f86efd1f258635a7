// Streams N vec4 words of src, from word SRC_OFFSET on: the roofline that benches/matvec.rs sets
// beside each product, one dispatch moving as many bytes as the product reads. COPY stores every word
// into dst; otherwise each thread only folds its words together (xor) and stores them where they
// equal SENTINEL, so no load is dead code and a read costs no writes. Each thread takes PER_THREAD
// words a workgroup apart (coalesced), all its loads before any store.
// Host constants: WG, PER_THREAD, N, SRC_OFFSET, COPY, SENTINEL.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let base = (wid.y * groups.x + wid.x) * WG * PER_THREAD + tid;
    var w: array<vec4<u32>, PER_THREAD>;
    for (var k = 0u; k < PER_THREAD; k++) { // unroll
        // Past the end: the last word again, never stored.
        w[k] = src[SRC_OFFSET + min(base + k * WG, N - 1u)];
    }
    if COPY {
        for (var k = 0u; k < PER_THREAD; k++) { // unroll
            if base + k * WG < N {
                dst[base + k * WG] = w[k];
            }
        }
    } else {
        var folded = vec4(0u);
        for (var k = 0u; k < PER_THREAD; k++) { // unroll
            if base + k * WG < N {
                folded ^= w[k];
            }
        }
        if base < N && all(folded == vec4(SENTINEL)) {
            dst[base] = folded;
        }
    }
}
