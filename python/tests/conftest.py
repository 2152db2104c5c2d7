"""Tiny random Llama-family checkpoints (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)
built by Hugging Face transformers inside the tests, and the Hugging Face float32 reference they
are compared with."""
import os

import pytest
import torch
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

torch.set_num_threads(2)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOLLM2_FIXTURES = os.path.join(REPO, "tests", "fixtures", "smollm2")


def _rope(theta, llama3=False):
    if llama3:
        return {"rope_type": "llama3", "rope_theta": theta, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    return {"rope_type": "default", "rope_theta": theta}


# model_type: (config class, model class)
ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
         "qwen2": (Qwen2Config, Qwen2ForCausalLM)}

# name: (config, weight dtype). Each covers one shape feature the engine must get right; "arch"
# picks the class (default llama).
TINY = {
    "gqa_tied_bf16": (dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=True,
                           rope_parameters=_rope(10000.0)), torch.bfloat16),
    "mqa_untied_f32": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=1,
                            tie_word_embeddings=False, rope_parameters=_rope(10000.0)), torch.float32),
    "mha_f32": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
                     rope_parameters=_rope(10000.0)), torch.float32),
    "llama3rope_h12kv4_bf16": (dict(hidden_size=96, num_attention_heads=12, num_key_value_heads=4,
                                    tie_word_embeddings=True, rope_parameters=_rope(500000.0, llama3=True)),
                               torch.bfloat16),
    "headdim32_untied_f32": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                  tie_word_embeddings=False, rope_parameters=_rope(10000.0)), torch.float32),
    # the rest of the family: Mistral with a window no shorter than the tests' context and with
    # none, Qwen2's q/k/v biases (tp 4 replicates KV heads), Llama with every bias
    "mistral_window_bf16": (dict(arch="mistral", hidden_size=96, num_attention_heads=6, num_key_value_heads=2,
                                 tie_word_embeddings=False, sliding_window=256, rope_parameters=_rope(10000.0)),
                            torch.bfloat16),
    "mistral_nowindow_f32": (dict(arch="mistral", hidden_size=64, num_attention_heads=4, num_key_value_heads=1,
                                  tie_word_embeddings=True, sliding_window=None, rope_parameters=_rope(10000.0)),
                             torch.float32),
    "qwen2_bias_bf16": (dict(arch="qwen2", hidden_size=72, num_attention_heads=9, num_key_value_heads=3, head_dim=8,
                             tie_word_embeddings=True, rope_parameters=_rope(1000000.0)), torch.bfloat16),
    "llama_bias_f32": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                            mlp_bias=True, tie_word_embeddings=False, rope_parameters=_rope(10000.0)), torch.float32),
}


def tiny_classes(name):
    return ARCHS[TINY[name][0].get("arch", "llama")]


def tiny_config(name):
    shape = {k: v for k, v in TINY[name][0].items() if k != "arch"}
    return tiny_classes(name)[0](vocab_size=256, intermediate_size=160, num_hidden_layers=2,
                                 max_position_embeddings=256, initializer_range=0.15, rms_norm_eps=1e-5,
                                 bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="eager",
                                 **shape)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """name -> (HF model in the checkpoint's dtype, HF float32 reference, checkpoint directory); built once."""
    built = {}

    def get(name):
        if name not in built:
            torch.manual_seed(sum(map(ord, name)))
            model_class = tiny_classes(name)[1]
            model = model_class(tiny_config(name)).eval()
            with torch.no_grad():  # HF initialises nn.Linear biases to zero: draw them too
                for param_name, param in sorted(model.named_parameters()):
                    if param_name.endswith(".bias"):
                        param.normal_(0.0, 0.5)
            dtype = TINY[name][1]
            model = model.to(dtype)
            path = tmp_path_factory.mktemp(name)
            model.save_pretrained(path)
            reference = model_class(tiny_config(name)).eval()
            reference.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
            built[name] = (model, reference, str(path))
        return built[name]

    return get


def normalized_error(ours, reference):
    """max |ours - ref| / max |ref|: the engine's tolerance measure (docs/ACCURACY.md)."""
    ours, reference = ours.float(), reference.float()
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def pytest_report_header(config):
    import meshllama
    from meshllama import _ffi
    return [f"meshllama {meshllama.__version__}: package {os.path.dirname(meshllama.__file__)}, "
            f"library {_ffi.library_path()}"]
