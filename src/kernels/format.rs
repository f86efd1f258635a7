//! The WGSL side of each weight format: `wgsl/formats/<format>.wgsl` defines `load_chunk(c)` over
//! `WEIGHTS`/`SCALES` and may define `dot_chunk(c, xs, xsum)`, the chunk's dot product with `xs`
//! (whose sum is `xsum`), applying its scales after the sum; formats without one get the plain dot
//! of `load_chunk`. Formats that take int8 activations ([`quant::activations`]) also define an
//! `Int8Chunk` (`load_int8_chunk(c)`: the chunk unpacked once) and `dot_int8_chunk(w, xq, qsum)`, its
//! dot with packed int8 inputs (several, in the prefill products). A kernel instantiates the snippet once per
//! weight binding with its own suffix. The quantized formats get `wgsl/half.wgsl` (f16 decoding) and
//! `wgsl/formats/quant_common.wgsl` (nibble/bit extraction) first.

use crate::quant::{self, GgmlType};

const QUANT_COMMON: &str =
    concat!(include_str!("../../wgsl/half.wgsl"), include_str!("../../wgsl/formats/quant_common.wgsl"));

/// The format's own snippet, and whether it uses the quantized-format helpers.
fn snippet(t: GgmlType) -> (&'static str, bool) {
    match quant::wgsl_format(t) {
        "f32" => (include_str!("../../wgsl/formats/f32.wgsl"), false),
        "f16" => (include_str!("../../wgsl/formats/f16.wgsl"), false),
        "bf16" => (include_str!("../../wgsl/formats/bf16.wgsl"), false),
        "q8_0" => (include_str!("../../wgsl/formats/q8_0.wgsl"), false),
        "q4_0" => (include_str!("../../wgsl/formats/q4_0.wgsl"), true),
        "q5_0" => (include_str!("../../wgsl/formats/q5_0.wgsl"), true),
        "q4_1" => (include_str!("../../wgsl/formats/q4_1.wgsl"), true),
        "q5_1" => (include_str!("../../wgsl/formats/q5_1.wgsl"), true),
        "iq4_nl" => (include_str!("../../wgsl/formats/iq4_nl.wgsl"), true),
        "q2_k" => (include_str!("../../wgsl/formats/q2_k.wgsl"), true),
        "q3_k" => (include_str!("../../wgsl/formats/q3_k.wgsl"), true),
        "q4_k" => (include_str!("../../wgsl/formats/q4_k.wgsl"), true),
        "q5_k" => (include_str!("../../wgsl/formats/q5_k.wgsl"), true),
        "q6_k" => (include_str!("../../wgsl/formats/q6_k.wgsl"), true),
        "iq4_xs" => (include_str!("../../wgsl/formats/iq4_xs.wgsl"), true),
        other => unreachable!("no WGSL for format {other}"),
    }
}

/// `dot_chunk` for formats without their own (kernels define CHUNK_V4).
const PLAIN_DOT: &str = "
fn dot_chunk(c: u32, xs: array<vec4<f32>, CHUNK_V4>, xsum: f32) -> f32 {
    let w = load_chunk(c);
    var d = 0.0;
    for (var i = 0u; i < CHUNK_V4; i++) {
        d += dot(w[i], xs[i]);
    }
    return d;
}
";

/// `dot_input(c, x)` over the `ChunkInput` of matrix-vector kernels: the int8 products scaled back
/// for formats that take int8 activations, the f32 dot otherwise.
const DOT_INPUT_INT8: &str = "
fn dot_input(c: u32, x: ChunkInput) -> f32 {
    return x.q.dx * dot_int8_chunk(load_int8_chunk(c), x.q.xq, x.q.qsum);
}
";
const DOT_INPUT_F32: &str = "
fn dot_input(c: u32, x: ChunkInput) -> f32 {
    return dot_chunk(c, x.xs, x.xsum);
}
";

/// The weight side of the prefill matmul: a loaded chunk (`WChunk`), its load and its dot with an
/// input chunk (`XChunk`, which the kernel defines): int8 products for formats that take them,
/// f32 dots of the dequantised chunk otherwise.
const TILE_INT8: &str = "
alias WChunk = Int8Chunk;
fn load_w(c: u32) -> WChunk {
    return load_int8_chunk(c);
}
fn dot_w(w: WChunk, x: XChunk) -> f32 {
    return x.dx * dot_int8_chunk(w, x.xq, x.qsum);
}
";
const TILE_F32: &str = "
alias WChunk = array<vec4<f32>, CHUNK_V4>;
fn load_w(c: u32) -> WChunk {
    return load_chunk(c);
}
fn dot_w(w: WChunk, x: XChunk) -> f32 {
    var d = 0.0;
    for (var i = 0u; i < CHUNK_V4; i++) {
        d += dot(w[i], x.xs[i]);
    }
    return d;
}
";

/// The full WGSL of a format, before suffixing.
pub fn source(t: GgmlType) -> String {
    let (src, common) = snippet(t);
    let dot = if src.contains("fn dot_chunk(") { "" } else { PLAIN_DOT };
    let common = if common { QUANT_COMMON } else { "" };
    format!("{common}\n{src}{dot}")
}

/// Names the snippet declares at line start (`fn name(`, `const NAME`, `struct Name`, `alias Name`),
/// which each instance suffixes.
fn declared_names(src: &str) -> Vec<&str> {
    src.lines()
        .filter_map(|l| ["fn ", "const ", "struct ", "alias "].iter().find_map(|p| l.strip_prefix(p)))
        .map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or(""))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The format's functions and constants with every declared name, `WEIGHTS` and `SCALES` suffixed by
/// `suffix`. Renaming is by whole identifier, so one name may be a prefix or suffix of another (or of a
/// builtin) without harm.
pub fn instantiate(t: GgmlType, suffix: &str) -> String {
    suffixed(&source(t), suffix)
}

/// [`instantiate`] plus `dot_input`, on int8 inputs if `int8` (the format must take them).
pub fn instantiate_dot(t: GgmlType, suffix: &str, int8: bool) -> String {
    instantiate_with(t, suffix, int8, [DOT_INPUT_INT8, DOT_INPUT_F32])
}

/// [`instantiate`] plus the prefill matmul's `WChunk`, `load_w` and `dot_w`, on int8 inputs if `int8`.
pub fn instantiate_tile(t: GgmlType, suffix: &str, int8: bool) -> String {
    instantiate_with(t, suffix, int8, [TILE_INT8, TILE_F32])
}

/// The format plus the int8-input or the f32-input one of `[int8_src, f32_src]` (int8 only for
/// formats that take int8 inputs).
fn instantiate_with(t: GgmlType, suffix: &str, int8: bool, [int8_src, f32_src]: [&str; 2]) -> String {
    assert!(!int8 || quant::activations::takes_int8_input(t), "{} has no int8 dot product", t.name());
    suffixed(&(source(t) + if int8 { int8_src } else { f32_src }), suffix)
}

fn suffixed(src: &str, suffix: &str) -> String {
    let mut names = declared_names(src);
    names.extend(["WEIGHTS", "SCALES"]);
    let rename = |ident: &str| -> Option<String> {
        match ident {
            "WEIGHTS" => Some(format!("weights{suffix}")),
            "SCALES" => Some(format!("scales{suffix}")),
            n if names.contains(&n) => Some(format!("{n}{suffix}")),
            _ => None,
        }
    };
    let mut out = String::with_capacity(src.len() + 256);
    let mut ident = String::new();
    let flush = |ident: &mut String, out: &mut String| {
        if !ident.is_empty() {
            match rename(ident) {
                Some(r) => out.push_str(&r),
                None => out.push_str(ident),
            }
            ident.clear();
        }
    };
    let mut in_number = false;
    for ch in src.chars() {
        let word = ch.is_ascii_alphanumeric() || ch == '_';
        if word && (in_number || (ident.is_empty() && ch.is_ascii_digit())) {
            // Digits and suffixes of numeric literals (`1u`, `2e-5`) are never identifiers.
            in_number = true;
            out.push(ch);
            continue;
        }
        in_number = false;
        if word {
            ident.push(ch);
        } else {
            flush(&mut ident, &mut out);
            out.push(ch);
        }
    }
    flush(&mut ident, &mut out);
    out
}

/// vec4s in one chunk of the format.
pub fn chunk_vec4s(t: GgmlType) -> u32 {
    (quant::gpu_chunk_elems(t) / 4) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_formats_define_the_int8_dot() {
        for t in GgmlType::SUPPORTED {
            if quant::activations::takes_int8_input(t) {
                assert!(source(t).contains("fn dot_int8_chunk("), "{}", t.name());
                assert!(instantiate_dot(t, "0", true).contains("fn dot_input0(c: u32, x: ChunkInput)"));
            }
        }
    }

    #[test]
    fn instances_rename_whole_identifiers() {
        let s = instantiate(GgmlType::Q6K, "1");
        assert!(s.contains("fn load_chunk1(c: u32)"));
        assert!(s.contains("fn half_to_f321(h: u32)"));
        assert!(s.contains("weights1[c]"));
        assert!(s.contains("scales1["));
        assert!(!s.contains("WEIGHTS") && !s.contains("SCALES"));
        // Literals and builtins are untouched.
        assert!(s.contains("5.9604644775390625e-8") && s.contains("bitcast<f32>"));
        let s = instantiate(GgmlType::Iq4Xs, "0");
        assert!(s.contains("fn iq4_grid0(q: vec4<u32>)") && s.contains("dl * iq4_grid0(lo_nibbles0(q.x))"));
        // Declared constants are suffixed too.
        let consts =
            declared_names("const TABLE = array<f32, 2>(1.0, 2.0);\nfn f(i: u32) -> f32 { return TABLE[i]; }\n");
        assert_eq!(consts, ["TABLE", "f"]);
    }
}
