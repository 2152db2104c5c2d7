#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses that need structured inputs:
tokenizer_gguf (small GGUF files holding only tokenizer metadata), tokenizer_arrays (the
harness's own line format) and the reference readers (copies of committed fixtures).
Deterministic: rerunning rewrites the same bytes. Usage: tests/fuzz/make_seeds.py"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")


def byte_level(b):
    """GPT-2 bytes_to_unicode, the text GGUF stores for byte-level tokens."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + [c for c in range(256) if c not in printable].index(b))


def gguf_string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def kv(key, type_id, payload):
    return gguf_string(key) + struct.pack("<I", type_id) + payload


STRING, ARRAY, INT32, UINT32, BOOL = 8, 9, 5, 4, 7


def string_array(items):
    return struct.pack("<IQ", STRING, len(items)) + b"".join(gguf_string(s) for s in items)


def int32_array(items):
    return struct.pack("<IQ", INT32, len(items)) + b"".join(struct.pack("<i", v) for v in items)


def tokenizer_gguf(pre, extra_merges, add_bos, template):
    tokens = [byte_level(b) for b in range(256)]
    types = [6] * 256
    merges = []
    for left, right in extra_merges:
        merges.append(left + " " + right)
        tokens.append(left + right)
        types.append(1)
    tokens += ["<|begin_of_text|>", "<|end_of_text|>", "<user>"]
    types += [3, 3, 4]
    kvs = [
        kv("general.architecture", STRING, gguf_string("llama")),
        kv("tokenizer.ggml.model", STRING, gguf_string("gpt2")),
        kv("tokenizer.ggml.pre", STRING, gguf_string(pre)),
        kv("tokenizer.ggml.tokens", ARRAY, string_array(tokens)),
        kv("tokenizer.ggml.token_type", ARRAY, int32_array(types)),
        kv("tokenizer.ggml.merges", ARRAY, string_array(merges)),
        kv("tokenizer.ggml.bos_token_id", UINT32, struct.pack("<I", len(tokens) - 3)),
        kv("tokenizer.ggml.eos_token_id", UINT32, struct.pack("<I", len(tokens) - 2)),
        kv("tokenizer.ggml.add_bos_token", BOOL, struct.pack("<B", add_bos)),
    ]
    if template:
        kvs.append(kv("tokenizer.chat_template", STRING, gguf_string(template)))
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main():
    g = "\u0120"  # byte-level space
    merges = [("t", "h"), ("th", "e"), (g, "t"), (g + "t", "h"), ("1", "2"), ("a", "b")]
    corpus = os.path.join(HERE, "corpus", "tokenizer_gguf")
    write(os.path.join(corpus, "llama_bpe.gguf"), tokenizer_gguf("llama-bpe", merges, 1, None))
    write(os.path.join(corpus, "smollm.gguf"), tokenizer_gguf("smollm", merges[:3], 0,
                                                               "{% for m in messages %}{{ m['content'] }}{% endfor %}"))
    write(os.path.join(corpus, "gpt2.gguf"), tokenizer_gguf("gpt2", [], 0, None))
    write(os.path.join(corpus, "qwen2.gguf"), tokenizer_gguf("qwen2", merges[4:], 0, None))

    # tokenizer_arrays: "pre\nflags\ntoken\ttype\n...\n\nleft right\n...\n\ntext"
    corpus = os.path.join(HERE, "corpus", "tokenizer_arrays")
    lines = ["llama-bpe", "1 0 256 257"]
    lines += ["%s\t6" % byte_level(b) for b in range(256)]
    lines += ["<s>\t3", "</s>\t3", "th\t1", "the\t1"]
    text = "\n".join(lines) + "\n\nt h\nth e\n\nthe theme <s> 123 héllo\n"
    write(os.path.join(corpus, "llama_bpe.txt"), text.encode("utf-8"))
    lines = ["gpt2", "0 0 -1 -1", "a\t1", "b\t1", "ab\t1", "<u>\t4", "x\t2", "y\t5"]
    write(os.path.join(corpus, "small.txt"), ("\n".join(lines) + "\n\na b\n\nabba <u> ab\n").encode("utf-8"))

    for name, fixture in (("eval_reference", "h9kv3_llama3rope_bf16/eval_reference.bin"),
                          ("hf_reference", "f16_small/reference.bin")):
        shutil.copy(os.path.join(FIXTURES, fixture), os.path.join(HERE, "corpus", name, os.path.basename(fixture)))


if __name__ == "__main__":
    main()
