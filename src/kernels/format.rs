//! The WGSL side of each weight format: `wgsl/formats/<format>.wgsl` defines `load_chunk(c)` over
//! `WEIGHTS`/`SCALES`; a kernel instantiates it once per weight binding with its own suffix.

use crate::quant::{self, GgmlType};

fn snippet(t: GgmlType) -> &'static str {
    match quant::wgsl_format(t) {
        "f32" => include_str!("../../wgsl/formats/f32.wgsl"),
        "f16" => include_str!("../../wgsl/formats/f16.wgsl"),
        "bf16" => include_str!("../../wgsl/formats/bf16.wgsl"),
        "q8_0" => include_str!("../../wgsl/formats/q8_0.wgsl"),
        other => unreachable!("no WGSL for format {other}"),
    }
}

/// The format's functions with every function name, `WEIGHTS` and `SCALES` suffixed by `suffix`.
pub fn instantiate(t: GgmlType, suffix: &str) -> String {
    let src = snippet(t);
    let mut out = src.replace("WEIGHTS", &format!("weights{suffix}")).replace("SCALES", &format!("scales{suffix}"));
    for name in src.lines().filter_map(|l| l.strip_prefix("fn ")).filter_map(|l| l.split('(').next()) {
        out = out.replace(&format!("{name}("), &format!("{name}{suffix}("));
    }
    out
}

/// vec4s in one chunk of the format.
pub fn chunk_vec4s(t: GgmlType) -> u32 {
    (quant::gpu_chunk_elems(t) / 4) as u32
}
