#!/usr/bin/env python3
"""Generate the GGUF test fixtures under tests/fixtures/gguf/ with the `gguf` PyPI package
(GGUFWriter and gguf.quants, pinned gguf==0.19.0; see docs/GGUF.md).

    python3 tools/make_gguf_fixtures.py            # (re)write tests/fixtures/gguf/
    python3 tools/make_gguf_fixtures.py --check    # regenerate into a temp dir, compare bytes

Files (all deterministic: numpy PCG64 with fixed seeds, and GGUFWriter's byte layout):
  metadata.gguf     every metadata value type, typed arrays of each, nested arrays,
                    general.alignment = 64 and two small tensors (tests/test_gguf.c knows the values)
  quants.gguf       F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K,
                    Q6_K and Q8_K tensors of random blocks (random scales, including f16 subnormals,
                    zero and negative zero) plus, for each, "<name>.expected": float32 from
                    gguf.quants.dequantize (Q8_K, which gguf-py cannot dequantise: d * q computed
                    here, ggml's formula); an IQ2_XXS tensor (known to GGUF, not supported)
  tiny_f32.gguf, tiny_q4_1_llama3.gguf   one-layer llamas of a few KB (fuzz seeds; the second
                    mixes Q4_1/Q8_0/F32 like the default model and carries llama3 rope_freqs)
  kquant_mix.gguf   a two-layer llama (hidden 256, 8 heads of 64, 2 KV heads, FFN 512, vocab 256,
                    tied embedding) whose matrices use every block type the engine keeps, mixed per
                    tensor as Q4_K_M files mix them (KQUANT_MIX below); random normal weights
                    quantised by tools/kquants.py (K-quants, IQ4_NL) or gguf.quants (the rest)
  kquant_ffn_blocks.gguf   a one-layer K-quant llama (hidden 256, 12 heads of 64, 3 KV heads, FFN
                    1024 = 4 super-blocks) that tp 3 splits in whole super-blocks, unevenly
                    (FFN 256/256/512; o_proj 256 columns a device)
  <fixture>_<type>.gguf   the committed Hugging Face fixtures tests/fixtures/<fixture> written as
                    llama.cpp's converter writes a Llama: GGUF names, Q/K rows permuted into Meta's
                    interleaved RoPE layout, norms F32, llama.* / tokenizer.ggml.* keys, and for
                    llama3 RoPE a rope_freqs.weight tensor of per-frequency divisors; a Qwen2
                    fixture (qwen2_bias_bf16) as its Qwen2Model writes one: qwen2.* keys, Q/K rows
                    unpermuted (rotate-half RoPE), q/k/v biases blk.N.attn_{q,k,v}.bias as F32; and
                    a Llama with attention_bias and mlp_bias (llama_bias_f32) as LlamaModel writes
                    one: blk.N.attn_{q,k,v,output}.bias and ffn_{gate,up,down}.bias as F32, the q/k
                    biases permuted like their matrices' rows.
                    <type> is the storage of the projections and embeddings:
                    bf16 / f32 (the safetensors bytes unchanged) or q8_0 (gguf.quants.quantize).

llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel) reads original_max_position_embeddings
for rope_freqs from the top level of config.json, which Llama 3 configs lack, so it always uses
8192 (Llama 3's value). Our fixtures have other values inside rope_parameters; we use those, so
that each GGUF describes the same model as its safetensors twin.
"""

import argparse
import filecmp
import json
import os
import sys
import tempfile

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT
import kquants
from gguf_llama import add_hyperparameters, gguf_name, llama3_divisors, read_safetensors, rope_parameters, to_meta_rows

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
DEFAULT_OUT = os.path.join(FIXTURES, "gguf")
GGUF_VERSION_PINNED = "0.19.0"

# (HF fixture, GGUF storage types to write)
MODEL_FIXTURES = [
    ("gqa_tied_bf16", ["bf16", "q8_0"]),
    ("h8kv2_headdim_untied_f32", ["f32", "q8_0"]),
    ("qwen2_bias_bf16", ["bf16"]),
    ("llama_bias_f32", ["f32"]),
]


# ---------------------------------------------------------------- metadata.gguf

def write_metadata(path):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_uint64("test.u64", 18446744073709551615)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.true", True)
    w.add_bool("test.false", False)
    w.add_string("test.string", "h\u00e9llo w\u00f6rld \u2713")
    w.add_key_value("test.empty", "", VT.STRING)  # add_string() skips empty strings
    w.add_string("test.nul", "a\x00b")
    typed = [
        ("test.arr.u8", [0, 1, 255], VT.UINT8),
        ("test.arr.i8", [-128, 0, 127], VT.INT8),
        ("test.arr.u16", [0, 65535], VT.UINT16),
        ("test.arr.i16", [-32768, 32767], VT.INT16),
        ("test.arr.u32", [0, 4294967295], VT.UINT32),
        ("test.arr.i32", [-2147483648, 2147483647, 7], VT.INT32),
        ("test.arr.f32", [1.5, -2.25], VT.FLOAT32),
        ("test.arr.bool", [True, False, True], VT.BOOL),
        ("test.arr.u64", [0, 18446744073709551615], VT.UINT64),
        ("test.arr.i64", [-9223372036854775808, 9223372036854775807], VT.INT64),
        ("test.arr.f64", [0.1, -1e300], VT.FLOAT64),
        ("test.arr.str", ["alpha", "", "\u03b3"], VT.STRING),
    ]
    for key, values, sub in typed:
        w.add_key_value(key, values, VT.ARRAY, sub_type=sub)
    # Nested arrays: inner element types are inferred (int -> INT32, float -> FLOAT32).
    w.add_array("test.nested.int", [[1, 2, 3], [4], [5, 6]])
    w.add_array("test.nested.str", [["a", "bc"], ["def"]])
    w.add_array("test.nested.deep", [[[1.5], [2.5, 3.5]], [[4.5]]])
    w.add_tensor("small.f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("small.f16", np.array([1.0, -2.0, 0.5], dtype=np.float16))
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---------------------------------------------------------------- quants.gguf

# f16 bit patterns for block scales: subnormals, zero, negative zero, max, and ordinary values.
SPECIAL_SCALES = np.array([0x0001, 0x03ff, 0x0000, 0x8000, 0x7bff, 0xfbff, 0x3c00, 0xb800], dtype=np.uint16)


def random_blocks(rng, qtype, n_blocks):
    """Raw blocks: random quants, random finite f16 scales (some of them special)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    n_scales = {QT.Q8_0: 1, QT.Q4_0: 1, QT.Q4_1: 2, QT.Q5_0: 1, QT.Q5_1: 2, QT.IQ4_NL: 1}[qtype]
    scales = rng.normal(0.0, 0.02, size=(n_blocks, n_scales)).astype(np.float16).view(np.uint16)
    n_special = min(n_blocks, len(SPECIAL_SCALES))
    scales[:n_special, 0] = SPECIAL_SCALES[:n_special]
    if n_scales == 2:
        scales[1::3, 1] = SPECIAL_SCALES[(np.arange(len(scales[1::3])) % len(SPECIAL_SCALES))]
    raw[:, : 2 * n_scales] = scales.view(np.uint8).reshape(n_blocks, 2 * n_scales)
    return raw


# Byte offset of the f16 super-block scales (d, then dmin where there is one) in a K-quant block
# (ggml-common.h block_q2_K ... block_q6_K).
K_SCALE_OFFSETS = {QT.Q2_K: (80, 82), QT.Q3_K: (108,), QT.Q4_K: (0, 2), QT.Q5_K: (0, 2), QT.Q6_K: (208,)}


def random_k_blocks(rng, qtype, n_blocks):
    """Raw K-quant super-blocks: random bytes for the quants and sub-block scales, random finite
    f16 d/dmin (the first blocks' d special: zero, negative zero, subnormals, ...)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    offsets = K_SCALE_OFFSETS[qtype]
    scales = rng.normal(0.0, 0.02, size=(n_blocks, len(offsets))).astype(np.float16).view(np.uint16)
    n_special = min(n_blocks, len(SPECIAL_SCALES))
    scales[:n_special, 0] = SPECIAL_SCALES[:n_special]
    for k, offset in enumerate(offsets):
        raw[:, offset:offset + 2] = scales[:, k:k + 1].view(np.uint8).reshape(n_blocks, 2)
    return raw


def random_q8_k_blocks(rng, n_blocks):
    """Raw Q8_K blocks (f32 d, int8 q[256], int16 bsums[16]; bsums = sums of 16 q, as ggml writes them)
    and their float32 values d * q (ggml's dequantize_row_q8_K: gguf-py 0.19.0 has no Q8_K)."""
    d = rng.normal(0.0, 0.02, size=(n_blocks, 1)).astype(np.float32)
    q = rng.integers(-128, 128, size=(n_blocks, 256), dtype=np.int16).astype(np.int8)
    bsums = q.astype(np.int16).reshape(n_blocks, 16, 16).sum(axis=-1, dtype=np.int16)
    raw = np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=1)
    return raw, (d * q.astype(np.float32)).astype(np.float32)


def write_quants(path):
    rng = np.random.Generator(np.random.PCG64(20240607))
    w = gguf.GGUFWriter(path, arch="llama")
    # Plain types at an awkward width (37 columns, 3 rows), special values included.
    f32 = rng.normal(0.0, 1.0, size=(3, 37)).astype(np.float32)
    f32[0, :4] = [np.inf, -np.inf, -0.0, 1e-45]
    f16_bits = rng.integers(0, 65536, size=(3, 37), dtype=np.uint16)
    f16_bits[0, :6] = [0x7c00, 0xfc00, 0x0001, 0x8000, 0x7e00, 0x03ff]
    bf16_bits = rng.integers(0, 65536, size=(3, 37), dtype=np.uint16)
    bf16_bits[0, :6] = [0x7f80, 0xff80, 0x0001, 0x8000, 0x7fc0, 0x007f]
    tensors = [
        ("plain.f32", f32.view(np.uint8), QT.F32),
        ("plain.f16", f16_bits.view(np.uint8), QT.F16),
        ("plain.bf16", bf16_bits.view(np.uint8), QT.BF16),
    ]
    # Block types: 5 rows of 3 blocks (96 columns).
    for qtype in (QT.Q8_0, QT.Q4_0, QT.Q4_1):
        raw = random_blocks(rng, qtype, 15).reshape(5, -1)
        tensors.append((f"quant.{qtype.name.lower()}", raw, qtype))
    for name, raw, qtype in tensors:
        w.add_tensor(name, raw, raw_dtype=qtype)
        expected = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        w.add_tensor(name + ".expected", np.ascontiguousarray(expected))
    # Block types added later (drawn after the ones above, so those bytes did not change):
    # 5 rows of 3 blocks of 32, and 3 rows of 2 super-blocks of 256.
    later = []
    for qtype in (QT.Q5_0, QT.Q5_1, QT.IQ4_NL):
        later.append((f"quant.{qtype.name.lower()}", random_blocks(rng, qtype, 15).reshape(5, -1), qtype))
    for qtype in (QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K):
        later.append((f"quant.{qtype.name.lower()}", random_k_blocks(rng, qtype, 6).reshape(3, -1), qtype))
    for name, raw, qtype in later:
        w.add_tensor(name, raw, raw_dtype=qtype)
        expected = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        w.add_tensor(name + ".expected", np.ascontiguousarray(expected))
    q8_k, q8_k_values = random_q8_k_blocks(rng, 6)
    w.add_tensor("quant.q8_k", q8_k.reshape(3, -1), raw_dtype=QT.Q8_K)
    w.add_tensor("quant.q8_k.expected", np.ascontiguousarray(q8_k_values.reshape(3, -1)))
    iq2_xxs = rng.integers(0, 256, size=(2, gguf.GGML_QUANT_SIZES[QT.IQ2_XXS][1]), dtype=np.uint8)
    w.add_tensor("unsupported.iq2_xxs", iq2_xxs, raw_dtype=QT.IQ2_XXS)
    finish(w)


# ---------------------------------------------------------------- model fixtures

def load_hf(name):
    d = os.path.join(FIXTURES, name)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    gen_path = os.path.join(d, "generation_config.json")
    generation = {}
    if os.path.exists(gen_path):
        with open(gen_path) as f:
            generation = json.load(f)
    return config, generation, read_safetensors(os.path.join(d, "model.safetensors"))


def as_f32(entry):
    kind, array = entry
    if kind == "bf16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def tensor_bytes(entry, storage, name):
    """(raw uint8 array [rows, bytes], ggml type) for one 2-D weight, or F32 for 1-D."""
    kind, array = entry
    if array.ndim == 1:
        return as_f32(entry), None
    if storage == "q8_0":
        return gguf.quants.quantize(as_f32(entry), QT.Q8_0), QT.Q8_0
    if storage == "bf16":
        assert kind == "bf16", name
        return array.view(np.uint8), QT.BF16
    assert kind == "f32", name
    return array, None


def write_model(path, name, storage):
    config, generation, weights = load_hf(name)
    theta, params = rope_parameters(config)
    vocab = config["vocab_size"]
    arch = config.get("model_type", "llama")  # llama or qwen2 (qwen2.* keys, Q/K rows unpermuted)
    w = gguf.GGUFWriter(path, arch=arch)
    n_head, n_kv, head_dim = add_hyperparameters(w, config, f"meshllama test fixture {name} ({storage})")
    if config.get("head_dim") and config["head_dim"] != config["hidden_size"] // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type({"f32": 0, "bf16": 32, "q8_0": 7}[storage])
    # The untied fixture leaves out llama.vocab_size: the reader counts the tokens instead.
    if config.get("tie_word_embeddings", False):
        w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"<t{i}>" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    bos = generation.get("bos_token_id", config.get("bos_token_id"))
    eos = generation.get("eos_token_id", config.get("eos_token_id"))
    eos = eos if isinstance(eos, list) else [eos]
    if bos is not None:
        w.add_bos_token_id(bos)
    adders = [w.add_eos_token_id, w.add_eot_token_id, w.add_eom_token_id]
    for add, token in zip(adders, eos):
        add(token)
    if params.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_divisors(theta, params, head_dim))

    for hf_name in sorted(weights, key=lambda n: (n.count("layers"), n)):
        entry = weights[hf_name]
        kind, array = entry
        # llama: Q/K rows and their biases' elements alike (the converter permutes both)
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            entry = (kind, to_meta_rows(array, n_head))
        elif arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            entry = (kind, to_meta_rows(array, n_kv))
        data, qtype = tensor_bytes(entry, storage, hf_name)
        w.add_tensor(gguf_name(hf_name), np.ascontiguousarray(data), raw_dtype=qtype)
    finish(w)


# ---------------------------------------------------------------- tiny llamas (also fuzz seeds)

def write_tiny(path, storage):
    """A one-layer llama small enough to seed the fuzzer (tests/fuzz/fuzz_gguf.c).
    f32:        hidden 4, 2 heads of 2, 1 KV head, FFN 4, vocab 2, all F32, plain RoPE.
    q4_1_llama3: hidden 32, 2 heads of 16, 1 KV head, FFN 32, vocab 2; projections Q4_1, embedding
                Q8_0, norms F32 (the default model's mix); llama3 RoPE as rope_freqs.weight (factor 16,
                low 1, high 32, original 8192: two in-between frequencies); and "expected.*" F32 tensors
                holding gguf-py's dequantisation of attn_q / attn_k (rows back in HF order) and token_embd."""
    rng = np.random.Generator(np.random.PCG64(7 if storage == "f32" else 8))
    hidden, head_dim, ffn = (4, 2, 4) if storage == "f32" else (32, 16, 32)
    n_head, n_kv, vocab = 2, 1, 2
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name(f"meshllama tiny llama ({storage})")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_token_list(["a", "b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    config = {"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 16.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 32.0,
                                  "original_max_position_embeddings": 8192}}
    if storage != "f32":
        theta, params = rope_parameters(config)
        w.add_tensor("rope_freqs.weight", llama3_divisors(theta, params, head_dim))
    shapes = {"token_embd.weight": (vocab, hidden), "blk.0.attn_q.weight": (n_head * head_dim, hidden),
              "blk.0.attn_k.weight": (n_kv * head_dim, hidden), "blk.0.attn_v.weight": (n_kv * head_dim, hidden),
              "blk.0.attn_output.weight": (hidden, n_head * head_dim), "blk.0.ffn_gate.weight": (ffn, hidden),
              "blk.0.ffn_up.weight": (ffn, hidden), "blk.0.ffn_down.weight": (hidden, ffn)}
    expected = {}
    for name, shape in shapes.items():
        x = rng.normal(0.0, 0.5, size=shape).astype(np.float32)
        heads = n_head if "attn_q" in name else n_kv if "attn_k" in name else 0
        stored = to_meta_rows(x, heads) if heads else x
        if storage == "f32":
            w.add_tensor(name, stored)
            continue
        qtype = QT.Q8_0 if name == "token_embd.weight" else QT.Q4_1
        raw = gguf.quants.quantize(stored, qtype)
        w.add_tensor(name, raw, raw_dtype=qtype)
        values = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        if heads:  # undo to_meta_rows: HF row h*hd + j*hd/2 + i was stored at h*hd + 2*i + j
            order = [h * head_dim + j * (head_dim // 2) + i for h in range(heads)
                     for i in range(head_dim // 2) for j in range(2)]
            values = values[np.argsort(order)]
        if name.split(".")[-2] in ("attn_q", "attn_k", "token_embd"):
            expected["expected." + name.split(".")[-2]] = values
    for name in ["output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"]:
        w.add_tensor(name, (1.0 + rng.normal(0.0, 0.1, size=hidden)).astype(np.float32))
    for name, values in expected.items():
        w.add_tensor(name, np.ascontiguousarray(values))
    finish(w)


# ---------------------------------------------------------------- driver

README = """# GGUF test fixtures (generated)

Every file here is written by `tools/make_gguf_fixtures.py` with the `gguf` PyPI package
(gguf==0.19.0): do not edit by hand. Regenerate with `python3 tools/make_gguf_fixtures.py`,
verify with `python3 tools/make_gguf_fixtures.py --check`. `tests/test_gguf.c` reads them;
docs/GGUF.md describes each file.
"""


def generate(out):
    os.makedirs(out, exist_ok=True)
    write_metadata(os.path.join(out, "metadata.gguf"))
    write_quants(os.path.join(out, "quants.gguf"))
    write_tiny(os.path.join(out, "tiny_f32.gguf"), "f32")
    write_tiny(os.path.join(out, "tiny_q4_1_llama3.gguf"), "q4_1_llama3")
    write_kquant_mix(os.path.join(out, "kquant_mix.gguf"))
    write_kquant_ffn_blocks(os.path.join(out, "kquant_ffn_blocks.gguf"))
    for name, storages in MODEL_FIXTURES:
        for storage in storages:
            base = name.rsplit("_", 1)[0]
            write_model(os.path.join(out, f"{base}_{storage}.gguf"), name, storage)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README)


# ---------------------------------------------------------------- kquant_mix.gguf

# The type of each matrix (GGUF name; layer 0 / layer 1): every block type at least once; a row
# of 256 (hidden) or 512 (q heads x head_dim, FFN) weights is 1 or 2 super-blocks.
KQUANT_MIX = {
    "token_embd": "Q6_K",
    "attn_q": ("Q4_K", "Q5_0"), "attn_k": ("Q5_K", "Q5_1"), "attn_v": ("Q6_K", "Q8_K"),
    "attn_output": ("Q3_K", "Q4_K"), "ffn_gate": ("Q2_K", "Q4_K"), "ffn_up": ("IQ4_NL", "Q5_K"),
    "ffn_down": ("Q6_K", "Q4_K"),
}


def write_small_llama(path, seed, name, file_type, encode, merges=False, n_head=8, n_kv=2, ffn=512, layers=2):
    """A two-layer llama (hidden 256, 8 heads of 64, 2 KV heads, FFN 512, vocab 256, tied
    embedding) of random normal weights, std as tools/make_fixtures.py draws its HF fixtures, Q/K
    rows in Meta's layout. encode(short, layer, matrix) -> (data, raw_dtype or None) stores each
    matrix (short: token_embd with layer None, or attn_q ... ffn_down). merges: write an empty
    tokenizer.ggml.merges (llama.cpp's tools want the key). Also used by
    tools/make_llamacpp_quant_fixture.py for the float32 source it hands to llama-quantize."""
    rng = np.random.Generator(np.random.PCG64(seed))
    hidden, head_dim, vocab = 256, 64, 256
    config = {"num_attention_heads": n_head, "num_key_value_heads": n_kv, "hidden_size": hidden,
              "head_dim": head_dim, "num_hidden_layers": layers, "max_position_embeddings": 128,
              "intermediate_size": ffn, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
    w = gguf.GGUFWriter(path, arch="llama")
    add_hyperparameters(w, config, name)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(file_type)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"<t{i}>" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    if merges:
        w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    q_dim, kv_dim = n_head * head_dim, n_kv * head_dim
    # (GGUF name, rows, cols, std): std as tools/make_fixtures.py draws its HF fixtures
    shapes = {"attn_q": (q_dim, hidden, 1.4), "attn_k": (kv_dim, hidden, 1.4), "attn_v": (kv_dim, hidden, 1.0),
              "attn_output": (hidden, q_dim, 3.0), "ffn_gate": (ffn, hidden, 1.0), "ffn_up": (ffn, hidden, 1.0),
              "ffn_down": (hidden, ffn, 3.0)}

    def add_matrix(gguf_name, short, layer, x):
        data, raw_dtype = encode(short, layer, x)
        w.add_tensor(gguf_name, data, raw_dtype=raw_dtype)

    add_matrix("token_embd.weight", "token_embd", None,
               rng.normal(0.0, 3.0 / np.sqrt(hidden), size=(vocab, hidden)).astype(np.float32))
    w.add_tensor("output_norm.weight", (1.0 + rng.normal(0.0, 0.1, size=hidden)).astype(np.float32))
    for layer in range(layers):
        for short, (rows, cols, scale) in shapes.items():
            x = rng.normal(0.0, scale / np.sqrt(cols), size=(rows, cols)).astype(np.float32)
            if short in ("attn_q", "attn_k"):
                x = to_meta_rows(x, n_head if short == "attn_q" else n_kv)
            add_matrix(f"blk.{layer}.{short}.weight", short, layer, x)
        for short in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{layer}.{short}.weight", (1.0 + rng.normal(0.0, 0.1, size=hidden)).astype(np.float32))
    finish(w)


def write_kquant_mix(path):
    def encode(short, layer, x):
        qtype = KQUANT_MIX[short] if layer is None else KQUANT_MIX[short][layer]
        return kquants.quantize(x, qtype), QT[qtype]

    write_small_llama(path, 16, "meshllama test fixture kquant_mix", 15, encode)  # 15: MOSTLY_Q4_K_M


# ---------------------------------------------------------------- kquant_ffn_blocks.gguf

# One layer of K-quants whose row-parallel matrices a tp of 3 can split in whole super-blocks:
# 12 heads of 64 over 3 KV heads (o_proj: 4 heads = 256 columns per KV group) and FFN 1024 (4
# super-blocks: 256, 256, 512 columns at tp 3, where an even split, 341/341/342, cuts them).
KQUANT_FFN_BLOCKS = {
    "token_embd": "Q6_K", "attn_q": "Q4_K", "attn_k": "Q5_K", "attn_v": "Q6_K", "attn_output": "Q4_K",
    "ffn_gate": "Q4_K", "ffn_up": "Q5_K", "ffn_down": "Q6_K",
}


def write_kquant_ffn_blocks(path):
    def encode(short, layer, x):
        qtype = KQUANT_FFN_BLOCKS[short]
        return kquants.quantize(x, qtype), QT[qtype]

    write_small_llama(path, 17, "meshllama test fixture kquant_ffn_blocks", 15, encode, n_head=12, n_kv=3, ffn=1024,
                      layers=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare bytes")
    args = ap.parse_args()
    from importlib.metadata import version
    if version("gguf") != GGUF_VERSION_PINNED:
        print(f"warning: gguf {version('gguf')} installed; fixtures were made with {GGUF_VERSION_PINNED}",
              file=sys.stderr)
    if not args.check:
        generate(args.out)
        print(f"wrote {args.out}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mlgguf-") as tmp:
        generate(tmp)
        new, old = sorted(os.listdir(tmp)), sorted(os.listdir(args.out))
        problems = [f"missing from {args.out}: {f}" for f in sorted(set(new) - set(old))]
        problems += [f"only in {args.out}: {f}" for f in sorted(set(old) - set(new))]
        problems += [f"differs: {f}" for f in sorted(set(new) & set(old))
                     if not filecmp.cmp(os.path.join(tmp, f), os.path.join(args.out, f), shallow=False)]
    if problems:
        print("GGUF FIXTURE CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"GGUF fixture check OK: {len(new)} files identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
