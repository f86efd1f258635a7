#!/usr/bin/env python3
"""Convert the tiny GLM-4.7-Flash checkpoint (HF `glm4_moe_lite`) to GGUF the way llama.cpp does.

Usage: python3 tools/make_tiny_gguf.py SRC_DIR OUT_DIR
Writes OUT_DIR/glm-tiny-bf16.gguf (--outtype bf16) and OUT_DIR/glm-tiny-q8_0.gguf (--outtype q8_0).

Reproduces, with numpy only (no torch/transformers), what llama.cpp's `convert_hf_to_gguf.py` does
for `Glm4MoeLiteForCausalLM`: class `Glm4MoeLiteModel(DeepseekV2Model)`, arch `deepseek2`
(conversion/glm.py, conversion/deepseek.py and conversion/base.py of llama.cpp commit 0c1e570,
2026-10-01, as vendored by llama-cpp-python 0.3.36). Checked by running that converter on the same
checkpoint with its pre-tokenizer check patched to "glm4": its files equal these byte for byte
except for the two hparams marked as deliberate below.
  - ModelBase.index_tensors/filter_tensors: tensors in sorted HF-name order, every non-f16/f32
    tensor upcast to f32, `e_score_correction_bias` renamed to `e_score_correction.bias`.
  - DeepseekV2Model.modify_tensors: routed experts stacked into 3-D `ffn_{down,gate,up}_exps`
    (numpy (n_expert, out, in)); `kv_b_proj` split per head into `attn_k_b` (transposed,
    numpy (n_head, kv_lora_rank, qk_nope)) and `attn_v_b` (numpy (n_head, v_head_dim,
    kv_lora_rank)), no `attn_kv_b`; other names via gguf.TensorNameMap.
  - ModelBase.prepare_tensors: 1-D tensors, `*_norm.weight`, `ffn_gate_inp` and non-`.weight`
    tensors (`exp_probs_b.bias`) are F32; everything else takes the outtype (BF16 or Q8_0 via
    gguf.quants.quantize, F16 if a row does not fit the quant block).
  - ModelBase.prepare_metadata, TextModel.set_gguf_parameters, DeepseekV2Model.set_gguf_parameters:
    general.* from gguf.Metadata, hparams (head_count_kv written as 1 for MLA; key/value_length
    are the MLA latent sizes, key/value_length_mla the per-head ones).
  - TextModel._set_vocab_glm/get_vocab_base + gguf.SpecialVocab: gpt2 tokenizer, all ids
    (`[PAD<i>]` UNUSED fillers up to vocab_size), BOS [gMASK], EOT <|user|>, UNK <|endoftext|>,
    EOM <|observation|>, merges and chat template; add_bos/add_eos = false for a ByteLevel
    post-processor (newer gguf-py SpecialVocab; the released gguf 0.19.0 does not do this itself).
Where this deliberately differs from the converter, for the tiny fixture only:
  - tokenizer.ggml.pre is "glm4" directly: the converter hashes the tokenization of a test string
    and the tiny vocab matches no known hash (GLM-4.7-Flash's own maps to "glm4").
  - The fixture config uses transformers-5 keys. `mlp_layer_types` stands in for
    `first_k_dense_replace` (the converter reads only the latter and would write 0), and a missing
    `scoring_func` means sigmoid, as GLM-4.7-Flash routes; the converter writes no
    expert_gating_func then, and llama.cpp only assumes sigmoid for the full-size shape.

Written with gguf 0.19.0 and numpy 2.4.6 (PyPI), Python 3.11.
"""
from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import gguf

ARCH = gguf.MODEL_ARCH.DEEPSEEK2
OUTTYPES = {
    "bf16": (gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
}
GLM_SPECIAL_TOKENS = {"bos": "[gMASK]", "eot": "<|user|>", "unk": "<|endoftext|>", "eom": "<|observation|>"}


def load_hparams(src: Path) -> dict:
    hp = json.loads((src / "config.json").read_text())
    if hp.get("num_nextn_predict_layers"):
        raise NotImplementedError("MTP (NextN) layers are not handled")
    if "first_k_dense_replace" not in hp:
        layer_types = hp.get("mlp_layer_types", [])
        hp["first_k_dense_replace"] = next((i for i, t in enumerate(layer_types) if t != "dense"), len(layer_types))
    hp.setdefault("scoring_func", "sigmoid")
    rope = hp.get("rope_parameters") or hp.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise NotImplementedError(f"rope_type {rope['rope_type']!r}")
    hp["rope_theta"] = rope.get("rope_theta", hp.get("rope_theta"))
    return hp


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors as float32, sorted by name (gguf.utility.SafetensorsLocal order)."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + header_len])
    header.pop("__metadata__", None)
    base = 8 + header_len
    tensors = {}
    for name in sorted(header):
        info = header[name]
        begin, end = info["data_offsets"]
        buf = raw[base + begin:base + end]
        if info["dtype"] == "BF16":
            data = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            data = np.frombuffer(buf, dtype="<f4")
        else:
            raise NotImplementedError(f"{name}: dtype {info['dtype']}")
        tensors[name] = data.reshape(info["shape"])
    return tensors


def block_id(name: str) -> int | None:
    return next((int(part) for part in name.split(".") if part.isdecimal()), None)


def convert_tensors(hp: dict, tensors: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 data) in the converter's order."""
    tensor_map = gguf.get_tensor_name_map(ARCH, hp["num_hidden_layers"])

    def mapped(name: str, data: np.ndarray) -> tuple[str, np.ndarray]:
        new_name = tensor_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ValueError(f"cannot map tensor {name!r}")
        return new_name, data

    n_expert = hp["n_routed_experts"]
    n_head_kv = hp["num_key_value_heads"]  # still the HF value (= n_head) when tensors are converted
    nope, v_dim = hp["qk_nope_head_dim"], hp["v_head_dim"]
    experts: dict[int, dict[str, np.ndarray]] = {}

    for name, data in tensors.items():
        name = name.replace("e_score_correction_bias", "e_score_correction.bias")
        bid = block_id(name)
        if hp.get("tie_word_embeddings") and name == "lm_head.weight":
            continue
        if "mlp.experts" in name:
            pending = experts.setdefault(bid, {})
            pending[name] = data
            if len(pending) == 3 * n_expert:
                for w_name in ("down_proj", "gate_proj", "up_proj"):
                    stacked = np.stack([pending.pop(f"model.layers.{bid}.mlp.experts.{x}.{w_name}.weight")
                                        for x in range(n_expert)])
                    yield mapped(f"model.layers.{bid}.mlp.experts.{w_name}.weight", stacked)
            continue
        if name.endswith("kv_b_proj.weight"):
            assert data.shape[0] == n_head_kv * (nope + v_dim)
            kv_b = data.reshape(n_head_kv, nope + v_dim, data.shape[-1])
            yield mapped(name.replace("kv_b_proj", "k_b_proj"), kv_b[:, :nope, :].transpose(0, 2, 1))
            yield mapped(name.replace("kv_b_proj", "v_b_proj"), kv_b[:, nope:, :])
            continue
        yield mapped(name, data)

    if any(experts.values()):
        raise ValueError(f"unprocessed experts: {[k for d in experts.values() for k in d]}")


def tensor_qtype(name: str, data: np.ndarray, outtype: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    router = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.FFN_GATE_INP].format(bid=block_id(name)) + ".weight"
    if data.ndim <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") or name == router:
        return gguf.GGMLQuantizationType.F32
    return outtype


def add_tensors(writer: gguf.GGUFWriter, hp: dict, tensors: dict[str, np.ndarray],
                outtype: gguf.GGMLQuantizationType) -> None:
    for name, data in convert_tensors(hp, tensors):
        qtype = tensor_qtype(name, data, outtype)
        try:
            qdata = gguf.quants.quantize(data, qtype)
        except gguf.QuantError:
            qtype = gguf.GGMLQuantizationType.F16
            qdata = gguf.quants.quantize(data, qtype)
        writer.add_tensor(name, qdata, raw_dtype=qtype)


def add_general_metadata(writer: gguf.GGUFWriter, src: Path) -> None:
    total, shared, expert, expert_count = writer.get_total_parameter_count()
    metadata = gguf.Metadata.load(None, src, None, total)
    if metadata.name is None:
        metadata.name = src.name
    if metadata.size_label is None and total > 0:
        metadata.size_label = gguf.size_label(total, shared, expert, expert_count)
    writer.add_type(gguf.GGUFType.MODEL)
    metadata.set_gguf_meta_model(writer)


def add_hparams(writer: gguf.GGUFWriter, hp: dict, ftype: gguf.LlamaFileType) -> None:
    # TextModel.set_gguf_parameters (num_key_value_heads forced to 1 by DeepseekV2Model)
    writer.add_block_count(hp["num_hidden_layers"])
    writer.add_context_length(hp["max_position_embeddings"])
    writer.add_embedding_length(hp["hidden_size"])
    writer.add_feed_forward_length(hp["intermediate_size"])
    writer.add_head_count(hp["num_attention_heads"])
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(hp.get("rms_norm_eps", 1e-6))
    writer.add_expert_count(hp["n_routed_experts"])
    writer.add_expert_used_count(hp["num_experts_per_tok"])
    writer.add_expert_group_count(hp["n_group"])
    writer.add_expert_group_used_count(hp["topk_group"])
    gating = {"sigmoid": gguf.ExpertGatingFuncType.SIGMOID, "softmax": gguf.ExpertGatingFuncType.SOFTMAX}
    writer.add_expert_gating_func(gating[hp["scoring_func"]])
    writer.add_file_type(ftype)
    # DeepseekV2Model.set_gguf_parameters
    kv_lora_rank, rope_dim = hp["kv_lora_rank"], hp["qk_rope_head_dim"]
    writer.add_leading_dense_block_count(hp["first_k_dense_replace"])
    writer.add_vocab_size(hp["vocab_size"])
    if hp.get("q_lora_rank") is not None:
        writer.add_q_lora_rank(hp["q_lora_rank"])
    writer.add_kv_lora_rank(kv_lora_rank)
    writer.add_key_length(kv_lora_rank + rope_dim)
    writer.add_value_length(kv_lora_rank)
    writer.add_key_length_mla(hp["qk_nope_head_dim"] + rope_dim)
    writer.add_value_length_mla(hp["v_head_dim"])
    writer.add_expert_feed_forward_length(hp["moe_intermediate_size"])
    writer.add_expert_shared_count(hp.get("n_shared_experts", 0))
    writer.add_expert_weights_scale(hp["routed_scaling_factor"])
    if hp.get("norm_topk_prob"):
        writer.add_expert_weights_norm(True)
    writer.add_rope_dimension_count(rope_dim)


def looks_special(token: str) -> bool:
    """TextModel.does_token_look_special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<｜") and token.endswith("｜>"))
            or (token.startswith("<unused") and token.endswith(">")))


def add_vocab(writer: gguf.GGUFWriter, src: Path, vocab_size: int) -> None:
    tokenizer = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    added = {tok["id"]: tok for tok in tokenizer["added_tokens"]}
    reverse_vocab = {i: text for text, i in tokenizer["model"]["vocab"].items()}
    reverse_vocab.update({i: tok["content"] for i, tok in added.items()})
    assert max(reverse_vocab) < vocab_size

    tokens: list[str] = []
    toktypes: list[int] = []
    for i in range(vocab_size):
        if i not in reverse_vocab:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
            continue
        token = reverse_vocab[i]
        if i not in added:
            toktypes.append(gguf.TokenType.NORMAL)
        elif added[i]["special"] or looks_special(token):
            toktypes.append(gguf.TokenType.CONTROL)
        else:
            token = token.replace("\u2581", " ")
            toktypes.append(gguf.TokenType.USER_DEFINED)
        tokens.append(token)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("glm4")
    writer.add_token_list(tokens)
    writer.add_token_types(toktypes)

    special_vocab = gguf.SpecialVocab(src, load_merges=True)
    post = tokenizer.get("post_processor") or {}
    if any(p.get("type") == "ByteLevel" for p in post.get("processors", [post])):
        special_vocab.add_special_token.setdefault("bos", False)
        special_vocab.add_special_token.setdefault("eos", False)
    ids = {tok["content"]: i for i, tok in added.items()}
    for typ, content in GLM_SPECIAL_TOKENS.items():
        special_vocab._set_special_token(typ, ids[content])
    special_vocab.add_to_gguf(writer)


def convert(src: Path, out_path: Path, outtype: str) -> None:
    ftype, qtype = OUTTYPES[outtype]
    hp = load_hparams(src)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[ARCH])
    add_tensors(writer, hp, read_safetensors(src / "model.safetensors"), qtype)
    add_general_metadata(writer, src)
    add_hparams(writer, hp, ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, src, hp["vocab_size"])
    writer.write_header_to_file(path=out_path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python3 tools/make_tiny_gguf.py SRC_DIR OUT_DIR")
    src, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for outtype in OUTTYPES:
        out_path = out_dir / f"glm-tiny-{outtype}.gguf"
        convert(src, out_path, outtype)
        print(f"wrote {out_path} ({out_path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
