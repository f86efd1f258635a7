// MoE routing of a prefill chunk from its router logits (computed by matvec): workgroup t chooses
// token t's experts (route_choice.wgsl) from its N_EXP logits and stores them at route[16 t ..].

@group(0) @binding(0) var<storage, read> router_logits: array<f32>;
@group(0) @binding(1) var<storage, read> router_bias: array<f32>;
// Expert ids in [0, 8), weights (f32 bits) in [8, 16).
@group(0) @binding(2) var<storage, read_write> route: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    choose_route(tid, wid.x * N_EXP);
    if tid == 0u {
        store_route(wid.x * 16u);
    }
}
