#!/usr/bin/env python3
"""Hugging Face reference for `meshllama eval` (teacher forcing; format in docs/EVAL_REFERENCE.md).

Loads a model into transformers in float32 on CPU (eager attention): a Hugging Face checkpoint
directory, or a GGUF file through `gguf_file=`. Builds the prompt as the seed's wrapper does:
a text file, explicit ids, or "The quick brown fox jumps over the lazy dog." repeated and cut to
exactly --prefill-len tokens, the tokenizer's special tokens (BOS) included. Runs greedy
`generate()` for --decode-len tokens with EOS stopping disabled (exactly that many tokens), and
writes the prompt ids, HF's tokens, HF's top-5 ids and logits at every step, and HF's full
logits for the first --logit-steps steps. It computes on one thread with one SIMD path
(tools/reproducible.py), so the same versions rewrite a reference bit for bit on any machine;
--fast uses every core and the CPU's own path instead (a 1B model), reproducible only to float32
reassociation.

    python3 tools/hf_reference.py models/SmolLM2-135M-Instruct.Q4_1.gguf --prefill-len 20 \
        --decode-len 20 --out refs/smollm2/prefill20.bin
    python3 tools/hf_reference.py MODEL --prefill-len-range 16:128:16 --decode-len 20 --out-dir DIR
"""
import argparse
import importlib.util
import json
import os
import struct
import sys

import torch

import reproducible

MAGIC = b"MLEVREF1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _seed_rules():
    """python/meshllama/evaluate.py, loaded by its path: the seed's prompt rule, the HF model's
    loading and HF's reference are written there once, for `python -m meshllama.run_eval` and
    for this script (it needs only torch; importing the package would need the built library)."""
    spec = importlib.util.spec_from_file_location("meshllama_evaluate",
                                                  os.path.join(ROOT, "python", "meshllama", "evaluate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed = _seed_rules()
TOP_K = seed.TOP_K


def load(model_path, threads):
    import transformers

    torch.manual_seed(0)
    model, tokenizer = seed.load_hf(model_path, threads)
    model.generation_config.eos_token_id = None  # exactly --decode-len tokens
    model.generation_config.pad_token_id = 0
    return model, tokenizer, transformers.__version__


def build_prompt(args, tokenizer, prefill_len):
    if args.prompt_ids:
        ids = [int(x) for x in args.prompt_ids.split(",")]
        source = "ids"
    elif args.prompt_file:
        if tokenizer is None:
            sys.exit("hf_reference: the model has no tokenizer; use --prompt-ids")
        with open(args.prompt_file, encoding="utf-8") as f:
            ids = tokenizer(f.read(), add_special_tokens=True)["input_ids"]
        source = "file:" + os.path.basename(args.prompt_file)
    else:
        if tokenizer is None:
            sys.exit("hf_reference: the model has no tokenizer; use --prompt-ids")
        return seed.fox_prompt(tokenizer, prefill_len), "fox"
    if prefill_len:
        if len(ids) < prefill_len:
            sys.exit(f"hf_reference: the prompt has {len(ids)} tokens, fewer than --prefill-len {prefill_len}")
        ids = ids[:prefill_len]
    return ids, source


def reference(model, prompt, decode_len, logit_steps):
    try:
        ref = seed.hf_reference(model, prompt, decode_len, logit_steps)
    except ValueError as e:
        sys.exit(str(e))
    return ref.tokens, ref.top_ids, ref.top_logits, ref.logits


def write(path, prompt, tokens, top_ids, top_logits, logits, meta):
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    vocab = logits.shape[1]
    steps = logits.shape[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<7I", 1, vocab, len(prompt), len(tokens), TOP_K, steps, len(meta_bytes)))
        f.write(meta_bytes)
        f.write(struct.pack(f"<{len(prompt)}i", *prompt))
        f.write(struct.pack(f"<{len(tokens)}i", *tokens))
        f.write(struct.pack(f"<{len(tokens) * TOP_K}i", *[i for row in top_ids for i in row]))
        f.write(struct.pack(f"<{len(tokens) * TOP_K}f", *[v for row in top_logits for v in row]))
        f.write(logits[:steps].contiguous().numpy().astype("<f4").tobytes())


def parse_range(text):
    parts = [int(x) for x in text.split(":")]
    start, end, step = (parts + [1])[:3] if len(parts) == 2 else parts
    return list(range(start, end + 1, step))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="HF checkpoint directory or .gguf file")
    ap.add_argument("--prefill-len", type=int, default=20)
    ap.add_argument("--prefill-len-range", help="START:END[:STEP]: one file per length (needs --out-dir)")
    ap.add_argument("--decode-len", type=int, default=20)
    ap.add_argument("--prompt-file", help="text file for the prompt (cut to --prefill-len unless 0)")
    ap.add_argument("--prompt-ids", help="comma-separated prompt ids instead of text")
    ap.add_argument("--logit-steps", type=int, default=4, help="steps whose full logits are stored")
    ap.add_argument("--fast", action="store_true",
                    help="all cores and the CPU's own SIMD path (for a 1B model): the logits then "
                         "reproduce only to float32 reassociation, not bit for bit")
    ap.add_argument("--threads", type=int, default=0, help="with --fast: torch threads (0: all)")
    ap.add_argument("--out", help="output file (single point)")
    ap.add_argument("--out-dir", help="output directory: prefill<P>.bin per point")
    args = ap.parse_args()

    if args.threads > 1 and not args.fast:
        ap.error("--threads goes with --fast (a reproducible reference runs on one thread)")
    if not args.fast:
        reproducible.pin_environment()  # before torch computes anything
        reproducible.pin_torch(torch)
    model, tokenizer, version = load(args.model, args.threads)
    lengths = parse_range(args.prefill_len_range) if args.prefill_len_range else [args.prefill_len]
    if len(lengths) > 1 and not args.out_dir:
        sys.exit("hf_reference: --prefill-len-range needs --out-dir")
    for length in lengths:
        prompt, source = build_prompt(args, tokenizer, length)
        tokens, top_ids, top_logits, logits = reference(model, prompt, args.decode_len, args.logit_steps)
        meta = {"model": os.path.basename(os.path.normpath(args.model)), "prompt": source,
                "prefill_len": len(prompt), "decode_len": len(tokens), "transformers": version,
                "torch": torch.__version__, "attn": "eager", "dtype": "float32",
                "arithmetic": "fast" if args.fast else "reproducible"}
        path = args.out if not args.out_dir else os.path.join(args.out_dir, f"prefill{len(prompt)}.bin")
        write(path, prompt, tokens, top_ids, top_logits, logits, meta)
        print(f"{path}: prompt {len(prompt)} ({source}), {len(tokens)} tokens: {tokens[:8]}...", file=sys.stderr)


if __name__ == "__main__":
    main()
