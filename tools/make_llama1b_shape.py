#!/usr/bin/env python3
"""Write a random-weight checkpoint with the exact shape of Llama 3.2 1B.

    python3 tools/make_llama1b_shape.py                       # -> models/llama-3.2-1b-shape
    python3 tools/make_llama1b_shape.py --out /tmp/l1b --seed 0

The config is the real meta-llama/Llama-3.2-1B one (16 layers, hidden 2048,
intermediate 8192, 32 heads / 8 KV heads, head_dim 64, vocab 128256,
rms_norm_eps 1e-5, rope_theta 500000 with llama3 scaling factor 32 / low 1 /
high 4 / original 8192, max_position_embeddings 131072, tied embeddings,
bos 128000, eos 128001), written by transformers' LlamaConfig, so config.json
has exactly the layout transformers writes.  Weights are random bf16 in a single
model.safetensors (~2.47 GB), written tensor by tensor (low memory).

Determinism: every tensor is drawn from numpy PCG64 seeded by (seed, hash of the
tensor name), so a tensor's values do not depend on the order of writing or on
--layers; the file is byte-identical across runs with the same numpy/torch.

Scales (normal distributions, std in parentheses):
  embed_tokens (0.05):  tied lm_head, so the logits std is ~0.05*sqrt(2048) ~ 2.3;
                        small enough against the residual stream that a token's
                        own embedding does not dominate the prediction.
  q/k/v/o/gate/up/down (0.02): HF's initializer_range; each block adds O(1)
                        to the residual (scores std ~0.8, so attention is neither
                        uniform nor one-hot).
  *norm.weight (1 + 0.05 N(0,1)).
Use --layers N (debug) for a thinner model whose first N layers are identical
to the full one's.
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import time

import numpy as np
import torch
from transformers import GenerationConfig, LlamaConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "models", "llama-3.2-1b-shape")

STD_EMBED = 0.05
STD_LINEAR = 0.02
STD_NORM = 0.05


def llama1b_config(n_layers=16):
    cfg = LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=n_layers, num_attention_heads=32, num_key_value_heads=8,
        head_dim=64, hidden_act="silu", max_position_embeddings=131072,
        initializer_range=0.02, rms_norm_eps=1e-5, use_cache=True,
        tie_word_embeddings=True, attention_bias=False, attention_dropout=0.0,
        mlp_bias=False, pretraining_tp=1, bos_token_id=128000, eos_token_id=128001,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
    )
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.dtype = torch.bfloat16
    return cfg


def tensor_specs(cfg):
    """(name, shape) for every stored tensor, HF names; no lm_head (tied)."""
    H, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    specs = [("model.embed_tokens.weight", (V, H)), ("model.norm.weight", (H,))]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (H,)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (q, H)),
            (p + "self_attn.k_proj.weight", (kv, H)),
            (p + "self_attn.v_proj.weight", (kv, H)),
            (p + "self_attn.o_proj.weight", (H, q)),
            (p + "mlp.gate_proj.weight", (I, H)),
            (p + "mlp.up_proj.weight", (I, H)),
            (p + "mlp.down_proj.weight", (H, I)),
        ]
    if not cfg.tie_word_embeddings:
        specs.append(("lm_head.weight", (V, H)))
    return sorted(specs)


def draw(seed, name, shape):
    """bf16 tensor for `name`, deterministic in (seed, name)."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.Generator(np.random.PCG64([seed, key]))
    x = rng.standard_normal(shape, dtype=np.float32)
    if name.endswith("norm.weight"):
        x = 1.0 + STD_NORM * x
    elif "embed_tokens" in name or name == "lm_head.weight":
        x *= STD_EMBED
    else:
        x *= STD_LINEAR
    return torch.from_numpy(x).to(torch.bfloat16)


def write_safetensors(path, cfg, seed, log):
    """Streams a bf16 safetensors file (same layout rules as the safetensors lib:
    8-byte little-endian header length, JSON header padded with spaces to a
    multiple of 8, tensors in header order, contiguous)."""
    specs = tensor_specs(cfg)
    header, offset = {}, 0
    for name, shape in specs:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        t0 = time.time()
        for k, (name, shape) in enumerate(specs):
            t = draw(seed, name, shape)
            f.write(t.view(torch.uint16).numpy().tobytes())
            if log and (k % 20 == 0 or k == len(specs) - 1):
                log(f"  [{k + 1}/{len(specs)}] {name} {list(shape)}  {time.time() - t0:.0f}s")
    os.replace(tmp, path)
    return 8 + len(hjson) + offset


def verify(path, cfg, seed):
    from safetensors import safe_open
    specs = dict(tensor_specs(cfg))
    with safe_open(path, "pt") as f:
        keys = set(f.keys())
        assert keys == set(specs), "tensor set mismatch"
        for name in ["model.norm.weight", "model.layers.0.self_attn.k_proj.weight"]:
            t = f.get_tensor(name)
            assert t.dtype == torch.bfloat16 and tuple(t.shape) == specs[name]
            assert torch.equal(t, draw(seed, name, specs[name])), name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output dir (default models/llama-3.2-1b-shape)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=16,
                    help="debug only: number of layers (default 16 = the real shape)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output dir")
    args = ap.parse_args()

    if os.path.exists(args.out):
        if not args.force:
            sys.exit(f"{args.out} exists (use --force to overwrite)")
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    cfg = llama1b_config(args.layers)
    cfg.save_pretrained(args.out)
    # As in the real release: generation_config.json carries the EOS list.
    GenerationConfig(bos_token_id=128000, eos_token_id=[128001, 128008, 128009]).save_pretrained(args.out)
    path = os.path.join(args.out, "model.safetensors")
    size = write_safetensors(path, cfg, args.seed, log=lambda s: print(s, flush=True))
    assert os.path.getsize(path) == size
    verify(path, cfg, args.seed)
    n_params = sum(int(np.prod(s)) for _, s in tensor_specs(cfg))
    print(f"wrote {args.out}: {n_params:,} parameters, model.safetensors {size:,} bytes "
          f"({size / 1e9:.2f} GB), seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
