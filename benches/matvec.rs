//! Sweeps the matvec kernel's tiling (lanes per row × rows per team × threads per workgroup) for the
//! quantized types of the synthetic Q4_K_M / Q8_0 files at GLM-4.7-Flash's shapes, reporting GB/s of
//! weights read. Run on the target GPU: `cargo bench --bench matvec` (criterion prints time and
//! throughput per tiling; `engine` is the tiling the engine picks).
//!
//! Each iteration runs the product over enough distinct copies of the weights (different buffers,
//! or different experts) to read ≥ 512 MiB, so the L2 cache cannot serve them as it would a single
//! matrix read over and over: the numbers are HBM numbers, with one dispatch per copy as in a token.
//! Inputs and outputs take the engine's forms: where the engine's product reads an input rounded
//! to int8 by the pass before (the absorbed query, the attention output, the experts, the LM head) so
//! does this one, and the experts' gate/up and q_a store their outputs rounded; tilings such a pass cannot take (rounded outputs
//! need whole 32-row chunks per workgroup) or the adapter refuses (threads) are skipped.
//!
//! Beside the tilings, `read` and `copy` are the rooflines at the same size (`wgsl/stream.wgsl`):
//! per launch of the engine's tiling, one dispatch reading (or moving: half read, half written) as
//! many bytes as the product reads, in one pass with the same barriers. A product far below
//! 4.24 TB/s but near `read` is bound by its dispatch's size, not by its kernel. `engine_overlapped`
//! and `read_overlapped` time the same launches with outputs of their own, so no barrier separates
//! them and the GPU may run them side by side: the kernel's streaming rate apart from each launch's
//! ramp and drain (noisier between runs than the serialised numbers).

mod common;

use common::time_launches;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glm_wgpu::gpu::{Dispatch, GpuContext, GpuWeight, KernelCache};
use glm_wgpu::kernels::stream::{stream, Stream};
use glm_wgpu::kernels::{
    matvec, matvec_tiled, prepare_input, prepared_bytes, prepared_floats, InputNorm, MatrixOf, MatvecArgs, Output,
    Tiling,
};
use glm_wgpu::model::TensorData;
use glm_wgpu::quant::{self, GgmlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::time::Duration;

/// How a shape is applied, as in the engine.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    /// One matrix.
    Dense,
    /// 4 of 64 experts, gate and up with SiLU.
    ExpertsGateUp,
    /// 4 of 64 experts summed with route weights.
    ExpertsDown,
}

/// (name, rows, cols, use, whether the engine's pass reads an input rounded by the pass before):
/// the real model's matrices.
const SHAPES: [(&str, usize, usize, Use, bool); 7] = [
    // Storing its output rounded for the absorbed query, with the query's norm applied.
    ("attn_q_a 768x2048", 768, 2048, Use::Dense, false),
    // The absorbed query (q_lat and the rope rows, stacked in one pass in the engine), over q_a's
    // rounded output.
    ("attn_q_b_k_b 11520x768", 11520, 768, Use::Dense, true),
    ("attn_output 2048x5120", 2048, 5120, Use::Dense, true),
    ("shexp gate 1536x2048", 1536, 2048, Use::Dense, false),
    // Over the router pass's prepared input, storing its output rounded for the down pass.
    ("exps gate+up 4 of 64 1536x2048", 1536, 2048, Use::ExpertsGateUp, true),
    ("exps down 4 of 64 2048x1536", 2048, 1536, Use::ExpertsDown, true),
    // The LM head: one dispatch per token, but the largest read (263 MB at Q6_K as repacked).
    ("output 151552x2048", 151552, 2048, Use::Dense, true),
];

const TYPES: [GgmlType; 3] = [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0];

/// (lanes, rows per team, threads per workgroup).
const TILINGS: [(u32, u32, u32); 20] = [
    (16, 4, 64),
    (32, 4, 32),
    (32, 2, 64),
    (32, 4, 64),
    (32, 4, 128),
    (32, 8, 64),
    (64, 1, 64),
    (64, 2, 64),
    (64, 4, 64),
    (64, 8, 64),
    (64, 2, 128),
    (64, 4, 128),
    (64, 4, 256),
    (128, 2, 128),
    (128, 4, 128),
    (256, 4, 256),
    (32, 4, 256),
    (16, 1, 512),
    (32, 2, 512),
    (64, 4, 512),
];

const BYTES_PER_ITER: u64 = 512 << 20;
const EXPERTS: usize = 64;

/// `copies` buffers holding the same random matrix (or stack of experts).
fn weights(ctx: &GpuContext, rng: &mut StdRng, t: GgmlType, rows: usize, cols: usize, u: Use) -> Vec<GpuWeight> {
    let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-0.05..0.05)).collect();
    let matrix = quant::quantize(t, &values).unwrap();
    let (bytes, shape, copies) = if u == Use::Dense {
        let copies = BYTES_PER_ITER.div_ceil(matrix.len() as u64).min(256) as usize;
        (matrix, vec![rows, cols], copies)
    } else {
        // Experts differ per dispatch instead (see `routes`): one stack suffices.
        (matrix.repeat(EXPERTS), vec![EXPERTS, rows, cols], 1)
    };
    let data = TensorData { ggml_type: t, shape, bytes: Cow::Owned(bytes) };
    (0..copies).map(|_| GpuWeight::upload(ctx, "w", &data).unwrap()).collect()
}

/// Route buffers choosing 4 different experts each, cycling through all 64.
fn routes(ctx: &GpuContext) -> Vec<wgpu::Buffer> {
    (0..EXPERTS / 4)
        .map(|i| {
            let ids = (0..8).map(|k| if k < 4 { (4 * i + k) as u32 } else { 0 });
            let words: Vec<u32> = ids.chain([0.3f32; 8].map(f32::to_bits)).collect();
            ctx.storage_init("route", bytemuck::cast_slice(&words)).unwrap()
        })
        .collect()
}

/// A route buffer for one dense launch (never read there, but bound read-write: a launch that shares
/// it with another waits for that one).
fn fresh_route(ctx: &GpuContext) -> wgpu::Buffer {
    ctx.storage("route", 64).unwrap()
}

fn sweep(c: &mut Criterion) {
    let ctx = GpuContext::new(None).expect("a GPU adapter");
    eprintln!("gpu: {}", ctx.describe());
    let mut rng = StdRng::seed_from_u64(0);
    let routes = routes(&ctx);
    for (name, rows, cols, u, prepared) in SHAPES {
        for t in TYPES {
            let gate = weights(&ctx, &mut rng, t, rows, cols, u);
            let up = (u == Use::ExpertsGateUp).then(|| weights(&ctx, &mut rng, t, rows, cols, u));
            let slots = if u == Use::Dense { 1 } else { 4 };
            let x_len = if u == Use::ExpertsDown { cols * slots } else { cols };
            let x: Vec<f32> = (0..x_len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let x = ctx.storage_init("x", bytemuck::cast_slice(&x)).unwrap();
            // The prepared input: a per-slot one (the down pass's) is the slots' chunks back to back,
            // as one input of all their values.
            let ones = ctx.storage_init("norm", bytemuck::cast_slice(&vec![1f32; x_len])).unwrap();
            let x8 = ctx.storage("x int8", prepared_bytes(x_len)).unwrap();
            let norm = InputNorm { weight: &ones, eps: 1e-5 };
            ctx.run(&[&prepare_input(&ctx, &mut KernelCache::new(false), x_len, norm, &x, &x8).unwrap()]).unwrap();
            let round_output = u == Use::ExpertsGateUp || name.starts_with("attn_q_a");
            let out_norm = ctx.storage_init("out norm", bytemuck::cast_slice(&vec![1f32; rows])).unwrap();
            let round_norm = (u == Use::Dense && round_output).then_some(&out_norm);
            let y_bytes = (rows * slots * 4) as u64;
            let y = ctx.storage("y", y_bytes).unwrap();
            let mut group = c.benchmark_group(format!("matvec {name} {}", t.name()));
            group.warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_millis(600)).sample_size(10);
            let reduce = Tiling::for_shape(&ctx, 1, 1, false).reduce;
            let tilings =
                std::iter::once(("engine".to_string(), None)).chain(TILINGS.iter().map(|&(lanes, rows, wg)| {
                    (format!("lanes{lanes}_rows{rows}_wg{wg}"), Some(Tiling { lanes, rows, teams: wg / lanes, reduce }))
                }));
            let mut skipped = Vec::new();
            let mut engine_bytes = Vec::new();
            for (label, tiling) in tilings {
                let mut kc = KernelCache::new(false);
                let n = if u == Use::Dense { gate.len() } else { routes.len() };
                let launch = |kc: &mut KernelCache, i: usize, y: &wgpu::Buffer, route: &wgpu::Buffer| {
                    let args = MatvecArgs {
                        up: up.as_ref().map(|up| &up[i % up.len()]),
                        matrix: if u == Use::Dense { MatrixOf::Single } else { MatrixOf::Routed },
                        out: if u == Use::ExpertsDown { Output::AddRoutedSum } else { Output::Store },
                        slots: slots as u32,
                        x_stride: match (u, prepared) {
                            (Use::ExpertsDown, true) => prepared_floats(cols),
                            (Use::ExpertsDown, false) => cols as u32,
                            _ => 0,
                        },
                        y_stride: rows as u32,
                        prepared,
                        round_output,
                        round_norm,
                        ..MatvecArgs::new(&gate[i % gate.len()], if prepared { &x8 } else { &x }, y, route, true)
                    };
                    match tiling {
                        None => matvec(&ctx, kc, args),
                        Some(tiling) => matvec_tiled(&ctx, kc, args, tiling),
                    }
                };
                let launches: Vec<Dispatch> =
                    match (0..n).map(|i| launch(&mut kc, i, &y, &routes[i % routes.len()])).collect() {
                        Ok(launches) => launches,
                        Err(e) if tiling.is_none() => panic!("{name} {}: the engine's tiling fails: {e:#}", t.name()),
                        Err(_) => {
                            skipped.push(label);
                            continue;
                        }
                    };
                group.throughput(Throughput::Bytes(launches.iter().map(|d| d.weight_bytes).sum()));
                time_launches(&mut group, &ctx, &label, &launches);
                if tiling.is_none() {
                    engine_bytes = launches.iter().map(|d| d.weight_bytes).collect();
                    // The same launches with outputs and routes of their own: no barrier between them,
                    // so they run side by side as far as the GPU allows.
                    let apart: Vec<Dispatch> = (0..n)
                        .map(|i| {
                            let y = ctx.storage("y", y_bytes).unwrap();
                            let route =
                                if u == Use::Dense { fresh_route(&ctx) } else { routes[i % routes.len()].clone() };
                            launch(&mut kc, i, &y, &route).unwrap()
                        })
                        .collect();
                    time_launches(&mut group, &ctx, "engine_overlapped", &apart);
                }
            }
            stream_rooflines(&ctx, &mut group, &engine_bytes);
            group.finish();
            if !skipped.is_empty() {
                eprintln!("{name} {}: not for this pass or adapter: {}", t.name(), skipped.join(", "));
            }
        }
    }
}

/// The roofline at the engine's bytes per launch: `read` reads each launch's bytes, `copy` moves them
/// (half read, half written), each launch from a region of its own of a 512 MiB source, so that HBM
/// serves them as it serves the weights.
fn stream_rooflines(
    ctx: &GpuContext,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    launch_bytes: &[u64],
) {
    let most = launch_bytes.iter().max().unwrap() / 16;
    let src_words = (BYTES_PER_ITER / 16).max(2 * most);
    let src = ctx.storage("stream source", src_words * 16).unwrap();
    let dst = ctx.storage("stream destination", most * 16).unwrap();
    let mut kc = KernelCache::new(false);
    let runs = [
        (Stream::Read, "read", 1, false),
        (Stream::Copy, "copy", 2, false),
        (Stream::Read, "read_overlapped", 1, true),
    ];
    for (how, label, share, apart) in runs {
        let mut start = 0;
        let launches: Vec<Dispatch> = launch_bytes
            .iter()
            .map(|&bytes| {
                let words = bytes / 16 / share;
                start = (start + words) % (src_words - words + 1);
                // A destination of its own (never written by a read) lifts the barrier between launches.
                let own = apart.then(|| ctx.storage("stream destination", words * 16).unwrap());
                stream(ctx, &mut kc, how, words, start, &src, own.as_ref().unwrap_or(&dst)).unwrap()
            })
            .collect();
        group.throughput(Throughput::Bytes(launch_bytes.iter().map(|&b| b / 16 / share * 16 * share).sum()));
        time_launches(group, ctx, label, &launches);
    }
}

criterion_group!(benches, sweep);
criterion_main!(benches);
