#!/usr/bin/env python3
"""Compares meshllama's hidden states with Hugging Face's, layer by layer (the seed's advice).

    build/meshllama eval -m MODEL --ref REF --dump-layers DIR
    python3 tools/compare_layers.py MODEL DIR/hidden_prefill20.bin

Runs the model in transformers (float32, eager attention, output_hidden_states=True) on the
prompt stored in the dump, and prints for every entry the max |ours - HF|, the error relative to
max |HF|, and marks the first entry where the error jumps (grows by more than --jump times over
the previous entry, or exceeds --limit): that is where to look for a bug.
Dump entries: 0 = embeddings, i = after layer i-1, n_layers + 1 = after the final norm. HF's
hidden_states has the embeddings, the inputs of layers 1..n-1 and the final norm's output.
"""
import argparse
import os
import struct
import sys

import numpy as np
import torch


def read_dump(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"MLHIDDN1":
        sys.exit(f"{path}: not a meshllama hidden-state dump")
    version, n_entries, n_tok, hidden = struct.unpack_from("<4I", data, 8)
    if version != 1:
        sys.exit(f"{path}: version {version}, expected 1")
    prompt = list(struct.unpack_from(f"<{n_tok}i", data, 24))
    states = np.frombuffer(data, dtype="<f4", offset=24 + 4 * n_tok).reshape(n_entries, n_tok, hidden)
    return prompt, states


def load_model(path):
    from transformers import AutoModelForCausalLM
    kwargs = {"dtype": torch.float32, "attn_implementation": "eager"}
    if path.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(path))
        return AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, **kwargs).eval()
    return AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("dump")
    ap.add_argument("--jump", type=float, default=10.0)
    ap.add_argument("--limit", type=float, default=1e-3)
    args = ap.parse_args()
    prompt, ours = read_dump(args.dump)
    model = load_model(args.model)
    with torch.no_grad():
        out = model(torch.tensor([prompt]), output_hidden_states=True)
    hf = [h[0].float().numpy() for h in out.hidden_states]
    n_layers = len(hf) - 1
    if ours.shape[0] != n_layers + 2:
        sys.exit(f"dump has {ours.shape[0]} entries; the model has {n_layers} layers (expected {n_layers + 2})")
    pairs = [(f"embeddings", 0, 0)] + [(f"after layer {i - 1}", i, i) for i in range(1, n_layers)]
    pairs.append(("final norm", n_layers + 1, n_layers))
    previous, flagged = None, False
    print(f"{'entry':<18} {'max |diff|':>12} {'relative':>10}")
    for name, ours_index, hf_index in pairs:
        diff = np.abs(ours[ours_index] - hf[hf_index]).max()
        rel = diff / (np.abs(hf[hf_index]).max() + 1e-30)
        mark = ""
        if not flagged and (rel > args.limit or (previous is not None and previous > 0 and rel > args.jump * previous)):
            mark, flagged = "  <-- error jumps here", True
        print(f"{name:<18} {diff:12.3e} {rel:10.3e}{mark}")
        previous = rel
    if not flagged:
        print("no jump: every layer agrees with Hugging Face within the limits")


if __name__ == "__main__":
    main()
