#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/spm/: a small SentencePiece-style BPE tokenizer (Llama 2 /
TinyLlama / Mistral layout: "▁" for spaces, byte_fallback with <0x00>..<0xFF>, <unk> <s> </s>)
trained by the HF `tokenizers` library, and the reference ids of every string of the project's
tokenizer corpus (tests/fixtures/tokenizer/corpus.bin, written by make_tokenizer_fixtures.py).

The model: tokenizers' BpeTrainer (vocab_size 1200, limit_alphabet 120, Metaspace pre-tokenizer)
on the corpus's valid UTF-8 strings, so characters outside the 120 most frequent fall back to
byte tokens. The trained vocabulary is laid out as Llama's: <unk> <s> </s> = 0, 1, 2, the byte
tokens <0x00>..<0xFF> = 3..258, then the trained tokens in the trainer's order; merges as trained.
Three tokenizer.json files share it, each a configuration real models ship:
  * legacy/    normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer (Llama 2,
               TinyLlama, Mistral as uploaded); decoder Sequence[Replace("▁", " "), ByteFallback,
               Fuse, Strip(" ", 1, 0)]; post-processor "<s> $A".
  * metaspace/ no normalizer, pre-tokenizer Metaspace(prepend_scheme "first", split false)
               (transformers' LlamaConverter with legacy=False); same decoder.
  * split/     Metaspace(prepend_scheme "always", split true) (the Metaspace default).
ids_spm_<name>.bin hold HF tokenizers' ids (format MLTKIDS2, as make_tokenizer_fixtures.py
writes) in the two modes of the corpus test; decode_spm_legacy.bin holds HF's decode (with
skip_special_tokens=False) of the plain-mode ids of every valid UTF-8 string; spm/extra.json
holds, per configuration, both modes' ids and HF's decode (with and without special tokens) of a
few strings with <s> / </s> inside, leading spaces and literal '▁' (the corpus has none of these).

The GGUF form: spm/legacy.gguf carries the same vocabulary as tokenizer.ggml.model "llama" with
tokenizer.ggml.tokens, scores (a trained token's score is minus the rank of the merge that first
makes it, so ranking by score is ranking by merge; <unk>, <s>, </s>, bytes and single characters
score 0) and token_type (2 unknown, 3 control, 6 byte, 1 normal), written with the `gguf` package.
The C test checks it against the same legacy ids.

Invalid UTF-8 (no Python str can hold it): each invalid byte b is encoded as a private-use
character U+F0000+b that the vocabulary lacks, so HF falls back to its four byte tokens, which
are then replaced by the single token <0xb>; byte tokens never merge, so this is exactly the C
encoder's rule (an invalid byte is its byte-fallback token).

usage: .venv-spm/bin/python tools/make_spm_tokenizer_fixtures.py [--out tests/fixtures/tokenizer]
needs tokenizers==0.22.1, gguf==0.19.0 (docs/FIXTURES.md). Deterministic for those versions.
"""
import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import write_ids  # noqa: E402

SPACE = "\u2581"
SPECIALS = ["<unk>", "<s>", "</s>"]
# Strings where the three configurations differ: special tokens inside the text (a segment after
# one gets '▁' under Prepend and Metaspace "always", not under "first"), leading spaces, literal '▁'.
EXTRA = ["<s>hello", "hello<s>world", " <s> x", "</s></s>", "a</s> b", "  two leading", "\u2581literal \u2581 marks",
         "<s>", "", " ", "x\n<s>\n y", "\u65e5\u672c\u8a9e<s>\U0001f980", "<s> <s>  <s>", "end </s>"]


def read_corpus(path):
    with open(path, "rb") as f:
        blob = f.read()
    assert blob[:8] == b"MLTKCORP"
    count = struct.unpack_from("<I", blob, 8)[0]
    at, out = 12, []
    for _ in range(count):
        _, length = struct.unpack_from("<BI", blob, at)
        at += 5
        out.append(blob[at:at + length])
        at += length
    return out


def train(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1200, limit_alphabet=120, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    model = json.loads(tok.to_str())["model"]
    trained = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for text, _ in trained:
        if text not in vocab:
            vocab[text] = len(vocab)
    merges = [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
    return vocab, merges


def tokenizer_json(vocab, merges, kind):
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(SPECIALS)]
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    post = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    normalizer, pre = None, None
    if kind == "legacy":
        normalizer = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE},
                                                          {"type": "Replace", "pattern": {"String": " "},
                                                           "content": SPACE}]}
    elif kind == "metaspace":
        pre = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False}
    else:
        pre = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
            "pre_tokenizer": pre, "post_processor": post, "decoder": decoder,
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": vocab, "merges": merges}}


def sentinel_text(data):
    text = data.decode("utf-8", errors="surrogateescape")
    return "".join(chr(0xF0000 + ord(c) - 0xDC00) if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


def unsentinel(ids, byte_id):
    """Replaces the four byte tokens of each U+F0000+b by <0xb>."""
    inverse = {v: k for k, v in byte_id.items()}
    out, i = [], 0
    while i < len(ids):
        window = [inverse.get(x, -1) for x in ids[i:i + 4]]
        if len(window) == 4 and window[0] == 0xF3 and window[1] == 0xB0 and window[2] in (0x80, 0x81, 0x82, 0x83) \
                and 0x80 <= window[3] <= 0xBF:
            b = ((window[2] & 0x3F) << 6) | (window[3] & 0x3F)
            out.append(byte_id[b])
            i += 4
        else:
            out.append(ids[i])
            i += 1
    return out


def reference(tok, corpus, byte_id):
    refs = []
    for data in corpus:
        text = sentinel_text(data)
        tok.encode_special_tokens = True
        plain = unsentinel(tok.encode(text, add_special_tokens=False).ids, byte_id)
        tok.encode_special_tokens = False
        special = unsentinel(tok.encode(text, add_special_tokens=True).ids, byte_id)
        refs.append((plain, special))
    return refs


def write_gguf(path, vocab, merges):
    import gguf
    tokens = [s for s, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    first_rank = {}
    for rank, (left, right) in enumerate(merges):
        first_rank.setdefault(left + right, rank)
    scores, types = [], []
    for i, s in enumerate(tokens):
        if s in SPECIALS:
            types.append(2 if s == "<unk>" else 3)
            scores.append(0.0)
        elif s.startswith("<0x") and len(s) == 6:
            types.append(6)
            scores.append(0.0)
        else:
            types.append(1)
            scores.append(-float(first_rank[s]) if s in first_rank else 0.0)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(here, "tests/fixtures/tokenizer"))
    args = parser.parse_args()
    import tokenizers
    from tokenizers import Tokenizer
    corpus = read_corpus(os.path.join(args.out, "corpus.bin"))
    valid = []
    for data in corpus:
        try:
            valid.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    vocab, merges = train(valid)
    byte_id = {b: vocab[f"<0x{b:02X}>"] for b in range(256)}
    spm_dir = os.path.join(args.out, "spm")
    extra = {}
    for kind in ("legacy", "metaspace", "split"):
        os.makedirs(os.path.join(spm_dir, kind), exist_ok=True)
        path = os.path.join(spm_dir, kind, "tokenizer.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tokenizer_json(vocab, merges, kind), f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        tok = Tokenizer.from_file(path)
        refs = reference(tok, corpus, byte_id)
        write_ids(os.path.join(args.out, f"ids_spm_{kind}.bin"), refs, [1], [])
        extra[kind] = []
        for text in EXTRA:
            tok.encode_special_tokens = True
            plain = tok.encode(text, add_special_tokens=False).ids
            tok.encode_special_tokens = False
            special = tok.encode(text, add_special_tokens=True).ids
            extra[kind].append({"text": text, "plain": plain, "special": special,
                                "decode": tok.decode(special, skip_special_tokens=False),
                                "decode_skip": tok.decode(special, skip_special_tokens=True)})
        fallback = sum(any(3 <= i <= 258 for i in p) for p, _ in refs)
        print(f"{kind}: {len(refs)} strings, {fallback} use byte-fallback tokens")
        if kind == "legacy":
            out = bytearray(b"MLTKDEC1" + struct.pack("<I", len(corpus)))
            for data, (plain, _) in zip(corpus, refs):
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    out += b"\x00" + struct.pack("<I", 0)
                    continue
                text = tok.decode(plain, skip_special_tokens=False).encode("utf-8")
                out += b"\x01" + struct.pack("<I", len(text)) + text
            with open(os.path.join(args.out, "decode_spm_legacy.bin"), "wb") as f:
                f.write(out)
    with open(os.path.join(spm_dir, "extra.json"), "w", encoding="utf-8") as f:
        json.dump(extra, f, ensure_ascii=False, indent=1)
        f.write("\n")
    write_gguf(os.path.join(spm_dir, "legacy.gguf"), vocab, merges)
    with open(os.path.join(spm_dir, "versions.json"), "w") as f:
        json.dump({"tokenizers": tokenizers.__version__, "vocab": len(vocab), "merges": len(merges)}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
