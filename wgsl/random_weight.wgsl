// Fills a weight's words or scales (GPU layout of its format) with random but valid values, so the
// full-size model can be benchmarked without its file. The words from `at` to the end of every
// `stride` words are `field` (which may depend on the word's place from `at`), the others random bits.
// Integer-only, so `kernels::random_weight::word` is its exact CPU twin.
// Host constants: WG.

struct Fill {
    n: u32,
    seed: u32,
    stride: u32,
    at: u32,
    field: u32,
    groups_x: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> fill: Fill;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

const BITS: u32 = 0u;
const SCALE_MINS: u32 = 1u;
const F32_SCALE: u32 = 2u;
const F32_WEIGHT: u32 = 3u;
const F16_SCALES: u32 = 4u;

// Chris Wellons' lowbias32.
fn hash(x: u32) -> u32 {
    var h = x;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

// A block scale in [2^-10, 2^-8), f16 bits (in the low 16 bits).
fn f16_scale(h: u32) -> u32 {
    return ((5u + (h & 1u)) << 10u) | ((h >> 1u) & 0x3ffu);
}

// A block scale in [2^-10, 2^-8), f32 bits.
fn f32_scale(h: u32) -> u32 {
    return ((117u + (h & 1u)) << 23u) | ((h >> 1u) & 0x7fffffu);
}

fn word_hash(i: u32) -> u32 {
    return hash(i ^ hash(fill.seed));
}

// Word i, `place` words after the stride's `at`.
fn field_word(field: u32, place: u32, i: u32) -> u32 {
    let h = word_hash(i);
    switch field {
        // Q4_K's and Q5_K's scale vec4s: d in [2^-10, 2^-8) and dmin in [2^-11, 2^-10) as f32 bits,
        // hashed from the first vec4's place so that every vec4 of the stride holds the same, then 6-bit
        // bytes.
        case SCALE_MINS: {
            if place % 4u == 0u {
                return f32_scale(word_hash(i - place));
            }
            if place % 4u == 1u {
                return (116u << 23u) | (word_hash(i - place + 1u) & 0x7fffffu);
            }
            return h & 0x3f3f3f3fu;
        }
        case F32_SCALE: {
            return f32_scale(h);
        }
        // Two block scales as f16 bits.
        case F16_SCALES: {
            return f16_scale(h) | (f16_scale(h >> 16u) << 16u);
        }
        // A plain weight, ±[2^-7, 2^-5), f32 bits.
        case F32_WEIGHT: {
            return (h & 0x80000000u) | ((120u + ((h >> 23u) & 1u)) << 23u) | (h & 0x7fffffu);
        }
        default: {
            return h;
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * fill.groups_x + wg.x) * WG + lid;
    if i >= fill.n {
        return;
    }
    let place = i % fill.stride;
    var field = BITS;
    if place >= fill.at {
        field = fill.field;
    }
    out[i] = field_word(field, place - fill.at, i);
}
