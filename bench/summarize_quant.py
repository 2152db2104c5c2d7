#!/usr/bin/env python3
"""Summarise one bench/compare_quant.sh run directory as a Markdown table.

    python3 bench/summarize_quant.py bench/results/quant-20260101-120000 > summary.md

Reads, per type T (bf16, q8_0, q4_k_m, ...: every type with files in the directory) and round N:
  ml_T_{fast,accurate}_single.rN.json   meshllama bench -p 512 -n 128 -b 1 --json
  ml_T_{fast,accurate}_batch.rN.json    meshllama bench -p 0 -n 32 -b 1,8,32 -d 128 --json
  llamacpp_T_single.rN.json             llama-bench -p 512 -n 128 -r 1 -o json
  llamacpp_T_batch.rN.jsonl             llama-batched-bench -npp 128 -ntg 32 -npl 1,8,32
and prints one row per (type, test): meshllama fast and accurate tok/s (best round, with the
fraction of the machine limit meshllama bench probed), llama.cpp's best round, and the ratio of
each meshllama mode to llama.cpp.
"""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from summarize import batched, best_rounds, llama_rounds, load_jsonl, ml_results  # noqa: E402

ORDER = ("bf16", "q8_0", "q4_k_m")


def types_in(d):
    """The types with results in d: bf16, q8_0, q4_k_m first, then the others by name."""
    found = {os.path.basename(p)[len("ml_"):].rsplit("_", 2)[0] for p in glob.glob(os.path.join(d, "ml_*_*_*.r*.json"))}
    return [t for t in ORDER if t in found] + sorted(found - set(ORDER))


def rounds(d, pattern):
    return sorted(glob.glob(os.path.join(d, pattern)))


def llama_batched_best(paths):
    """{batch: best decode tok/s over the rounds} from llama-batched-bench jsonl files."""
    out = {}
    for p in paths:
        for b, ts in batched(load_jsonl(p)).items():
            out[b] = max(ts, out.get(b, 0.0))
    return out


def cell(r):
    if not r:
        return "-"
    frac = r.get("fraction")
    return f"{r['tok_s']:.2f}" + (f" ({frac * 100:.0f}%)" if frac else "")


def ratio(r, ref):
    return f"{r['tok_s'] / ref:.2f}x" if r and ref else "-"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    print("meshllama tok/s (fraction of the limit its bench probed) beside llama.cpp, best round:\n")
    print("| type | test | meshllama fast | meshllama accurate | llama.cpp | fast / llama.cpp | accurate / llama.cpp |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for t in types_in(d):
        rows = []
        single = {a: ml_results(best_rounds(rounds(d, f"ml_{t}_{a}_single.r*.json"))) for a in ("fast", "accurate")}
        lc = llama_rounds(rounds(d, f"llamacpp_{t}_single.r*.json"))
        for test in ("pp512", "tg128"):
            ref = lc.get(test)
            rows.append((test, single["fast"].get((test, 1)), single["accurate"].get((test, 1)), ref[0] if ref else None))
        batch = {a: ml_results(best_rounds(rounds(d, f"ml_{t}_{a}_batch.r*.json"))) for a in ("fast", "accurate")}
        lcb = llama_batched_best(rounds(d, f"llamacpp_{t}_batch.r*.jsonl"))
        for b in (1, 8, 32):
            rows.append((f"decode batch {b}", batch["fast"].get(("tg32", b)), batch["accurate"].get(("tg32", b)), lcb.get(b)))
        for test, fast, acc, ref in rows:
            if not (fast or acc or ref):
                continue
            print(f"| {t} | {test} | {cell(fast)} | {cell(acc)} | {'-' if not ref else f'{ref:.2f}'} | "
                  f"{ratio(fast, ref)} | {ratio(acc, ref)} |")
    try:
        with open(os.path.join(d, "machine.txt")) as f:
            print("\n" + "".join("    " + line for line in f))
    except OSError:
        pass


if __name__ == "__main__":
    main()
