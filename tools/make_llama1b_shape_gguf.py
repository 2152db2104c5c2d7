#!/usr/bin/env python3
"""Write the Llama-3.2-1B-shaped random checkpoint (tools/make_llama1b_shape.py) as GGUF, for
llama.cpp to run the same model that meshllama runs from safetensors (bench/compare_llamacpp.sh).

    python3 tools/make_llama1b_shape_gguf.py                    # BF16 and Q8_0 next to the checkpoint
    python3 tools/make_llama1b_shape_gguf.py --types bf16 --src DIR --out-dir DIR

Output: <out-dir>/llama-3.2-1b-shape-bf16.gguf and -q8_0.gguf (about 2.5 GB and 1.3 GB).

The layout is the one llama.cpp's own converter (convert_hf_to_gguf.py, LlamaModel) produces,
so llama.cpp computes the same function as Hugging Face does on the safetensors:
  * names: token_embd, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,
    ffn_up,ffn_down}, output_norm; no output.weight (tied embeddings);
  * Q and K rows permuted from HF's rotate-half layout to Meta's interleaved one (llama.cpp's
    RoPE for LLM_ARCH_LLAMA rotates pairs (2i, 2i+1)): within each head of d rows, stored row
    2i + j is HF row j*d/2 + i;
  * llama3 RoPE scaling as a rope_freqs.weight tensor of per-frequency divisors
    (1 for high frequencies, `factor` for low ones, smoothly interpolated in between: the
    formula of Meta's llama3 reference and of transformers' _compute_llama3_parameters);
  * 1-D tensors (norms, rope_freqs) in F32; matrices in BF16 (the checkpoint's bytes unchanged)
    or Q8_0 (blocks of 32: one f16 scale = max|x|/127, 32 int8; gguf.quants.quantize);
  * the real Llama 3 tokenizer (tests/fixtures/tokenizer/llama3/tokenizer.json.gz) as a gpt2
    BPE vocabulary with the llama-bpe pre-tokenizer, so llama.cpp loads it like a real 3.2 1B.
Names, row order, rope_freqs and the llama.* keys come from tools/gguf_llama.py, shared with
tools/make_gguf_fixtures.py.

Tensors are streamed one at a time (peak memory about one f32 copy of the embedding).
Requires gguf==0.19.0 (pinned: the writer's byte layout), torch and safetensors.
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf_llama import add_hyperparameters, gguf_name, llama3_divisors, rope_parameters, to_meta_rows

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SRC = os.path.join(REPO_ROOT, "models", "llama-3.2-1b-shape")
TOKENIZER = os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizer", "llama3", "tokenizer.json.gz")
GGUF_PINNED = "0.19.0"
FILE_TYPE = {"bf16": 32, "q8_0": 7}  # llama_ftype: MOSTLY_BF16, MOSTLY_Q8_0

def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load_tokenizer():
    with gzip.open(TOKENIZER, "rt", encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    added = {t["id"]: t for t in tok["added_tokens"]}
    size = max(max(vocab.values()), max(added)) + 1
    tokens, types = [""] * size, [1] * size  # 1 = NORMAL
    for text, i in vocab.items():
        tokens[i] = text
    for i, t in added.items():
        tokens[i] = t["content"]
        types[i] = 3 if t.get("special") else 4  # CONTROL / USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    return tokens, types, merges


def write_gguf(src, path, storage, log):
    import torch
    from safetensors import safe_open

    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    theta, rope = rope_parameters(cfg)
    tokens, types, merges = load_tokenizer()
    if len(tokens) != cfg["vocab_size"]:
        sys.exit(f"tokenizer has {len(tokens)} tokens, config vocab_size is {cfg['vocab_size']}")

    w = gguf.GGUFWriter(path, arch="llama")
    n_heads, n_kv, head_dim = add_hyperparameters(w, cfg, f"Llama-3.2-1B-shape random ({storage})")
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(FILE_TYPE[storage])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg.get("bos_token_id", 128000))
    w.add_eos_token_id(cfg.get("eos_token_id", 128001) if not isinstance(cfg.get("eos_token_id"), list)
                       else cfg["eos_token_id"][0])
    w.add_add_bos_token(True)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    st = safe_open(os.path.join(src, "model.safetensors"), "pt")
    names = sorted(st.keys(), key=lambda n: (n.count(".layers."), int(n.split(".")[2]) if ".layers." in n else 0, n))
    plan = []  # (gguf name, hf name or None, shape, ggml type, nbytes)
    if rope.get("rope_type") == "llama3":
        plan.append(("rope_freqs.weight", None, (head_dim // 2,), QT.F32, head_dim // 2 * 4))
    for name in names:
        shape = tuple(st.get_slice(name).get_shape())
        n = int(np.prod(shape))
        if len(shape) == 1:
            plan.append((gguf_name(name), name, shape, QT.F32, n * 4))
        elif storage == "bf16":
            plan.append((gguf_name(name), name, shape, QT.BF16, n * 2))
        else:
            plan.append((gguf_name(name), name, shape, QT.Q8_0, n // 32 * 34))
    for gname, _, shape, qtype, nbytes in plan:
        if qtype == QT.Q8_0:  # byte shape for uint8 data
            w.add_tensor_info(gname, (shape[0], shape[1] // 32 * 34), np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        elif qtype == QT.BF16:
            w.add_tensor_info(gname, shape, np.dtype(np.uint16), nbytes, raw_dtype=qtype)
        else:
            w.add_tensor_info(gname, shape, np.dtype(np.float32), nbytes)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    t0 = time.time()
    for k, (gname, hf, shape, qtype, nbytes) in enumerate(plan):
        if hf is None:
            data = llama3_divisors(theta, rope, head_dim)
        else:
            bits = st.get_tensor(hf).view(torch.int16).numpy().view(np.uint16)
            if hf.endswith("q_proj.weight"):
                bits = to_meta_rows(bits, n_heads)
            elif hf.endswith("k_proj.weight"):
                bits = to_meta_rows(bits, n_kv)
            if qtype == QT.F32:
                data = bf16_to_f32(bits)
            elif qtype == QT.BF16:
                data = np.ascontiguousarray(bits)
            else:
                data = gguf.quants.quantize(bf16_to_f32(bits), QT.Q8_0)
        assert data.nbytes == nbytes, (gname, data.nbytes, nbytes)
        w.write_tensor_data(data)
        if log and (k % 16 == 0 or k == len(plan) - 1):
            log(f"  [{k + 1}/{len(plan)}] {gname} {list(shape)} {qtype.name}  {time.time() - t0:.0f}s")
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=DEFAULT_SRC, help="HF checkpoint directory (default models/llama-3.2-1b-shape)")
    ap.add_argument("--out-dir", default=None, help="output directory (default: the parent of --src)")
    ap.add_argument("--types", default="bf16,q8_0", help="comma-separated: bf16, q8_0 (default both)")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    args = ap.parse_args()
    try:
        from importlib.metadata import version
        found = version("gguf")
    except Exception:  # noqa: BLE001
        found = "unknown"
    if found != GGUF_PINNED:
        print(f"warning: gguf {found} installed; this script is pinned to gguf=={GGUF_PINNED}", file=sys.stderr)
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.src))
    base = os.path.basename(os.path.abspath(args.src))
    for storage in args.types.split(","):
        if storage not in FILE_TYPE:
            sys.exit(f"--types: unknown type {storage!r} (bf16, q8_0)")
        path = os.path.join(out_dir, f"{base}-{storage}.gguf")
        if os.path.exists(path) and not args.force:
            print(f"{path} exists (use --force to rewrite)")
            continue
        print(f"writing {path}", flush=True)
        tmp = path + ".partial"
        write_gguf(args.src, tmp, storage, log=lambda s: print(s, flush=True))
        os.replace(tmp, path)
        print(f"wrote {path}: {os.path.getsize(path):,} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
