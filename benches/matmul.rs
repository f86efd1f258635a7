//! Sweeps the prefill matmul's tiling (chunks per lane × rows per team × threads per workgroup) for
//! a 512-token chunk at GLM-4.7-Flash's shapes, reporting multiply-adds per second; where the adapter
//! has cooperative matrices, also `matmul_coop`'s tilings (`coop_<rows>x<inputs>_bk<columns>` on f32
//! rows; `coop_engine` is the one the engine picks). Run on the target GPU: `cargo bench --bench
//! matmul` (`engine` is the tiling `MatmulTiling::for_rows` picks).
//! The inputs are prepared once (`input_rows`); only the products are timed, one dispatch per
//! matrix copy or expert group, several per iteration so the timing is not one launch.

mod common;

use common::time_launches;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glm_wgpu::gpu::{Dispatch, GpuContext, GpuWeight, KernelCache};
use glm_wgpu::kernels::input_rows::{input_rows, InputRows};
use glm_wgpu::kernels::matmul::{matmul, MatmulArgs, MatmulInput, MatmulTiling, Tiles};
use glm_wgpu::kernels::matmul_coop::{self, matmul_coop, CoopTiling};
use glm_wgpu::kernels::moe_group::{moe_group, Grouping};
use glm_wgpu::kernels::Step;
use glm_wgpu::model::TensorData;
use glm_wgpu::quant::{self, GgmlType};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::time::Duration;

const CHUNK: usize = 512;
const EXPERTS: usize = 65;
const SLOTS: usize = 5;
const COPIES: usize = 8;

/// (name, type, rows, cols, experts (1: dense), gate+up). The expert down pass is Q4_K in most
/// layers of a Q4_K_M file and Q6_K in llama.cpp's `use_more_bits` ones: both are swept.
const SHAPES: [(&str, GgmlType, usize, usize, usize, bool); 5] = [
    // The absorbed query's q_lat rows (Q8_0 for quantized files).
    ("attn_q_lat 10240x768", GgmlType::Q8_0, 10240, 768, 1, false),
    ("attn_output 2048x5120", GgmlType::Q4K, 2048, 5120, 1, false),
    ("exps gate+up 5 of 65 1536x2048", GgmlType::Q4K, 1536, 2048, EXPERTS, true),
    ("exps down 5 of 65 2048x1536", GgmlType::Q4K, 2048, 1536, EXPERTS, false),
    ("exps down 5 of 65 2048x1536", GgmlType::Q6K, 2048, 1536, EXPERTS, false),
];

/// Cooperative tilings: (subgroups along rows, along inputs, 16-input blocks per subgroup, columns
/// per step).
const COOP_TILINGS: [(u32, u32, u32, u32); 5] =
    [(2, 2, 2, 64), (2, 2, 1, 64), (4, 1, 2, 32), (4, 1, 2, 64), (4, 1, 1, 32)];

/// (chunks per lane, rows per team, threads per workgroup)
const TILINGS: [(u32, u32, u32); 8] =
    [(4, 2, 64), (8, 2, 64), (16, 2, 64), (16, 3, 64), (16, 4, 64), (16, 3, 128), (32, 3, 64), (16, 1, 64)];

fn weight(ctx: &GpuContext, rng: &mut StdRng, t: GgmlType, shape: &[usize]) -> GpuWeight {
    let values: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random_range(-0.05..0.05)).collect();
    let bytes = quant::quantize(t, &values).unwrap();
    GpuWeight::upload(ctx, "w", &TensorData { ggml_type: t, shape: shape.to_vec(), bytes: Cow::Owned(bytes) }).unwrap()
}

fn sweep(c: &mut Criterion) {
    let ctx = GpuContext::new(None).expect("a GPU adapter");
    eprintln!("gpu: {}", ctx.describe());
    let mut rng = StdRng::seed_from_u64(0);
    let step = ctx.uniform("step", bytemuck::bytes_of(&Step::chunk(0, CHUNK)));
    // A route per token: 4 distinct experts and the shared one (64), grouped once.
    let mut route = vec![0u32; CHUNK * 16];
    for t in 0..CHUNK {
        let mut ids: Vec<u32> = (0..64).collect();
        ids.shuffle(&mut rng);
        route[t * 16..t * 16 + 4].copy_from_slice(&ids[..4]);
        route[t * 16 + 4] = 64;
        route[t * 16 + 8..t * 16 + 13].copy_from_slice(&[0.2f32.to_bits(); 5]);
    }
    let rb = ctx.storage_init("route", bytemuck::cast_slice(&route)).unwrap();
    let mut kc = KernelCache::new(false);
    // The chunk's entries grouped by expert in tiles of `tile`: grouping, entries, tile list.
    let mut group = |tile: u32| {
        let g = Grouping { chunk: CHUNK as u32, slots: SLOTS as u32, n_mat: EXPERTS as u32, tile };
        let entries = ctx.storage("entries", g.entries() as u64 * 4).unwrap();
        let slot_entry = ctx.storage("slot_entry", g.entries() as u64 * 4).unwrap();
        let tiles = ctx.storage("tiles", g.tile_words() as u64 * 4).unwrap();
        let d = moe_group(&ctx, &mut kc, g, [&step, &rb, &entries, &slot_entry, &tiles]).unwrap();
        ctx.run(&[&d]).unwrap();
        (g, entries, tiles)
    };
    let (g, entries, tiles) = group(MatmulTiling::INPUTS);
    let coop = matmul_coop::supported(&ctx).is_ok();
    let coop_groups: Vec<_> = if coop { [16, 32, 64].into_iter().map(|t| (t, group(t))).collect() } else { Vec::new() };

    for (name, t, rows, cols, experts, glu) in SHAPES {
        let grouped = experts > 1;
        let shape = if grouped { vec![experts, rows, cols] } else { vec![rows, cols] };
        let copies = if grouped { 1 } else { COPIES };
        let gate: Vec<GpuWeight> = (0..copies).map(|_| weight(&ctx, &mut rng, t, &shape)).collect();
        let up: Vec<GpuWeight> =
            if glu { (0..copies).map(|_| weight(&ctx, &mut rng, t, &shape)).collect() } else { Vec::new() };
        // Gate/up take token rows, the down its entries' rows.
        let in_rows = if grouped && !glu { g.entries() as usize } else { CHUNK };
        let x: Vec<f32> = (0..in_rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let xb = ctx.storage_init("x", bytemuck::cast_slice(&x)).unwrap();
        let prepared = InputRows::new(&ctx, in_rows, in_rows * cols).unwrap();
        let prep =
            input_rows(&ctx, &mut kc, in_rows as u32, cols as u32, cols as u32, None, true, &xb, &prepared).unwrap();
        ctx.run(&[&prep]).unwrap();
        let out_rows = if grouped { g.entries() as usize } else { CHUNK };
        let y = ctx.storage("y", (out_rows * rows * 4) as u64).unwrap();
        let macs = (out_rows * rows * cols * copies * if glu { 2 } else { 1 }) as u64;
        let mut bench = c.benchmark_group(format!("matmul {name} {} x {CHUNK} tokens", t.name()));
        bench.warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_millis(600)).sample_size(10);
        bench.throughput(Throughput::Elements(macs));
        // Copy i's product over `x`: token tiles of `inputs` rows, or the expert tiles of `list`.
        let product = |i: usize, x, (list, entries, tiles): (&Grouping, _, _), inputs: u32| MatmulArgs {
            w: &gate[i],
            up: up.get(i),
            step: &step,
            x,
            y: &y,
            y_stride: rows as u32,
            add: false,
            tiles: if grouped { Tiles::Grouped { tiles, entries, of_token: glu } } else { Tiles::Tokens },
            max_tiles: if grouped { list.max_tiles() } else { (CHUNK as u32).div_ceil(inputs) },
        };
        let engine = MatmulTiling::for_rows(&ctx, gate[0].chunks_per_row() as u32);
        let tilings = std::iter::once(("engine".to_string(), engine)).chain(TILINGS.iter().map(|&(per, r, wg)| {
            let lanes = 1 << (gate[0].chunks_per_row() as u32 / per).max(1).ilog2().min(4);
            (format!("per{per}_rows{r}_wg{wg}"), MatmulTiling { lanes, teams: (wg / lanes).max(1), rows: r, ..engine })
        }));
        for (label, tiling) in tilings {
            let launches: Vec<Dispatch> = (0..copies)
                .map(|i| {
                    let a = product(i, MatmulInput::Int8(&prepared), (&g, &entries, &tiles), MatmulTiling::INPUTS);
                    matmul(&ctx, &mut kc, a, tiling).unwrap()
                })
                .collect();
            time_launches(&mut bench, &ctx, &label, &launches);
        }
        let coop_engine = CoopTiling::ENGINE;
        let coop_tilings = std::iter::once(("coop_engine".to_string(), coop_engine)).chain(COOP_TILINGS.iter().map(
            |&(gm, gn, sn, bk)| {
                let t = CoopTiling { gm, gn, sn, bk };
                (format!("coop_{}x{}_bk{bk}", t.rows(), t.inputs()), t)
            },
        ));
        for (label, tiling) in coop_tilings.filter(|_| coop) {
            let (cg, centries, ctiles) = &coop_groups.iter().find(|(t, _)| *t == tiling.inputs()).unwrap().1;
            let launches: Result<Vec<Dispatch>, _> = (0..copies)
                .map(|i| {
                    let x = MatmulInput::F32 { x: &xb, stride: cols as u32 };
                    matmul_coop(&ctx, &mut kc, product(i, x, (cg, centries, ctiles), tiling.inputs()), tiling)
                })
                .collect();
            match launches {
                Ok(launches) => time_launches(&mut bench, &ctx, &label, &launches),
                Err(e) => eprintln!("{label}: {e:#}"),
            }
        }
        bench.finish();
    }
}

criterion_group!(benches, sweep);
criterion_main!(benches);
