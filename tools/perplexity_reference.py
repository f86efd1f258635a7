#!/usr/bin/env python3
"""The perplexity transformers computes for a text, with `glm-wgpu perplexity`'s procedure (llama.cpp's):
chunks of CTX tokens, each from an empty cache, scoring only the second half of each chunk.

Usage: python3 tools/perplexity_reference.py MODEL_DIR TEXT_FILE CTX > tests/fixtures/perplexity.json
Needs torch, transformers and tokenizers; float32 forward, eager attention."""
import json, math, sys
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

model_dir, text_file, ctx = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
ids = tok.encode(open(text_file, encoding="utf-8").read(), add_special_tokens=False).ids
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
nll, scored = 0.0, 0
first = ctx // 2
with torch.no_grad():
    for c in range(len(ids) // ctx):
        chunk = torch.tensor([ids[c * ctx:(c + 1) * ctx]])
        lp = torch.log_softmax(model(chunk).logits[0].double(), dim=-1)
        for pos in range(first, ctx - 1):
            nll -= lp[pos, chunk[0, pos + 1]].item()
            scored += 1
import transformers
print(json.dumps({"text": text_file, "ctx": ctx, "tokens": len(ids), "scored": scored,
                  "perplexity": math.exp(nll / scored), "transformers_version": transformers.__version__,
                  "torch_version": torch.__version__}, indent=1))
