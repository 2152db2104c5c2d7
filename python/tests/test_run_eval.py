"""python -m meshllama.run_eval: the seed's wrapper interface, YT_METRICS lines, HF against
itself scores 1.0 / 1.0, and meshllama agrees with `meshllama eval` on the same reference."""
import json
import os
import subprocess

import pytest

from meshllama import run_eval
from conftest import DEFAULT_MODEL, REPO, SMOLLM2_FIXTURES

TINY_DIR = os.path.join(REPO, "tests", "fixtures", "h9kv3_llama3rope_bf16")
TINY_REF = os.path.join(TINY_DIR, "eval_reference.bin")


def metrics(capsys, *argv):
    assert run_eval.main(list(argv)) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("YT_METRICS=")]
    return [json.loads(l[len("YT_METRICS="):]) for l in lines]


SEED_KEYS = {"mode", "trace", "top1", "top5", "prefill_len", "decode_len", "max_seq_len", "batch", "total"}


@pytest.mark.parametrize("mode, extra", [("hf", []), ("meshllama", ["--from-file", "--tp", "3"]),
                                         ("meshllama", ["--tp", "2", "--batch", "2"])])
def test_modes_on_a_stored_reference(capsys, mode, extra):
    (m,) = metrics(capsys, "--mode", mode, "--hf-model", TINY_DIR, "--ref", TINY_REF, "--decode-len", "12", *extra)
    assert SEED_KEYS <= set(m) and m["mode"] == mode
    assert m["top1"] == 1.0 and m["top5"] == 1.0 and m["total"] == 12 and m["slots_agree"]
    assert m["logit_error"] < 1e-4


def test_agrees_with_the_meshllama_command(capsys):
    cli = os.environ.get("MESHLLAMA_CLI")
    if not cli or not os.path.exists(cli):
        pytest.skip("MESHLLAMA_CLI (build/meshllama) not given")
    out = subprocess.run([cli, "eval", "-m", TINY_DIR, "--ref", TINY_REF, "--tp", "3", "--prefill-decode"],
                         capture_output=True, text=True, check=True).stdout
    c = json.loads(next(l for l in out.splitlines() if l.startswith("YT_METRICS="))[len("YT_METRICS="):])
    (p,) = metrics(capsys, "--mode", "meshllama", "--from-file", "--hf-model", TINY_DIR, "--ref", TINY_REF,
                   "--tp", "3", "--prefill-decode")
    for key in ("top1", "top5", "top5_ref", "total", "prefill_len", "decode_len", "max_seq_len", "tp", "dtype"):
        assert p[key] == c[key], key


def test_ranges_give_one_line_per_point(capsys):
    ms = metrics(capsys, "--mode", "meshllama", "--from-file", "--hf-model", TINY_DIR, "--ref", TINY_REF,
                 "--decode-len", "4", "--max-seq-len-range", "60:80:10")
    assert [m["max_seq_len"] for m in ms] == [60, 70, 80]


@pytest.mark.skipif(not os.path.exists(DEFAULT_MODEL), reason="default model missing")
def test_default_model_reference_computed_by_hf(capsys):
    """The seed's default prompt rule, HF's reference computed in the run, meshllama from HF's tensors."""
    (m,) = metrics(capsys, "--mode", "meshllama", "--hf-model", DEFAULT_MODEL, "--prefill-len", "16",
                   "--decode-len", "8", "--tp", "2")
    assert m["top1"] == 1.0 and m["top5"] == 1.0 and m["prefill_len"] == 16 and m["total"] == 8
    assert m["dtype"] == "f32"  # built from the HF model's own (dequantised) tensors


@pytest.mark.skipif(not os.path.exists(DEFAULT_MODEL), reason="default model missing")
def test_default_model_stored_reference(capsys):
    (m,) = metrics(capsys, "--mode", "meshllama", "--from-file", "--hf-model", DEFAULT_MODEL,
                   "--ref", os.path.join(SMOLLM2_FIXTURES, "fox_p20_d20.bin"), "--tp", "2")
    assert m["top1"] == 1.0 and m["top5"] == 1.0 and m["total"] == 20 and m["dtype"] == "q4_1"


@pytest.mark.parametrize("argv, match", [(["--prefill-len-range", "9:3"], "START:END"),
                                         (["--mesh", "2by2"], "RxC"), (["--batch", "40"], "1..32")])
def test_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        run_eval.main(argv)
    assert match in capsys.readouterr().err + str(e.value.code)
