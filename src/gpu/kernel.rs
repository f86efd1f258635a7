//! Compute kernels: WGSL composed from one source plus host constants, an explicit bind group
//! layout, and a cache so each variant is compiled once.

use super::GpuContext;
use anyhow::{anyhow, ensure, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::rc::Rc;

/// How a kernel sees one binding, in binding-index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// A compile-time constant injected ahead of a kernel's source.
#[derive(Debug, Clone, Copy)]
pub enum Const {
    U32(u32),
    F32(f32),
    Bool(bool),
}

pub struct Kernel {
    pub name: String,
    /// The composed WGSL it was built from (its cache key).
    pub source: String,
    /// Its hand-written Metal twin, where one exists.
    pub msl: Option<String>,
    pub build: Build,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<Binding>,
}

/// A bind group and the buffers it binds, in binding order.
pub struct Bound {
    pub group: wgpu::BindGroup,
    pub buffers: Vec<wgpu::Buffer>,
}

/// Prepends `const NAME: T = value;` lines to `body`, keeps its conditional lines that apply (see
/// [`select_lines`]) and unrolls its marked loops (see [`unroll`]).
pub fn compose(consts: &[(&str, Const)], body: &str) -> String {
    let mut s = String::new();
    for (name, c) in consts {
        match c {
            Const::U32(v) => writeln!(s, "const {name}: u32 = {v}u;"),
            Const::F32(v) => writeln!(s, "const {name}: f32 = {v:e};"),
            Const::Bool(v) => writeln!(s, "const {name}: bool = {v};"),
        }
        .unwrap();
    }
    s.push_str(&unroll(&select_lines(body, consts), consts));
    s
}

/// Keeps a line ending in `// if NAME` (`// if !NAME`) only where the bool host constant NAME is
/// true (false): for the lines that use what only one variant of a kernel includes (a snippet
/// declaring a workgroup array, which slows NVIDIA's kernels even where the code reading it is dead).
pub fn select_lines(src: &str, consts: &[(&str, Const)]) -> String {
    let flag = |name: &str| {
        consts
            .iter()
            .find_map(|(n, c)| match c {
                Const::Bool(v) if *n == name => Some(*v),
                _ => None,
            })
            .unwrap_or_else(|| panic!("`// if {name}`: not a bool host constant"))
    };
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        // The marker ends the line: `// if ` then a constant's name, with or without `!`.
        let cond = line.trim_end().rsplit_once("// if ").map(|(_, c)| c).filter(|c| {
            let name = c.strip_prefix('!').unwrap_or(c);
            !name.is_empty() && name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        });
        let keep = match cond {
            Some(c) => c.strip_prefix('!').map_or_else(|| flag(c), |name| !flag(name)),
            None => true,
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Expands every loop of the form `for (var i = 0u; i < N; i++) {` whose line ends in `// unroll`
/// (N a host constant or a `u32` literal) into N blocks `{ let i = 0u; ... }`, so the driver sees
/// constant indices into the kernel's small arrays and can keep them in registers. Such loops may
/// not `break` or `continue`.
pub fn unroll(src: &str, consts: &[(&str, Const)]) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(head) = line.trim_end().strip_suffix("// unroll") else {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        };
        let (var, bound) = loop_header(head.trim())
            .unwrap_or_else(|| panic!("`// unroll` on a loop it cannot expand: {}", line.trim()));
        let n = consts
            .iter()
            .find_map(|(name, c)| match c {
                Const::U32(v) if *name == bound => Some(*v),
                _ => None,
            })
            .or_else(|| bound.strip_suffix('u').and_then(|b| b.parse().ok()))
            .unwrap_or_else(|| panic!("`// unroll`: {bound} is not a u32 host constant or literal"));
        // The body runs to the brace that closes the loop's.
        let (mut depth, mut end) = (1i32, i + 1);
        while depth > 0 {
            depth += lines[end].matches('{').count() as i32 - lines[end].matches('}').count() as i32;
            end += 1;
        }
        let body = unroll(&lines[i + 1..end - 1].join("\n"), consts);
        let indent = &line[..line.len() - line.trim_start().len()];
        for k in 0..n {
            writeln!(out, "{indent}{{\n{indent}    let {var} = {k}u;\n{body}\n{indent}}}").unwrap();
        }
        i = end;
    }
    out
}

/// `(i, N)` of `for (var i = 0u; i < N; i++) {`.
fn loop_header(head: &str) -> Option<(&str, &str)> {
    let rest = head.strip_prefix("for (var ")?;
    let (var, rest) = rest.split_once(" = 0u; ")?;
    let rest = rest.strip_prefix(var)?.strip_prefix(" < ")?;
    let (bound, rest) = rest.split_once("; ")?;
    (rest == format!("{var}++) {{")).then_some((var, bound))
}

impl Kernel {
    /// Builds the kernel from its WGSL `source` as `build` says; a native build on Metal takes the
    /// hand-written twin `msl` instead (entry point `name`).
    pub fn new(
        ctx: &GpuContext,
        name: &str,
        source: &str,
        msl: Option<&str>,
        bindings: &[Binding],
        build: Build,
    ) -> Result<Self> {
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        // Hand-written Metal kernels are named after the kernel; everything else has `main`.
        let metal_native = build == Build::Native && ctx.adapter_info.backend == wgpu::Backend::Metal;
        let entry = if metal_native { name } else { "main" };
        let desc = wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) };
        let module = match build {
            Build::Checked => device.create_shader_module(desc),
            // SAFETY: every kernel keeps its indices in range by construction (row guards, buffers
            // padded to whole vec4s, shapes validated at load), and the test suite runs each one with
            // the checks on, where an out-of-range access would show.
            Build::Trusted => unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            },
            Build::Native => {
                let mut desc = wgpu::ShaderModuleDescriptorPassthrough { label: Some(name), ..Default::default() };
                let [x, y, z] = if metal_native {
                    desc.msl = Some(msl.with_context(|| format!("{name} has no Metal kernel"))?.into());
                    super::native::workgroup_size(source)?
                } else {
                    let mut spirv = super::native::spirv(source).with_context(|| format!("native {name}"))?;
                    let limit = ctx.limits.max_compute_workgroup_storage_size;
                    ensure!(
                        spirv.workgroup_bytes <= limit,
                        "native {name} declares {} bytes of workgroup memory; the adapter allows {limit}",
                        spirv.workgroup_bytes
                    );
                    if std::env::var(super::native::FAULT_ENV).is_ok_and(|k| k == name) {
                        super::native::inject_fault(&mut spirv.words);
                    }
                    desc.spirv = Some(spirv.words.into());
                    spirv.workgroup_size
                };
                desc.entry_points =
                    vec![wgpu::PassthroughShaderEntryPoint { name: entry.into(), workgroup_size: (x, y, z) }].into();
                // SAFETY: on Metal the hand-written kernel binds what its WGSL twin binds and keeps its
                // indices in range the same way; elsewhere the SPIR-V is naga's translation of a kernel
                // naga validated, unchecked as the trusted build is (same argument as above). The
                // start-up check compares either with the WGSL build before the engine uses it.
                unsafe { device.create_shader_module_passthrough(desc) }
            }
        };
        let entries: Vec<_> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: *b == Binding::Read },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout =
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(name), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(anyhow!("kernel {name} failed to build: {e}"));
        }
        Ok(Self {
            name: name.to_string(),
            source: source.to_string(),
            msl: msl.map(str::to_string),
            build,
            pipeline,
            layout,
            bindings: bindings.to_vec(),
        })
    }

    /// A bind group over `buffers`, one per binding, in binding order.
    pub fn bind(&self, ctx: &GpuContext, buffers: &[&wgpu::Buffer]) -> Bound {
        assert_eq!(buffers.len(), self.bindings.len(), "kernel {}: wrong number of buffers", self.name);
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&self.name),
            layout: &self.layout,
            entries: &entries,
        });
        Bound { group, buffers: buffers.iter().map(|&b| b.clone()).collect() }
    }
}

/// How a kernel's module is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// WGSL with wgpu's runtime bounds checks (tests, debugging).
    Checked,
    /// WGSL without them.
    Trusted,
    /// The backend's native pipeline (`gpu::native`).
    Native,
}

/// The kernels that have native variants: the matrix products (decode GEMV, experts, LM head, and
/// the prefill's matmul).
const NATIVE: [&str; 2] = ["matvec", "matmul"];

/// Kernels built as native pipelines on Vulkan whatever the choice: wgpu's own SPIR-V of the
/// cooperative matmul declares the Vulkan memory model without what it needs (see
/// `native::glsl450_memory_model`). The cooperative decode attention, which relies on its barriers
/// the same way, is built like it (and has only been verified built so). The cooperative prefill
/// attention is built by wgpu, as verified on the H200 (start-up check and the parity test); moving
/// it here is untested.
pub const NATIVE_ON_VULKAN: [&str; 2] = ["matmul_coop", "mla_attention_coop"];

/// Compiled kernels, keyed by their full composed source so two variants can never collide.
pub struct KernelCache {
    kernels: HashMap<String, Rc<Kernel>>,
    checked: bool,
    native: bool,
    /// Sources whose native build disagreed with the WGSL one (or did not build): built from WGSL.
    rejected: HashSet<String>,
    /// What happened to native builds, for the user.
    pub notes: Vec<String>,
}

/// Checked modules: wgpu's bounds checks stay in (tests, debugging).
impl Default for KernelCache {
    fn default() -> Self {
        Self::new(true)
    }
}

impl KernelCache {
    /// `checked: false` builds trusted modules without runtime bounds checks (docs/perf-notes measured
    /// them at 10-25 % of a GEMV's time on an H200).
    pub fn new(checked: bool) -> Self {
        Self { kernels: HashMap::new(), checked, native: false, rejected: HashSet::new(), notes: Vec::new() }
    }

    /// Builds the kernels that have native variants as native pipelines (the others as `checked` says).
    pub fn with_native(ctx: &GpuContext, checked: bool) -> Result<Self> {
        ensure!(
            matches!(ctx.adapter_info.backend, wgpu::Backend::Vulkan | wgpu::Backend::Metal),
            "native kernels exist for Vulkan (SPIR-V) and Metal (MSL) only, not for {}",
            ctx.describe()
        );
        ensure!(
            ctx.features.contains(wgpu::Features::PASSTHROUGH_SHADERS),
            "{} cannot load native kernels (no passthrough shaders)",
            ctx.describe()
        );
        Ok(Self { native: true, ..Self::new(checked) })
    }

    pub fn get(&mut self, ctx: &GpuContext, name: &str, source: String, bindings: &[Binding]) -> Result<Rc<Kernel>> {
        self.get_with_msl(ctx, name, source, None, bindings)
    }

    /// [`KernelCache::get`] for a kernel with a hand-written Metal twin `msl` (used on Metal when
    /// native kernels are on). A native build that fails is built from WGSL instead, with a note.
    pub fn get_with_msl(
        &mut self,
        ctx: &GpuContext,
        name: &str,
        source: String,
        msl: Option<String>,
        bindings: &[Binding],
    ) -> Result<Rc<Kernel>> {
        if let Some(k) = self.kernels.get(&source) {
            return Ok(k.clone());
        }
        let backend = ctx.adapter_info.backend;
        let has_native = backend == wgpu::Backend::Vulkan || msl.is_some();
        let native = self.native && has_native && NATIVE.contains(&name) && !self.rejected.contains(&source);
        let always = backend == wgpu::Backend::Vulkan && NATIVE_ON_VULKAN.contains(&name);
        let k = if native || always {
            match Kernel::new(ctx, name, &source, msl.as_deref(), bindings, Build::Native) {
                Ok(k) => k,
                Err(e) if native => {
                    self.notes.push(format!("native {name} did not build, WGSL instead: {e:#}"));
                    self.rejected.insert(source.clone());
                    Kernel::new(ctx, name, &source, None, bindings, self.wgsl())?
                }
                Err(e) => return Err(e),
            }
        } else {
            Kernel::new(ctx, name, &source, msl.as_deref(), bindings, self.wgsl())?
        };
        let k = Rc::new(k);
        self.kernels.insert(source, k.clone());
        Ok(k)
    }

    fn wgsl(&self) -> Build {
        if self.checked {
            Build::Checked
        } else {
            Build::Trusted
        }
    }

    /// Whether `k` is a native pipeline that has a WGSL twin (the kernels `--kernels native` swaps).
    pub fn has_twin(&self, k: &Kernel) -> bool {
        k.build == Build::Native && NATIVE.contains(&k.name.as_str())
    }

    /// The WGSL build of a native kernel's source (uncached: start-up checks only).
    pub fn wgsl_twin(&self, ctx: &GpuContext, k: &Kernel) -> Result<Kernel> {
        Kernel::new(ctx, &k.name, &k.source, None, &k.bindings, self.wgsl())
    }

    /// Builds `source` from WGSL from now on (its native build disagreed with its twin); pipelines
    /// already built from it stay as they are, so callers record their dispatches again.
    pub fn reject_native(&mut self, source: &str) {
        self.rejected.insert(source.to_string());
        self.kernels.remove(source);
    }

    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    /// Whether kernels with native variants are built natively.
    pub fn is_native(&self) -> bool {
        self.native
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }
}

/// One recorded kernel launch.
pub struct Dispatch {
    pub kernel: Rc<Kernel>,
    pub bound: Bound,
    pub groups: [u32; 3],
    /// What the launch computes, for profiles (e.g. "attn_q_a").
    pub label: String,
    /// Bytes of weights the launch reads.
    pub weight_bytes: u64,
    /// The decode positions it serves (all, unless a kernel has variants for short and long contexts).
    pub positions: std::ops::Range<usize>,
    /// The binding it writes as int8-rounded chunks (a matvec's `round_output`), which start-up
    /// checks compare by value.
    pub rounded_output: Option<usize>,
}

impl Dispatch {
    pub fn new(kernel: Rc<Kernel>, bound: Bound, groups: [u32; 3]) -> Self {
        let label = kernel.name.clone();
        Self { kernel, bound, groups, label, weight_bytes: 0, positions: 0..usize::MAX, rounded_output: None }
    }

    /// Serves only the decode steps at `positions`.
    pub fn serving(mut self, positions: std::ops::Range<usize>) -> Self {
        self.positions = positions;
        self
    }

    pub fn labeled(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }

    pub fn reading(mut self, bytes: u64) -> Self {
        self.weight_bytes = bytes;
        self
    }

    /// Writes binding `binding` as int8-rounded chunks, where `rounded`.
    pub fn rounding(mut self, binding: usize, rounded: bool) -> Self {
        self.rounded_output = rounded.then_some(binding);
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bound.group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Workgroup grid for `n` workgroups, spilling into y past the 65535 per-dimension limit.
pub fn grid(n: u32) -> [u32; 2] {
    let x = n.clamp(1, 65535);
    [x, n.div_ceil(x).max(1)]
}

impl GpuContext {
    /// Records `dispatches` into one compute pass, submits it and waits: for tests and one-off work.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        self.submit(dispatches.iter().copied());
        self.wait()
    }

    /// Records `dispatches` into one compute pass and submits it, without waiting.
    pub fn submit<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> wgpu::SubmissionIndex {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            dispatches.into_iter().for_each(|d| d.record(&mut pass));
        }
        self.queue.submit([enc.finish()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_lines_follow_their_flag() {
        let src = "a; // if M\nb; // if !M\nc;\n// if M is set, and so on\n";
        let with = |m| select_lines(src, &[("M", Const::Bool(m))]);
        assert_eq!(with(true), "a; // if M\nc;\n// if M is set, and so on\n");
        assert_eq!(with(false), "b; // if !M\nc;\n// if M is set, and so on\n");
    }

    #[test]
    fn unroll_expands_marked_loops_only() {
        let src = "fn f() {\n    for (var r = 0u; r < ROWS; r++) { // unroll\n        for (var k = 0u; k < 2u; k++) { // unroll\n            a[r] += b[k];\n        }\n    }\n    for (var j = 0u; j < 3u; j++) {\n    }\n}\n";
        let out = unroll(src, &[("ROWS", Const::U32(2))]);
        assert_eq!(out.matches("let r = ").count(), 2);
        assert_eq!(out.matches("let k = ").count(), 4);
        assert!(out.contains("let r = 1u;") && out.contains("let k = 1u;"));
        assert!(out.contains("for (var j = 0u; j < 3u; j++) {"));
        assert_eq!(out.matches('{').count(), out.matches('}').count());
    }
}
