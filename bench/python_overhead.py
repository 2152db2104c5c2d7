#!/usr/bin/env python3
"""What the Python layer itself costs per decode step, without the engine: ml_forward is
replaced by a call that returns at once, so a step is only meshllama's Python (argument checks,
the cffi call, the logits tensor, the output object) plus, for generate(), Hugging Face's own
per-step work (input preparation, argmax, stopping criteria, streamer). Prints the process CPU
time per step, best of --rounds, so that other processes on a shared machine count less than
in wall time (docs/BENCHMARKS.md). The tokens are meaningless (the logits are never written).

    .venv/bin/python bench/python_overhead.py [--model M] [-n 200] [--rounds 5]
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import meshllama  # noqa: E402
from meshllama import _core  # noqa: E402

PROMPT = [1, 504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 378, 2365, 6354, 16438, 27003]


class NoForward:
    """The library, with ml_forward answering ML_OK at once."""

    def __init__(self, lib):
        self._lib = lib

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def ml_forward(self, model, batch, logits):
        return 0


class Streamer:
    def put(self, value):
        pass

    def end(self):
        pass


def per_step(fn, n):
    start = time.process_time()
    fn(n)
    return (time.process_time() - start) / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = meshllama.from_pretrained(args.model, meshllama.Mesh(tp=2, threads=2), 512, max_batch=1,
                                         tokenizer=False)
    _core.lib = NoForward(_core.lib)

    def loop(n):
        out = model(torch.tensor([PROMPT]), use_cache=True)
        past, token = out.past_key_values, int(out.logits[0, -1].argmax())
        for _ in range(n - 1):
            out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True, logits_to_keep=1)
            past, token = out.past_key_values, int(out.logits[0, -1].argmax())

    def generate(**kwargs):
        return lambda n: model.generate(torch.tensor([PROMPT]), max_new_tokens=n, do_sample=False, pad_token_id=0,
                                        **kwargs)

    paths = {"loop": loop, "generate": generate(eos_token_id=None, streamer=Streamer()),
             "generate_min_new": generate(min_new_tokens=args.n, streamer=Streamer())}
    best = {name: float("inf") for name in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            best[name] = min(best[name], per_step(fn, args.n))
    print(json.dumps({"n": args.n, "rounds": args.rounds, **{f"{k}_cpu_ms_per_step": round(v, 3)
                                                              for k, v in best.items()},
                      "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
