#!/usr/bin/env python3
"""Test vectors for the quantized GGUF formats: random raw blocks and the `gguf` package's dequantization.

Usage: python3 tools/make_quant_vectors.py [OUT_DIR]   (default tests/fixtures/quant; needs `pip install gguf numpy`)

For each type writes OUT_DIR/<type>.blocks.bin (raw blocks, as in a GGUF file) and OUT_DIR/<type>.f32.bin
(gguf.quants.dequantize of them, little-endian f32), and OUT_DIR/index.json naming them. Blocks are random
bytes, plus extreme cases: every f16 scale field set to 65504, -65504, the smallest and largest subnormals,
the smallest normal, +-0, +-1, +-inf and NaN, each with random, all-zero and all-one quant bytes.
For the types gguf-py can quantize (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) it also writes <type>.quantized.bin: gguf.quants.quantize
of the values in quantize_input.f32.bin, so the Rust quantizers can be checked bit for bit too.
tests/quant_cpu.rs and tests/quant_gpu.rs read them. Deterministic: one fixed seed per type, so adding a type
leaves the others' files as they are.
"""
import json
import os
import sys
import zlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

# type: (number of blocks, byte offsets of f16 scale fields)
TYPES = {
    "Q4_0": (400, [0]),
    "Q4_1": (400, [0, 2]),
    "Q5_0": (400, [0]),
    "Q5_1": (400, [0, 2]),
    "Q8_0": (300, [0]),
    "Q2_K": (150, [80, 82]),
    "Q3_K": (150, [108]),
    "Q4_K": (150, [0, 2]),
    "Q5_K": (150, [0, 2]),
    "Q6_K": (150, [208]),
    "IQ4_NL": (400, [0]),
    "IQ4_XS": (150, [0]),
}

SPECIAL_F16 = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x0400, 0x0000, 0x8000, 0x3C00, 0xBC00, 0x7C00, 0xFC00, 0x7E00]


def finite_f16_bits(rng, n):
    """Random f16 bit patterns that are finite (exponent < 31)."""
    b = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    exp = (b >> 10) & 0x1F
    return np.where(exp == 31, b & ~np.uint32(0x4000), b).astype(np.uint16)


def blocks_for(name, rng):
    n, d_offsets = TYPES[name]
    block_elems, block_bytes = GGML_QUANT_SIZES[T[name]]
    out = []
    # Extreme scales, each with random, all-zero and all-one quants.
    for special in SPECIAL_F16:
        for fill in ("random", 0x00, 0xFF):
            if fill == "random":
                b = rng.integers(0, 256, size=block_bytes, dtype=np.uint8)
            else:
                b = np.full(block_bytes, fill, dtype=np.uint8)
            for off in d_offsets:
                b[off:off + 2] = np.frombuffer(np.uint16(special).tobytes(), dtype=np.uint8)
            out.append(b)
    # Only the second f16 field (dmin) extreme, the first ordinary.
    if len(d_offsets) > 1:
        for special in SPECIAL_F16:
            b = rng.integers(0, 256, size=block_bytes, dtype=np.uint8)
            b[d_offsets[0]:d_offsets[0] + 2] = np.frombuffer(np.uint16(0x2E66).tobytes(), dtype=np.uint8)
            b[d_offsets[1]:d_offsets[1] + 2] = np.frombuffer(np.uint16(special).tobytes(), dtype=np.uint8)
            out.append(b)
    # Random blocks: the first 4 fully random bytes (any f16, NaN included), the rest with finite scales.
    i = 0
    while len(out) < n:
        b = rng.integers(0, 256, size=block_bytes, dtype=np.uint8)
        if i >= 4:
            for off in d_offsets:
                b[off:off + 2] = np.frombuffer(finite_f16_bits(rng, 1).tobytes(), dtype=np.uint8)
        out.append(b)
        i += 1
    return np.stack(out)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20260311)
    index = {"generator": "tools/make_quant_vectors.py", "types": []}
    # Inputs for the quantizer comparison: normal values, some blocks scaled way up or down, a zero block,
    # ties of the largest magnitude with both signs.
    qin = rng.normal(size=(64, 32)).astype(np.float32)
    qin[1] *= 1e-6
    qin[2] *= 3e4
    qin[3] = 0
    qin[4] = 1.0
    qin[4, ::2] = -1.0
    qin[5, 7] = 100.0
    qin[5, 9] = -100.0
    qin = qin.reshape(-1)
    qin.tofile(os.path.join(out_dir, "quantize_input.f32.bin"))
    with np.errstate(all="ignore"):
        for name in TYPES:
            qt = T[name]
            blocks = blocks_for(name, np.random.default_rng([20260311, zlib.crc32(name.encode())]))
            values = quants.dequantize(blocks, qt).astype(np.float32).reshape(-1)
            base = name.lower()
            blocks.tofile(os.path.join(out_dir, f"{base}.blocks.bin"))
            values.astype("<f4").tofile(os.path.join(out_dir, f"{base}.f32.bin"))
            entry = {
                "type": name,
                "blocks": int(blocks.shape[0]),
                "block_bytes": int(blocks.shape[1]),
                "block_elems": int(GGML_QUANT_SIZES[qt][0]),
                "data": f"{base}.blocks.bin",
                "values": f"{base}.f32.bin",
            }
            if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
                q = quants.quantize(qin.reshape(-1, 32), qt)
                np.asarray(q, dtype=np.uint8).tofile(os.path.join(out_dir, f"{base}.quantized.bin"))
                entry["quantized"] = f"{base}.quantized.bin"
                entry["quantize_input"] = "quantize_input.f32.bin"
            index["types"].append(entry)
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
