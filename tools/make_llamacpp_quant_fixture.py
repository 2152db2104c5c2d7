#!/usr/bin/env python3
"""K-quant GGUF fixtures made by llama.cpp's own llama-quantize (issue 16 part 1), so that the
files the engine is tested on are the ones llama.cpp's users have, not only files quantised by
tools/kquants.py and gguf-py.

A float32 two-layer llama of kquant_mix.gguf's shape (hidden 256, 8 heads of 64, 2 KV heads,
FFN 512, vocab 256, tied embedding; random normal weights drawn as tools/make_gguf_fixtures.py
draws them, Q/K rows in Meta's interleaved layout as llama.cpp's converter writes them) is
written to a temporary file, then `llama-quantize SRC OUT TYPE` makes each fixture:

  q4_k_m.gguf   Q4_K_M (Q4_K matrices, Q6_K where llama.cpp spends more bits)
  q6_k.gguf     Q6_K

in tests/fixtures/gguf_llamacpp/ (a folder of their own: tools/make_gguf_fixtures.py owns gguf/).

    python3 tools/make_llamacpp_quant_fixture.py --llama-quantize PATH/llama-quantize \\
        [--out tests/fixtures/gguf_llamacpp] [--check]

llama-quantize is built from the vendored llama.cpp of bench/compare_llamacpp.sh
(`bench/compare_llamacpp.sh --build-only` prints the bin directory). The output depends on
llama.cpp's version (its quantiser and its choice of types per tensor): --check regenerates into
a temporary directory and compares bytes, and says so when they differ. Needs numpy and gguf.
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile

from make_gguf_fixtures import write_small_llama

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "gguf_llamacpp")
FIXTURES = {"q4_k_m.gguf": "Q4_K_M", "q6_k.gguf": "Q6_K"}


def write_source(path):
    """The float32 model llama-quantize reads: make_gguf_fixtures.py's two-layer llama (seed 17)."""
    write_small_llama(path, 17, "meshllama test fixture quantised by llama-quantize", 0,  # 0: ALL_F32
                      lambda short, layer, x: (x, None), merges=True)


def generate(out, llama_quantize):
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlquant-") as tmp:
        source = os.path.join(tmp, "source_f32.gguf")
        write_source(source)
        for name, qtype in FIXTURES.items():
            result = subprocess.run([llama_quantize, source, os.path.join(out, name), qtype], capture_output=True,
                                    text=True)
            if result.returncode != 0:
                raise SystemExit(f"llama-quantize {qtype} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-quantize", required=True, help="path of llama.cpp's llama-quantize")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare bytes")
    args = ap.parse_args()
    if not args.check:
        generate(args.out, args.llama_quantize)
        print(f"wrote {', '.join(FIXTURES)} in {args.out}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mlquantcheck-") as tmp:
        generate(tmp, args.llama_quantize)
        differ = [f for f in FIXTURES if not filecmp.cmp(os.path.join(tmp, f), os.path.join(args.out, f),
                                                         shallow=False)]
    if differ:
        print("differ (another llama.cpp version?): " + ", ".join(differ))
        return 1
    print(f"llama-quantize fixtures identical: {', '.join(FIXTURES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
