"""The rest of the Llama family through build_model: what differs from LlamaForCausalLM is
checked here (the logits of every conftest.TINY model at tp 1-4 and greedy generate() are in
test_model.py). A Mistral sliding window shorter than the context is refused, not approximated;
the biases are sharded with their rows and change the logits; a mis-shaped bias is named."""
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

import meshllama
from conftest import REPO, normalized_error, tiny_classes, tiny_config

TOL = 1e-4
PROMPT = [1, 17, 92, 33, 5, 250, 41, 7, 64, 128, 9]


def hf_model(name, config=None, **overrides):
    """A float32 HF model with random biases for a TINY entry (or the given config), with config
    overrides."""
    config = config or tiny_config(name)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(11)
    model = tiny_classes(name)[1](config).eval()
    with torch.no_grad():
        for param_name, param in sorted(model.named_parameters()):
            if param_name.endswith(".bias"):
                param.normal_(0.0, 0.5)
    return model


def test_mistral_window_shorter_than_context_is_refused():
    hf = hf_model("mistral_window_bf16", sliding_window=64)
    with pytest.raises(meshllama.MeshllamaError, match="sliding_window 64") as e:
        meshllama.build_model(hf, meshllama.Mesh(tp=2, threads=2), 128)
    assert "max_seq_len 128" in str(e.value)
    model = meshllama.build_model(hf, meshllama.Mesh(tp=2, threads=2), 64)  # at the window: exact
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = hf(ids).logits
    assert normalized_error(model(ids).logits, want) < TOL
    model.close()
    default = meshllama.build_model(hf, 1)  # the default context stops at the window
    assert default.info["max_seq_len"] == 64
    default.close()


def test_qwen2_window_unused_by_every_layer_is_no_window():
    # use_sliding_window with max_window_layers >= num_hidden_layers: HF's layer_types are all
    # full attention, so a window shorter than the context changes nothing
    config = tiny_classes("qwen2_bias_bf16")[0](**{**tiny_config("qwen2_bias_bf16").to_dict(),
                                                  "use_sliding_window": True, "sliding_window": 8,
                                                  "max_window_layers": 2, "layer_types": None})
    assert config.sliding_window == 8 and config.layer_types == ["full_attention", "full_attention"]
    hf = hf_model("qwen2_bias_bf16", config)
    model = meshllama.build_model(hf, meshllama.Mesh(tp=3, threads=2), 128)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = hf(ids).logits
    assert normalized_error(model(ids).logits, want) < TOL


@pytest.mark.parametrize("name", ["qwen2_bias_bf16", "llama_bias_f32"])
def test_biases_count(name):
    """The parity tests would be blind if the biases did not matter: without them the logits move
    far beyond the tolerance."""
    hf = hf_model(name)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = hf(ids).logits
        for param_name, param in hf.named_parameters():
            if param_name.endswith(".bias"):
                param.zero_()
        unbiased = hf(ids).logits
    assert normalized_error(unbiased, want) > 100 * TOL


@pytest.mark.parametrize("tp", [1, 2, 3, 4])
def test_llama_o_bias_added_once(tp):
    """o_proj's and down_proj's biases follow the all-reduce: added once, whatever tp is."""
    hf = hf_model("llama_bias_f32")
    with torch.no_grad():
        for layer in hf.model.layers:
            layer.self_attn.o_proj.bias.fill_(0.75)
            layer.mlp.down_proj.bias.fill_(-0.5)
    model = meshllama.build_model(hf, meshllama.Mesh(tp=tp, threads=2), 64)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = hf(ids).logits
    assert normalized_error(model(ids).logits, want) < TOL


def test_bias_with_the_wrong_shape_is_named():
    hf = hf_model("qwen2_bias_bf16")
    hf.model.layers[1].self_attn.k_proj.bias = torch.nn.Parameter(hf.model.layers[1].self_attn.k_proj.bias[:-1].clone())
    with pytest.raises(meshllama.MeshllamaError, match=r"model.layers.1.self_attn.k_proj.bias has shape \[23\]"):
        meshllama.build_model(hf, 2, 32)


def test_bias_the_config_does_not_announce_is_refused():
    hf = hf_model("llama_bias_f32")
    hf.config.attention_bias = False
    with pytest.raises(meshllama.MeshllamaError, match="q_proj.bias.*attention_bias"):
        meshllama.build_model(hf, 1, 32)


@pytest.mark.parametrize("fixture", ["mistral_window_bf16", "qwen2_bias_bf16", "llama_bias_f32"])
def test_build_model_from_a_loaded_checkpoint(fixture):
    """The committed fixtures (tools/make_fixtures.py) as a user loads them: AutoModelForCausalLM
    picks the class from config.json, with transformers' default attention (sdpa)."""
    hf = AutoModelForCausalLM.from_pretrained(os.path.join(REPO, "tests", "fixtures", fixture),
                                              dtype=torch.float32).eval()
    assert type(hf).__name__ == hf.config.architectures[0]
    model = meshllama.build_model(hf, meshllama.Mesh(tp=4, threads=2), 128)
    ids = torch.tensor([[1, 17, 92, 33, 5, 120, 41, 7, 64, 100, 9]])  # the fixtures' vocabularies: 128, 192
    with torch.no_grad():
        want = hf(ids).logits
    assert normalized_error(model(ids).logits, want) < TOL
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert model.generate(ids, **kwargs).tolist() == hf.generate(ids, **kwargs).tolist()
