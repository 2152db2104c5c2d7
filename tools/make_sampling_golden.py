#!/usr/bin/env python3
"""Writes tests/fixtures/sampling/hf_logits_processors.json: seeded logit vectors, sampling
settings, and what Hugging Face's logits processors make of them (transformers, CPU float32),
for tests/test_sampling_golden.c.

Each case holds the logits (float32 values, written exactly), the sequence so far (prompt then
generated ids), the settings in meshllama's names, and HF's result: the final distribution the
token is drawn from (softmax in float64 of HF's processed float32 scores; 0 for removed tokens)
or, for greedy cases, the argmax of the processed scores.

The processors run in the order meshllama documents (docs/SAMPLING.md), which is the order
GenerationMixin._get_logits_processor builds for the same settings:
  SequenceBiasLogitsProcessor (logit_bias), RepetitionPenaltyLogitsProcessor (over the last
  repeat_last_n ids), MinNewTokensLengthLogitsProcessor (min_tokens), then for sampling
  TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper,
  TypicalLogitsWarper.
A case whose kept set changes when the same processors run in float64 sits on a rounding edge;
it is redrawn with the next seed so the golden never depends on the last bit.

usage: .venv/bin/python tools/make_sampling_golden.py [--out tests/fixtures/sampling/hf_logits_processors.json]
Deterministic: the same packages write byte-identical files.
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

# name, vocab, settings (meshllama names; absent = off), history (n_prompt, n_generated), ties
CASES = [
    ("greedy", 64, {}, (0, 0), False),
    ("temperature_0.7", 64, {"temperature": 0.7}, (0, 0), False),
    ("temperature_1.6", 64, {"temperature": 1.6}, (0, 0), False),
    ("top_k_1", 64, {"temperature": 1.0, "top_k": 1}, (0, 0), False),
    ("top_k_5", 64, {"temperature": 1.0, "top_k": 5}, (0, 0), False),
    ("top_k_5_ties", 64, {"temperature": 1.0, "top_k": 5}, (0, 0), True),
    ("top_k_above_vocab", 16, {"temperature": 1.0, "top_k": 40}, (0, 0), False),
    ("top_p_0.5", 64, {"temperature": 1.0, "top_p": 0.5}, (0, 0), False),
    ("top_p_0.9", 64, {"temperature": 0.8, "top_p": 0.9}, (0, 0), False),
    ("top_p_tiny", 64, {"temperature": 1.0, "top_p": 1e-4}, (0, 0), False),
    ("min_p_0.05", 64, {"temperature": 1.0, "min_p": 0.05}, (0, 0), False),
    ("min_p_0.3", 64, {"temperature": 1.3, "min_p": 0.3}, (0, 0), False),
    ("typical_0.5", 64, {"temperature": 1.0, "typical_p": 0.5}, (0, 0), False),
    ("typical_0.9", 64, {"temperature": 1.0, "typical_p": 0.9}, (0, 0), False),
    ("repeat_1.3_greedy", 64, {"repeat_penalty": 1.3, "repeat_last_n": -1}, (10, 6), False),
    ("repeat_0.7_sampled", 64, {"temperature": 1.0, "repeat_penalty": 0.7, "repeat_last_n": -1}, (8, 8), False),
    ("repeat_window_4", 64, {"temperature": 1.0, "repeat_penalty": 1.5, "repeat_last_n": 4}, (12, 6), False),
    ("logit_bias", 64, {"temperature": 1.0, "logit_bias": [[3, 2.5], [7, -1.25], [11, float("-inf")]]}, (0, 0), False),
    ("min_tokens_bans_eos", 64, {"temperature": 1.0, "min_tokens": 3, "eos": [0, 5]}, (6, 1), False),
    ("min_tokens_reached", 64, {"temperature": 1.0, "min_tokens": 2, "eos": [0, 5]}, (6, 2), False),
    ("all_warpers", 64, {"temperature": 0.9, "top_k": 20, "top_p": 0.95, "min_p": 0.02, "typical_p": 0.95,
                         "repeat_penalty": 1.1, "repeat_last_n": 8}, (10, 4), False),
    ("llama_cpp_defaults", 256, {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                                 "repeat_penalty": 1.1, "repeat_last_n": 64}, (40, 30), False),
    ("big_vocab_top_p_min_p", 4096, {"temperature": 0.7, "top_p": 0.8, "min_p": 0.01}, (0, 0), False),
]


def processors(settings, n_prompt, dtype):
    procs = []
    if settings.get("logit_bias"):
        bias = {(int(t),): float(b) for t, b in settings["logit_bias"]}
        procs.append(SequenceBiasLogitsProcessor(sequence_bias=bias))
    if settings.get("repeat_penalty", 1.0) != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=settings["repeat_penalty"]))
    if settings.get("min_tokens", 0) > 0:
        procs.append(MinNewTokensLengthLogitsProcessor(n_prompt, settings["min_tokens"], settings["eos"]))
    warpers = []
    if settings.get("temperature", 0.0) > 0:
        if settings["temperature"] != 1.0:
            warpers.append(TemperatureLogitsWarper(settings["temperature"]))
        if settings.get("top_k", 0) > 0:
            warpers.append(TopKLogitsWarper(settings["top_k"]))
        if settings.get("top_p", 1.0) < 1.0:
            warpers.append(TopPLogitsWarper(settings["top_p"]))
        if settings.get("min_p", 0.0) > 0:
            warpers.append(MinPLogitsWarper(settings["min_p"]))
        if settings.get("typical_p", 1.0) < 1.0:
            warpers.append(TypicalLogitsWarper(settings["typical_p"]))
    return procs, warpers


def run_hf(logits, history, n_prompt, settings, dtype):
    procs, warpers = processors(settings, n_prompt, dtype)
    scores = torch.tensor(logits, dtype=dtype).unsqueeze(0)
    ids = torch.tensor(history, dtype=torch.long).unsqueeze(0)
    window = settings.get("repeat_last_n", 64)
    for p in procs:
        if isinstance(p, RepetitionPenaltyLogitsProcessor):
            # the window: HF sees only the last repeat_last_n ids
            scores = p(ids[:, -window:] if window > 0 else ids, scores)
        else:
            scores = p(ids, scores)
    for w in warpers:
        scores = w(ids, scores)
    return scores[0]


def make_case(name, vocab, settings, shape, ties, seed):
    n_prompt, n_generated = shape
    for attempt in range(100):
        rng = np.random.default_rng(seed * 1000 + attempt)
        logits = (rng.standard_normal(vocab) * 3.0).astype(np.float32)
        if ties:  # whole numbers: several tokens share the k-th largest logit
            logits = np.round(logits).astype(np.float32)
        history = [int(t) for t in rng.integers(0, vocab, size=n_prompt + n_generated)]
        if n_prompt + n_generated > 0:
            history[-1] = int(np.argmax(logits))  # make sure a penalty touches the best token
        s32 = run_hf(logits, history, n_prompt, settings, torch.float32)
        s64 = run_hf(logits.astype(np.float64), history, n_prompt, settings, torch.float64)
        kept32 = torch.isfinite(s32)
        kept64 = torch.isfinite(s64)
        if not torch.equal(kept32, kept64):
            continue
        if ties and int(kept32.sum()) <= settings["top_k"]:
            continue  # no tie at the k-th: try the next seed
        sampled = settings.get("temperature", 0.0) > 0
        if sampled:
            final = s32.double()
            probs = torch.softmax(final, dim=-1)
            probs[~kept32] = 0.0
            expected = {"probs": [float(x) for x in probs.tolist()], "kept": int(kept32.sum())}
        else:
            expected = {"argmax": int(torch.argmax(s32))}
        case = {"name": name, "seed": seed * 1000 + attempt, "vocab": vocab,
                "logits": [float(x) for x in logits.tolist()], "tokens": history, "n_prompt": n_prompt}
        case["settings"] = {k: v for k, v in settings.items()}
        case["expected"] = expected
        return case
    raise SystemExit(f"{name}: no seed away from a rounding edge in 100 tries")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures/sampling/hf_logits_processors.json")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    cases = [make_case(name, vocab, settings, shape, ties, i + 1)
             for i, (name, vocab, settings, shape, ties) in enumerate(CASES)]
    doc = {
        "description": "HF logits processors on seeded logits; written by tools/make_sampling_golden.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
        "tolerance": {"probs_abs": 1e-6},
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        # -inf (a banned bias) is written as the string "-inf": JSON has no infinity
        text = json.dumps(doc, indent=None, separators=(",", ":"), allow_nan=True)
        f.write(text.replace("-Infinity", '"-inf"') + "\n")
    print(f"{args.out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
