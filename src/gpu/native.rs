//! Native kernels, loaded through wgpu's passthrough (`Features::PASSTHROUGH_SHADERS`). On Vulkan:
//! SPIR-V that naga writes from a kernel's WGSL with options wgpu does not expose (no bounds checks,
//! no loop-bounding or integer-division guards, no zeroing of workgroup memory, no debug info). On
//! Metal: the hand-written MSL of `native_msl/` (the matrix-vector products of some formats), with
//! the host constants of the WGSL twin as `#define`s.

use anyhow::{anyhow, Context, Result};
use naga::back::spv;
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};

/// Which implementation the hot passes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KernelChoice {
    /// The WGSL kernels, compiled by wgpu.
    #[default]
    Wgsl,
    /// The native pipelines (Vulkan: SPIR-V, Metal: the hand-written MSL where it exists, both
    /// through passthrough); another backend is an error.
    Native,
    /// Native where the backend has them, WGSL elsewhere.
    Auto,
}

/// The workgroup size of a compute kernel's WGSL (entry point `main`).
pub fn workgroup_size(source: &str) -> Result<[u32; 3]> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| anyhow!("{}", e.emit_to_string(source)))?;
    let entry = module.entry_points.iter().find(|e| e.name == "main").context("the kernel has no `main`")?;
    Ok(entry.workgroup_size)
}

/// A compute kernel as SPIR-V, with what wgpu cannot read from SPIR-V itself.
pub struct Spirv {
    pub words: Vec<u32>,
    pub workgroup_size: [u32; 3],
    /// Bytes of workgroup memory the kernel declares. wgpu does not check a passthrough module
    /// against the adapter's limit, and a kernel past it can hang the GPU instead of failing (an H200
    /// did, with ~56 KB against 48).
    pub workgroup_bytes: u32,
}

/// The SPIR-V of a compute kernel's WGSL (entry point `main`).
pub fn spirv(source: &str) -> Result<Spirv> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| anyhow!("{}", e.emit_to_string(source)))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .context("naga rejected the kernel")?;
    let entry = module.entry_points.iter().find(|e| e.name == "main").context("the kernel has no `main`")?;
    let unchecked = BoundsCheckPolicy::Unchecked;
    let options = spv::Options {
        lang_version: (1, 3),
        flags: spv::WriterFlags::empty(),
        // Bindings keep their WGSL group and binding numbers (the same layout as the WGSL build).
        fake_missing_bindings: true,
        bounds_check_policies: BoundsCheckPolicies {
            index: unchecked,
            buffer: unchecked,
            image_load: unchecked,
            binding_array: unchecked,
        },
        zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: false,
        emit_int_div_checks: false,
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
    let mut words = spv::write_vec(&module, &info, &options, Some(&pipeline)).context("naga could not write SPIR-V")?;
    glsl450_memory_model(&mut words);
    let workgroup_bytes = module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
        .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
        .sum();
    Ok(Spirv { words, workgroup_size: entry.workgroup_size, workgroup_bytes })
}

/// Where each instruction of a SPIR-V module starts and ends (after the 5-word header); word 0 of
/// an instruction is its word count << 16 | its opcode.
fn instructions(words: &[u32]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 5;
    while i < words.len() {
        let len = ((words[i] >> 16) as usize).max(1);
        out.push(i..(i + len).min(words.len()));
        i += len;
    }
    out
}

const OP_CAPABILITY: u32 = 17;
const OP_MEMORY_MODEL: u32 = 14;
const CAPABILITY_VULKAN_MEMORY_MODEL: u32 = 5345;
const MEMORY_MODEL_GLSL450: u32 = 1;

/// Declares the GLSL450 memory model where naga declared the Vulkan one (it does for cooperative
/// matrices). naga's barriers carry no availability/visibility semantics and its loads and stores
/// no `NonPrivatePointer`, which the Vulkan model needs to order plain workgroup-memory accesses
/// across a barrier; under GLSL450 the same barriers order them, as in every other kernel. (On the
/// H200 the wrong results first blamed on this were a misaligned tile; whether the NVIDIA driver
/// exploits the Vulkan model here is not established.) Nothing else in naga's output depends on the
/// model for the kernels built here (no atomics).
pub fn glsl450_memory_model(words: &mut Vec<u32>) {
    let mut out = Vec::with_capacity(words.len());
    out.extend_from_slice(&words[..5]);
    for r in instructions(words) {
        let inst = &words[r];
        match inst[0] & 0xffff {
            OP_CAPABILITY if inst[1] == CAPABILITY_VULKAN_MEMORY_MODEL => {}
            OP_MEMORY_MODEL => out.extend_from_slice(&[inst[0], inst[1], MEMORY_MODEL_GLSL450]),
            _ => out.extend_from_slice(inst),
        }
    }
    *words = out;
}

/// Names a kernel (`matvec`, `matmul`) whose native build gets a deliberate fault, so the tests
/// can show that the start-up check rejects a native pipeline that disagrees with its WGSL twin.
pub const FAULT_ENV: &str = "GLM_WGPU_FAULT_NATIVE";

const OP_F_ADD: u32 = 129;
const OP_F_SUB: u32 = 131;

/// Turns every float addition of the module into a subtraction (same operands; indices are integer
/// arithmetic, so every access stays in bounds).
pub fn inject_fault(words: &mut [u32]) {
    for r in instructions(words) {
        if words[r.start] & 0xffff == OP_F_ADD {
            words[r.start] = (words[r.start] & 0xffff_0000) | OP_F_SUB;
        }
    }
}

/// The hand-written Metal kernels' format struct (`native_msl/formats.metal`) of a weight type.
pub fn msl_format(t: crate::quant::GgmlType) -> Option<&'static str> {
    use crate::quant::GgmlType;
    match t {
        GgmlType::F32 => Some("F32"),
        GgmlType::F16 => Some("F16"),
        GgmlType::BF16 => Some("BF16"),
        GgmlType::Q8_0 => Some("Q8_0"),
        GgmlType::Q4_0 => Some("Q4_0"),
        GgmlType::Q4_1 => Some("Q4_1"),
        GgmlType::Q5_0 => Some("Q5_0"),
        GgmlType::Q5_1 => Some("Q5_1"),
        GgmlType::Iq4Nl => Some("IQ4_NL"),
        GgmlType::Iq4Xs => Some("IQ4_XS"),
        GgmlType::Q2K => Some("Q2_K"),
        GgmlType::Q3K => Some("Q3_K"),
        GgmlType::Q4K => Some("Q4_K"),
        GgmlType::Q5K => Some("Q5_K"),
        GgmlType::Q6K => Some("Q6_K"),
        _ => None,
    }
}

/// A hand-written Metal kernel with the host constants of its WGSL twin as `#define`s (booleans as
/// 0/1), `names` as `#define NAME value`, after the shared inputs and formats.
pub fn msl_compose(consts: &[(&str, super::Const)], names: &[(&str, &str)], kernel: &str) -> String {
    use std::fmt::Write;
    let mut s = String::from("#include <metal_stdlib>\nusing namespace metal;\n");
    for (name, c) in consts {
        match c {
            super::Const::U32(v) => writeln!(s, "#define {name} {v}u"),
            super::Const::F32(v) => writeln!(s, "#define {name} {v:e}f"),
            super::Const::Bool(v) => writeln!(s, "#define {name} {}", *v as u32),
        }
        .unwrap();
    }
    for (name, v) in names {
        writeln!(s, "#define {name} {v}").unwrap();
    }
    s + include_str!("../../native_msl/inputs.metal") + include_str!("../../native_msl/formats.metal") + kernel
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workgroup memory is what the kernel's workgroup variables take, nothing else.
    #[test]
    fn counts_workgroup_memory() {
        let source = "
            var<workgroup> a: array<f32, 100>;
            var<workgroup> b: array<vec4<f32>, 10>;
            var<private> c: array<f32, 64>;
            @group(0) @binding(0) var<storage, read_write> y: array<f32>;
            @compute @workgroup_size(64)
            fn main(@builtin(local_invocation_index) i: u32) {
                a[i] = f32(i);
                b[i % 10u] = vec4<f32>(1.0);
                c[i] = 2.0;
                workgroupBarrier();
                y[i] = a[63u - i] + b[i % 10u].x + c[i];
            }";
        let spirv = spirv(source).unwrap();
        assert_eq!(spirv.workgroup_size, [64, 1, 1]);
        assert_eq!(spirv.workgroup_bytes, 100 * 4 + 10 * 16);
    }
}
