"""Bad input raises a Python exception carrying meshllama's message, and the interpreter (and
the model) live on."""
import json
import os
import shutil

import pytest
import torch

import meshllama

PROMPT = [1, 17, 92, 33, 5]


@pytest.fixture
def model(tiny_models):
    _, _, path = tiny_models("gqa_tied_bf16")
    m, _ = meshllama.from_pretrained(path, 2, 16, max_batch=2)
    yield m
    m.close()


def test_unsupported_architecture(tiny_models, tmp_path):
    _, _, path = tiny_models("mha_f32")
    for name in os.listdir(path):
        shutil.copy(os.path.join(path, name), tmp_path)
    config = json.load(open(tmp_path / "config.json"))
    config["architectures"], config["model_type"] = ["GemmaForCausalLM"], "gemma"
    json.dump(config, open(tmp_path / "config.json", "w"))
    with pytest.raises(meshllama.MeshllamaError) as e:
        meshllama.from_pretrained(tmp_path)
    assert "config.json" in str(e.value) and "gemma" in str(e.value)


def test_bad_tp(tiny_models):
    _, _, path = tiny_models("gqa_tied_bf16")  # 6 heads
    with pytest.raises(meshllama.MeshllamaError, match="tp"):
        meshllama.from_pretrained(path, 7)


def test_float_input_ids(model):
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.tensor([[1.0, 2.0]]))


def test_token_outside_vocabulary(model):
    with pytest.raises(meshllama.ArgumentError, match="256|vocab"):
        model(torch.tensor([[1, 300]]))
    assert model(torch.tensor([PROMPT])).logits.shape == (1, 5, 256)  # still usable


def test_past_max_seq_len(model):
    out = model(torch.tensor([PROMPT * 3]), use_cache=True)  # 15 of 16 positions
    cache = out.past_key_values
    model(torch.tensor([[3]]), past_key_values=cache, use_cache=True)  # the 16th
    with pytest.raises(meshllama.MeshllamaError, match="16|max_seq_len"):
        model(torch.tensor([[4]]), past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == 16  # the failed step left the cache as it was
    with pytest.raises(meshllama.MeshllamaError, match="16|max_seq_len"):
        model(torch.tensor([PROMPT * 4]))


def test_more_rows_than_slots(model):
    with pytest.raises(meshllama.MeshllamaError, match="max_batch=2"):
        model(torch.tensor([PROMPT] * 3))


def test_closed_model(model):
    cache = model(torch.tensor([PROMPT]), use_cache=True).past_key_values
    model.close()
    with pytest.raises(meshllama.MeshllamaError, match="closed"):
        model(torch.tensor([PROMPT]))
    with pytest.raises(meshllama.MeshllamaError, match="closed"):
        model(torch.tensor([[5]]), past_key_values=cache)
    del cache  # releasing slots of a closed model is harmless


def test_cache_of_another_model(model, tiny_models):
    _, _, path = tiny_models("gqa_tied_bf16")
    other, _ = meshllama.from_pretrained(path, 1, 16, max_batch=1)
    cache = other(torch.tensor([PROMPT]), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="another model"):
        model(torch.tensor([[5]]), past_key_values=cache)
    with pytest.raises(ValueError, match="holds 1 sequences"):
        other(torch.tensor([[5], [6]]), past_key_values=cache)


def test_foreign_nonempty_cache(model):
    from transformers import DynamicCache
    cache = DynamicCache()
    cache.update(torch.zeros(1, 2, 3, 16), torch.zeros(1, 2, 3, 16), 0)
    with pytest.raises(ValueError, match="MeshCache"):
        model(torch.tensor([[5]]), past_key_values=cache)


def test_padding_in_the_middle(model):
    with pytest.raises(ValueError, match="left padding"):
        model(torch.tensor([PROMPT]), attention_mask=torch.tensor([[1, 1, 0, 1, 1]]))


def test_wrong_cache_position(model):
    out = model(torch.tensor([PROMPT]), use_cache=True)
    with pytest.raises(ValueError, match="cache_position"):
        model(torch.tensor([[5]]), past_key_values=out.past_key_values, cache_position=torch.tensor([3]))


def test_beam_search_is_refused(model):
    with pytest.raises(NotImplementedError, match="MeshCache"):
        model.generate(torch.tensor([PROMPT]), num_beams=2, max_new_tokens=3, do_sample=False, pad_token_id=0)


def test_build_model_wrong_dtype(tiny_models):
    hf_model, _, _ = tiny_models("mha_f32")
    bad = type(hf_model)(hf_model.config).eval()
    bad.load_state_dict(hf_model.state_dict())
    bad.model.layers[0].mlp.up_proj.weight.data = bad.model.layers[0].mlp.up_proj.weight.data.double()
    with pytest.raises(meshllama.MeshllamaError) as e:
        meshllama.build_model(bad, 1, 32)
    assert "model.layers.0.mlp.up_proj.weight" in str(e.value) and "dtype" in str(e.value)
    assert e.value.code == "ML_ERR_TENSOR"


def test_build_model_non_contiguous(tiny_models):
    hf_model, _, _ = tiny_models("mha_f32")
    bad = type(hf_model)(hf_model.config).eval()
    bad.load_state_dict(hf_model.state_dict())
    w = bad.model.layers[1].self_attn.q_proj.weight
    w.data = w.data.t().contiguous().t()
    with pytest.raises(ValueError, match="model.layers.1.self_attn.q_proj.weight is not contiguous"):
        meshllama.build_model(bad, 1, 32)


def test_build_model_wrong_shape_names_the_tensor(tiny_models):
    hf_model, _, _ = tiny_models("mha_f32")
    bad = type(hf_model)(hf_model.config).eval()
    bad.load_state_dict(hf_model.state_dict())
    bad.model.layers[1].mlp.down_proj.weight.data = bad.model.layers[1].mlp.down_proj.weight.data[:, :100].contiguous()
    with pytest.raises(meshllama.MeshllamaError, match="model.layers.1.mlp.down_proj.weight has shape"):
        meshllama.build_model(bad, 2, 32)


def test_build_model_unsupported_architecture(tiny_models):
    hf_model, _, _ = tiny_models("mha_f32")
    text = json.loads(hf_model.config.to_json_string())
    text.update(architectures=["GemmaForCausalLM"], model_type="gemma")

    class Config:
        def to_json_string(self):
            return json.dumps(text)

    class Fake:
        config = Config()
        state_dict = hf_model.state_dict

    with pytest.raises(meshllama.MeshllamaError) as e:
        meshllama.build_model(Fake(), 1, 32)
    assert "gemma" in str(e.value)


def test_build_model_not_a_model():
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        meshllama.build_model(object(), 1, 32)
