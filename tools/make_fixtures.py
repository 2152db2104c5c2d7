#!/usr/bin/env python3
"""Generate the tiny Llama-family test checkpoints (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM) under tests/fixtures/ together with Hugging Face transformers float32
reference outputs (reference.bin).

    python3 tools/make_fixtures.py            # (re)write tests/fixtures/
    python3 tools/make_fixtures.py --check    # regenerate into a temp dir, compare bytes
    python3 tools/make_fixtures.py --only gqa_tied_bf16 --out /tmp/fx

Requirements: tools/requirements-reference.txt (torch, transformers, safetensors,
numpy at pinned versions).  The output is deterministic: the same versions
reproduce every file byte for byte, on any core count and SIMD level
(tools/reproducible.py fixes torch's arithmetic path).  See docs/FIXTURES.md.

How a fixture is made (per fixture, per candidate seed, starting at base_seed):
  1. Build the fixture's config class (LlamaConfig, MistralConfig or
     Qwen2Config); draw every weight and bias with numpy's PCG64 (uniform
     distribution, integer-exact, platform independent) in sorted tensor-name
     order; round to the storage dtype (bf16/f16) and back to float32.
  2. save_pretrained() the storage-dtype model into the fixture directory and
     reload it with from_pretrained(dtype=float32, attn_implementation="eager");
     the reloaded weights must equal the in-memory ones bit for bit.
  3. Prompt: PCG64-random ids in [3, vocab) minus the EOS ids (optionally BOS first).
  4. Reference: float32 logits at every prompt position (one forward pass);
     greedy generate(do_sample=False, max_new_tokens=16) with EOS disabled.
  5. Accept the seed if, over every prompt position and every greedy step,
     top1 - top2 >= 1e-3 * max|logit| (max over all those rows), the greedy
     tokens agree with a cache-free full forward pass, and no generated token
     is an EOS id.  Otherwise try seed + 1.
"""

import os

import reproducible

reproducible.pin_environment()  # one thread, one SIMD path: before torch is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import argparse
import dataclasses
import filecmp
import hashlib
import json
import re
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import (GenerationConfig, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

from hf_logits import REF_MAGIC, read_reference, write_reference  # the MLHFREF1 format, written once

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures")

N_GENERATED = 16
GAP_REL = 1e-3           # required min(top1 - top2) / max|logit|
MAX_SEED_TRIES = 200

REF_VERSION = 1  # what write_reference writes when every prompt position has a row

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# model_type: (config class, model class, config keys only that class has, at their fixture defaults)
ARCHS = {
    "llama": (LlamaConfig, LlamaForCausalLM, dict(attention_bias=False, mlp_bias=False)),
    "mistral": (MistralConfig, MistralForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
}


def llama3_rope(theta, factor, low, high, original):
    return {"rope_type": "llama3", "rope_theta": float(theta), "factor": float(factor),
            "low_freq_factor": float(low), "high_freq_factor": float(high),
            "original_max_position_embeddings": int(original)}


def default_rope(theta):
    return {"rope_type": "default", "rope_theta": float(theta)}


def llama_config(vocab, hidden, layers, ffn, heads, kv_heads, head_dim, tied, rope, max_positions, eps):
    """The config fields a fixture chooses (LlamaConfig's, which MistralConfig and Qwen2Config
    share), in the order of the FIXTURES rows."""
    return dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, intermediate_size=ffn,
                num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                tie_word_embeddings=tied, rope_parameters=rope, max_position_embeddings=max_positions,
                rms_norm_eps=eps)


@dataclasses.dataclass
class Fixture:
    name: str
    covers: str
    base_seed: int
    storage: str                      # key of DTYPES
    config: dict
    n_prompt: int = 16
    bos_first: bool = True
    generation_config: dict = None    # extra generation_config.json fields (eos list ...)
    max_shard_size: str = None        # save_pretrained(max_shard_size=...) for sharding
    min_shards: int = 1
    arch: str = "llama"               # key of ARCHS


# config: llama_config(vocab, hidden, layers, ffn, heads, kv_heads, head_dim, tied, rope,
#                      max_positions, rms_norm_eps)
FIXTURES = [
    Fixture(
        name="gqa_tied_bf16",
        covers="GQA (6 heads / 2 KV heads, n_kv=2 is not a multiple of tp=3 or tp=4), tied "
               "embeddings, bf16 safetensors, default RoPE theta 10000",
        base_seed=1000, storage="bfloat16",
        config=llama_config(256, 96, 2, 160, 6, 2, 16, True, default_rope(10000.0), 128, 1e-5),
    ),
    Fixture(
        name="h9kv3_llama3rope_bf16",
        covers="SmolLM2-like head counts (9 heads / 3 KV heads), tied, bf16, rope_theta 500000 "
               "with llama3 RoPE scaling; the 48-token prompt runs past "
               "original_max_position_embeddings=32; generation_config.json with an EOS list",
        base_seed=2000, storage="bfloat16", n_prompt=48,
        config=llama_config(320, 144, 3, 256, 9, 3, 16, True, llama3_rope(500000.0, 8.0, 1.0, 4.0, 32), 256, 1e-5),
        generation_config=dict(eos_token_id=[2, 4]),
    ),
    Fixture(
        name="h8kv2_headdim_untied_f32",
        covers="explicit head_dim 24 (heads*head_dim = 192 != hidden 64), untied lm_head, "
               "float32 safetensors, llama3 RoPE scaling (factor 32, original 16) with a "
               "24-token prompt, no BOS at the prompt start",
        base_seed=3000, storage="float32", n_prompt=24, bos_first=False,
        config=llama_config(200, 64, 2, 128, 8, 2, 24, False, llama3_rope(10000.0, 32.0, 1.0, 4.0, 16), 128, 1e-6),
    ),
    Fixture(
        name="mha_sharded_bf16",
        covers="MHA (4 heads / 4 KV heads), untied, bf16, sharded checkpoint "
               "(model-0000k-of-0000n.safetensors + model.safetensors.index.json)",
        base_seed=4000, storage="bfloat16",
        config=llama_config(256, 64, 2, 96, 4, 4, 16, False, default_rope(10000.0), 128, 1e-6),
        max_shard_size="64KB", min_shards=3,
    ),
    Fixture(
        name="f16_small",
        covers="float16 safetensors, 1 layer, MQA (4 heads / 1 KV head), tied; "
               "generation_config.json with an EOS list",
        base_seed=5000, storage="float16",
        config=llama_config(128, 64, 1, 128, 4, 1, 16, True, default_rope(10000.0), 64, 1e-5),
        generation_config=dict(eos_token_id=[2, 5, 7]),
    ),
    Fixture(
        name="mistral_window_bf16",
        covers="MistralForCausalLM, GQA (6 heads / 2 KV heads), untied, bf16, sliding_window 128 "
               "= max_position_embeddings (the engine runs it exactly at max_seq_len <= 128)",
        base_seed=6000, storage="bfloat16", arch="mistral",
        config=dict(llama_config(192, 96, 2, 160, 6, 2, 16, False, default_rope(10000.0), 128, 1e-5),
                    sliding_window=128),
    ),
    Fixture(
        name="qwen2_bias_bf16",
        covers="Qwen2ForCausalLM: q/k/v biases (no o bias), 9 heads / 3 KV heads (tp 4 replicates "
               "KV heads with their biases), tied, bf16, rope_theta 1000000, rms_norm_eps 1e-6, "
               "use_sliding_window false",
        base_seed=7000, storage="bfloat16", arch="qwen2",
        config=dict(llama_config(192, 72, 2, 144, 9, 3, 8, True, default_rope(1000000.0), 128, 1e-6),
                    use_sliding_window=False),
    ),
    Fixture(
        name="llama_bias_f32",
        covers="LlamaForCausalLM with attention_bias (q/k/v/o biases) and mlp_bias (gate/up/down), "
               "6 heads / 3 KV heads, untied, float32; row-parallel o/down biases added once "
               "after the all-reduce",
        base_seed=8000, storage="float32",
        config=dict(llama_config(128, 48, 2, 96, 6, 3, 8, False, default_rope(10000.0), 128, 1e-5),
                    attention_bias=True, mlp_bias=True),
    ),
]

COMMON_CONFIG = dict(bos_token_id=1, eos_token_id=2, pad_token_id=None, hidden_act="silu",
                     initializer_range=0.15)

README_TEXT = """\
# Test fixtures (generated)

Every file below this directory is generated by `tools/make_fixtures.py` (tiny random
Llama-family checkpoints (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`)
written by Hugging Face transformers, plus `reference.bin`
with HF float32 reference logits and greedy tokens); do not edit anything here by hand.
Regenerate with `python3 tools/make_fixtures.py` and verify with
`python3 tools/make_fixtures.py --check` (needs `tools/requirements-reference.txt`);
`manifest.json` records seeds, margins and the library versions used, and
`docs/FIXTURES.md` documents each fixture and the `reference.bin` format.
Other generated files live here too: `gguf/` is written by `tools/make_gguf_fixtures.py`,
`tokenizer/` by `tools/make_tokenizer_fixtures.py`, `sampling/` by
`tools/make_sampling_golden.py`, and `*/eval_reference.bin` by
`tools/hf_reference.py` (docs/EVAL_REFERENCE.md).
"""


def setup_torch():
    reproducible.pin_torch(torch)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def pcg(seed, stream):
    return np.random.Generator(np.random.PCG64([int(seed), int(stream)]))


def draw_weights(model, storage, seed):
    """Uniform random weights, std chosen per tensor kind, rounded to `storage` dtype.

    numpy PCG64 + Generator.random() is exact integer arithmetic (53-bit mantissa
    construction), so the draws do not depend on the CPU's vector extensions.
    """
    rng = pcg(seed, 0)
    hidden = model.config.hidden_size
    state = {}
    for name, p in sorted(model.named_parameters()):  # tied lm_head is not a separate param
        shape = tuple(p.shape)
        if name.endswith(".bias"):
            # q/k biases large enough that RoPE of a wrongly placed bias shows
            a = (0.5 if ("q_proj" in name or "k_proj" in name) else 0.2) * np.sqrt(3.0)
            w = (2.0 * rng.random(shape) - 1.0) * a
        elif name.endswith("norm.weight"):
            lo, hi = 0.8, 1.2                       # RMSNorm gains around 1
            u = rng.random(shape)
            w = lo + (hi - lo) * u
        else:
            fan_in = shape[1]
            if "embed_tokens" in name or name == "lm_head.weight":
                std = 3.0 / np.sqrt(hidden)         # logits std ~3: well separated
            elif "q_proj" in name or "k_proj" in name:
                std = 1.4 / np.sqrt(fan_in)         # attention scores std ~2: not uniform
            elif "o_proj" in name or "down_proj" in name:
                std = 3.0 / np.sqrt(fan_in)         # layers outweigh the token's own
            else:                                   # embedding: less self-repetition
                std = 1.0 / np.sqrt(fan_in)
            a = std * np.sqrt(3.0)
            u = rng.random(shape)
            w = (2.0 * u - 1.0) * a
        t = torch.from_numpy(w.astype(np.float32))
        t = t.to(DTYPES[storage]).to(torch.float32)  # the exact values stored in the file
        state[name] = t
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(state[name])
    return state


def make_prompt(fx, seed):
    rng = pcg(seed, 1)
    # ids 0..2 (pad-like 0, BOS 1, EOS 2) and every EOS id of the fixture are excluded
    allowed = np.array([t for t in range(3, fx.config["vocab_size"]) if t not in eos_ids(fx)],
                       dtype=np.int64)
    ids = allowed[rng.integers(0, len(allowed), size=fx.n_prompt, dtype=np.int64)]
    if fx.bos_first:
        ids[0] = COMMON_CONFIG["bos_token_id"]
    return [int(x) for x in ids]


def top2_gap(rows):
    top = torch.topk(rows, 2, dim=-1).values
    return (top[:, 0] - top[:, 1])


def eos_ids(fx):
    ids = {COMMON_CONFIG["eos_token_id"]}
    if fx.generation_config and "eos_token_id" in fx.generation_config:
        e = fx.generation_config["eos_token_id"]
        ids.update(e if isinstance(e, list) else [e])
    return ids


# Files under a fixture directory that other tools write (tools/hf_reference.py's eval
# references): this script neither deletes nor compares them.
FOREIGN_FILES = {"eval_reference.bin"}


def clear_ours(out_dir):
    """Empties out_dir of what this script writes, keeping FOREIGN_FILES."""
    os.makedirs(out_dir, exist_ok=True)
    for entry in os.listdir(out_dir):
        if entry in FOREIGN_FILES:
            continue
        path = os.path.join(out_dir, entry)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def try_seed(fx, seed, out_dir):
    """Builds, saves and evaluates one candidate. Returns (ok, info)."""
    config_class, model_class, arch_defaults = ARCHS[fx.arch]
    cfg = config_class(**{**COMMON_CONFIG, **arch_defaults, **fx.config})
    torch.manual_seed(seed)  # HF init runs first; every value is then overwritten
    model = model_class(cfg).eval()
    state = draw_weights(model, fx.storage, seed)

    # Save in the storage dtype.
    clear_ours(out_dir)
    model.to(DTYPES[fx.storage])
    gen_cfg = dict(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id)
    if fx.generation_config:
        gen_cfg.update(fx.generation_config)
    model.generation_config = GenerationConfig(**gen_cfg)
    kw = {"max_shard_size": fx.max_shard_size} if fx.max_shard_size else {}
    model.save_pretrained(out_dir, **kw)
    del model

    # Reload in float32 exactly as a user would, check it holds the same values.
    ref = model_class.from_pretrained(out_dir, dtype=torch.float32,
                                           attn_implementation="eager").eval()
    # generate() fills unset fields from the model's generation_config: clear EOS
    # there so that exactly N_GENERATED tokens come out.
    ref.generation_config.eos_token_id = None
    ref.generation_config.bos_token_id = None
    assert ref.config._attn_implementation == "eager"
    rsd = dict(ref.named_parameters())
    for name, t in state.items():
        assert rsd[name].dtype == torch.float32
        assert torch.equal(rsd[name].detach(), t), f"{name}: reloaded weights differ"
    if cfg.tie_word_embeddings:
        assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()

    prompt = make_prompt(fx, seed)
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        logits = ref(input_ids=ids).logits[0].float()          # [n_prompt, vocab]
        gcfg = GenerationConfig(do_sample=False, max_new_tokens=N_GENERATED, min_new_tokens=0,
                                eos_token_id=None, pad_token_id=0, bos_token_id=None,
                                return_dict_in_generate=True, output_logits=True,
                                temperature=None, top_p=None, top_k=None)
        out = ref.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gcfg)
        seq = out.sequences[0].tolist()
        assert seq[:len(prompt)] == prompt
        generated = seq[len(prompt):]
        assert len(generated) == N_GENERATED, f"generate produced {len(generated)} tokens"
        step_logits = torch.stack([l[0].float() for l in out.logits])  # [16, vocab]
        assert step_logits.shape[0] == N_GENERATED
        assert step_logits.argmax(-1).tolist() == generated
        # Cache-free cross-check: one forward over prompt + generated.
        full = ref(input_ids=torch.tensor([seq[:-1]])).logits[0]
        nocache = full[len(prompt) - 1:].argmax(-1).tolist()

    rows = torch.cat([logits, step_logits])
    gaps = top2_gap(rows)
    max_abs = rows.abs().max().item()
    min_gap = gaps.min().item()
    info = dict(seed=seed, prompt=prompt, generated=generated, logits=logits.numpy(),
                min_gap=min_gap, max_abs_logit=max_abs, min_gap_rel=min_gap / max_abs,
                min_gap_prompt=gaps[:len(prompt)].min().item(),
                min_gap_greedy=gaps[len(prompt):].min().item(),
                distinct_generated=len(set(generated)))
    reasons = []
    if min_gap < GAP_REL * max_abs:
        reasons.append(f"min gap {min_gap:.3g} < {GAP_REL:g} * max|logit| {max_abs:.3g}")
    if nocache != generated:
        reasons.append("greedy tokens differ from the cache-free forward pass")
    bad = eos_ids(fx) & set(generated)
    if bad:
        reasons.append(f"generated EOS ids {sorted(bad)}")
    info["reasons"] = reasons
    return not reasons, info


def build_fixture(fx, out_root, log):
    out_dir = os.path.join(out_root, fx.name)
    for seed in range(fx.base_seed, fx.base_seed + MAX_SEED_TRIES):
        ok, info = try_seed(fx, seed, out_dir)
        if ok:
            break
        log(f"  {fx.name}: seed {seed} rejected: {'; '.join(info['reasons'])}")
    else:
        raise SystemExit(f"{fx.name}: no acceptable seed in {MAX_SEED_TRIES} tries")

    files = sorted(os.listdir(out_dir))
    shards = [f for f in files if f.endswith(".safetensors")]
    if len(shards) < fx.min_shards:
        raise SystemExit(f"{fx.name}: {len(shards)} shards, wanted >= {fx.min_shards}")
    if fx.min_shards > 1:
        assert "model.safetensors.index.json" in files
    write_reference(os.path.join(out_dir, "reference.bin"), fx.config["vocab_size"],
                    info["prompt"], info["generated"], info["logits"])
    log(f"  {fx.name}: seed {info['seed']}  min gap {info['min_gap']:.4g} "
        f"(rel {info['min_gap_rel']:.3g}, max|logit| {info['max_abs_logit']:.3g})  "
        f"generated {info['generated']} ({info['distinct_generated']} distinct)")
    return info


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def generate_all(out_root, names, log):
    setup_torch()
    os.makedirs(out_root, exist_ok=True)
    selected = [fx for fx in FIXTURES if not names or fx.name in names]
    unknown = set(names or []) - {fx.name for fx in FIXTURES}
    if unknown:
        raise SystemExit(f"unknown fixture(s): {sorted(unknown)}")
    manifest = {
        "generator": "tools/make_fixtures.py",
        "versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__,
                     "numpy": np.__version__},
        "reference_format": {"magic": REF_MAGIC.decode(), "version": REF_VERSION},
        "gap_rule": f"min(top1-top2) >= {GAP_REL:g} * max|logit| over prompt rows and greedy steps",
        "fixtures": {},
    }
    for fx in selected:
        info = build_fixture(fx, out_root, log)
        d = os.path.join(out_root, fx.name)
        manifest["fixtures"][fx.name] = {
            "covers": fx.covers,
            "storage_dtype": fx.storage,
            "base_seed": fx.base_seed,
            "seed": info["seed"],
            "n_prompt": fx.n_prompt,
            "n_generated": N_GENERATED,
            "prompt_ids": info["prompt"],
            "generated_ids": info["generated"],
            "min_gap": float(f"{info['min_gap']:.6g}"),
            "min_gap_prompt": float(f"{info['min_gap_prompt']:.6g}"),
            "min_gap_greedy": float(f"{info['min_gap_greedy']:.6g}"),
            "max_abs_logit": float(f"{info['max_abs_logit']:.6g}"),
            "min_gap_rel": float(f"{info['min_gap_rel']:.6g}"),
            "files": {f: {"bytes": os.path.getsize(os.path.join(d, f)),
                          "sha256": sha256(os.path.join(d, f))}
                      for f in sorted(os.listdir(d))},
        }
    if not names:  # README and manifest describe the full set
        with open(os.path.join(out_root, "README.md"), "w") as f:
            f.write(README_TEXT)
        text = json.dumps(manifest, indent=2, sort_keys=True)
        # Keep id lists on one line.
        text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",
                      lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                      text)
        with open(os.path.join(out_root, "manifest.json"), "w") as f:
            f.write(text + "\n")
    return manifest


def list_files(root):
    out = []
    for dirpath, _, filenames in os.walk(root):
        for fn in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, fn), root))
    return sorted(out)


def check(out_root, names, atol):
    with tempfile.TemporaryDirectory(prefix="mlfixtures-") as tmp:
        generate_all(tmp, names, log=lambda s: print(s, flush=True))
        new_files = list_files(tmp)
        # Other tools own other files under tests/fixtures (gguf/ and tokenizer/ fixtures,
        # eval_reference.bin from tools/hf_reference.py): compare only what this script writes.
        ours = {f.split(os.sep)[0] for f in new_files}
        old_files = [f for f in list_files(out_root)
                     if f.split(os.sep)[0] in ours and os.path.basename(f) not in FOREIGN_FILES
                     and (not names or f.split(os.sep)[0] in names)]
        problems = []
        for f in sorted(set(old_files) - set(new_files)):
            problems.append(f"only in {out_root}: {f}")
        for f in sorted(set(new_files) - set(old_files)):
            problems.append(f"missing from {out_root}: {f}")
        for f in sorted(set(new_files) & set(old_files)):
            a, b = os.path.join(out_root, f), os.path.join(tmp, f)
            if filecmp.cmp(a, b, shallow=False):
                continue
            if f.endswith("reference.bin"):
                try:
                    ra, rb = read_reference(a), read_reference(b)
                    same_ids = (np.array_equal(ra["prompt"], rb["prompt"]) and
                                np.array_equal(ra["generated"], rb["generated"]))
                    diff = (float(np.abs(ra["logits"] - rb["logits"]).max())
                            if ra["logits"].shape == rb["logits"].shape else float("inf"))
                    header_same = (ra["version"], ra["vocab"]) == (rb["version"], rb["vocab"])
                    if same_ids and header_same and diff <= atol:
                        print(f"note: {f} differs in bytes, max |logit diff| {diff:.3g} <= --atol")
                        continue
                    problems.append(f"differs: {f} (ids equal: {same_ids}, "
                                    f"max |logit diff| {diff:.3g})")
                except ValueError as e:
                    problems.append(f"differs: {f} ({e})")
            else:
                problems.append(f"differs: {f}")
    if problems:
        print("FIXTURE CHECK FAILED:")
        for p in problems:
            print("  " + p)
        return 1
    print(f"fixture check OK: {len(new_files)} files identical")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output root (default tests/fixtures)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these fixtures")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare bytes with --out; "
                         "exit 1 on any difference")
    ap.add_argument("--atol", type=float, default=0.0,
                    help="with --check: tolerate reference.bin logits differing by at most this "
                         "(ids must still match exactly; other files byte-exact). Default 0.")
    ap.add_argument("--list", action="store_true", help="list fixtures and exit")
    args = ap.parse_args()

    if args.list:
        for fx in FIXTURES:
            print(f"{fx.name}: {fx.covers}")
        return 0
    if args.check:
        return check(args.out, args.only, args.atol)
    if not args.only and os.path.isdir(args.out):
        # Remove stale fixture directories of ours (names we used to own); the current ones are
        # emptied of our files, FOREIGN_FILES kept, as each is rebuilt.
        current = {fx.name for fx in FIXTURES}
        for entry in os.listdir(args.out):
            p = os.path.join(args.out, entry)
            if entry not in current and os.path.isdir(p) and os.path.exists(os.path.join(p, "reference.bin")):
                shutil.rmtree(p)
    generate_all(args.out, args.only, log=lambda s: print(s, flush=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
