#!/usr/bin/env python3
"""Encode throughput (MB/s, single-threaded) of meshllama's tokenizer beside HF `tokenizers` and
`tiktoken`, on the same few MB of mixed text, in the same run; also checks that all three produce
the same ids. Not a ctest: run it by hand and copy the table into docs/TOKENIZER.md.

The text (deterministic for a given Python): the standard library's .py sources in name order
(code, English comments and docstrings) up to 3 MB, then every valid-UTF-8 string of the tokenizer
test corpus up to 1 KB (prose, numbers, CJK, Arabic, emoji, ...; the pathological long words are
left out) four times, joined by newlines. test_tokenizer_unit times 10 MB pathological lines.

Two inputs: the text as one string, and line by line (for HF and tiktoken the faster of their
batch API on one thread and a Python loop of single calls; ours one call per line).

usage: python3 bench/tokenizer_bench.py [--build build-tok] [--repeats 5]
Needs: a built library (cmake --build BUILD), gzip, tiktoken==0.14.0, tokenizers, and
tests/fixtures/tokenizer (tools/make_tokenizer_fixtures.py).
"""
import argparse
import gzip
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
sys.path.insert(0, os.path.join(ROOT, "tools"))


def build_text(limit=3_000_000):
    parts, total = [], 0
    stdlib = sysconfig.get_paths()["stdlib"]
    for name in sorted(os.listdir(stdlib)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(stdlib, name), encoding="utf-8", errors="replace") as f:
            text = f.read()
        parts.append(text)
        total += len(text.encode())
        if total >= limit:
            break
    with open(os.path.join(FIXTURES, "corpus.bin"), "rb") as f:
        data = f.read()
    count = struct.unpack_from("<I", data, 8)[0]
    at, corpus = 12, []
    for _ in range(count):
        n = struct.unpack_from("<I", data, at + 1)[0]
        chunk = data[at + 5:at + 5 + n]
        at += 5 + n
        try:
            if len(chunk) <= 1000:
                corpus.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    parts += corpus * 4
    return "\n".join(parts)


def best_time(fn, repeats):
    best, result = 1e30, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def best_of_ways(repeats, *ways):
    """The fastest of several ways to call a library (batch API or a Python loop)."""
    results = [best_time(way, repeats) for way in ways]
    return min(results, key=lambda r: r[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-tok"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = "1"          # HF tokenizers: one thread
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import tiktoken
    import tokenizers
    from tokenizers import Tokenizer
    from make_tokenizer_fixtures import LLAMA3_PATTERN, LLAMA3_SPECIALS

    work = tempfile.mkdtemp(prefix="tokbench-")
    try:
        exe = os.path.join(work, "tokenizer_bench")
        libs = subprocess.check_output(["pkg-config", "--libs", "jansson", "libpcre2-8"], text=True).split()
        subprocess.check_call(["cc", "-O2", "-I" + ROOT, "-I" + os.path.join(ROOT, "include"),
                               os.path.join(ROOT, "bench", "tokenizer_bench.c"),
                               os.path.join(args.build, "libmeshllama.a"), *libs, "-lm", "-lpthread", "-o", exe])
        llama_dir = os.path.join(work, "llama3")
        os.makedirs(llama_dir)
        for name in ("tokenizer.model", "tokenizer.json"):
            with gzip.open(os.path.join(FIXTURES, "llama3", name + ".gz")) as src, \
                    open(os.path.join(llama_dir, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
        text = build_text()
        text_path = os.path.join(work, "text.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(text)
        size = len(text.encode())
        print(f"text: {size / 1e6:.2f} MB ({platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, single-threaded)")

        def ours(path, mode="whole"):
            ids_path = os.path.join(work, "ids.txt")
            out = subprocess.check_output([exe, path, text_path, str(args.repeats), ids_path, mode], text=True)
            with open(ids_path) as f:
                ids = [int(x) for x in f]
            return json.loads(out), ids

        lines = [line + "\n" for line in text.split("\n")]
        lines[-1] = lines[-1][:-1]
        if not lines[-1]:
            lines.pop()
        flat = lambda batches: [i for batch in batches for i in batch]

        rows = []
        from tiktoken.load import load_tiktoken_bpe
        ranks = load_tiktoken_bpe(os.path.join(llama_dir, "tokenizer.model"))
        enc = tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                special_tokens={s: len(ranks) + i for i, s in enumerate(LLAMA3_SPECIALS)})
        hf_llama = Tokenizer.from_file(os.path.join(llama_dir, "tokenizer.json"))
        hf_llama.encode_special_tokens = True
        hf_smol = Tokenizer.from_file(os.path.join(FIXTURES, "smollm2", "tokenizer.json"))
        hf_smol.encode_special_tokens = True
        for mode in ("whole", "lines"):
            label = "one string" if mode == "whole" else f"{len(lines)} lines"
            if mode == "whole":
                t_tik, ids_tik = best_time(lambda: enc.encode_ordinary(text), args.repeats)
                t_hf, ids_hf = best_time(lambda: hf_llama.encode(text, add_special_tokens=False).ids, args.repeats)
            else:
                t_tik, ids_tik = best_of_ways(args.repeats,
                                              lambda: flat(enc.encode_ordinary_batch(lines, num_threads=1)),
                                              lambda: flat(enc.encode_ordinary(line) for line in lines))
                t_hf, ids_hf = best_of_ways(args.repeats,
                                            lambda: flat(e.ids for e in hf_llama.encode_batch(lines, add_special_tokens=False)),
                                            lambda: flat(hf_llama.encode(line, add_special_tokens=False).ids for line in lines))
            r_model, ids_model = ours(os.path.join(llama_dir, "tokenizer.model"), mode)
            r_json, ids_json = ours(os.path.join(llama_dir, "tokenizer.json"), mode)
            same = ids_tik == ids_hf == ids_model == ids_json
            rows.append((f"Llama 3, {label}", len(ids_tik), r_model["mb_per_s"], r_json["mb_per_s"],
                         size / 1e6 / t_hf, size / 1e6 / t_tik, same))
            if mode == "whole":
                t_hf, ids_hf = best_time(lambda: hf_smol.encode(text, add_special_tokens=False).ids, args.repeats)
            else:
                t_hf, ids_hf = best_of_ways(args.repeats,
                                            lambda: flat(e.ids for e in hf_smol.encode_batch(lines, add_special_tokens=False)),
                                            lambda: flat(hf_smol.encode(line, add_special_tokens=False).ids for line in lines))
            r_json, ids_json = ours(os.path.join(FIXTURES, "smollm2", "tokenizer.json"), mode)
            rows.append((f"SmolLM2, {label}", len(ids_hf), None, r_json["mb_per_s"], size / 1e6 / t_hf, None,
                         ids_hf == ids_json))

        print(f"tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}, best of {args.repeats}")
        print("| tokenizer, input | tokens | meshllama (tokenizer.model) | meshllama (tokenizer.json) | HF tokenizers | "
              "tiktoken | same ids |")
        print("|---|---|---|---|---|---|---|")
        fmt = lambda v: "-" if v is None else f"{v:.1f} MB/s"
        for name, n, a, b, c, d, same in rows:
            print(f"| {name} | {n} | {fmt(a)} | {fmt(b)} | {fmt(c)} | {fmt(d)} | {'yes' if same else 'NO'} |")
        if not all(r[-1] for r in rows):
            sys.exit("ids differ between implementations")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
