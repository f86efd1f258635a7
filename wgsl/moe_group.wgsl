// Prefill: groups a chunk's routed slots by expert, so the expert passes run each expert's tokens
// one after another and read its weights about once per chunk. Slot k < KS of token t < step.n
// (router.wgsl's route, 16 words per token) becomes entry i: entries[i] = expert | token << 16, with
// each expert's entries consecutive, and slot_entry[t * KS + k] = i. Entries past the chunk's slots
// are expert 0, token 0 (computed and never read). The order within an expert is arbitrary.
// Also the tiles of matmul.wgsl: tiles[0] = their number, then per tile expert | entries << 16 and
// its first entry, each tile up to TILE consecutive entries of one expert.
// One workgroup. Host constants: WG, KS, N_MAT (experts, an appended shared one included),
// SLOTS (= chunk size × KS), TILE.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> route: array<u32>;
@group(0) @binding(2) var<storage, read_write> entries: array<u32>;
@group(0) @binding(3) var<storage, read_write> slot_entry: array<u32>;
@group(0) @binding(4) var<storage, read_write> tiles: array<u32>;

var<workgroup> count: array<atomic<u32>, N_MAT>;
var<workgroup> first: array<u32, N_MAT>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32) {
    let total = step.n * KS;
    for (var i = tid; i < total; i += WG) {
        atomicAdd(&count[route[(i / KS) * 16u + i % KS]], 1u);
    }
    workgroupBarrier();
    if tid == 0u {
        var running = 0u;
        var n_tiles = 0u;
        for (var e = 0u; e < N_MAT; e++) {
            first[e] = running;
            let c = atomicExchange(&count[e], 0u);
            for (var k = 0u; k < c; k += TILE) {
                tiles[1u + 2u * n_tiles] = e | (min(TILE, c - k) << 16u);
                tiles[2u + 2u * n_tiles] = running + k;
                n_tiles += 1u;
            }
            running += c;
        }
        tiles[0] = n_tiles;
    }
    workgroupBarrier();
    for (var i = tid; i < total; i += WG) {
        let t = i / KS;
        let e = route[t * 16u + i % KS];
        let j = first[e] + atomicAdd(&count[e], 1u);
        entries[j] = e | (t << 16u);
        slot_entry[i] = j;
    }
    for (var j = total + tid; j < SLOTS; j += WG) {
        entries[j] = 0u;
    }
}
