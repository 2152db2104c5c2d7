#!/usr/bin/env python3
"""Hugging Face float32 reference logits for any Llama checkpoint -> reference.bin.

    python3 tools/hf_logits.py MODEL_DIR --prompt 128000,791,6864 --out ref.bin
    python3 tools/hf_logits.py MODEL_DIR --random-prompt 512 --seed 7 --bos \\
        --last 4 --generate 8 --out ref.bin

Runs LlamaForCausalLM in float32 (default attn_implementation="sdpa", to save
memory at long lengths; --attn eager is what tests/fixtures use) over the prompt
in ONE forward pass and stores the logits at every prompt position (or only the
last K with --last K), plus optionally a greedy continuation of --generate G
tokens with EOS stopping disabled (exactly G tokens).

Output: the reference.bin format of docs/FIXTURES.md.
  * version 1 (identical to tests/fixtures) when every prompt position has a
    logits row and --start-pos is 0;
  * version 2 otherwise: two extra uint32 after n_generated,
      logits_first  index of the first prompt position that has a logits row
                    (rows = n_prompt - logits_first, in position order)
      start_pos     position id of prompt token 0 (see --start-pos)
    A version-1 file is the special case logits_first = 0, start_pos = 0.

--start-pos P passes position_ids = P, P+1, ... to HF WITHOUT any earlier
context: it only shifts RoPE.  That is not what an engine computes after P
real tokens in its KV cache (those would be attended to), so prefer plain
prompts of length P + n and --last; --start-pos cannot be combined with
--generate.

Random prompts (--random-prompt N --seed S) use the same generator as
tools/make_fixtures.py: numpy PCG64([S, 1]).integers(3, vocab, N), with the
config's bos_token_id in front when --bos is given (then N tokens in total).
"""

import os
import argparse
import struct
import sys
import time

import numpy as np
import torch
import transformers
from transformers import GenerationConfig, LlamaForCausalLM

import reproducible

REF_MAGIC = b"MLHFREF1"


def write_reference(path, vocab, prompt, generated, logits, logits_first=0, start_pos=0):
    logits = np.ascontiguousarray(logits, dtype="<f4")
    assert logits.shape == (len(prompt) - logits_first, vocab), logits.shape
    version = 1 if (logits_first == 0 and start_pos == 0) else 2
    with open(path, "wb") as f:
        f.write(REF_MAGIC)
        f.write(struct.pack("<IIII", version, vocab, len(prompt), len(generated)))
        if version == 2:
            f.write(struct.pack("<II", logits_first, start_pos))
        f.write(np.asarray(prompt, dtype="<i4").tobytes())
        f.write(np.asarray(generated, dtype="<i4").tobytes())
        f.write(logits.tobytes())
    return version


def read_reference(path):
    """Reads version 1 or 2. Returns a dict (logits_first/start_pos are 0 for v1)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != REF_MAGIC:
        raise ValueError(f"{path}: bad magic")
    version, vocab, n_prompt, n_gen = struct.unpack_from("<IIII", data, 8)
    off = 24
    logits_first = start_pos = 0
    if version == 2:
        logits_first, start_pos = struct.unpack_from("<II", data, off)
        off += 8
    elif version != 1:
        raise ValueError(f"{path}: unknown version {version}")
    prompt = np.frombuffer(data, "<i4", n_prompt, off); off += 4 * n_prompt
    gen = np.frombuffer(data, "<i4", n_gen, off); off += 4 * n_gen
    rows = n_prompt - logits_first
    logits = np.frombuffer(data, "<f4", rows * vocab, off).reshape(rows, vocab)
    off += 4 * rows * vocab
    if off != len(data):
        raise ValueError(f"{path}: size {len(data)} != expected {off}")
    return dict(version=version, vocab=vocab, prompt=prompt, generated=gen, logits=logits,
                logits_first=logits_first, start_pos=start_pos)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("model_dir")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="comma-separated token ids")
    src.add_argument("--random-prompt", type=int, metavar="N", help="N random token ids")
    ap.add_argument("--seed", type=int, default=0, help="seed for --random-prompt")
    ap.add_argument("--bos", action="store_true", help="with --random-prompt: BOS first")
    ap.add_argument("--last", type=int, metavar="K", default=0,
                    help="store logits only for the last K prompt positions (version 2)")
    ap.add_argument("--start-pos", type=int, default=0, metavar="P",
                    help="position id of the first prompt token (RoPE shift only; version 2)")
    ap.add_argument("--generate", type=int, default=0, metavar="G",
                    help="greedy continuation length (EOS disabled), default 0")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i] (TF32 off)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--reproducible", action="store_true",
                    help="one thread and one SIMD path (tools/reproducible.py, as make_fixtures.py): "
                         "the same bits on any machine; slow for large models")
    ap.add_argument("--out", required=True, help="output reference.bin path")
    args = ap.parse_args()

    if args.reproducible:
        if args.threads not in (0, 1) or args.device != "cpu":
            ap.error("--reproducible runs on the CPU on one thread")
        reproducible.pin_environment()  # before torch computes anything
        reproducible.pin_torch(torch)
    elif args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.start_pos and args.generate:
        ap.error("--start-pos cannot be combined with --generate")

    t0 = time.time()
    model = LlamaForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32,
                                             attn_implementation=args.attn).eval()
    model.to(args.device)
    cfg = model.config
    vocab = cfg.vocab_size
    print(f"loaded {args.model_dir} in {time.time() - t0:.1f}s "
          f"(float32, attn={cfg._attn_implementation}, device={args.device})", file=sys.stderr)

    if args.prompt is not None:
        prompt = [int(x) for x in args.prompt.replace(" ", "").split(",") if x != ""]
    else:
        n = args.random_prompt
        rng = np.random.Generator(np.random.PCG64([args.seed, 1]))
        prompt = [int(x) for x in rng.integers(3, vocab, size=n, dtype=np.int64)]
        if args.bos:
            if cfg.bos_token_id is None:
                ap.error("config has no bos_token_id")
            prompt[0] = int(cfg.bos_token_id)
    if not prompt or any(not 0 <= t < vocab for t in prompt):
        ap.error("prompt ids must be non-empty and in [0, vocab)")
    n = len(prompt)
    k = args.last if args.last else n
    if not 0 < k <= n:
        ap.error("--last K needs 0 < K <= n_prompt")
    logits_first = n - k

    ids = torch.tensor([prompt], dtype=torch.long, device=args.device)
    pos = torch.arange(args.start_pos, args.start_pos + n, device=args.device)[None]
    t0 = time.time()
    with torch.no_grad():
        out = model(input_ids=ids, position_ids=pos, logits_to_keep=k, use_cache=False)
        logits = out.logits[0, -k:].float().cpu()
    print(f"forward over {n} tokens in {time.time() - t0:.1f}s", file=sys.stderr)
    del out

    generated = []
    step_logits = None
    if args.generate:
        model.generation_config.eos_token_id = None   # exactly G tokens
        gcfg = GenerationConfig(do_sample=False, max_new_tokens=args.generate, eos_token_id=None,
                                pad_token_id=0, bos_token_id=None, temperature=None, top_p=None,
                                top_k=None, return_dict_in_generate=True, output_logits=True)
        with torch.no_grad():
            g = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gcfg)
        generated = g.sequences[0, n:].tolist()
        if len(generated) != args.generate:
            sys.exit(f"generate produced {len(generated)} tokens, wanted {args.generate}")
        step_logits = torch.stack([l[0].float().cpu() for l in g.logits])

    rows = logits if step_logits is None else torch.cat([logits, step_logits])
    top = torch.topk(rows, 2, dim=-1).values
    gaps = top[:, 0] - top[:, 1]
    max_abs = rows.abs().max().item()
    version = write_reference(args.out, vocab, prompt, generated, logits.numpy(),
                              logits_first=logits_first, start_pos=args.start_pos)
    print(f"wrote {args.out} (version {version}): n_prompt {n}, logits rows {k}, "
          f"n_generated {len(generated)}", file=sys.stderr)
    print(f"last-position argmax {int(logits[-1].argmax())}; generated {generated}", file=sys.stderr)
    print(f"min top1-top2 gap {gaps.min().item():.4g} (at row {int(gaps.argmin())} of "
          f"{rows.shape[0]}: prompt rows then greedy steps), max|logit| {max_abs:.4g}, "
          f"rel {gaps.min().item() / max_abs:.3g}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
