#!/usr/bin/env python3
"""Compares meshllama's intermediates with Hugging Face's, one operation at a time (the seed's
"compare layer by layer", to the operation).

    build/meshllama eval -m MODEL --ref REF --dump-layers DIR
    python3 tools/compare_layers.py MODEL DIR/hidden_prefill20.bin

Runs the model in transformers (float32, eager attention) on the prompt stored in the dump with
forward hooks on the modules that match each dumped (layer, name) (include/meshllama.h has the
list: attn_norm = input_layernorm output, q/k/v = q_proj/k_proj/v_proj outputs before RoPE,
attn_out = o_proj input, o_proj, attn_residual = post_attention_layernorm input, ffn_norm, gate,
up, ffn_act = down_proj input, ffn_out, layer_out, final_norm), and prints for every entry the
max |ours - HF|, the error relative to max |HF|, and marks the first (layer, name) where the
error jumps: above --limit, or more than --jump times the largest error before it (at least
--floor). That operation is where to look for a bug.

--residual compares only the residual stream (embeddings, each layer's output, the final norm)
with HF's output_hidden_states, as this tool did before the dumps had names; version-1 dumps
(residual stream only) are always compared that way. --list prints the dump's entries and
exits without loading a model (no torch needed).
"""
import argparse
import os
import struct
import sys


def read_dump(path):
    """Returns (version, prompt, entries, bytes): entries is a list of (name, layer, width,
    offset) in file order, values float32 [n_tok, width] at offset. Version 1 entries are
    named embed, layer_out 0..n-1 and final_norm."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"MLHIDDN1":
        sys.exit(f"{path}: not a meshllama hidden-state dump")
    version, n_entries, n_tok, hidden = struct.unpack_from("<4I", data, 8)
    if version not in (1, 2):
        sys.exit(f"{path}: version {version}, expected 1 or 2")
    prompt = list(struct.unpack_from(f"<{n_tok}i", data, 24))
    at = 24 + 4 * n_tok
    entries = []
    for i in range(n_entries):
        if version == 1:
            name, layer = ("embed", -1) if i == 0 else ("final_norm", -1) if i == n_entries - 1 else ("layer_out", i - 1)
            width = hidden
        else:
            (name_bytes,) = struct.unpack_from("<I", data, at)
            name = data[at + 4:at + 4 + name_bytes].decode()
            layer, width = struct.unpack_from("<iI", data, at + 4 + name_bytes)
            at += 4 + name_bytes + 8
        entries.append((name, layer, width, at))
        at += 4 * n_tok * width
        if at > len(data):
            sys.exit(f"{path}: truncated in entry {i} ({name}, layer {layer})")
    if at != len(data):
        sys.exit(f"{path}: {len(data) - at} bytes after the last entry")
    return version, prompt, entries, data


def values(data, n_tok, entry):
    import numpy as np
    _, _, width, offset = entry
    return np.frombuffer(data, dtype="<f4", count=n_tok * width, offset=offset).reshape(n_tok, width)


def load_model(path):
    import torch
    from transformers import AutoModelForCausalLM
    kwargs = {"dtype": torch.float32, "attn_implementation": "eager"}
    if path.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(path))
        return AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, **kwargs).eval()
    return AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


# (module path under a decoder layer, "output" or "input", dump name)
LAYER_HOOKS = [
    ("input_layernorm", "output", "attn_norm"),
    ("self_attn.q_proj", "output", "q"),
    ("self_attn.k_proj", "output", "k"),
    ("self_attn.v_proj", "output", "v"),
    ("self_attn.o_proj", "input", "attn_out"),
    ("self_attn.o_proj", "output", "o_proj"),
    ("post_attention_layernorm", "input", "attn_residual"),
    ("post_attention_layernorm", "output", "ffn_norm"),
    ("mlp.gate_proj", "output", "gate"),
    ("mlp.up_proj", "output", "up"),
    ("mlp.down_proj", "input", "ffn_act"),
    ("mlp.down_proj", "output", "ffn_out"),
    ("", "output", "layer_out"),
]


def hf_intermediates(model, prompt):
    """Runs HF once with hooks; returns {(name, layer): array [n_tok, width]}."""
    import torch
    captured, handles = {}, []

    def keep(key, kind):
        def hook(module, args, output):
            tensor = args[0] if kind == "input" else output[0] if isinstance(output, tuple) else output
            captured[key] = tensor[0].detach().float().numpy().copy()
        return hook

    inner = model.model
    handles.append(inner.embed_tokens.register_forward_hook(keep(("embed", -1), "output")))
    handles.append(inner.norm.register_forward_hook(keep(("final_norm", -1), "output")))
    for layer, block in enumerate(inner.layers):
        for path, kind, name in LAYER_HOOKS:
            module = block.get_submodule(path) if path else block
            handles.append(module.register_forward_hook(keep((name, layer), kind)))
    try:
        with torch.no_grad():
            model(torch.tensor([prompt]))
    finally:
        for h in handles:
            h.remove()
    return captured


def hf_residual_stream(model, prompt):
    """The old comparison: HF's output_hidden_states as (name, layer) entries."""
    import torch
    with torch.no_grad():
        out = model(torch.tensor([prompt]), output_hidden_states=True)
    hidden = [h[0].float().numpy() for h in out.hidden_states]
    n_layers = len(hidden) - 1
    # hidden_states: the embeddings, the inputs of layers 1..n-1, then the final norm's output
    found = {("embed", -1): hidden[0], ("final_norm", -1): hidden[n_layers]}
    for layer in range(n_layers - 1):
        found[("layer_out", layer)] = hidden[layer + 1]
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("dump")
    ap.add_argument("--jump", type=float, default=10.0, help="flag an error this many times the largest before it")
    ap.add_argument("--floor", type=float, default=1e-6, help="errors below this never count as a jump")
    ap.add_argument("--limit", type=float, default=1e-3, help="flag any relative error above this")
    ap.add_argument("--residual", action="store_true", help="only the residual stream, against output_hidden_states")
    ap.add_argument("--list", action="store_true", help="print the dump's entries and exit")
    args = ap.parse_args()
    version, prompt, entries, data = read_dump(args.dump)
    if args.list:
        print(f"version {version}, {len(prompt)} tokens, {len(entries)} entries")
        for name, layer, width, _ in entries:
            print(f"{layer:3d} {name:<14} {width}")
        return
    import numpy as np
    model = load_model(args.model)
    residual = args.residual or version == 1
    hf = hf_residual_stream(model, prompt) if residual else hf_intermediates(model, prompt)
    n_layers = model.config.num_hidden_layers
    if version == 1 and len(entries) != n_layers + 2:
        sys.exit(f"dump has {len(entries)} entries; the model has {n_layers} layers (expected {n_layers + 2})")
    worst, flagged = 0.0, None
    print(f"{'layer':>5} {'name':<14} {'max |diff|':>12} {'relative':>10}")
    for entry in entries:
        name, layer = entry[0], entry[1]
        if (name, layer) not in hf:
            continue  # (the last layer's output is not in output_hidden_states; q/k/v under MPI are not dumped)
        ours, theirs = values(data, len(prompt), entry), hf[(name, layer)]
        if ours.shape != theirs.shape:
            sys.exit(f"{name} layer {layer}: ours {ours.shape}, HF {theirs.shape}")
        diff = float(np.abs(ours - theirs).max())
        rel = diff / (float(np.abs(theirs).max()) + 1e-30)
        mark = ""
        if flagged is None and (rel > args.limit or rel > args.jump * max(worst, args.floor)):
            flagged, mark = (layer, name), "  <-- error jumps here"
        worst = max(worst, rel)
        print(f"{layer:5d} {name:<14} {diff:12.3e} {rel:10.3e}{mark}")
    if flagged is None:
        print("no jump: every operation agrees with Hugging Face within the limits")
    else:
        print(f"first jump: layer {flagged[0]}, {flagged[1]}")


if __name__ == "__main__":
    main()
