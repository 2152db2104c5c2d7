"""What the Python-layer benchmarks share (python_decode.py, python_overhead.py,
python_memory.py): the repository's package on the import path, the default model and prompt,
their common options, the model they load and the bare greedy decode loop."""
import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import meshllama  # noqa: E402

DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = [1, 504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 378, 2365, 6354, 16438, 27003]
OPTIONS = {"tp": ("--tp", "tensor-parallel degree"), "threads": ("--threads", "engine threads"),
           "n": ("-n", "tokens"), "rounds": ("--rounds", "rounds, the best counts"),
           "max_seq_len": ("--max-seq-len", "positions"),
           "torch_threads": ("--torch-threads", "torch.set_num_threads (0: torch's default)")}


def parser(doc, **defaults):
    """--model, and for each keyword of OPTIONS given (tp=2, rounds=3, ...) its option with
    that default."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    for name, default in defaults.items():
        flag, meaning = OPTIONS[name]
        ap.add_argument(flag, type=int, default=default, help=meaning)
    return ap


def load_for_decode(path, tp, threads):
    """meshllama.from_pretrained for one sequence of up to 512 positions, without a tokenizer."""
    model, _ = meshllama.from_pretrained(path, meshllama.Mesh(tp=tp, threads=threads), 512, max_batch=1,
                                         tokenizer=False)
    return model


def prompt_step(model):
    """The prompt through the model: (past_key_values, greedy token)."""
    out = model(torch.tensor([PROMPT]), use_cache=True)
    return out.past_key_values, int(out.logits[0, -1].argmax())


def decode_steps(model, past, token, steps):
    """steps single-token greedy steps on the cache, as a caller without generate() writes them."""
    for _ in range(steps):
        out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True, logits_to_keep=1)
        past, token = out.past_key_values, int(out.logits[0, -1].argmax())
