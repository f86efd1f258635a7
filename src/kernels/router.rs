//! `wgsl/router.wgsl`: top-k expert choice from router logits (which `matvec` computes), plus
//! optionally the slot of a shared expert stored as expert `n_experts`; one workgroup per token.
//! The choice itself (`wgsl/route_choice.wgsl`) is shared with `matvec`, whose expert gate/up pass
//! makes it in every workgroup during decode.

use crate::gpu::{compose, Binding, Const, Dispatch, GpuContext, KernelCache};
use crate::model::{Gating, ModelConfig};
use anyhow::{ensure, Result};

pub const ROUTE_CHOICE: &str = include_str!("../../wgsl/route_choice.wgsl");

/// How a token's experts are chosen: the model's gating, and whether a shared expert takes the
/// slot after the routed ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteChoice {
    pub(crate) n_experts: u32,
    pub(crate) topk: u32,
    pub(crate) softmax: bool,
    pub(crate) norm_topk: bool,
    pub(crate) scale: f32,
    pub(crate) shared_slot: bool,
}

impl RouteChoice {
    pub fn new(c: &ModelConfig, shared_slot: bool) -> Result<RouteChoice> {
        ensure!(c.n_experts_used + shared_slot as usize <= 8, "the route buffer holds at most 8 slots");
        ensure!(c.n_experts_used <= c.n_experts, "{} experts used of {}", c.n_experts_used, c.n_experts);
        ensure!(c.n_experts <= 256, "the router handles at most 256 experts, not {}", c.n_experts);
        Ok(RouteChoice {
            n_experts: c.n_experts as u32,
            topk: c.n_experts_used as u32,
            softmax: c.gating == Gating::Softmax,
            norm_topk: c.norm_topk,
            scale: c.routed_scale,
            shared_slot,
        })
    }

    /// The snippet's host constants (the includer sets WG); `None` gives the inert ones of a kernel
    /// that includes it without choosing.
    /// `folded`: the choice sums partial logits instead of reading the router's own.
    pub fn consts(choice: Option<RouteChoice>, folded: Option<FoldedLogits>) -> Vec<(&'static str, Const)> {
        let f = folded.unwrap_or(FoldedLogits { groups: 0, hidden: 1, eps: 0.0 });
        let c = choice.unwrap_or(RouteChoice {
            n_experts: 1,
            topk: 1,
            softmax: false,
            norm_topk: false,
            scale: 1.0,
            shared_slot: false,
        });
        vec![
            ("CHOOSE", Const::Bool(choice.is_some())),
            ("N_EXP", Const::U32(c.n_experts)),
            ("TOPK", Const::U32(c.topk)),
            ("SOFTMAX", Const::Bool(c.softmax)),
            ("NORM_TOPK", Const::Bool(c.norm_topk)),
            ("SCALE", Const::F32(c.scale)),
            ("SHARED_SLOT", Const::Bool(c.shared_slot)),
            ("FOLDED", Const::Bool(folded.is_some())),
            ("FOLD_SLICES", Const::U32(FOLD_SLICES)),
            ("FOLD_GROUPS", Const::U32(f.groups)),
            ("FOLD_HIDDEN", Const::U32(f.hidden)),
            ("FOLD_EPS", Const::F32(f.eps)),
        ]
    }
}

/// Slices of the partial logits' groups that the folded choice totals in parallel.
pub const FOLD_SLICES: u32 = 8;

/// A choice whose logits are the attention output's partial sums (`MatvecArgs::router_partials`):
/// `groups` groups (of 32 rows) over `hidden` values, the experts' input norm's `eps`.
#[derive(Debug, Clone, Copy)]
pub struct FoldedLogits {
    pub groups: u32,
    pub hidden: u32,
    pub eps: f32,
}

pub fn router(
    ctx: &GpuContext,
    kc: &mut KernelCache,
    c: &ModelConfig,
    shared_slot: bool,
    tokens: u32,
    [logits, bias, route]: [&wgpu::Buffer; 3],
) -> Result<Dispatch> {
    let mut consts = RouteChoice::consts(Some(RouteChoice::new(c, shared_slot)?), None);
    consts.push(("WG", Const::U32(64)));
    let source = compose(&consts, &[include_str!("../../wgsl/router.wgsl"), ROUTE_CHOICE].concat());
    let kernel = kc.get(ctx, "router", source, &[Binding::Read, Binding::Read, Binding::ReadWrite])?;
    let bind_group = kernel.bind(ctx, &[logits, bias, route]);
    Ok(Dispatch::new(kernel, bind_group, [tokens, 1, 1]))
}
