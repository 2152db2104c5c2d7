"""What tools/make_gguf_fixtures.py and tools/make_llama1b_shape_gguf.py share: writing a
Hugging Face Llama as GGUF the way llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel)
does (and a Qwen2 as its Qwen2Model does: qwen2.* keys, Q/K rows as HF has them, the q/k/v
biases as blk.N.attn_{q,k,v}.bias). Needs numpy and gguf==0.19.0 (pinned: the writer's byte
layout); no torch.

  * tensor names: token_embd, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,
    ffn_gate,ffn_up,ffn_down}, output_norm, output;
  * Q and K rows permuted from HF's rotate-half layout to Meta's interleaved one (llama.cpp's
    RoPE for LLM_ARCH_LLAMA rotates pairs (2i, 2i+1));
  * llama3 RoPE scaling as rope_freqs.weight, per-frequency divisors;
  * the llama.* hyperparameters in the converter's order;
  * safetensors read without torch (bf16 as its uint16 bits).
"""

import json
import math
import struct

import numpy as np

LAYER_NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}


def gguf_name(hf_name):
    """model.layers.3.self_attn.q_proj.weight -> blk.3.attn_q.weight, ...q_proj.bias ->
    blk.3.attn_q.bias (and the top-level names)."""
    if hf_name in TOP_NAMES:
        return TOP_NAMES[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<module path>.weight|bias
    return f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"


def to_meta_rows(rows, n_heads):
    """HF rotate-half rows [n_heads*d, n] (or a bias [n_heads*d]) -> Meta interleaved:
    new[h, 2i+j] = old[h, j*d/2 + i]."""
    d = rows.shape[0] // n_heads
    return np.ascontiguousarray(rows.reshape(n_heads, 2, d // 2, -1).swapaxes(1, 2).reshape(rows.shape))


def rope_parameters(config):
    """(rope_theta, the rope_parameters / rope_scaling dict) of a config.json (transformers v5 or v4)."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    return theta, params


def llama3_divisors(theta, params, head_dim):
    """rope_freqs of the llama3 scaling (1 for high frequencies, `factor` for low ones, smoothly
    interpolated between: Meta's reference and transformers' _compute_llama3_parameters), in
    float32 arithmetic as the converter's torch code does it."""
    f32 = np.float32
    inv_freq = f32(1.0) / (f32(theta) ** (np.arange(0, head_dim, 2, dtype=f32) / f32(head_dim)))
    factor = params["factor"]
    low, high = params["low_freq_factor"], params["high_freq_factor"]
    old_context = params["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_context / low, old_context / high
    divisors = []
    for freq in inv_freq:
        wavelen = f32(2 * math.pi) / freq
        if wavelen < high_wavelen:
            divisors.append(f32(1))
        elif wavelen > low_wavelen:
            divisors.append(f32(factor))
        else:
            smooth = (f32(old_context) / wavelen - f32(low)) / f32(high - low)
            divisors.append(f32(1) / ((f32(1) - smooth) / f32(factor) + smooth))
    return np.array(divisors, dtype=f32)


def add_hyperparameters(w, config, name):
    """general.name and the llama.* keys every Llama GGUF carries, in the converter's order (up
    to llama.rope.dimension_count). Returns (n_heads, n_kv_heads, head_dim)."""
    n_heads = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", n_heads)
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // n_heads
    theta, _ = rope_parameters(config)
    w.add_name(name)
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_dimension_count(head_dim)
    return n_heads, n_kv, head_dim


def read_safetensors(path):
    """{name: (kind, array)} of a safetensors file, kind "bf16" (uint16 bits), "f16" or "f32"."""
    with open(path, "rb") as f:
        data = f.read()
    (header_length,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + header_length])
    base = 8 + header_length
    dtypes = {"BF16": ("bf16", np.uint16), "F16": ("f16", np.float16), "F32": ("f32", np.float32)}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        kind, dtype = dtypes[info["dtype"]]
        begin, end = info["data_offsets"]
        array = np.frombuffer(data, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize, offset=base + begin)
        out[name] = (kind, array.reshape(info["shape"]).copy())
    return out
