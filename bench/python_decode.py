#!/usr/bin/env python3
"""Decode speed through the Python layer against the command: tokens/s of HF generate() on
meshllama.from_pretrained (greedy, EOS ignored), of a bare `model(token, past_key_values)` loop,
and of `meshllama run --ignore-eos --json`, on the same model, tp, threads and prompt. Rounds
alternate them; the best round of each counts (docs/BENCHMARKS.md).

`meshllama run --ignore-eos` keeps going after an end-of-generation token; generate() does the
same with eos_token_id=None (no EOS stopping criterion), and must give the command's tokens
(checked). `generate(min_new_tokens=n)` is HF's other way past EOS: its logits processor masks
the EOS logits at every step, work the command does not do, so it is timed as a row of its own.

torch's intra-op threads are left as torch sets them (what a user gets) unless --torch-threads
is given; generate() itself runs torch's ops on one thread (MeshllamaForCausalLM.generate_torch_threads),
the bare loop's argmax runs with whatever torch has.

    .venv/bin/python bench/python_decode.py [--model M] [--tp 2] [--threads 2] [-n 128] [--rounds 3]
                                            [--torch-threads N]
"""
import json
import os
import subprocess
import sys
import time

import torch

from python_bench import PROMPT, ROOT, decode_steps, load_for_decode, parser, prompt_step


class Clock:
    """A generate() streamer that stamps each generated token."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def run_cli(args):
    cmd = [os.path.join(ROOT, "build", "meshllama"), "run", "-m", args.model, "--prompt-ids",
           ",".join(map(str, PROMPT)), "-n", str(args.n), "--ignore-eos", "--json", "--tp", str(args.tp),
           "-t", str(args.threads), "-c", "512"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return out["timings"]["decode_tok_s"], out["generated_ids"]  # n - 1 decode steps over decode_ms


def run_generate(model, n, **kwargs):
    clock = Clock()
    out = model.generate(torch.tensor([PROMPT]), max_new_tokens=n, do_sample=False, streamer=clock, pad_token_id=0,
                         **kwargs)
    stamps = clock.times[1:]  # the first put() is the prompt
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), out[0, len(PROMPT):].tolist()


def run_loop(model, n):
    past, token = prompt_step(model)
    start = time.perf_counter()
    decode_steps(model, past, token, n - 1)
    return (n - 1) / (time.perf_counter() - start)


def main():
    args = parser(__doc__, tp=2, threads=2, n=128, rounds=3, torch_threads=0).parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model = load_for_decode(args.model, args.tp, args.threads)
    load_before = os.getloadavg()[0]
    best = {"cli": 0.0, "generate": 0.0, "generate_min_new": 0.0, "loop": 0.0}
    for _ in range(args.rounds):
        tok_s, cli_ids = run_cli(args)
        best["cli"] = max(best["cli"], tok_s)
        tok_s, ids = run_generate(model, args.n, eos_token_id=None)
        if ids != cli_ids:
            sys.exit(f"generate() gave other tokens than meshllama run:\n  {ids}\n  {cli_ids}")
        best["generate"] = max(best["generate"], tok_s)
        tok_s, _ = run_generate(model, args.n, min_new_tokens=args.n)
        best["generate_min_new"] = max(best["generate_min_new"], tok_s)
        best["loop"] = max(best["loop"], run_loop(model, args.n))
    result = {"model": os.path.basename(args.model), "tp": args.tp, "threads": args.threads, "n": args.n,
              "rounds": args.rounds,
              "torch_threads": torch.get_num_threads(), **{f"{k}_tok_s": round(v, 1) for k, v in best.items()},
              **{f"{k}_vs_cli": round(v / best["cli"], 3) for k, v in best.items() if k != "cli"},
              "load_before": load_before, "load_after": os.getloadavg()[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
