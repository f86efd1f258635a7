//! The Metal matvec kernel (native_msl/matvec.metal with route_choice.metal, inputs.metal and
//! formats.metal) run whole on the CPU against its WGSL twin on the test adapter: for each variant the
//! engine builds (every weight format, norm folded, stacked q_a + kv_a (also rounding q_a's output for
//! the normalised query over it), dense gate/up, the attention output storing router partials and the
//! experts choosing from them, per-head,
//! per-head merging the attention's splits, residual add, experts chosen in the pass from sigmoid or softmax logits with a prepared or a
//! normalised input, routed sum), the WGSL
//! dispatch runs on the GPU, and native_msl/check/matvec_harness.cpp runs the kernel's Metal source on
//! copies of the same buffers, its threadgroups as threads with barriers and simdgroup shuffles
//! emulated. Every buffer must come out the same: expert ids exactly, floats to 1e-4 of the largest
//! output (the sums run in another order). What this cannot show: that Metal's compiler and an Apple
//! GPU compute the same (no Metal on Linux).

mod common;

use glm_wgpu::gpu::{Dispatch, GpuContext, GpuWeight, KernelCache};
use glm_wgpu::kernels::router::RouteChoice;
use glm_wgpu::kernels::{
    matvec, prepared_bytes, prepared_floats, router_partials_bytes, ChooseRoute, InputNorm, MatrixOf, MatvecArgs,
    Output, RouterPartials, Stacked, Step, PARTIAL_ROWS,
};
use glm_wgpu::model::{Gating, ModelConfig, TensorData};
use glm_wgpu::quant::{self, activations, GgmlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binding of the route buffer: expert ids in words [0, 8).
const ROUTE: usize = 3;

fn random(rng: &mut StdRng, n: usize, amp: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-amp..amp)).collect()
}

fn weight(ctx: &GpuContext, rng: &mut StdRng, t: GgmlType, shape: &[usize]) -> GpuWeight {
    let values = random(rng, shape.iter().product(), 0.1);
    let bytes = quant::quantize(t, &values).unwrap();
    GpuWeight::upload(ctx, "w", &TensorData { ggml_type: t, shape: shape.to_vec(), bytes: Cow::Owned(bytes) }).unwrap()
}

fn floats(ctx: &GpuContext, rng: &mut StdRng, n: usize, amp: f32) -> wgpu::Buffer {
    ctx.storage_init("f", bytemuck::cast_slice(&random(rng, n, amp))).unwrap()
}

fn words(ctx: &GpuContext, b: &wgpu::Buffer) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(&ctx.read_buffer(b, 0, b.size()).unwrap())
}

/// The harness compiled for one composed Metal source.
fn harness(dir: &Path, msl: &str, k: usize) -> PathBuf {
    let src = dir.join(format!("matvec{k}.metal"));
    std::fs::write(&src, msl).unwrap();
    let exe = dir.join(format!("matvec{k}"));
    common::metal_cpu_program("matvec_harness.cpp", &exe, &[format!("-DMSL_SOURCE=\"{}\"", src.display())]);
    exe
}

/// Runs `d` on the GPU and its Metal twin on the CPU from the same buffers; compares what each wrote.
fn compare(ctx: &GpuContext, dir: &Path, name: &str, k: usize, d: &Dispatch) {
    let msl = d.kernel.msl.as_deref().unwrap_or_else(|| panic!("{name}: no Metal twin"));
    let before: Vec<Vec<u32>> = d.bound.buffers.iter().map(|b| words(ctx, b)).collect();
    ctx.run(&[d]).unwrap();
    let gpu: Vec<Vec<u32>> = d.bound.buffers.iter().map(|b| words(ctx, b)).collect();

    let mut input = Vec::new();
    for b in &before {
        input.extend((b.len() as u32).to_le_bytes());
        input.extend(b.iter().flat_map(|w| w.to_le_bytes()));
    }
    input.extend(d.groups.iter().flat_map(|g| g.to_le_bytes()));
    let mut child = Command::new(harness(dir, msl, k)).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name}: harness exit {:?}", out.status);
    let mut cpu: Vec<u32> = out.stdout.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();

    let mut written = 0;
    for (i, (b, g)) in before.iter().zip(&gpu).enumerate() {
        let c: Vec<u32> = cpu.drain(..b.len()).collect();
        // A binding the kernel leaves unused gets another binding's buffer; the harness has a copy.
        let alias = d.bound.buffers[..i].contains(&d.bound.buffers[i]);
        if alias || (g == b && c == *b) {
            continue;
        }
        written += 1;
        let exact = if i == ROUTE { 8 } else { 0 };
        assert_eq!(c[..exact], g[..exact], "{name}: binding {i}, expert ids (Metal on the CPU vs WGSL)");
        let f = |w: &u32| f32::from_bits(*w);
        let scale = g[exact..].iter().map(|w| f(w).abs()).fold(0f32, f32::max).max(1e-30);
        for (j, (cw, gw)) in c.iter().zip(g).enumerate().skip(exact) {
            let (cv, gv) = (f(cw), f(gw));
            assert!(
                cw == gw || (cv - gv).abs() <= 1e-4 * scale,
                "{name}: binding {i} word {j}: Metal on the CPU {cv}, WGSL {gv} (largest {scale})"
            );
        }
    }
    assert!(written > 0, "{name}: the kernel wrote nothing");
}

#[test]
fn metal_matvec_on_the_cpu_matches_wgsl() {
    let ctx =
        GpuContext::new(None).unwrap_or_else(|e| panic!("this test needs a GPU adapter for the WGSL twin: {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut kc = KernelCache::default();
    let mut k = 0;
    let mut check = |name: &str, d: Dispatch| {
        compare(&ctx, dir.path(), name, k, &d);
        k += 1;
    };
    let cols = 512;
    let x = floats(&ctx, &mut rng, cols, 3.0);
    let gnorm = floats(&ctx, &mut rng, cols, 2.0);
    let route = ctx.storage("route", 64).unwrap();
    let norm = |w| Some(InputNorm { weight: w, eps: 1e-5 });

    // q_a + kv_a: two matrices of one normalised input, int8 products.
    let (wa, wb) =
        (weight(&ctx, &mut rng, GgmlType::Q8_0, &[70, cols]), weight(&ctx, &mut rng, GgmlType::Q4K, &[40, cols]));
    let (ya, yb) = (ctx.storage("ya", 70 * 4).unwrap(), ctx.storage("yb", 40 * 4).unwrap());
    let args = MatvecArgs {
        stacked: Some(Stacked { w: &wb, y: &yb }),
        norm: norm(&gnorm),
        ..MatvecArgs::new(&wa, &x, &ya, &route, true)
    };
    check("stacked Q8_0 + Q4_K, norm, int8", matvec(&ctx, &mut kc, args).unwrap());
    // The same storing q_a's output rounded for the absorbed query (its norm applied), then the
    // query's stacked product over it, taking the rms from the chunks' sums of squares.
    let (wa, q_norm) = (weight(&ctx, &mut rng, GgmlType::Q8_0, &[64, cols]), floats(&ctx, &mut rng, 64, 2.0));
    let rounded_qa = ctx.storage("rounded qa", prepared_bytes(64)).unwrap();
    let args = MatvecArgs {
        stacked: Some(Stacked { w: &wb, y: &yb }),
        norm: norm(&gnorm),
        round_output: true,
        round_norm: Some(&q_norm),
        ..MatvecArgs::new(&wa, &x, &rounded_qa, &route, true)
    };
    check("stacked Q8_0 + Q4_K, norm, int8, W0 rounded for a norm", matvec(&ctx, &mut kc, args).unwrap());
    let (q_lat, q_rope) =
        (weight(&ctx, &mut rng, GgmlType::Q8_0, &[45, 64]), weight(&ctx, &mut rng, GgmlType::Q8_0, &[9, 64]));
    let (y_lat, y_rope) = (ctx.storage("y lat", 45 * 4).unwrap(), ctx.storage("y rope", 9 * 4).unwrap());
    let args = MatvecArgs {
        stacked: Some(Stacked { w: &q_rope, y: &y_rope }),
        norm: norm(&q_norm),
        prepared: true,
        ..MatvecArgs::new(&q_lat, &rounded_qa, &y_lat, &route, true)
    };
    check("stacked Q8_0 over a prepared input, norm from its chunks", matvec(&ctx, &mut kc, args).unwrap());

    // Every weight format in a plain product, with int8 inputs where the format takes them.
    for t in GgmlType::SUPPORTED {
        let w = weight(&ctx, &mut rng, t, &[33, cols]);
        let y = ctx.storage("y", 33 * 4).unwrap();
        let int8 = activations::takes_int8_input(t);
        check(
            &format!("{} store, int8 {int8}", t.name()),
            matvec(&ctx, &mut kc, MatvecArgs::new(&w, &x, &y, &route, int8)).unwrap(),
        );
    }

    // A dense gate/up pair with SiLU.
    let (g, u) =
        (weight(&ctx, &mut rng, GgmlType::Q8_0, &[50, cols]), weight(&ctx, &mut rng, GgmlType::Q8_0, &[50, cols]));
    let y = ctx.storage("y", 50 * 4).unwrap();
    let args = MatvecArgs { up: Some(&u), norm: norm(&gnorm), ..MatvecArgs::new(&g, &x, &y, &route, true) };
    check("dense gate/up Q8_0, norm, int8", matvec(&ctx, &mut kc, args).unwrap());

    // The attention output: f32 or int8 inputs, added to the residual.
    for (t, int8) in [(GgmlType::Q6K, true), (GgmlType::BF16, false), (GgmlType::Q5K, false)] {
        let w = weight(&ctx, &mut rng, t, &[37, cols]);
        let y = floats(&ctx, &mut rng, 37, 1.0);
        let args = MatvecArgs { out: Output::Add, ..MatvecArgs::new(&w, &x, &y, &route, int8) };
        check(&format!("{} add, int8 {int8}", t.name()), matvec(&ctx, &mut kc, args).unwrap());
    }

    // The attention output with the router folded into it (partial router sums of 8 groups of 32
    // rows), then an experts' gate/up pass choosing from them, its norm folded.
    let hidden = 8 * PARTIAL_ROWS;
    let tiny = ModelConfig {
        n_experts: 16,
        n_experts_used: 4,
        ..ModelConfig::from_hf_file(&common::fixture_dir().join("config.json")).unwrap()
    };
    let w = weight(&ctx, &mut rng, GgmlType::Q8_0, &[hidden, cols]);
    let router = weight(&ctx, &mut rng, GgmlType::F32, &[tiny.n_experts, hidden]);
    let (y, ffn_norm) = (floats(&ctx, &mut rng, hidden, 1.0), floats(&ctx, &mut rng, hidden, 2.0));
    let partials = ctx.storage("partials", router_partials_bytes(hidden, tiny.n_experts)).unwrap();
    let args = MatvecArgs {
        out: Output::Add,
        router_partials: Some(RouterPartials { router: &router, norm: &ffn_norm, out: &partials }),
        ..MatvecArgs::new(&w, &x, &y, &route, true)
    };
    // The GPU run inside the check leaves the partials of the new y for the choice below.
    check("Q8_0 add, router partials", matvec(&ctx, &mut kc, args).unwrap());
    let (gate, up) = (
        weight(&ctx, &mut rng, GgmlType::Q8_0, &[tiny.n_experts + 1, 32, hidden]),
        weight(&ctx, &mut rng, GgmlType::Q8_0, &[tiny.n_experts + 1, 32, hidden]),
    );
    let bias = floats(&ctx, &mut rng, tiny.n_experts, 0.5);
    let act = ctx.storage("act", 5 * 32 * 4).unwrap();
    let args = MatvecArgs {
        up: Some(&up),
        matrix: MatrixOf::Routed,
        choose: Some(ChooseRoute {
            choice: RouteChoice::new(&tiny, true).unwrap(),
            logits: &partials,
            bias: &bias,
            folded: true,
        }),
        slots: 5,
        y_stride: 32,
        norm: norm(&ffn_norm),
        ..MatvecArgs::new(&gate, &y, &act, &route, true)
    };
    check("experts gate/up Q8_0 choosing from router partials", matvec(&ctx, &mut kc, args).unwrap());

    // Per-head products (k_b): matrix i for slot i, f32 inputs.
    let heads = floats(&ctx, &mut rng, 3 * 96, 1.0);
    let w = weight(&ctx, &mut rng, GgmlType::Q8_0, &[3, 64, 96]);
    let y = ctx.storage("y", 3 * 64 * 4).unwrap();
    let args = MatvecArgs {
        matrix: MatrixOf::Slot,
        slots: 3,
        x_stride: 96,
        y_stride: 64,
        ..MatvecArgs::new(&w, &heads, &y, &route, false)
    };
    check("per-head Q8_0", matvec(&ctx, &mut kc, args).unwrap());

    // The per-head value product merging the attention's splits: 3 heads with room for 15 splits of
    // (max, sum, -, -) and 512 context floats, 13 in use (position 103, splits of 8), their maxima
    // rising so that each round of loads rescales what came before.
    let (splits, part) = (15, 4 + cols);
    let mut partials = Vec::new();
    for i in 0..3 * splits {
        let m = (i % splits) as f32 * 3.0 - 20.0 + rng.random_range(0.0..1.0);
        partials.extend([m, rng.random_range(0.5..2.0), 0.0, 0.0]);
        partials.extend(random(&mut rng, cols, 1.0));
    }
    let partials = ctx.storage_init("partials", bytemuck::cast_slice(&partials)).unwrap();
    let step = ctx.uniform("step", bytemuck::bytes_of(&Step { pos: 103, n: 1, split: 8, pad: 0 }));
    let w = weight(&ctx, &mut rng, GgmlType::Q4K, &[3, 64, cols]);
    // Also storing its output rounded for the attention output (round_output).
    for round_output in [false, true] {
        let y = ctx.storage("y", 3 * 64 * 4).unwrap();
        let args = MatvecArgs {
            matrix: MatrixOf::Slot,
            slots: 3,
            x_stride: (splits * part) as u32,
            y_stride: 64,
            merge: Some(&step),
            round_output,
            ..MatvecArgs::new(&w, &partials, &y, &route, false)
        };
        check(
            &format!("per-head Q4_K merging 13 splits, output rounded {round_output}"),
            matvec(&ctx, &mut kc, args).unwrap(),
        );
    }

    // The experts: gate/up choosing its routes (sigmoid with a prepared input, softmax with the
    // norm folded), then the routed down pass summing them into the residual.
    let tiny = ModelConfig {
        n_experts: 16,
        n_experts_used: 4,
        ..ModelConfig::from_hf_file(&common::fixture_dir().join("config.json")).unwrap()
    };
    let (rows, experts) = (48, tiny.n_experts + 1);
    let (gate, up) = (
        weight(&ctx, &mut rng, GgmlType::Q4K, &[experts, rows, cols]),
        weight(&ctx, &mut rng, GgmlType::Q4K, &[experts, rows, cols]),
    );
    let logits = floats(&ctx, &mut rng, tiny.n_experts, 2.0);
    let bias = floats(&ctx, &mut rng, tiny.n_experts, 0.5);
    let prepared = ctx.storage("prepared", prepared_bytes(cols)).unwrap();
    let router = weight(&ctx, &mut rng, GgmlType::F32, &[tiny.n_experts, cols]);
    let scratch = ctx.storage("router logits", tiny.n_experts as u64 * 4).unwrap();
    let prepare = MatvecArgs {
        norm: norm(&gnorm),
        prepare: Some(&prepared),
        ..MatvecArgs::new(&router, &x, &scratch, &route, true)
    };
    ctx.run(&[&matvec(&ctx, &mut kc, prepare).unwrap()]).unwrap();
    let act = ctx.storage("act", 5 * rows as u64 * 4).unwrap();
    for (gating, prepared_input) in [(Gating::Sigmoid, true), (Gating::Softmax, false)] {
        let choice = RouteChoice::new(&ModelConfig { gating, ..tiny.clone() }, true).unwrap();
        let args = MatvecArgs {
            up: Some(&up),
            matrix: MatrixOf::Routed,
            choose: Some(ChooseRoute { choice, logits: &logits, bias: &bias, folded: false }),
            slots: 5,
            y_stride: rows as u32,
            norm: (!prepared_input).then_some(InputNorm { weight: &gnorm, eps: 1e-5 }),
            prepared: prepared_input,
            ..MatvecArgs::new(&gate, if prepared_input { &prepared } else { &x }, &act, &route, true)
        };
        check(
            &format!("experts gate/up choosing ({gating:?}), prepared {prepared_input}"),
            matvec(&ctx, &mut kc, args).unwrap(),
        );
    }
    // Gate/up storing its output rounded (64 rows per expert), then the routed down pass over it.
    let (gate, up) = (
        weight(&ctx, &mut rng, GgmlType::Q8_0, &[experts, 64, cols]),
        weight(&ctx, &mut rng, GgmlType::Q8_0, &[experts, 64, cols]),
    );
    let choice = RouteChoice::new(&tiny, true).unwrap();
    let rounded = ctx.storage("rounded act", prepared_bytes(5 * 64)).unwrap();
    let args = MatvecArgs {
        up: Some(&up),
        matrix: MatrixOf::Routed,
        choose: Some(ChooseRoute { choice, logits: &logits, bias: &bias, folded: false }),
        slots: 5,
        y_stride: 64,
        prepared: true,
        round_output: true,
        ..MatvecArgs::new(&gate, &prepared, &rounded, &route, true)
    };
    let d = matvec(&ctx, &mut kc, args).unwrap();
    check("experts gate/up Q8_0 choosing, output rounded", d);
    let down = weight(&ctx, &mut rng, GgmlType::Q8_0, &[experts, 40, 64]);
    let y = floats(&ctx, &mut rng, 40, 1.0);
    let args = MatvecArgs {
        matrix: MatrixOf::Routed,
        out: Output::AddRoutedSum,
        slots: 5,
        x_stride: prepared_floats(64),
        prepared: true,
        ..MatvecArgs::new(&down, &rounded, &y, &route, true)
    };
    check("experts down Q8_0 over the rounded output, routed sum", matvec(&ctx, &mut kc, args).unwrap());

    let down = weight(&ctx, &mut rng, GgmlType::Q6K, &[experts, 64, rows.next_multiple_of(256)]);
    let act = floats(&ctx, &mut rng, 5 * rows.next_multiple_of(256), 1.0);
    let y = floats(&ctx, &mut rng, 64, 1.0);
    let args = MatvecArgs {
        matrix: MatrixOf::Routed,
        out: Output::AddRoutedSum,
        slots: 5,
        x_stride: rows.next_multiple_of(256) as u32,
        ..MatvecArgs::new(&down, &act, &y, &route, true)
    };
    check("experts down Q6_K, routed sum", matvec(&ctx, &mut kc, args).unwrap());
}
