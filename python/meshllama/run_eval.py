"""The seed's evaluation wrapper (scripts/run_eval.py) for meshllama: teacher forcing against
Hugging Face, one `YT_METRICS={...}` line per point on stdout, a summary on stderr.

    python -m meshllama.run_eval --mode meshllama --hf-model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --prefill-len 20 --decode-len 20 --tp 2
    python -m meshllama.run_eval --mode hf --hf-model DIR --prefill-len-range 16:128:16

--mode hf runs Hugging Face itself through the same harness (it must score 1.0 / 1.0);
--mode meshllama runs meshllama.build_model(hf_model, Mesh(...), max_seq_len), or with
--from-file the checkpoint opened by meshllama itself (meshllama.from_pretrained). The
reference is HF's greedy continuation of the seed's prompt ("The quick brown fox jumps over the
lazy dog." repeated, special tokens included, cut to --prefill-len), computed here in float32;
--ref scores against a file of tools/hf_reference.py instead (what `meshllama eval --ref`
reads), so that both can be compared on the same reference.
"""
import argparse
import json
import os
import sys

import torch

from .evaluate import fox_prompt, hf_reference, load_hf, read_reference, teacher_forcing

DEFAULT_MODEL = os.path.join("models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def parse_range(text, name):
    try:
        parts = [int(x) for x in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        start, end, step = parts if len(parts) == 3 else parts + [1]
        if start < 1 or end < start or step < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"run_eval: {name} {text!r}: expected START:END[:STEP] with 1 <= START <= END")
    return list(range(start, end + 1, step))


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m meshllama.run_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["hf", "meshllama"], default="meshllama")
    ap.add_argument("--hf-model", default=DEFAULT_MODEL, help="HF checkpoint directory or .gguf file")
    ap.add_argument("--prefill-len", type=int, help="prompt length (default 20, or the --ref file's)")
    ap.add_argument("--prefill-len-range", help="START:END[:STEP]: one point per prompt length")
    ap.add_argument("--decode-len", type=int, help="positions to score (default 20, or all of --ref's)")
    ap.add_argument("--max-seq-len", type=int, default=0, help="KV-cache length (default: prefill + decode)")
    ap.add_argument("--max-seq-len-range", help="START:END[:STEP]: one point per KV-cache length")
    ap.add_argument("--batch", type=int, default=1, help="sequences run at once, each on the reference")
    ap.add_argument("--prefill-decode", action="store_true", help="feed the prompt one token at a time")
    ap.add_argument("--ref", help="score against this tools/hf_reference.py file (or a directory of "
                                  "prefill<P>.bin) instead of computing HF's reference")
    ap.add_argument("--from-file", action="store_true",
                    help="meshllama opens --hf-model itself instead of taking the HF model's tensors")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--mesh", help="RxC mesh shape (tp = R*C)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--act", choices=["accurate", "fast"], default="accurate")
    ap.add_argument("--kv", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--backend", choices=["auto", "threads", "mpi"], default="auto")
    ap.add_argument("--min-top1", type=float, default=0.0, help="exit 1 if a point scores below")
    ap.add_argument("--min-top5", type=float, default=0.0)
    args = ap.parse_args(argv)
    for name in ("prefill_len", "decode_len", "batch", "tp"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 1 <= args.batch <= 32:
        ap.error("--batch must be 1..32")
    args.prefill_lens = (parse_range(args.prefill_len_range, "--prefill-len-range") if args.prefill_len_range
                         else [args.prefill_len if args.prefill_len or args.ref else 20])
    args.max_seqs = (parse_range(args.max_seq_len_range, "--max-seq-len-range") if args.max_seq_len_range
                     else [args.max_seq_len])
    if args.mesh:
        try:
            args.rows, args.cols = (int(x) for x in args.mesh.lower().split("x"))
        except ValueError:
            ap.error(f"--mesh {args.mesh!r}: expected RxC, e.g. 2x4")
    else:
        args.rows = args.cols = None
    return args


def reference_for(args, hf_model, tokenizer, prefill_len, decode_len):
    if args.ref:
        path = os.path.join(args.ref, f"prefill{prefill_len}.bin") if os.path.isdir(args.ref) else args.ref
        if prefill_len is None and os.path.isdir(args.ref):
            raise SystemExit(f"run_eval: --ref {args.ref} is a directory: give --prefill-len or --prefill-len-range")
        ref = read_reference(path)
        if prefill_len is not None and len(ref.prompt) != prefill_len:
            raise SystemExit(f"run_eval: {path} holds a {len(ref.prompt)}-token prompt, not {prefill_len}")
        return ref
    if tokenizer is None:
        raise SystemExit(f"run_eval: {args.hf_model} has no tokenizer for the seed's prompt; give --ref")
    return hf_reference(hf_model, fox_prompt(tokenizer, prefill_len), decode_len)


def open_model(args, hf_model, max_seq_len):
    if args.mode == "hf":
        return hf_model
    import meshllama

    mesh = meshllama.Mesh(args.rows, args.cols, tp=None if args.rows else args.tp, backend=args.backend,
                          threads=args.threads, act=args.act, kv=args.kv)
    if args.from_file or hf_model is None or not hasattr(meshllama, "build_model"):
        model, _ = meshllama.from_pretrained(args.hf_model, mesh, max_seq_len, max_batch=args.batch,
                                             tokenizer=False)
        return model
    return meshllama.build_model(hf_model, mesh, max_seq_len, max_batch=args.batch)


def metrics(args, model, prefill_len, max_seq_len, r):
    m = {"mode": args.mode, "trace": False, "top1": round(r["top1"], 4), "top5": round(r["top5"], 4),
         "prefill_len": prefill_len, "decode_len": r["total"], "max_seq_len": max_seq_len, "batch": args.batch,
         "total": r["total"], "top5_ref": round(r["top5_ref"], 4), "model": os.path.basename(
             os.path.normpath(args.hf_model))}
    if args.mode == "meshllama":
        info = model.info
        m.update({"tp": info["tp"], "mesh": f"{args.rows}x{args.cols}" if args.rows else f"1x{info['tp']}",
                  "backend": f"{info['backend']}-{info['isa']}", "ranks": info["n_ranks"],
                  "dtype": info["weight_dtype"], "act": args.act, "kv": args.kv})
    else:
        m.update({"tp": 1, "mesh": "1x1", "backend": "hf-torch", "ranks": 1, "dtype": "f32", "act": "f32",
                  "kv": "f32"})
    m.update({"prefill_decode": args.prefill_decode, "slots_agree": r["slots_agree"],
              "logit_error": float(f"{r['logit_error']:.3e}"), "ttft_ms": round(r["ttft_ms"], 2),
              "prefill_tok_s": round(r["prefill_tok_s"], 2), "decode_tok_s_u": round(r["decode_tok_s_u"], 2)})
    return m


def main(argv=None):
    args = parse_args(argv)
    need_hf = args.mode == "hf" or not args.ref or not args.from_file
    hf_model, tokenizer = load_hf(args.hf_model) if need_hf else (None, None)
    failures = 0
    for prefill_len in args.prefill_lens:
        ref = reference_for(args, hf_model, tokenizer, prefill_len, args.decode_len or 20)
        decode = args.decode_len or (len(ref.tokens) if args.ref else 20)
        for max_seq in args.max_seqs:
            max_seq_len = max_seq or len(ref.prompt) + decode
            if len(ref.prompt) + decode > max_seq_len:
                print(f"run_eval: prefill {len(ref.prompt)} + decode {decode} exceeds max_seq_len {max_seq_len}",
                      file=sys.stderr)
                failures += 1
                continue
            model = open_model(args, hf_model, max_seq_len)
            r = teacher_forcing(model, ref, decode, args.batch, args.prefill_decode)
            m = metrics(args, model, len(ref.prompt), max_seq_len, r)
            if model is not hf_model:
                model.close()
            print("YT_METRICS=" + json.dumps(m), flush=True)
            print(f"run_eval {m['model']} ({args.mode}): prefill {m['prefill_len']}, decode {r['total']}, batch "
                  f"{args.batch}, tp {m['tp']}: top1 {100 * r['top1']:.2f}%, top5 {100 * r['top5']:.2f}%, "
                  f"top5_ref {100 * r['top5_ref']:.2f}%{'' if r['slots_agree'] else ' (SLOTS DISAGREE)'}, "
                  f"logits vs HF {r['logit_error']:.1e} over {r['logit_steps']} steps, ttft {r['ttft_ms']:.1f} ms, "
                  f"decode {r['decode_tok_s_u']:.1f} tok/s/user", file=sys.stderr)
            if not r["slots_agree"] or r["top1"] < args.min_top1 or r["top5"] < args.min_top5:
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
