"""The default model (SmolLM2-135M-Instruct, Q4_1 GGUF, fetched by scripts/test.sh) through
meshllama.from_pretrained against the committed Hugging Face references of
tests/fixtures/smollm2: the seed's teacher-forcing loop in Python scores top1 = top5 = 1 with
logits within 1e-4 of HF's (normalised, accurate mode), and greedy generate() gives HF's tokens."""
import os

import pytest
import torch

import meshllama
from meshllama.evaluate import read_reference, teacher_forcing
from conftest import DEFAULT_MODEL, SMOLLM2_FIXTURES

pytestmark = pytest.mark.skipif(not os.path.exists(DEFAULT_MODEL),
                                reason="default model missing: scripts/fetch_default_model.sh")


@pytest.fixture(scope="module")
def smollm2():
    model, _ = meshllama.from_pretrained(DEFAULT_MODEL, meshllama.Mesh(tp=2), 256, max_batch=4, tokenizer=False)
    yield model
    model.close()


@pytest.mark.parametrize("batch, prefill_decode", [(1, False), (1, True), (3, False)])
def test_teacher_forcing_fox_20_20(smollm2, batch, prefill_decode):
    ref = read_reference(os.path.join(SMOLLM2_FIXTURES, "fox_p20_d20.bin"))
    r = teacher_forcing(smollm2, ref, batch=batch, prefill_decode=prefill_decode)
    assert r["top1"] == 1.0 and r["top5"] == 1.0 and r["slots_agree"], r
    assert r["logit_steps"] >= 1 and r["logit_error"] < 1e-4, r


def test_greedy_generate_gives_hf_tokens(smollm2):
    ref = read_reference(os.path.join(SMOLLM2_FIXTURES, "fox_p20_d20.bin"))
    n = 12
    out = smollm2.generate(torch.tensor([ref.prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    assert out[0, len(ref.prompt):].tolist() == ref.tokens[:n]


def test_from_pretrained_builds_the_gguf_tokenizer():
    model, tok = meshllama.from_pretrained(DEFAULT_MODEL, 1, 64, max_batch=1)
    ref = read_reference(os.path.join(SMOLLM2_FIXTURES, "fox_p20_d20.bin"))
    assert tok is not None
    assert tok.decode(ref.prompt[:3]).startswith("The quick")
    model.close()
