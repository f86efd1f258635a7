//! Sweeps the matvec kernel's tiling (threads per workgroup × rows per workgroup) for each quantized
//! type at GLM-4.7-Flash's shapes, reporting GB/s of weights read. Run on the target GPU:
//! `cargo bench --bench matvec` (criterion prints time and throughput per tiling).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glm_wgpu::gpu::{GpuContext, GpuWeight, KernelCache};
use glm_wgpu::kernels::{matvec_tiled, MatrixOf, MatvecArgs, Output, Tiling};
use glm_wgpu::model::TensorData;
use glm_wgpu::quant::{self, GgmlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// (name, experts, rows, cols, routed gate/up pair): the real model's matrices.
const SHAPES: [(&str, usize, usize, usize, bool); 4] = [
    ("attn_q_a 768x2048", 1, 768, 2048, false),
    ("attn_output 2048x5120", 1, 2048, 5120, false),
    ("dense ffn_gate 10240x2048", 1, 10240, 2048, false),
    ("moe gate+up 4 of 64 experts 1536x2048", 64, 1536, 2048, true),
];

const TYPES: [GgmlType; 4] = [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0, GgmlType::BF16];

const TILINGS: [(u32, u32); 9] =
    [(64, 1), (64, 2), (64, 4), (128, 2), (128, 4), (128, 8), (256, 4), (256, 8), (256, 16)];

/// Launches per submission: the GPU's time dominates the per-submit cost.
const BATCH: u64 = 200;

fn weight(ctx: &GpuContext, rng: &mut StdRng, t: GgmlType, shape: Vec<usize>) -> GpuWeight {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-0.05..0.05)).collect();
    let bytes = quant::quantize(t, &values).unwrap();
    GpuWeight::upload(ctx, "w", &TensorData { ggml_type: t, shape, bytes: Cow::Owned(bytes) }).unwrap()
}

fn sweep(c: &mut Criterion) {
    let ctx = GpuContext::new(None).expect("a GPU adapter");
    eprintln!("gpu: {}", ctx.describe());
    let mut rng = StdRng::seed_from_u64(0);
    for (name, experts, rows, cols, routed) in SHAPES {
        for t in TYPES {
            let shape = if experts > 1 { vec![experts, rows, cols] } else { vec![rows, cols] };
            let gate = weight(&ctx, &mut rng, t, shape.clone());
            let up = routed.then(|| weight(&ctx, &mut rng, t, shape));
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let x = ctx.storage_init("x", bytemuck::cast_slice(&x)).unwrap();
            let slots = if routed { 4 } else { 1 };
            let y = ctx.storage("y", (rows * slots * 4) as u64).unwrap();
            let route: Vec<u32> =
                [3, 17, 42, 60, 0, 0, 0, 0].into_iter().chain([0.4f32; 8].map(f32::to_bits)).collect();
            let route = ctx.storage_init("route", bytemuck::cast_slice(&route)).unwrap();
            let mut group = c.benchmark_group(format!("matvec {name} {}", t.name()));
            group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(10);
            for (wg, rows_per_wg) in TILINGS {
                let tiling = Tiling { wg, rows: rows_per_wg };
                let mut kc = KernelCache::new(false);
                let args = MatvecArgs {
                    w: &gate,
                    up: up.as_ref(),
                    matrix: if routed { MatrixOf::Routed } else { MatrixOf::Single },
                    out: Output::Store,
                    slots: slots as u32,
                    x_stride: 0,
                    y_stride: rows as u32,
                    x: &x,
                    y: &y,
                    route: &route,
                };
                let d = matvec_tiled(&ctx, &mut kc, args, tiling).unwrap();
                group.throughput(Throughput::Bytes(d.weight_bytes));
                group.bench_function(BenchmarkId::from_parameter(format!("wg{wg}x{rows_per_wg}")), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(BATCH);
                            let mut enc = ctx.device.create_command_encoder(&Default::default());
                            {
                                let mut pass = enc.begin_compute_pass(&Default::default());
                                (0..n).for_each(|_| d.record(&mut pass));
                            }
                            ctx.queue.submit([enc.finish()]);
                            left -= n;
                        }
                        ctx.wait().unwrap();
                        start.elapsed()
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, sweep);
criterion_main!(benches);
