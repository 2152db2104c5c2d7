"""The seed's teacher-forcing evaluation (eval.py) for any Hugging Face-style causal LM: prefill
the prompt, score the last position against the reference's first token, then feed the
reference's token i with past_key_values and score against token i+1 (docs/EVAL_REFERENCE.md).

References are either computed here from a Hugging Face model (`hf_reference`, what
tools/hf_reference.py stores) or read from a file that tool wrote (`read_reference`).

The seed's rules are written here once: the default prompt (`fox_prompt`), how the HF model is
loaded (`load_hf`) and HF's reference (`hf_reference`). tools/hf_reference.py loads this file
by its path (it needs only torch and transformers, not the built package)."""
import json
import os
import struct
import time

import torch

FOX = "The quick brown fox jumps over the lazy dog."
TOP_K = 5


class Reference:
    """Prompt ids, HF's greedy tokens, HF's top-5 ids per step, and HF's logits at the first steps."""

    def __init__(self, prompt, tokens, top_ids, logits=None, meta=None, top_logits=None):
        self.prompt = list(prompt)
        self.tokens = list(tokens)
        self.top_ids = [list(row) for row in top_ids]
        self.logits = logits  # float32 [steps, vocab] or None
        self.meta = meta or {}
        self.top_logits = top_logits  # HF's logits of top_ids, [decode][TOP_K] (hf_reference only)


def read_reference(path):
    """Reads an MLEVREF1 file (tools/hf_reference.py; format in docs/EVAL_REFERENCE.md)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 36 or data[:8] != b"MLEVREF1":
        raise ValueError(f"{path}: not a meshllama eval reference (magic MLEVREF1)")
    version, vocab, n_prompt, n_decode, top_k, steps, meta_bytes = struct.unpack_from("<7I", data, 8)
    if version != 1:
        raise ValueError(f"{path}: version {version}, expected 1")
    at = 36
    need = at + meta_bytes + 4 * (n_prompt + n_decode + 2 * n_decode * top_k + steps * vocab)
    if len(data) != need:
        raise ValueError(f"{path}: {len(data)} bytes, expected {need}")
    meta = json.loads(data[at:at + meta_bytes])
    at += meta_bytes
    ids = struct.unpack_from(f"<{n_prompt + n_decode + n_decode * top_k}i", data, at)
    prompt, tokens = ids[:n_prompt], ids[n_prompt:n_prompt + n_decode]
    flat_top = ids[n_prompt + n_decode:]
    top_ids = [flat_top[i * top_k:(i + 1) * top_k] for i in range(n_decode)]
    at += 4 * (n_prompt + n_decode + 2 * n_decode * top_k)
    logits = torch.frombuffer(bytearray(data[at:]), dtype=torch.float32).reshape(steps, vocab) if steps else None
    return Reference(prompt, tokens, top_ids, logits, meta)


def fox_prompt(tokenizer, length):
    """The seed wrapper's default prompt: the sentence repeated (space-separated) until it
    tokenizes, special tokens included, to >= length tokens, cut to exactly length."""
    copies = 1
    while True:
        ids = tokenizer(" ".join([FOX] * copies), add_special_tokens=True)["input_ids"]
        if len(ids) >= length:
            return ids[:length]
        copies *= 2


def load_hf(path, threads=0):
    """An HF model for a checkpoint directory or a GGUF file (`gguf_file=`), in float32 with
    eager attention, in eval mode, and its tokenizer (None where the checkpoint has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    kwargs = {"dtype": torch.float32, "attn_implementation": "eager"}
    if path.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(path))
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception:  # tiny fixtures carry no tokenizer: ids only
            tokenizer = None
    return model.eval(), tokenizer


@torch.no_grad()
def hf_reference(hf_model, prompt, decode_len, logit_steps=4):
    """HF's greedy continuation with EOS ignored (eos_token_id=None: an EOS token is kept and the
    generation goes on, exactly decode_len tokens), its top-5 ids and logits per step (the
    greedy token first), and its logits at the first logit_steps steps."""
    input_ids = torch.tensor([prompt], dtype=torch.long)
    out = hf_model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                            max_new_tokens=decode_len, min_new_tokens=decode_len, eos_token_id=None,
                            pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[0, len(prompt):].tolist()
    logits = torch.stack([step[0].float() for step in out.logits])  # [decode_len, vocab]
    if len(tokens) != decode_len:
        raise ValueError(f"hf_reference: generate returned {len(tokens)} tokens, expected {decode_len}")
    top = torch.topk(logits, TOP_K, dim=-1)
    for i, token in enumerate(tokens):  # topk breaks ties arbitrarily; the greedy token comes first
        if top.indices[i, 0].item() != token:
            if logits[i, token] != top.values[i, 0]:
                raise ValueError(f"hf_reference: step {i}: greedy token {token} is not the argmax")
            row = top.indices[i].tolist()
            row.remove(token) if token in row else row.pop()
            top.indices[i] = torch.tensor([token] + row)
    return Reference(prompt, tokens, top.indices.tolist(), logits[:logit_steps].clone(),
                     top_logits=top.values.tolist())


@torch.no_grad()
def teacher_forcing(model, reference, decode_len=0, batch=1, prefill_decode=False):
    """Scores model (anything with HF's causal-LM call) against reference. Returns a dict with the
    seed's keys (top1, top5, total) and ours (top5_ref, slots_agree, logit_error, ttft_ms,
    prefill_tok_s, decode_tok_s_u)."""
    decode = decode_len or len(reference.tokens)
    if decode > len(reference.tokens):
        raise ValueError(f"decode_len {decode}: the reference holds only {len(reference.tokens)} tokens")
    prompt = torch.tensor([reference.prompt] * batch, dtype=torch.long)
    start = time.perf_counter()
    if prefill_decode:
        past = None
        for i in range(prompt.shape[1]):
            out = model(prompt[:, i:i + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
    else:
        out = model(prompt, use_cache=True)
        past = out.past_key_values
    ttft = time.perf_counter() - start
    steps = [out.logits[:, -1].float()]
    decode_start = time.perf_counter()
    for i in range(decode - 1):
        token = torch.full((batch, 1), reference.tokens[i], dtype=torch.long)
        out = model(token, past_key_values=past, use_cache=True)
        past = out.past_key_values
        steps.append(out.logits[:, -1].float())
    decode_time = time.perf_counter() - decode_start
    del past
    logits = torch.stack(steps, dim=1)  # [batch, decode, vocab]
    top5 = torch.topk(logits, TOP_K, dim=-1).indices
    want = torch.tensor(reference.tokens[:decode])
    hf_top = torch.tensor(reference.top_ids[:decode])
    hit1 = (top5[..., 0] == want).float().mean(dim=1)
    hit5 = (top5 == want[None, :, None]).any(-1).float().mean(dim=1)
    hit5_ref = (hf_top[None] == top5[..., :1]).any(-1).float().mean(dim=1)
    argmax = logits.argmax(-1)
    slots_agree = bool((argmax == argmax[:1]).all())
    logit_error, logit_steps = 0.0, 0
    if reference.logits is not None:
        logit_steps = min(decode, reference.logits.shape[0])
        for i in range(logit_steps):
            ref = reference.logits[i]
            err = ((logits[:, i] - ref).abs().max() / ref.abs().max()).item()
            logit_error = max(logit_error, err)
    return {"top1": hit1[0].item(), "top5": hit5[0].item(), "total": decode, "top5_ref": hit5_ref[0].item(),
            "slots_agree": slots_agree and bool((hit1 == hit1[0]).all()), "logit_steps": logit_steps,
            "logit_error": logit_error, "ttft_ms": 1e3 * ttft,
            "prefill_tok_s": batch * len(reference.prompt) / ttft if ttft > 0 else 0.0,
            "decode_tok_s_u": (decode - 1) / decode_time if decode > 1 and decode_time > 0 else 0.0}
