#!/usr/bin/env python3
"""Requantise a Llama GGUF (the default model, SmolLM2-135M-Instruct.Q4_1.gguf) into a K-quant mix,
with the `gguf` package (gguf==0.19.0) and tools/kquants.py; no llama.cpp needed.

    python3 tools/requantize_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2.Q4_K_M.gguf --mix Q4_K_M
    python3 tools/requantize_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2.Q6_K.gguf --mix Q6_K

Every tensor is dequantised by gguf-py (gguf.quants.dequantize) and quantised again; metadata is
copied as it is except general.file_type. The mixes follow llama.cpp's llama-quantize rules as
far as they matter for a Llama:
  Q4_K_M  matrices Q4_K; attn_v and ffn_down Q6_K in llama.cpp's "more bits" layers
          (i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2); the output / tied embedding Q6_K;
  Q6_K    every matrix Q6_K;
and, as llama-quantize does, a matrix whose rows are not whole 256-weight super-blocks (SmolLM2:
every row of 576 weights, so all but ffn_down) takes its fallback type: Q4_K -> Q5_0,
Q5_K -> Q5_1, Q6_K -> Q8_0. 1-D tensors (norms) stay F32. The K-quant blocks come from the simple
quantisers of tools/kquants.py (not llama.cpp's search), so the file is a valid Q4_K_M/Q6_K mix of
the same model, not byte-identical to what llama-quantize would write; meshllama's reference for
it is always gguf-py's dequantisation of these bytes.
"""

import argparse
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kquants  # noqa: E402

FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL"}
FILE_TYPE = {"Q4_K_M": 15, "Q6_K": 18}


def more_bits(layer, n_layers):
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def choose_type(name, cols, n_layers, mix):
    if mix == "Q6_K":
        wanted = "Q6_K"
    elif name in ("token_embd.weight", "output.weight"):
        wanted = "Q6_K"
    else:
        wanted = "Q4_K"
        parts = name.split(".")
        if parts[0] == "blk" and parts[2] in ("attn_v", "ffn_down") and more_bits(int(parts[1]), n_layers):
            wanted = "Q6_K"
    if cols % 256 != 0:
        wanted = FALLBACK[wanted]
    return wanted


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--mix", choices=sorted(FILE_TYPE), default="Q4_K_M")
    args = ap.parse_args()
    reader = gguf.GGUFReader(args.source)
    arch = reader.fields["general.architecture"].contents()
    n_layers = int(reader.fields[f"{arch}.block_count"].contents())
    writer = gguf.GGUFWriter(args.out, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub)
    writer.add_file_type(FILE_TYPE[args.mix])
    counts = {}
    for t in reader.tensors:
        shape = [int(n) for n in reversed(t.shape)]  # numpy order [rows, cols]
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if len(shape) == 1:
            writer.add_tensor(t.name, values)
            counts["F32"] = counts.get("F32", 0) + 1
            continue
        qtype = choose_type(t.name, shape[-1], n_layers, args.mix)
        writer.add_tensor(t.name, kquants.quantize(values, qtype), raw_dtype=QT[qtype])
        counts[qtype] = counts.get(qtype, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
