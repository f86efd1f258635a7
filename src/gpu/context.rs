//! The wgpu device: adapter choice, features and the adapter's own limits.

use anyhow::{bail, Context, Result};

pub struct GpuContext {
    pub adapter_info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix configurations the adapter offers (empty without the feature).
    pub coop_matrix: Vec<wgpu::CooperativeMatrixProperties>,
}

/// Adapters in preference order: discrete, integrated, virtual, CPU.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The environment variable that picks an adapter when `--device` is not given.
pub const DEVICE_ENV: &str = "GLM_WGPU_DEVICE";

impl GpuContext {
    /// Opens an adapter chosen by `selector` (an index into the adapter list or a case-insensitive
    /// substring of its name; else `$GLM_WGPU_DEVICE`; else the best one). Backends follow `WGPU_BACKEND`.
    /// No adapter is an error, never a silent CPU fallback.
    pub fn new(selector: Option<&str>) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        if adapters.is_empty() {
            bail!(
                "no GPU adapter found (WGPU_BACKEND={}); install a Vulkan, Metal or DX12 driver \
                 (on headless Linux: apt-get install mesa-vulkan-drivers)",
                std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "unset".into())
            );
        }
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let env = std::env::var(DEVICE_ENV).ok();
        let adapter = match selector.or(env.as_deref()) {
            None => adapters.swap_remove(0),
            Some(sel) => {
                let names: Vec<String> =
                    adapters.iter().enumerate().map(|(i, a)| format!("{i}: {}", describe(&a.get_info()))).collect();
                let pos = match sel.parse::<usize>() {
                    Ok(i) if i < adapters.len() => Some(i),
                    _ => {
                        let s = sel.to_lowercase();
                        adapters.iter().position(|a| a.get_info().name.to_lowercase().contains(&s))
                    }
                };
                let Some(pos) = pos else { bail!("no GPU adapter matches {sel:?}; available: {}", names.join("; ")) };
                adapters.swap_remove(pos)
            }
        };
        let info = adapter.get_info();
        let wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::PASSTHROUGH_SHADERS
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let coop_matrix = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter.cooperative_matrix_properties()
        } else {
            Vec::new()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("glm-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: the only experimental feature requested is cooperative matrices, used by one
            // kernel (matmul_coop) that is checked against the plain matmul before it is trusted.
            experimental_features: unsafe { wgpu::ExperimentalFeatures::enabled() },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("cannot open a device on {}", describe(&info)))?;
        Ok(Self { adapter_info: info, device, queue, limits, features, coop_matrix })
    }

    /// The subgroup size, where the adapter has subgroups and they always have the same size.
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let i = &self.adapter_info;
        (self.features.contains(wgpu::Features::SUBGROUP) && i.subgroup_min_size == i.subgroup_max_size)
            .then_some(i.subgroup_min_size)
    }

    pub fn describe(&self) -> String {
        describe(&self.adapter_info)
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).context("GPU device lost")?;
        Ok(())
    }
}

pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}
