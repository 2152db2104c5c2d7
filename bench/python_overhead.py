#!/usr/bin/env python3
"""What the Python layer itself costs per decode step, without the engine: ml_forward is
replaced by a call that returns at once, so a step is only meshllama's Python (argument checks,
the cffi call, the logits tensor, the output object) plus, for generate(), Hugging Face's own
per-step work (input preparation, argmax, stopping criteria, streamer). Prints the process CPU
time per step, best of --rounds, so that other processes on a shared machine count less than
in wall time (docs/BENCHMARKS.md). The tokens are meaningless (the logits are never written).

    .venv/bin/python bench/python_overhead.py [--model M] [-n 200] [--rounds 5]
"""
import json
import os
import time

import torch

from python_bench import PROMPT, decode_steps, load_for_decode, parser, prompt_step
from meshllama import _core  # noqa: E402 (python_bench puts the package on the path)


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
    args = parser(__doc__, n=200, rounds=5).parse_args()
    torch.set_num_threads(1)
    model = load_for_decode(args.model, tp=2, threads=2)
    _core.lib = NoForward(_core.lib)

    def loop(n):
        decode_steps(model, *prompt_step(model), n - 1)

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
