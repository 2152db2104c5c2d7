#!/usr/bin/env python3
"""Decode speed through the Python layer against the command: tokens/s of HF generate() on
meshllama.from_pretrained (greedy, EOS ignored), of a bare `model(token, past_key_values)` loop,
and of `meshllama run --json`, on the same model, tp, threads and prompt. Rounds alternate the
three; the best round of each counts (docs/BENCHMARKS.md).

    .venv/bin/python bench/python_decode.py [--model M] [--tp 2] [--threads 2] [-n 128] [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import meshllama  # noqa: E402

PROMPT = [1, 504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 378, 2365, 6354, 16438, 27003]


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
    return out["timings"]["decode_tok_s"]  # n - 1 decode steps over decode_ms


def run_generate(model, n):
    clock = Clock()
    model.generate(torch.tensor([PROMPT]), max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=clock,
                   pad_token_id=0)
    stamps = clock.times[1:]  # the first put() is the prompt
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run_loop(model, n):
    out = model(torch.tensor([PROMPT]), use_cache=True)
    past, token = out.past_key_values, int(out.logits[0, -1].argmax())
    start = time.perf_counter()
    for _ in range(n - 1):
        out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True, logits_to_keep=1)
        past, token = out.past_key_values, int(out.logits[0, -1].argmax())
    return (n - 1) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = meshllama.from_pretrained(args.model, meshllama.Mesh(tp=args.tp, threads=args.threads), 512,
                                         max_batch=1, tokenizer=False)
    best = {"cli": 0.0, "generate": 0.0, "loop": 0.0}
    for _ in range(args.rounds):
        best["cli"] = max(best["cli"], run_cli(args))
        best["generate"] = max(best["generate"], run_generate(model, args.n))
        best["loop"] = max(best["loop"], run_loop(model, args.n))
    result = {"model": os.path.basename(args.model), "tp": args.tp, "threads": args.threads, "n": args.n,
              "rounds": args.rounds, "cli_tok_s": round(best["cli"], 1), "generate_tok_s": round(best["generate"], 1),
              "loop_tok_s": round(best["loop"], 1), "generate_vs_cli": round(best["generate"] / best["cli"], 3),
              "loop_vs_cli": round(best["loop"] / best["cli"], 3), "load": os.getloadavg()[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
