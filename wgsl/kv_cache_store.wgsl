// Stores pair j of position pos's latent-cache row (kv_cache.wgsl's layout) into a writable `cache`.

fn cache_store_pair(pos: u32, j: u32, v: vec2<f32>) {
    if KV_F16 {
        cache[pos * (KV_W / 2u) + j] = pack2x16float(v);
    } else {
        cache[pos * KV_W + 2u * j] = bitcast<u32>(v.x);
        cache[pos * KV_W + 2u * j + 1u] = bitcast<u32>(v.y);
    }
}
