"""meshllama.build_model(hf_model, ...) as a Hugging Face causal LM against Hugging Face itself
on tiny random Llamas, Mistrals and Qwen2s (conftest.TINY): logits within 1e-4 (max |ours - HF| / max |HF|, accurate mode) at tp 1-4,
generate() token for token (greedy and seeded sampling through HF's processors), a left-padded
batch, the seed's teacher-forcing loop with past_key_values, and prefill_decode; and the same
checkpoints through from_pretrained on their saved directories."""
import pytest
import torch

import meshllama
from conftest import TINY, normalized_error

TOL = 1e-4
PROMPT = [1, 17, 92, 33, 5, 250, 41, 7, 64, 128, 9]


def open_model(tiny_models, name, tp, **kwargs):
    """The seed's API: the HF model's own tensors, handed over in memory."""
    hf_model, reference, _ = tiny_models(name)
    return meshllama.build_model(hf_model, meshllama.Mesh(tp=tp, threads=2), 128, **kwargs), reference


@pytest.mark.parametrize("name", sorted(TINY))
def test_from_pretrained_directory_matches_hf(tiny_models, name):
    _, reference, path = tiny_models(name)
    model, _ = meshllama.from_pretrained(path, meshllama.Mesh(tp=2, threads=2), 128)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = reference(ids).logits
    assert normalized_error(model(ids).logits, want) < TOL


def test_build_model_leaves_hf_weights_untouched(tiny_models):
    hf_model, _, _ = tiny_models("mha_f32")
    before = {k: v.clone() for k, v in hf_model.state_dict().items()}
    for tp in (1, 2, 3):
        model = meshllama.build_model(hf_model, tp, 64)
        model(torch.tensor([PROMPT]))
        model.close()
    assert all(torch.equal(before[k], v) for k, v in hf_model.state_dict().items())


def test_seed_api_with_a_mesh_shape(tiny_models):
    hf_model, reference, _ = tiny_models("llama3rope_h12kv4_bf16")
    model = meshllama.build_model(hf_model, meshllama.Mesh(2, 2, threads=2), 2048)
    assert model.info["tp"] == 4 and model.info["max_seq_len"] == 2048
    ids = torch.tensor([PROMPT])
    assert model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0).tolist() == \
        reference.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0).tolist()


@pytest.mark.parametrize("tp", [1, 2, 3, 4])
@pytest.mark.parametrize("name", sorted(TINY))
def test_prefill_logits_match_hf(tiny_models, name, tp):
    model, reference = open_model(tiny_models, name, tp)
    n_heads = reference.config.num_attention_heads
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = reference(ids).logits
    got = model(ids).logits
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert normalized_error(got, want) < TOL, (name, tp, n_heads)


@pytest.mark.parametrize("name, tp", [("gqa_tied_bf16", 2), ("mqa_untied_f32", 3), ("headdim32_untied_f32", 1),
                                      ("mistral_window_bf16", 4), ("mistral_nowindow_f32", 2),
                                      ("qwen2_bias_bf16", 3), ("llama_bias_f32", 4)])
def test_greedy_generate_matches_hf(tiny_models, name, tp):
    model, reference = open_model(tiny_models, name, tp)
    ids = torch.tensor([PROMPT])
    kwargs = dict(max_new_tokens=24, do_sample=False, pad_token_id=0)
    want = reference.generate(ids, **kwargs)
    got = model.generate(ids, **kwargs)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeded_sampling_matches_hf(tiny_models, seed):
    model, reference = open_model(tiny_models, "llama3rope_h12kv4_bf16", 3)
    ids = torch.tensor([PROMPT])
    kwargs = dict(max_new_tokens=20, do_sample=True, temperature=0.9, top_k=40, top_p=0.95,
                  repetition_penalty=1.2, min_new_tokens=20, pad_token_id=0)
    torch.manual_seed(seed)
    want = reference.generate(ids, **kwargs)
    torch.manual_seed(seed)
    got = model.generate(ids, **kwargs)
    assert got.tolist() == want.tolist()


def test_left_padded_batch_matches_hf(tiny_models):
    model, reference = open_model(tiny_models, "gqa_tied_bf16", 2)
    prompts = [PROMPT, PROMPT[:4], PROMPT[3:10]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kwargs = dict(attention_mask=mask, max_new_tokens=16, do_sample=False, pad_token_id=0)
    want = reference.generate(ids, **kwargs)
    got = model.generate(ids, **kwargs)
    assert got.tolist() == want.tolist()
    # and each row alone gives the same tokens
    for row, prompt in enumerate(prompts):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, pad_token_id=0)
        assert alone[0, len(prompt):].tolist() == got[row, width:].tolist()


def test_streamer_and_stopping_criteria(tiny_models):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= len(PROMPT) + 5, dtype=torch.bool)

    class Streamer:
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.tolist())

        def end(self):
            self.chunks.append("end")

    model, _ = open_model(tiny_models, "mha_f32", 2)
    streamer = Streamer()
    out = model.generate(torch.tensor([PROMPT]), max_new_tokens=50, do_sample=False, pad_token_id=0,
                         stopping_criteria=StoppingCriteriaList([Stop()]), streamer=streamer)
    assert out.shape[1] == len(PROMPT) + 5
    assert streamer.chunks[-1] == "end" and len(streamer.chunks) == 1 + 5 + 1


def teacher_forcing(model, prompt, tokens, one_at_a_time_prefill=False):
    """The seed's eval.py loop: prefill, then feed each reference token with past_key_values."""
    logits = []
    if one_at_a_time_prefill:
        past = None
        for token in prompt:
            out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
    else:
        out = model(torch.tensor([prompt]), use_cache=True)
        past = out.past_key_values
    logits.append(out.logits[:, -1])
    for token in tokens[:-1]:
        out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits.append(out.logits[:, -1])
    return torch.cat(logits)


@pytest.mark.parametrize("prefill_decode", [False, True])
def test_teacher_forcing_loop_matches_hf(tiny_models, prefill_decode):
    model, reference = open_model(tiny_models, "llama3rope_h12kv4_bf16", 4)
    ids = torch.tensor([PROMPT])
    greedy = reference.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)[0, len(PROMPT):].tolist()
    with torch.no_grad():
        want = reference(torch.tensor([PROMPT + greedy])).logits[0, len(PROMPT) - 1:-1]
    got = teacher_forcing(model, PROMPT, greedy, prefill_decode)
    assert normalized_error(got, want) < TOL
    assert got.argmax(-1).tolist() == greedy


def test_cache_frees_its_slots(tiny_models):
    model, _ = open_model(tiny_models, "mha_f32", 1, max_batch=2)
    caches = [model(torch.tensor([PROMPT]), use_cache=True).past_key_values for _ in range(2)]
    with pytest.raises(meshllama.MeshllamaError, match="KV slots"):
        model(torch.tensor([PROMPT]), use_cache=True)
    del caches
    model(torch.tensor([PROMPT]), use_cache=True)  # slots came back
    # use_cache=False takes no slot beyond the call
    for _ in range(3):
        assert model(torch.tensor([PROMPT]), use_cache=False).past_key_values is None


def test_output_is_hfs_output(tiny_models):
    """forward builds its CausalLMOutputWithPast without the dataclass constructor (meshllama/model.py
    _output_fast, ~40 us a step less); with the pinned transformers that path is the one taken,
    and what it builds is what HF's constructor builds."""
    from meshllama import model as model_module
    from transformers.modeling_outputs import CausalLMOutputWithPast

    assert model_module._output is model_module._output_fast
    model, _ = open_model(tiny_models, "mha_f32", 1)
    for use_cache in (True, False):
        out = model(torch.tensor([PROMPT]), use_cache=use_cache)
        want = CausalLMOutputWithPast(logits=out.logits, past_key_values=out.past_key_values)
        assert type(out) is type(want) and out.__dict__ == want.__dict__
        assert list(out.keys()) == list(want.keys()) and out.to_tuple() == want.to_tuple()
        assert out[0] is out.logits and out["logits"] is out.logits


@pytest.mark.parametrize("setting", [1, None])
def test_generate_caps_torch_threads(tiny_models, setting):
    """generate() runs torch's own ops on one thread (its OpenMP team would take the engine
    workers' cores) and gives the caller's thread count back; None leaves torch alone."""
    model, _ = open_model(tiny_models, "mha_f32", 2)
    model.generate_torch_threads = setting
    seen = []

    class Streamer:
        def put(self, value):
            seen.append(torch.get_num_threads())

        def end(self):
            pass

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.generate(torch.tensor([PROMPT]), max_new_tokens=3, do_sample=False, pad_token_id=0, streamer=Streamer())
        assert seen and set(seen) == {1 if setting == 1 else 2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
