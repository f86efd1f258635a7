//! `wgsl/matvec.wgsl`: matrix-vector products for dense layers, attention heads and routed experts,
//! with an optional RMSNorm of the input folded in.

use super::format;
use super::router::{FoldedLogits, RouteChoice, FOLD_SLICES, ROUTE_CHOICE};
use super::team_reduce::Reduce;
use crate::gpu::native;
use crate::gpu::{compose, grid, Binding, Const, Dispatch, GpuContext, GpuWeight, KernelCache};
use crate::quant::{activations, GgmlType};
use anyhow::{ensure, Result};

/// How the threads of a workgroup share the rows: `teams` teams of `lanes` threads, each team
/// owning `rows` rows whose length its lanes split; and how a team sums its lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub lanes: u32,
    pub teams: u32,
    pub rows: u32,
    pub reduce: Reduce,
}

impl Tiling {
    /// The tiling for `items` chunks per output (a row's chunks, times the slots when they are
    /// summed), from the H200 sweeps (`cargo bench --bench matvec` and in the engine, BENCHMARKS.md):
    /// 128 or more items take one 256-lane team of 4 rows (the long attention output and summed
    /// expert downs: +30-65 % over 64 lanes), or of 1 row under 512 rows, so that the router's 64
    /// rows spread over 64 workgroups (+0.6 % tok/s over 16); gate/up pairs (which load two matrices)
    /// teams of up to 64 lanes, 4 rows each, 128 threads (+0.4 % tok/s over 64); matrices of 8192+
    /// rows 32 threads of teams of up to 32 lanes, 4 rows each (the absorbed query: +3 % tok/s over 2
    /// rows, +0.3 % over 64 threads), from 65536 rows 2 teams of up to 32 lanes, 8 rows each (the Q6_K
    /// LM head: 2.4 vs 1.7 TiB/s for 1 team of 64 lanes x 4 rows); other
    /// short rows teams of up to 64 lanes, 2 rows each, 64 threads (128 or 256 threads, or 1 or 4
    /// rows, were slower).
    pub fn for_shape(ctx: &GpuContext, items: u32, rows: u32, glu: bool) -> Tiling {
        let reduce = Reduce::for_adapter(ctx);
        if items >= 128 {
            return Tiling { lanes: 256, teams: 1, rows: if rows < 512 { 1 } else { 4 }, reduce };
        }
        let lanes = items.next_power_of_two().min(64);
        if glu {
            return Tiling { lanes, teams: (128 / lanes).max(1), rows: 4, reduce };
        }
        if rows >= 65536 {
            let lanes = lanes.min(32);
            return Tiling { lanes, teams: 64 / lanes, rows: 8, reduce };
        }
        if rows >= 8192 {
            let lanes = lanes.min(32);
            return Tiling { lanes, teams: (32 / lanes).max(1), rows: 4, reduce };
        }
        Tiling { lanes, teams: (64 / lanes).max(1), rows: 2, reduce }
    }

    /// `max_threads`: the adapter's limit on a workgroup's threads.
    pub fn validate(self, max_threads: u32) -> Result<()> {
        let wg = self.lanes * self.teams;
        ensure!(
            self.lanes.is_power_of_two() && self.teams >= 1 && (1..=8).contains(&self.rows) && wg <= max_threads,
            "matvec tiling {self:?}: lanes must be a power of two, 1-8 rows, at most {max_threads} threads"
        );
        if let Reduce::Subgroup(sg) = self.reduce {
            ensure!(
                sg.is_power_of_two() && wg.is_multiple_of(sg.min(wg)),
                "matvec tiling {self:?}: workgroup of {wg} is not whole subgroups of {sg}"
            );
        }
        Ok(())
    }
}

/// Which matrix of a 3-D weight a slot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixOf {
    /// A 2-D weight: one matrix.
    Single,
    /// Slot i uses matrix i (attention heads).
    Slot,
    /// Slot i uses the expert the router chose for it (or, with [`MatvecArgs::choose`], the
    /// expert this pass chooses).
    Routed,
}

/// The routes chosen by the pass itself from the router's logits (`wgsl/route_choice.wgsl`), in
/// every workgroup; workgroup 0 stores them in `route` for the passes after.
#[derive(Clone, Copy)]
pub struct ChooseRoute<'a> {
    pub choice: RouteChoice,
    /// The router's logits, or with `folded` the partial sums a `router_partials` pass stored over
    /// this pass's input (whose norm the pass folds in).
    pub logits: &'a wgpu::Buffer,
    pub bias: &'a wgpu::Buffer,
    pub folded: bool,
}

/// The router of the experts after an added product (the attention output), folded into it: each
/// workgroup of 32 rows stores its rows' share of every expert's logit and of the sum of squares
/// for the norm (`wgsl/matvec.wgsl`'s PARTIALS), which the gate/up pass's route choice totals.
#[derive(Clone, Copy)]
pub struct RouterPartials<'a> {
    /// f32 weights, one row per expert.
    pub router: &'a GpuWeight,
    /// The experts' input norm's weights.
    pub norm: &'a wgpu::Buffer,
    /// [`router_partials_bytes`].
    pub out: &'a wgpu::Buffer,
}

/// Rows of y per group of router partials.
pub const PARTIAL_ROWS: usize = 32;
/// Slices of a group's rows whose per-expert sums run in parallel, then are totalled.
const PARTIAL_SLICES: u32 = 8;

/// Whether router partials over `len` values are whole groups of PARTIAL_ROWS rows, in whole slices
/// of FOLD_SLICES groups (what the folded choice totals).
pub fn router_partials_fit(len: usize) -> bool {
    len.is_multiple_of(PARTIAL_ROWS) && (len / PARTIAL_ROWS).is_multiple_of(FOLD_SLICES as usize)
}

/// The size of the partial sums of a router of `experts` over `hidden` values.
pub fn router_partials_bytes(hidden: usize, experts: usize) -> u64 {
    (hidden / PARTIAL_ROWS * (experts + 1) * 4) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Store,
    /// Accumulate into y (residual connections).
    Add,
    /// Add the route-weighted sum over the slots into y (the routed experts' down projection).
    AddRoutedSum,
}

/// An RMSNorm applied to the input before the product: x / sqrt(mean(x²) + eps) * weight.
#[derive(Clone, Copy)]
pub struct InputNorm<'a> {
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

/// A second matrix applied to the same input in the same pass (its rows after `w`'s), writing its own output.
#[derive(Clone, Copy)]
pub struct Stacked<'a> {
    pub w: &'a GpuWeight,
    pub y: &'a wgpu::Buffer,
}

pub struct MatvecArgs<'a> {
    pub w: &'a GpuWeight,
    /// Only with a single matrix stored, without `up`.
    pub stacked: Option<Stacked<'a>>,
    /// The up projection of a gate/up pair: y = silu(w x) * (up x).
    pub up: Option<&'a GpuWeight>,
    pub norm: Option<InputNorm<'a>>,
    pub matrix: MatrixOf,
    /// Only with routed matrices stored.
    pub choose: Option<ChooseRoute<'a>>,
    pub out: Output,
    pub slots: u32,
    /// Floats between consecutive slots' inputs and outputs.
    pub x_stride: u32,
    pub y_stride: u32,
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub route: &'a wgpu::Buffer,
    /// Round the input to int8 where the weight format takes it ([`activations`]).
    pub int8: bool,
    /// Also store the input as the products see it (normalised, rounded to int8) in this buffer of
    /// [`prepared_bytes`], for later passes over the same input (one plain product of 32-value chunks).
    pub prepare: Option<&'a wgpu::Buffer>,
    /// `x` is an input stored by an earlier pass's `prepare` (one input for all slots, `x_stride`
    /// 0) or `round_output` (one per slot, back to back: `x_stride` = [`prepared_floats`] of a row);
    /// both matrices take int8 inputs. With `norm`, one stored by a `round_output` with `round_norm`:
    /// the norm's weights are applied, and its rms comes from the chunks' sums of squares.
    pub prepared: bool,
    /// Store y rounded to int8 by 32 rows, as a prepared input for the product that reads it next
    /// (slots back to back: `y_stride` = rows; the buffer [`prepared_bytes`] of all slots' rows), which
    /// then skips rounding it in each of its workgroups. Workgroups own whole 32-row chunks.
    pub round_output: bool,
    /// With `round_output`: the RMSNorm weights of the product that reads y (prepared, with `norm`),
    /// applied before the rounding, each chunk's Σ y² (before them) stored beside it. With `stacked`,
    /// only `w`'s output is rounded.
    pub round_norm: Option<&'a wgpu::Buffer>,
    /// `x` is the decode attention's partials, `x_stride` floats per head (one slot each), whose
    /// splits each workgroup merges first; the step uniform gives their number.
    pub merge: Option<&'a wgpu::Buffer>,
    /// With `out` = Add, a single matrix: also the router partials of the new y.
    pub router_partials: Option<RouterPartials<'a>>,
}

impl<'a> MatvecArgs<'a> {
    /// One plain product y = w x (one matrix, stored, no norm): the base the other forms update.
    pub fn new(
        w: &'a GpuWeight,
        x: &'a wgpu::Buffer,
        y: &'a wgpu::Buffer,
        route: &'a wgpu::Buffer,
        int8: bool,
    ) -> Self {
        MatvecArgs {
            w,
            stacked: None,
            up: None,
            norm: None,
            matrix: MatrixOf::Single,
            choose: None,
            out: Output::Store,
            slots: 1,
            x_stride: 0,
            y_stride: 0,
            x,
            y,
            route,
            int8,
            prepare: None,
            prepared: false,
            round_output: false,
            round_norm: None,
            merge: None,
            router_partials: None,
        }
    }

    /// The matrix bound as W1: the up projection, else the stacked matrix, else `w` itself.
    fn second(&self) -> &'a GpuWeight {
        self.up.or(self.stacked.map(|s| s.w)).unwrap_or(self.w)
    }
}

/// The merging variant's input (its step binding, workgroup array and merge).
const MATVEC_MERGE: &str = include_str!("../../wgsl/matvec_merge.wgsl");
const MATVEC_ROUND: &str = include_str!("../../wgsl/matvec_round.wgsl");
/// Splits whose loads a merging thread keeps in flight together.
const MERGE_UNROLL: u32 = 4;

/// Values of one chunk of a prepared input, as rounded to int8 (`wgsl/int8_input.wgsl`).
pub(crate) const PREP_CHUNK: usize = 32;
/// Words per chunk of a prepared input (a host constant of `wgsl/matvec.wgsl` and its Metal twin).
pub(crate) const PREP_WORDS: usize = 12;

/// The size of a prepared input of `len` values (PREP_WORDS words per chunk, then the norm's
/// scale, padded to a vec4).
pub fn prepared_bytes(len: usize) -> u64 {
    ((len.div_ceil(PREP_CHUNK) * PREP_WORDS + 4) * 4) as u64
}

/// The floats of the chunks of a prepared input of `len` values (a multiple of 32): the stride
/// between the slots of a per-slot prepared input.
pub fn prepared_floats(len: usize) -> u32 {
    (len / PREP_CHUNK * PREP_WORDS) as u32
}

/// Whether the product over `w` rounds its input to int8: when asked, for the formats that take it,
/// except per-head attention matrices.
fn int8_input(a: &MatvecArgs, w: &GpuWeight) -> bool {
    a.int8 && a.matrix != MatrixOf::Slot && activations::takes_int8_input(w.ggml_type)
}

/// Chunks of input a workgroup holds rounded for its teams: 6 KB of workgroup memory (48 bytes a
/// chunk), within WebGPU's 16 KB beside the reduction's and the route choice's.
const SHARED_IN_MAX_CHUNKS: usize = 128;

/// Whether the workgroup normalises and rounds its input once into workgroup memory, which its
/// teams then read as a prepared input, rather than each team all of it itself: one input rounded
/// in the pass for both matrices, the same for every slot (q_a + kv_a, the dense gate/up, the routed
/// gate/up after a folded router; formats that take int8 inputs chunk rows by 32, as a prepared input
/// does). H200, Q4_K_M at depth 0, q_a + kv_a at 64 x 8 x 4: 352.0 -> 367.8 tok/s (BENCHMARKS.md
/// session 15).
fn shared_input(a: &MatvecArgs) -> bool {
    int8_input(a, a.w)
        && int8_input(a, a.second())
        && !a.prepared
        && a.prepare.is_none()
        && a.merge.is_none()
        && a.x_stride == 0
        && a.out != Output::AddRoutedSum
        && a.matrix != MatrixOf::Slot
        && a.w.chunks_per_row() <= SHARED_IN_MAX_CHUNKS
}

/// A weight binding's format, and whether its product takes int8 inputs.
type Operand = (GgmlType, bool);

/// The host constants of the kernel, and its two weight bindings.
fn consts(a: &MatvecArgs, t: Tiling) -> (Vec<(&'static str, Const)>, [Operand; 2]) {
    let per_row = if a.up.is_some() { 2 } else { 1 };
    let second = a.second();
    let (int8_0, int8_1) = (int8_input(a, a.w), int8_input(a, second));
    let mut consts = vec![
        ("LANES", Const::U32(t.lanes)),
        ("TEAMS", Const::U32(t.teams)),
        ("ROWS", Const::U32(t.rows)),
        ("NV", Const::U32(t.rows * per_row + a.norm.is_some() as u32)),
        ("CHUNK_V4", Const::U32(format::chunk_vec4s(a.w.ggml_type))),
        ("MATRIX", Const::U32(if a.choose.is_some() { 3 } else { a.matrix as u32 })),
        ("GLU", Const::Bool(a.up.is_some())),
        ("OUT", Const::U32(a.out as u32)),
        ("NORM", Const::Bool(a.norm.is_some())),
        ("STACK", Const::Bool(a.stacked.is_some())),
        ("INT8", Const::Bool(int8_0 || int8_1)),
        ("PREPARE", Const::Bool(a.prepare.is_some())),
        ("PREPARED", Const::Bool(a.prepared)),
        ("ROUND", Const::Bool(a.round_output)),
        ("ROUND_NORM", Const::Bool(a.round_norm.is_some())),
        ("SHARED_IN", Const::Bool(shared_input(a))),
        ("IN_CHUNKS", Const::U32(if shared_input(a) { a.w.chunks_per_row() as u32 } else { 1 })),
        ("PREP_WORDS", Const::U32(PREP_WORDS as u32)),
        ("EPS", Const::F32(a.norm.map_or(0.0, |n| n.eps))),
        ("MERGE", Const::Bool(a.merge.is_some())),
        ("MERGED_V4", Const::U32(if a.merge.is_some() { a.w.row_len() as u32 / 4 } else { 1 })),
        ("MERGE_UNROLL", Const::U32(MERGE_UNROLL)),
    ];
    // A choice from router partials: their groups, the input's length and its norm's eps are this pass's.
    let folded = a.choose.is_some_and(|c| c.folded).then(|| FoldedLogits {
        groups: (a.w.row_len() / PARTIAL_ROWS) as u32,
        hidden: a.w.row_len() as u32,
        eps: a.norm.map_or(0.0, |n| n.eps),
    });
    consts.extend(RouteChoice::consts(a.choose.map(|c| c.choice), folded));
    consts.push(("PARTIALS", Const::Bool(a.router_partials.is_some())));
    consts.push(("PART_EXP", Const::U32(a.router_partials.map_or(1, |r| r.router.rows() as u32))));
    consts.push(("PART_SLICES", Const::U32(PARTIAL_SLICES)));
    (consts, [(a.w.ggml_type, int8_0), (second.ggml_type, int8_1)])
}

fn source(a: &MatvecArgs, t: Tiling) -> String {
    let (mut consts, [(t0, int8_0), (t1, int8_1)]) = consts(a, t);
    let (reduce, reduce_consts) = t.reduce.source();
    consts.extend(reduce_consts);
    let body = include_str!("../../wgsl/matvec.wgsl");
    let merge = if a.merge.is_some() { [super::STEP, MATVEC_MERGE].concat() } else { String::new() };
    let round = if a.round_output { MATVEC_ROUND } else { "" };
    compose(&consts, &[body, &merge, round, super::INT8_INPUT, reduce, ROUTE_CHOICE].concat())
        + &format::instantiate_dot(t0, "0", int8_0)
        + &format::instantiate_dot(t1, "1", int8_1)
}

/// The hand-written Metal twin (`native_msl/matvec.metal`) of the same product, where both weight
/// formats have an MSL implementation and the workgroup is whole simdgroups of 32.
fn msl_source(consts: &[(&str, Const)], formats: [Operand; 2]) -> Option<String> {
    let names = formats.map(|(t, _)| native::msl_format(t));
    let [Some(f0), Some(f1)] = names else { return None };
    // The pass that prepares an input for later passes (the router's) stays WGSL.
    if consts.iter().any(|(n, c)| *n == "PREPARE" && matches!(c, Const::Bool(true))) {
        return None;
    }
    let wg = consts.iter().filter(|(n, _)| ["LANES", "TEAMS"].contains(n)).try_fold(1, |p, (_, c)| match c {
        Const::U32(v) => Some(p * v),
        _ => None,
    })?;
    let defines =
        [("INT8_0", Const::Bool(formats[0].1)), ("INT8_1", Const::Bool(formats[1].1)), ("WG", Const::U32(wg))];
    (wg % 32 == 0).then(|| {
        native::msl_compose(
            &[consts, &defines].concat(),
            &[("FORMAT0", f0), ("FORMAT1", f1)],
            &[include_str!("../../native_msl/route_choice.metal"), include_str!("../../native_msl/matvec.metal")]
                .concat(),
        )
    })
}

pub fn matvec(ctx: &GpuContext, cache: &mut KernelCache, a: MatvecArgs) -> Result<Dispatch> {
    let items = a.w.chunks_per_row() as u32 * if a.out == Output::AddRoutedSum { a.slots } else { 1 };
    let mut tiling = Tiling::for_shape(ctx, items, a.w.rows() as u32, a.up.is_some());
    if a.merge.is_some() {
        // Twice the threads merging the splits, half the workgroups reading them (H200, v_b at
        // depth 0: 128 threads 291.1 tok/s, 64 288.3, 256 290.9; 4 rows 280.4).
        tiling.teams = (128 / tiling.lanes).max(1);
    }
    if a.prepared && a.up.is_none() && a.w.rows() >= 8192 {
        // Tall products over a prepared input (the absorbed query, the LM head): with no rounding
        // left per team, more teams per workgroup pay. H200, Q4_K_M tok/s at depth 0 with the
        // query's tiling as (lanes, teams, rows): 32 x 1 x 4 (the shape's rule) 340.0 / 342.1, 32 x 4 x 2
        // 346.6 / 346.5, 32 x 8 x 2 347.7, 32 x 2 x 2 344.7, 16 x 8 x 2 344.2, 32 x 8 x 1 342.2; the LM head
        // with it in the profile: 32 x 2 x 8 (the shape's rule) 82.3 us, 32 x 4 x 2 67.6, 32 x 2 x 2 69.0,
        // 16 x 32 x 1 73.8, 64 x 2 x 2 77.3 (BENCHMARKS.md session 14).
        tiling = Tiling { lanes: tiling.lanes.min(32), teams: 4, rows: 2, ..tiling };
    }
    if a.prepared && a.out == Output::Add && a.matrix == MatrixOf::Single && items >= 128 {
        // The attention output: H200, Q4_K_M tok/s at depth 0, 256 lanes x 1 x 4 rows (the shape's
        // rule) 349.3 / 349.0, x 2 rows 352.4 / 352.1, 64 x 2 x 1 351.6 / 351.7, 64 x 1 x 1 350.4, 128 x 1 x 2
        // 348.1 (BENCHMARKS.md session 14).
        tiling.rows = tiling.rows.min(2);
    }
    if a.round_output {
        // Workgroups of 32 rows. Gate/up pairs over a prepared input, or routed ones rounding their
        // input once per workgroup (after a folded router), in 32 teams of up to 16 lanes, one row
        // each (512 threads), where the adapter allows; a single product rounding its own input once
        // per workgroup (q_a) as below; others (v_b, the dense gate/up) in more teams of the same
        // lanes and rows, at most 256 threads (when each team rounded its input itself, 32 teams
        // rounded it 32 times: the dense gate/up took 2.4x as long; it now rounds it once, and 512
        // threads are unmeasured for its single launch). H200, Q4_K_M tok/s
        // at depth 0 with the down pass over the rounded output (BENCHMARKS.md session 13): routed
        // gate/up 16 x 32 x 1 332.8, 32 x 16 x 2 331.8, 64 x 8 x 4 330.5, 32 x 32 x 1 320.3, 64 x 4 x 8
        // 319.8, 32 x 8 x 4 321.5; v_b 16 x 16 x 2 331.8, 16 x 32 x 2 330.9, 8 x 32 x 2 327.1, 16 x 32 x 1
        // 323.1.
        let max_threads = ctx.limits.max_compute_invocations_per_workgroup;
        let routed_once = a.matrix == MatrixOf::Routed && shared_input(&a);
        if a.up.is_some() && (a.prepared || routed_once) && max_threads >= 512 {
            tiling = Tiling { lanes: tiling.lanes.min(16), teams: 32, rows: 1, ..tiling };
        } else if a.up.is_none() && shared_input(&a) {
            // Each lane rounds one chunk of its workgroup's shared input (all 64 lanes), in up to
            // 1,024 threads: q_a + kv_a 64 x 16 x 2 374.2 / 374.4 / 374.8 tok/s, 32 x 32 x 1 373.8, 32 x 16
            // x 2 369.1, 16 x 32 x 1 369.2, 64 x 8 x 4 368.0 / 367.8, 128 x 8 x 4 366.5, 32 x 8 x 4 357.3, 64 x
            // 4 x 8 351.9 (H200, Q4_K_M, depth 0, BENCHMARKS.md session 15; each team rounding the input
            // itself, 64 x 8 x 4 was best at 341.2).
            let threads = max_threads.min(1024);
            let lanes = tiling.lanes.min(64).min(threads / 4);
            let teams = (threads / lanes).min(PREP_CHUNK as u32);
            tiling = Tiling { lanes, teams, rows: PREP_CHUNK as u32 / teams, ..tiling };
        } else {
            tiling.teams = (PREP_CHUNK as u32 / tiling.rows).max(1);
            tiling.lanes = tiling.lanes.min(256 / tiling.teams);
        }
    }
    if a.router_partials.is_some() {
        // Workgroups of 32 rows, one row a team: H200, Q4_K_M tok/s at depth 0, 32 x 32 x 1 375.9, 64 x 16 x 2
        // 371.4, 32 x 16 x 2 361.5 (373.2 / 372.7 with the router's own pass; BENCHMARKS.md session 15).
        let threads = ctx.limits.max_compute_invocations_per_workgroup.min(1024);
        let teams = PARTIAL_ROWS as u32;
        tiling = Tiling { lanes: (threads / teams).min(32), teams, rows: 1, ..tiling };
    }
    matvec_tiled(ctx, cache, a, tiling)
}

/// [`matvec`] with an explicit tiling (for the sweeps in `benches/`).
pub fn matvec_tiled(ctx: &GpuContext, cache: &mut KernelCache, a: MatvecArgs, tiling: Tiling) -> Result<Dispatch> {
    tiling.validate(ctx.limits.max_compute_invocations_per_workgroup)?;
    if let Some(up) = a.up {
        ensure!(
            up.ggml_type == a.w.ggml_type && up.shape == a.w.shape,
            "gate and up projections differ in type or shape ({} {:?} vs {} {:?})",
            a.w.ggml_type.name(),
            a.w.shape,
            up.ggml_type.name(),
            up.shape
        );
    }
    ensure!(
        !(a.up.is_some() && a.out == Output::AddRoutedSum),
        "a gate/up matvec cannot sum over routed slots (SiLU applies per expert)"
    );
    ensure!(
        a.choose.is_none() || (a.matrix == MatrixOf::Routed && a.out == Output::Store),
        "a pass that chooses its routes stores one product per routed slot"
    );
    if a.prepare.is_some() {
        ensure!(
            a.matrix == MatrixOf::Single
                && a.slots == 1
                && a.out == Output::Store
                && !a.prepared
                && a.stacked.is_none(),
            "a pass that prepares its input for later passes is one plain product (its second output is the prepared input)"
        );
        ensure!(
            a.w.row_len().is_multiple_of(PREP_CHUNK)
                && (PREP_CHUNK as u32).is_multiple_of(format::chunk_vec4s(a.w.ggml_type) * 4),
            "a prepared input is rounded by {PREP_CHUNK} values: rows of {} {} values do not split so",
            a.w.row_len(),
            a.w.ggml_type.name()
        );
    }
    if a.prepared {
        let second = a.second();
        ensure!(
            int8_input(&a, a.w) && int8_input(&a, second),
            "a prepared (int8) input needs matrices that take int8 inputs, not {} and {}",
            a.w.ggml_type.name(),
            second.ggml_type.name()
        );
        ensure!(
            a.norm.is_none() || (a.x_stride == 0 && a.slots == 1),
            "a prepared input with a norm (rounded by a pass that applied its weights) is one input of one slot"
        );
        ensure!(
            a.x_stride == 0 || a.x_stride == prepared_floats(a.w.row_len()),
            "a prepared input is one input of every slot (stride 0) or one per slot back to back (stride {}), not \
             stride {}",
            prepared_floats(a.w.row_len()),
            a.x_stride
        );
        ensure!(
            a.x_stride != 0 || a.out != Output::AddRoutedSum,
            "a sum over routed slots takes one prepared input per slot"
        );
    }
    if a.round_output {
        let rows = a.w.rows() as u32;
        ensure!(
            a.out == Output::Store && a.prepare.is_none() && (a.slots == 1 || a.y_stride == rows),
            "a product that rounds its output stores one product per slot, its slots back to back"
        );
        ensure!(
            rows.is_multiple_of(PREP_CHUNK as u32) && (tiling.teams * tiling.rows).is_multiple_of(PREP_CHUNK as u32),
            "rounding the output by {PREP_CHUNK} rows needs matrices and workgroups of whole chunks ({rows} rows, \
             {tiling:?})"
        );
        let need = prepared_bytes((a.slots * rows) as usize);
        ensure!(
            a.y.size() >= need,
            "a rounded output of {} x {rows} values needs {need} bytes, not {}",
            a.slots,
            a.y.size()
        );
    }
    ensure!(a.round_norm.is_none() || a.round_output, "a norm for a rounded output needs the output rounded");
    ensure!(
        !(a.norm.is_some() && a.out == Output::AddRoutedSum),
        "an input norm cannot apply to per-slot inputs that are summed"
    );
    let chunks = a.w.chunks_per_row() as u32;
    if let Some(st) = a.stacked {
        ensure!(
            a.up.is_none() && a.matrix == MatrixOf::Single && a.out == Output::Store && a.slots == 1,
            "a stacked matvec is one plain product per matrix"
        );
        ensure!(
            st.w.chunks_per_row() as u32 == chunks && st.w.n_matrices() == 1,
            "stacked matrices need rows of the same length"
        );
    }
    if a.norm.is_some() {
        ensure!(
            a.w.row_len() == chunks as usize * format::chunk_vec4s(a.w.ggml_type) as usize * 4,
            "a folded input norm needs rows of whole chunks ({} columns)",
            a.w.row_len()
        );
    }
    ensure!(
        a.merge.is_none()
            || (a.matrix == MatrixOf::Slot
                && a.out == Output::Store
                && a.up.is_none()
                && a.stacked.is_none()
                && a.norm.is_none()
                && !a.prepared),
        "a pass that merges the attention's splits is one stored product per head"
    );
    if let Some(r) = a.router_partials {
        let rows = a.w.rows();
        ensure!(
            a.out == Output::Add
                && a.matrix == MatrixOf::Single
                && a.slots == 1
                && a.stacked.is_none()
                && !a.round_output,
            "router partials follow one added product"
        );
        ensure!(
            r.router.ggml_type == GgmlType::F32 && r.router.row_len() == rows && r.router.n_matrices() == 1,
            "router partials need an f32 router over the product's {rows} rows, not {} {:?}",
            r.router.ggml_type.name(),
            r.router.shape
        );
        ensure!(
            router_partials_fit(rows)
                && (tiling.teams * tiling.rows) as usize == PARTIAL_ROWS
                && r.out.size() >= router_partials_bytes(rows, r.router.rows())
                && r.router.rows() < (tiling.lanes * tiling.teams) as usize,
            "router partials by {PARTIAL_ROWS} rows: {rows} rows, {tiling:?}, {} bytes",
            r.out.size()
        );
    }
    if a.choose.is_some_and(|c| c.folded) {
        let len = a.w.row_len();
        ensure!(
            a.norm.is_some() && router_partials_fit(len),
            "a choice from router partials needs the experts' norm folded and an input of whole slices of \
             {PARTIAL_ROWS}-row groups, not {len} values"
        );
    }
    ensure!(a.x_stride.is_multiple_of(4), "matvec input stride {} is not a multiple of 4", a.x_stride);
    let bindings = [
        Binding::Uniform,
        Binding::Read,
        Binding::ReadWrite,
        Binding::ReadWrite,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Uniform,
    ];
    // The step only where the splits are merged.
    let bindings = &bindings[..if a.merge.is_some() { 14 } else { 13 }];
    let (own, formats) = consts(&a, tiling);
    let msl = msl_source(&own, formats);
    let kernel = cache.get_with_msl(ctx, "matvec", source(&a, tiling), msl, bindings)?;
    let rows = a.w.rows() as u32;
    let per_group = tiling.rows * tiling.teams;
    let groups0 = rows.div_ceil(per_group);
    let rows1 = a.stacked.map_or(0, |s| s.w.rows() as u32);
    // A pass that prepares its input does so in one more workgroup.
    let [gx, gy] = grid(groups0 + rows1.div_ceil(per_group) + a.prepare.is_some() as u32);
    let params =
        [rows, chunks, a.x_stride / 4, a.y_stride, a.slots, gx, groups0, rows1, a.w.n_matrices() as u32, 0, 0, 0];
    let uniform = ctx.uniform("matvec params", bytemuck::cast_slice(&params));
    let up = a.second();
    // Without a norm the binding is never read; any buffer will do.
    let norm = a.norm.map_or(a.x, |n| n.weight);
    let y1 = a.stacked.map(|s| s.y).or(a.prepare).unwrap_or(a.y);
    // Without a choice the router bindings are never read either.
    let (logits, bias) = a.choose.map_or((a.x, a.x), |c| (c.logits, c.bias));
    // The partials' pass binds the router and norm weights there, and stores the sums as y1.
    let (logits, bias) = a.router_partials.map_or((logits, bias), |r| (&r.router.words, r.norm));
    let y1 = a.router_partials.map_or(y1, |r| r.out);
    let out_norm = a.round_norm.unwrap_or(a.x);
    let buffers =
        [&uniform, a.x, a.y, a.route, &a.w.words, &a.w.scales, &up.words, &up.scales, norm, y1, logits, bias, out_norm];
    let bind_group = match a.merge {
        Some(step) => kernel.bind(ctx, &[&buffers[..], &[step]].concat()),
        None => kernel.bind(ctx, &buffers),
    };
    let gz = if a.out == Output::AddRoutedSum { 1 } else { a.slots };
    let per_matrix = a.w.bytes() / a.w.n_matrices() as u64;
    let matrices = if a.matrix == MatrixOf::Routed { a.slots as u64 } else { a.w.n_matrices() as u64 };
    let bytes = per_matrix * matrices * if a.up.is_some() { 2 } else { 1 } + a.stacked.map_or(0, |s| s.w.bytes());
    // y (binding 2) holds the rounded output.
    Ok(Dispatch::new(kernel, bind_group, [gx, gy, gz]).reading(bytes).rounding(2, a.round_output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The `[[buffer(i)]]` parameters of the hand-written kernel: the WGSL twin's bindings (with the
    /// merging variant's), same index, same name, written exactly where the WGSL binding is `read_write`.
    #[test]
    fn metal_twin_binds_what_the_wgsl_binds() {
        let wgsl = [include_str!("../../wgsl/matvec.wgsl"), MATVEC_MERGE].concat();
        let mut want = Vec::new();
        for l in wgsl.lines().filter(|l| l.starts_with("@group(0) @binding(")) {
            let index: u32 = l["@group(0) @binding(".len()..].split(')').next().unwrap().parse().unwrap();
            let name = l.split("> ").nth(1).unwrap().split(':').next().unwrap().trim().to_string();
            want.push((index, name, l.contains("read_write")));
        }
        let metal = include_str!("../../native_msl/matvec.metal");
        let mut got = Vec::new();
        for l in metal.lines().filter(|l| l.contains("[[buffer(")) {
            let index: u32 = l.split("[[buffer(").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
            let decl = l.split("[[").next().unwrap().trim();
            let name = decl.rsplit([' ', '*', '&']).next().unwrap().to_string();
            let writes = decl.starts_with("device") && !decl.contains("const");
            got.push((index, name, writes));
        }
        assert_eq!(got, want);
    }

    /// Every combination the engine can ask of the Metal kernel, composed with its `#define`s,
    /// parses and type-checks under clang against native_msl/check/metal_stdlib (a stand-in for
    /// Metal's library: no Metal compiler exists on Linux).
    #[test]
    fn metal_twin_type_checks_in_every_variant() {
        let formats = [GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q5K];
        let mut variants = Vec::new();
        for (i, &t0) in formats.iter().enumerate() {
            for &t1 in &formats {
                // matrix, out, norm, glu, stack, int8, lanes
                let v = (i as u32 % 3, i as u32 % 3, i != 1, i == 0, t0 != t1, i != 2, [256, 32, 64, 64][i]);
                variants.push((t0, t1, v));
            }
        }
        // The formats with f32 inputs only: a routed gate/up pair, and stacked with Q8_0 (int8 inputs;
        // the float formats, whose chunks are shorter, stacked with themselves).
        for t in GgmlType::SUPPORTED.into_iter().filter(|&t| !activations::takes_int8_input(t)) {
            let float = format::chunk_vec4s(t) < 8;
            variants.push((t, t, (2, 0, true, true, false, false, 64)));
            variants.push((t, if float { t } else { GgmlType::Q8_0 }, (0, 0, false, false, true, true, 32)));
        }
        for (m, o) in [(0, 0), (1, 0), (2, 1), (2, 2), (0, 1), (3, 0)] {
            for (norm, glu, int8) in
                [(false, false, false), (true, true, true), (true, false, true), (false, true, false)]
            {
                variants.push((GgmlType::Q4K, GgmlType::Q4K, (m, o, norm, glu && o != 2, false, int8, 64)));
            }
        }
        let dir = std::env::temp_dir().join(format!("glm-wgpu-msl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stub = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("native_msl/check");
        for (k, (t0, t1, (matrix, out, norm, glu, stack, int8, lanes))) in variants.into_iter().enumerate() {
            let rows = 2u32;
            // The per-head product of f32 inputs also as the one merging the attention's splits.
            let merge = matrix == 1 && !norm && !glu && !stack && !int8;
            let prepared = int8 && ((glu && k % 2 == 0) || (stack && norm && k % 2 == 1));
            // One input of one matrix rounded in the pass: once per workgroup in every other variant.
            let shared_in = int8 && !prepared && matrix == 0 && k % 2 == 0;
            let consts = [
                ("LANES", Const::U32(lanes)),
                ("TEAMS", Const::U32((64 / lanes).max(1))),
                ("ROWS", Const::U32(rows)),
                ("NV", Const::U32(rows * if glu { 2 } else { 1 } + norm as u32)),
                ("CHUNK_V4", Const::U32(format::chunk_vec4s(t0))),
                ("MATRIX", Const::U32(matrix)),
                ("GLU", Const::Bool(glu)),
                ("OUT", Const::U32(out)),
                ("NORM", Const::Bool(norm)),
                ("STACK", Const::Bool(stack)),
                ("INT8", Const::Bool(int8)),
                ("PREPARE", Const::Bool(false)),
                ("PREPARED", Const::Bool(prepared)),
                ("PREP_WORDS", Const::U32(PREP_WORDS as u32)),
                ("ROUND", Const::Bool(out == 0 && (glu || matrix == 1 || (stack && norm)))),
                ("ROUND_NORM", Const::Bool(stack && norm)),
                ("SHARED_IN", Const::Bool(shared_in)),
                ("IN_CHUNKS", Const::U32(if shared_in { 16 } else { 1 })),
                // The attention output with the router folded into it, in every other variant.
                ("PARTIALS", Const::Bool(matrix == 0 && out == 1 && !stack && k % 2 == 0)),
                ("PART_EXP", Const::U32(if k % 4 == 0 { 64 } else { 16 })),
                ("PART_SLICES", Const::U32(PARTIAL_SLICES)),
                ("EPS", Const::F32(1e-5)),
                ("MERGE", Const::Bool(merge)),
                ("MERGED_V4", Const::U32(if merge { 128 } else { 1 })),
                ("MERGE_UNROLL", Const::U32(MERGE_UNROLL)),
            ];
            let choice = (matrix == 3).then_some(RouteChoice {
                n_experts: 64,
                topk: 4,
                softmax: k % 2 == 0,
                norm_topk: k % 3 != 0,
                scale: 1.8,
                shared_slot: k % 2 == 1,
            });
            // Every other choice from router partials.
            let folded = (k % 2 == 1).then_some(FoldedLogits { groups: 64, hidden: 2048, eps: 1e-5 });
            let consts = [&consts[..], &RouteChoice::consts(choice, folded)].concat();
            let operand = |t| (t, int8 && activations::takes_int8_input(t));
            let src = msl_source(&consts, [operand(t0), operand(t1)]).expect("the formats have MSL");
            let path = dir.join(format!("matvec{k}.metal"));
            std::fs::write(&path, &src).unwrap();
            let out = Command::new("clang++")
                .args(["-std=c++17", "-fsyntax-only", "-x", "c++", "-Wall", "-Wno-unknown-attributes", "-Werror", "-I"])
                .arg(&stub)
                .arg(&path)
                .output()
                .expect("clang++ (apt-get install clang) checks the Metal kernels on Linux");
            assert!(out.status.success(), "variant {k} ({}): {}", path.display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}
