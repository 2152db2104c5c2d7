#!/usr/bin/env python3
"""Renders tests/fixtures/chat_templates/cases.json: what Hugging Face transformers'
apply_chat_template(tokenize=False) makes of each real chat template in that folder, for a set
of conversations (with and without a system message, single and multi-turn, add_generation_prompt
both ways, and tools for the templates that take them). tests/test_jinja.c renders the same
contexts with meshllama's Jinja module and compares byte for byte.

Needs only transformers and jinja2 (no torch):
    python3 -m venv .venv-jinja && .venv-jinja/bin/pip install transformers==5.23.0 jinja2==3.1.6
    .venv-jinja/bin/python tools/make_chat_template_fixtures.py          # rewrite cases.json
    .venv-jinja/bin/python tools/make_chat_template_fixtures.py --check  # exit 1 if it would change

Each case records the full context the template sees (messages, tools, documents,
add_generation_prompt, the tokenizer's special tokens, extra variables) so the C test needs no
Python. Templates that reject a conversation (raise_exception) record the error message instead.
"""
import argparse
import json
import os
import sys

import jinja2
import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "chat_templates")

LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
SPM = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
DEEPSEEK = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}
DATE = {"date_string": "26 Jul 2024"}  # pins the Llama 3.1+ templates' "Today Date"

# template file -> (special tokens, extra template variables, takes tools)
TEMPLATES = {
    "HuggingFaceTB-SmolLM2-135M-Instruct.jinja": ({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}, {}, False),
    "meta-llama-Meta-Llama-3-8B-Instruct.jinja": (LLAMA3, {}, False),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": (LLAMA3, DATE, True),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": (LLAMA3, DATE, True),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, {}, True),
    "mistralai-Mistral-7B-Instruct-v0.2.jinja": (SPM, {}, False),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": (SPM, {}, True),
    "google-gemma-7b-it.jinja": ({"bos_token": "<bos>", "eos_token": "<eos>"}, {}, False),
    "google-gemma-2-2b-it.jinja": ({"bos_token": "<bos>", "eos_token": "<eos>"}, {}, False),
    "microsoft-Phi-3-mini-4k-instruct.jinja": ({"bos_token": "<s>", "eos_token": "<|endoftext|>"}, {}, False),
    "microsoft-Phi-3.5-mini-instruct.jinja": ({"bos_token": "<s>", "eos_token": "<|endoftext|>"}, {}, False),
    "TinyLlama-TinyLlama-1.1B-Chat-v1.0.jinja": (SPM, {}, False),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": (DEEPSEEK, {}, False),
    "deepseek-ai-DeepSeek-V2-Lite-Chat.jinja": (DEEPSEEK, {}, False),
    "deepseek-ai-deepseek-coder-33b-instruct.jinja": (DEEPSEEK, {}, False),
    "teknium-OpenHermes-2.5-Mistral-7B.jinja": ({"bos_token": "<s>", "eos_token": "<|im_end|>"}, {}, False),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": ({"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}, {}, True),
}

SYSTEM = {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."}
USER1 = {"role": "user", "content": "  What is 2+2? Say \"four\" if you're sure.  \n"}
ASSISTANT1 = {"role": "assistant", "content": "four\n"}
USER2 = {"role": "user", "content": "Héllo wörld ✓ — and 'quotes', {{ braces }} and {% tags %}."}

CONVERSATIONS = {
    "user": [USER1],
    "system_user": [SYSTEM, USER1],
    "multiturn": [USER1, ASSISTANT1, USER2],
    "system_multiturn": [SYSTEM, USER1, ASSISTANT1, USER2],
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]


def make_tokenizer(source, special):
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), **special)
    tok.chat_template = source
    return tok


def render(tok, messages, tools, gen, extra):
    try:
        text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=gen, tokenize=False, **extra)
        return text, None
    except jinja2.exceptions.TemplateError as e:  # raise_exception() and undefined values
        return None, {"type": type(e).__name__, "message": str(e)}
    except (TypeError, ValueError) as e:  # e.g. a template that iterates tools when there are none
        return None, {"type": type(e).__name__, "message": str(e)}


def build_cases():
    cases = []
    for file_name, (special, extra, takes_tools) in TEMPLATES.items():
        with open(os.path.join(FIXTURES, file_name), encoding="utf-8") as f:
            source = f.read()
        tok = make_tokenizer(source, special)
        runs = [(name, messages, None) for name, messages in CONVERSATIONS.items()]
        if takes_tools:
            runs.append(("tools", [SYSTEM, USER1], TOOLS))
        for name, messages, tools in runs:
            for gen in (True, False):
                text, error = render(tok, messages, tools, gen, extra)
                context = {
                    "messages": messages,
                    "tools": tools,
                    "documents": None,
                    "add_generation_prompt": gen,
                    **tok.special_tokens_map,
                    **extra,
                }
                case = {"name": f"{file_name[:-6]}/{name}/{'gen' if gen else 'nogen'}", "template": file_name,
                        "context": context}
                if error is None:
                    case["expected"] = text
                else:
                    case["error"] = error
                cases.append(case)
    return {
        "generator": "tools/make_chat_template_fixtures.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "cases": cases,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed cases.json instead of writing")
    args = parser.parse_args()
    text = json.dumps(build_cases(), ensure_ascii=False, indent=1) + "\n"
    path = os.path.join(FIXTURES, "cases.json")
    if args.check:
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{path} differs from what transformers renders now", file=sys.stderr)
                return 1
        print("cases.json matches")
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    data = json.loads(text)
    n_err = sum("error" in c for c in data["cases"])
    print(f"wrote {path}: {len(data['cases'])} cases ({n_err} template errors) from {len(TEMPLATES)} templates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
