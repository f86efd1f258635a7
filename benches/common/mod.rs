//! What the criterion sweeps share.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use glm_wgpu::gpu::{Dispatch, GpuContext};
use std::time::Instant;

/// Times `launches` recorded into one pass and submitted once per iteration, as `label` in `group`.
pub fn time_launches(group: &mut BenchmarkGroup<WallTime>, ctx: &GpuContext, label: &str, launches: &[Dispatch]) {
    group.bench_function(BenchmarkId::from_parameter(label), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ctx.submit(launches);
            }
            ctx.wait().unwrap();
            start.elapsed()
        })
    });
}
