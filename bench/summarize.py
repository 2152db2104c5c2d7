#!/usr/bin/env python3
"""Summarise one bench/compare_llamacpp.sh run directory as Markdown tables.

    python3 bench/summarize.py bench/results/20260101-120000 > summary.md

Reads the JSON that the run wrote:
  ml_{config}_single.rN.json   meshllama bench -p 128,512 -n 128 -b 1 -r 1, round N (--json)
  ml_tp{T}_{act}_batch.json    meshllama bench -p 0 -n 128 -b 1,8,32 -d 128     (--json)
  llamacpp_{bf16,q8_0}.rN.json llama-bench -p 128,512 -n 128 -r 1 -o json, round N
  llamacpp_{bf16,q8_0}_batched.jsonl   llama-batched-bench -npp 128 -ntg 128 -npl 1,8,32 --output-format jsonl
  load_{meshllama,llamacpp}.txt        /usr/bin/time of a minimal run: "wall_s max_rss_kb"
and prints: the machine limits, then per test meshllama tok/s (fraction of the limit) beside
llama.cpp, with the ratio. Short tests ran in rounds; each side's best round is shown, with
the slowest round's figure beside it (the spread of the shared machine).
"""

import glob
import json
import os
import sys


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_jsonl(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return rows


def best_rounds(paths):
    """One meshllama bench document from several rounds: each test's result from its fastest
    round (best tok_s), with the slowest round's tok_s kept as worst_tok_s."""
    docs = [d for d in (load_json(p) for p in paths) if d]
    if not docs:
        return None
    merged = dict(docs[0])
    best = {}
    for d in docs:
        for r in d.get("results", []):
            key = (r["test"], r["batch"])
            if key not in best or r["tok_s"] > best[key]["tok_s"]:
                worst = min(r["tok_s"], best[key]["worst_tok_s"]) if key in best else r["tok_s"]
                best[key] = dict(r, worst_tok_s=worst)
            else:
                best[key]["worst_tok_s"] = min(best[key]["worst_tok_s"], r["tok_s"])
    merged["results"] = list(best.values())
    merged["rounds"] = len(docs)
    return merged


def llama_rounds(paths):
    """llama-bench rows of several rounds (-r 1 each): each test's best round."""
    out = {}
    for p in paths:
        for name, (ts, _) in llama_bench(load_json(p)).items():
            lo = min(ts, out[name][1]) if name in out else ts
            out[name] = (max(ts, out[name][0]) if name in out else ts, lo)
    return out


def ml_results(doc):
    """{(test, batch): result} from a meshllama bench --json document."""
    if not doc:
        return {}
    return {(r["test"].split("@")[0], r["batch"]): r for r in doc.get("results", [])}


def llama_bench(rows):
    """{test: (avg t/s, stddev)} from llama-bench -o json."""
    out = {}
    for r in rows or []:
        if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
            name = f"tg{r['n_gen']}"
        elif r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
            name = f"pp{r['n_prompt']}"
        else:
            continue
        out[name] = (r["avg_ts"], r.get("stddev_ts", 0.0))
    return out


def batched(rows):
    """{batch: total decode t/s} from llama-batched-bench jsonl."""
    return {r["pl"]: r["speed_tg"] for r in rows}


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    singles = {}
    batches = {}
    for path in sorted(glob.glob(os.path.join(d, "ml_*_single.r1.json"))):
        key = os.path.basename(path)[3:-len("_single.r1.json")]  # tp1_accurate, q8_0_tp1_accurate
        singles[key] = best_rounds(sorted(glob.glob(path.replace(".r1.json", ".r*.json"))))
        batch = load_json(path.replace("_single.r1.json", "_batch.json"))
        if batch:
            batches[key] = batch
    lc = {q: llama_rounds(sorted(glob.glob(os.path.join(d, f"llamacpp_{q}.r*.json")))) for q in ("bf16", "q8_0")}
    lcb = {q: batched(load_jsonl(os.path.join(d, f"llamacpp_{q}_batched.jsonl"))) for q in ("bf16", "q8_0")}

    any_doc = next((v for v in list(singles.values()) + list(batches.values()) if v), None)
    if any_doc and "machine" in any_doc:
        m = any_doc["machine"]
        print(f"Machine limits (probed by meshllama bench, {m['probe_threads']} threads): "
              f"read {m['read_gb_s']:.2f} GB/s, peak {m['peak_gflop_s']:.1f} GFLOP/s ({m['peak_isa']}).\n")

    print("Best round (slowest round in brackets):\n")
    print("| test | meshllama config | meshllama tok/s | of limit | llama.cpp BF16 tok/s | ratio (same weights) | llama.cpp Q8_0 tok/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in sorted(singles):
        res = ml_results(singles[key])
        for test, _ in sorted(res, key=lambda k: (k[0][:2] != "pp", len(k[0]), k[0])):
            r = res.get((test, 1))
            if not r:
                continue
            lbf, lq8 = lc["bf16"].get(test), lc["q8_0"].get(test)
            frac = r.get("fraction")
            same = lq8 if key.startswith("q8_0") else lbf  # the ratio is against the same weights
            ratio = r["tok_s"] / same[0] if same else None
            def both(best, worst):
                return "-" if best is None else f"{best:.2f} ({worst:.2f})"
            print(f"| {test} | {key} | {both(r['tok_s'], r.get('worst_tok_s', r['tok_s']))} | "
                  f"{fmt(frac * 100 if frac else None, 0)}% | {both(*lbf) if lbf else '-'} | {fmt(ratio)}x | "
                  f"{both(*lq8) if lq8 else '-'} |")
    print()
    print("Batched decode after a 128-token prompt per sequence (total tok/s over all sequences):\n")
    print("| batch | meshllama config | meshllama tok/s | per seq | of limit | vs batch 1 | llama.cpp BF16 | ratio | llama.cpp Q8_0 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted(batches):
        res = ml_results(batches[key])
        tg = next((t for t, _ in res if t.startswith("tg")), None)
        base = res.get((tg, 1))
        for b in sorted(bb for t, bb in res if t == tg):
            r = res.get((tg, b))
            if not r:
                continue
            lbf, lq8 = lcb["bf16"].get(b), lcb["q8_0"].get(b)
            frac = r.get("fraction")
            scale = r["tok_s"] / base["tok_s"] if base else None
            same = lq8 if key.startswith("q8_0") else lbf
            print(f"| {b} | {key} | {r['tok_s']:.2f} | {r['tok_s_per_seq']:.2f} | {fmt(frac * 100 if frac else None, 0)}% | "
                  f"{fmt(scale)}x | {fmt(lbf)} | {fmt(r['tok_s'] / same if same else None)}x | {fmt(lq8)} |")
    print()
    tp = {}
    for key, doc in singles.items():
        res = ml_results(doc)
        tg = next((t for t, _ in res if t.startswith("tg")), None)
        tp[key] = res.get((tg, 1))
    for act in ("accurate", "fast"):
        a, b = tp.get(f"tp1_{act}"), tp.get(f"tp2_{act}")
        if a and b:
            print(f"tp=2 / tp=1 ({act}, decode batch 1): {b['tok_s'] / a['tok_s']:.3f}")
        for test in ("pp128", "pp512"):
            a = ml_results(singles.get(f"tp1_{act}")).get((test, 1))
            b = ml_results(singles.get(f"tp2_{act}")).get((test, 1))
            if a and b:
                print(f"tp=2 / tp=1 ({act}, {test}): {b['tok_s'] / a['tok_s']:.3f}")
    for name in ("meshllama", "llamacpp"):
        try:
            with open(os.path.join(d, f"load_{name}.txt")) as f:
                wall, rss = f.read().split()[:2]
            print(f"{name}: minimal run (load + 8-token prompt + 1 token) {float(wall):.2f} s wall, "
                  f"peak RSS {int(rss) / 1024:.0f} MB")
        except (OSError, ValueError):
            pass
    for key, doc in sorted(singles.items()):
        if doc:
            print(f"meshllama {key}: load {doc['load_ms']:.0f} ms, first token {doc['first_token_ms']:.0f} ms "
                  f"({doc['first_token_prompt']}-token prompt), peak RSS {doc['peak_rss_mb']:.0f} MB "
                  f"(weights {doc['weights_mb']:.0f} MB + KV {doc['kv_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
