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

import numpy as np

import gguf
from gguf_llama import add_hyperparameters, to_meta_rows

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "gguf_llamacpp")
FIXTURES = {"q4_k_m.gguf": "Q4_K_M", "q6_k.gguf": "Q6_K"}


def write_source(path):
    """The float32 model llama-quantize reads."""
    rng = np.random.Generator(np.random.PCG64(17))
    hidden, n_head, n_kv, head_dim, ffn, vocab, layers = 256, 8, 2, 64, 512, 256, 2
    config = {"num_attention_heads": n_head, "num_key_value_heads": n_kv, "hidden_size": hidden,
              "head_dim": head_dim, "num_hidden_layers": layers, "max_position_embeddings": 128,
              "intermediate_size": ffn, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
    w = gguf.GGUFWriter(path, arch="llama")
    add_hyperparameters(w, config, "meshllama test fixture quantised by llama-quantize")
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(0)  # ALL_F32
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"<t{i}>" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    q_dim, kv_dim = n_head * head_dim, n_kv * head_dim
    shapes = {"attn_q": (q_dim, hidden, 1.4), "attn_k": (kv_dim, hidden, 1.4), "attn_v": (kv_dim, hidden, 1.0),
              "attn_output": (hidden, q_dim, 3.0), "ffn_gate": (ffn, hidden, 1.0), "ffn_up": (ffn, hidden, 1.0),
              "ffn_down": (hidden, ffn, 3.0)}
    w.add_tensor("token_embd.weight",
                 rng.normal(0.0, 3.0 / np.sqrt(hidden), size=(vocab, hidden)).astype(np.float32))
    w.add_tensor("output_norm.weight", (1.0 + rng.normal(0.0, 0.1, size=hidden)).astype(np.float32))
    for layer in range(layers):
        for short, (rows, cols, scale) in shapes.items():
            x = rng.normal(0.0, scale / np.sqrt(cols), size=(rows, cols)).astype(np.float32)
            if short in ("attn_q", "attn_k"):
                x = to_meta_rows(x, n_head if short == "attn_q" else n_kv)
            w.add_tensor(f"blk.{layer}.{short}.weight", x)
        for short in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{layer}.{short}.weight", (1.0 + rng.normal(0.0, 0.1, size=hidden)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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
