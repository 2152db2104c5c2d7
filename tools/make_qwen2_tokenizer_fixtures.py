#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/qwen2/: a small byte-level BPE tokenizer with Qwen2's
pre-tokenizer, trained by the HF `tokenizers` library, in its two forms, and the reference ids
of every string of the project's tokenizer corpus (tests/fixtures/tokenizer/corpus.bin).

The model: tokenizers' BpeTrainer (vocab_size 1500, the 256 byte-level characters as the initial
alphabet) on the corpus's valid UTF-8 strings, with Qwen2's tokenizer.json pipeline: normalizer
NFC, pre-tokenizer Sequence[Split(Qwen2's regex, "isolated"), ByteLevel(add_prefix_space false,
use_regex false)], ByteLevel decoder and post-processor (which add nothing), and Qwen2's three
special tokens <|endoftext|>, <|im_start|>, <|im_end|> added after the vocabulary. The 100
two-digit tokens "00".."99" and their merges are appended to the trained vocabulary: Qwen2's pattern makes every
digit its own piece, so they never apply (the references do not change), while Llama 3's pattern
(runs of up to three digits) would use them; so the fixture tells the two patterns apart (a
vocabulary trained under Qwen2's pattern alone has no multi-digit token, and gives the same ids
under both).
The GGUF form has no normalizer key: a reader applies NFC for pre "qwen2" (meshllama does, as HF;
llama.cpp does not; docs/TOKENIZER.md).

  tokenizer.json   the HF form (compact JSON)
  qwen2.gguf       the GGUF form, as llama.cpp's Qwen2 converter writes a tokenizer:
                   tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "qwen2", tokens, token_type
                   (1 normal, 3 control for the special tokens), merges, bos = eos =
                   <|endoftext|>, add_bos_token false; metadata only, written with `gguf`
  versions.json    the package versions and sizes
and ../ids_qwen2.bin: HF tokenizers' ids of every corpus string (format MLTKIDS2, as
make_tokenizer_fixtures.py writes), plain and with special tokens parsed (nothing is added).

usage: python3 tools/make_qwen2_tokenizer_fixtures.py [--out tests/fixtures/tokenizer] [--check]
needs tokenizers==0.23.3 and gguf==0.19.0 (docs/FIXTURES.md). Deterministic for those versions.
"""
import argparse
import filecmp
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_spm_tokenizer_fixtures import read_corpus  # noqa: E402
from make_tokenizer_fixtures import HfRef, reference_ids, write_ids  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizer")
# Qwen2's pre-tokenizer pattern, as its tokenizer.json has it
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1500


def train(texts):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(SPECIALS)
    return tok


def add_digit_pairs(spec):
    """The digit pairs join the model's vocabulary (ids after the trained ones); the special tokens
    move after them, where HF puts added tokens (the model's vocabulary size onwards)."""
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    for a in "0123456789":
        for b in "0123456789":
            assert a + b not in vocab
            vocab[a + b] = len(vocab)
            merges.append([a, b])
    for i, token in enumerate(spec["added_tokens"]):
        token["id"] = len(vocab) + i
    return spec


def write_gguf(path, spec):
    import gguf
    by_id = {i: s for s, i in spec["model"]["vocab"].items()}
    specials = {t["content"]: t["id"] for t in spec["added_tokens"]}
    by_id.update({i: s for s, i in specials.items()})
    assert sorted(by_id) == list(range(len(by_id)))
    tokens = [by_id[i] for i in range(len(by_id))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w = gguf.GGUFWriter(path, arch="qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(specials["<|endoftext|>"])
    w.add_eos_token_id(specials["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return len(tokens), len(merges)


def generate(out):
    import tokenizers
    corpus_bytes = read_corpus(os.path.join(DEFAULT_OUT, "corpus.bin"))
    texts = []
    for data in corpus_bytes:
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    qwen2_dir = os.path.join(out, "qwen2")
    os.makedirs(qwen2_dir, exist_ok=True)
    tok = train(texts)
    spec = add_digit_pairs(json.loads(tok.to_str()))
    json_path = os.path.join(qwen2_dir, "tokenizer.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    n_tokens, n_merges = write_gguf(os.path.join(qwen2_dir, "qwen2.gguf"), spec)
    with open(os.path.join(qwen2_dir, "versions.json"), "w") as f:
        json.dump({"tokenizers": tokenizers.__version__, "vocab": n_tokens, "merges": n_merges}, f, indent=1)
        f.write("\n")
    ref = HfRef(json_path)
    prefix, suffix, _ = ref.prefix_suffix()
    assert prefix == [] and suffix == [], (prefix, suffix)
    write_ids(os.path.join(out, "ids_qwen2.bin"), reference_ids(ref, [(0, d) for d in corpus_bytes]), prefix, suffix)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="regenerate into a temporary directory and compare")
    args = parser.parse_args()
    if not args.check:
        generate(args.out)
        print(f"wrote {args.out}/qwen2 and {args.out}/ids_qwen2.bin")
        return 0
    files = ["qwen2/tokenizer.json", "qwen2/qwen2.gguf", "qwen2/versions.json", "ids_qwen2.bin"]
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        differ = [f for f in files if not filecmp.cmp(os.path.join(tmp, f), os.path.join(args.out, f), shallow=False)]
    if differ:
        print("differ: " + ", ".join(differ))
        return 1
    print(f"qwen2 tokenizer fixture check OK: {len(files)} files identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
