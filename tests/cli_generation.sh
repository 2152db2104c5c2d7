#!/usr/bin/env bash
# Generation features through the command on the default model (SmolLM2-135M-Instruct):
# end-of-generation tokens stop and are never printed (streamed text and --json); stop strings
# spanning tokens, at the start, never printed; logprobs as OpenAI returns them; logit bias,
# min_tokens and the penalties change the output; every JSON output parses strictly even with
# a path holding '"' and tokens cut mid-character; bad sampling flags exit 2.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
root=$(cd "$fixtures/../.." && pwd)
model=${MESHLLAMA_DEFAULT_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
test_tmp cli_generation
if [ ! -f "$model" ]; then
    echo "FAIL: the default model $model is missing: scripts/test.sh fetches it (scripts/fetch_default_model.sh)"
    echo "0 passed, 1 failed"
    exit 1
fi
run() { "$bin" run -m "$model" -t 2 "$@"; }
# python3 -c SCRIPT with the JSON on stdin; strict: no NaN, no invalid UTF-8
json_check() { python3 -c "import json,sys; d=json.loads(sys.stdin.buffer.read().decode('utf-8', 'strict'), parse_constant=lambda c: 1/0); $1" "${@:2}"; }

chat_prompt=$'<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n'

# 1. the answer ends with <|im_end|> (id 2): it stops there and prints no special text
out=$(run -p "$chat_prompt" --special -n 64 2>"$tmp/err")
if [ -n "$out" ] && ! grep -qF '<|im_end|>' <<<"$out" && grep -q "end-of-generation" "$tmp/err"; then pass
else fail "streamed answer: '$out' / $(cat "$tmp/err")"; fi
json=$(run -p "$chat_prompt" --special -n 64 --json 2>/dev/null)
if json_check 'g=d["generated_ids"]; assert g[-1]==2 and d["finish_reason"]=="stop" and d["stopped_at_eos"]; assert "<|im_end|>" not in d["text"] and d["text"]' <<<"$json"
then pass; else fail "--json answer: $json"; fi
text=$(json_check 'print(d["text"])' <<<"$json")
if [ "$text" = "$out" ]; then pass; else fail "--json text '$text' differs from the streamed '$out'"; fi

# 2. stop strings, matched on the text: take a greedy continuation and stop inside it
base=$(run -p "The quick brown fox" -n 24 --ignore-eos --json 2>/dev/null)
full=$(json_check 'print(d["text"], end="")' <<<"$base")
# the token boundaries: a stop string that starts inside one token and ends inside another
spans=$(json_check '
import subprocess
ids = d["generated_ids"]
out = subprocess.run([sys.argv[1], "tokenize", "-m", sys.argv[2], "--decode", ",".join(map(str, ids)), "--json"],
                     capture_output=True, check=True).stdout
toks = json.loads(out)["tokens"]
lengths = [len(t) for t in toks]
ends, at = [], 0
for n in lengths:
    at += n; ends.append(at)
text = d["text"]
# a piece from the middle of the 3rd token to the middle of the 5th
start = ends[1] + max(1, lengths[2] // 2) if lengths[2] > 1 else ends[1]
stop = ends[3] + max(1, lengths[4] // 2)
print(text[start:stop])
' "$bin" "$model" <<<"$base")
if [ -n "$spans" ]; then
    prefix=${full%%"$spans"*}
    json=$(run -p "The quick brown fox" -n 24 --ignore-eos --stop "$spans" --json 2>/dev/null)
    if S="$spans" P="$prefix" json_check 'import os; assert d["text"]==os.environ["P"], d["text"]; assert d["finish_reason"]=="stop" and d["stop"]==os.environ["S"]' <<<"$json"
    then pass; else fail "stop '$spans' spanning tokens: $json (expected text '$prefix')"; fi
    streamed=$(run -p "The quick brown fox" -n 24 --ignore-eos --stop "$spans" 2>/dev/null)
    if [ "$streamed" = "$prefix" ]; then pass; else fail "streamed with --stop '$spans': '$streamed', expected '$prefix'"; fi
    # a stop string that never appears changes nothing; several may be given
    json=$(run -p "The quick brown fox" -n 24 --ignore-eos --stop "@@never@@" --stop "$spans" --json 2>/dev/null)
    if S="$spans" json_check 'import os; assert d["stop"]==os.environ["S"]' <<<"$json"; then pass; else fail "two stops: $json"; fi
else
    fail "no stop string could be cut from '$full'"
fi
first=${full:0:3}
json=$(run -p "The quick brown fox" -n 24 --ignore-eos --stop "$first" --json 2>/dev/null)
if json_check 'assert d["text"]=="" and d["finish_reason"]=="stop" and len(d["generated_ids"]) >= 1' <<<"$json"
then pass; else fail "stop at the start ('$first'): $json"; fi
json=$(run -p "The quick brown fox" -n 24 --ignore-eos --stop "@@never@@" --json 2>/dev/null)
if F="$full" json_check 'import os; assert d["text"]==os.environ["F"] and d["finish_reason"]=="length"' <<<"$json"
then pass; else fail "unmatched stop string changed the text: $json"; fi

# 3. logprobs: one entry per token, the token's own id, the greedy token is the top alternative
json=$(run -p "The quick brown fox" -n 6 --ignore-eos --json --top-logprobs 3 2>/dev/null)
if json_check '
c = d["logprobs"]["content"]; g = d["generated_ids"]
assert len(c) == len(g)
for e, t in zip(c, g):
    assert e["id"] == t and e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
    assert e["top_logprobs"][0]["id"] == t and abs(e["top_logprobs"][0]["logprob"] - e["logprob"]) < 1e-6
    assert e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][1]["logprob"] >= e["top_logprobs"][2]["logprob"]
    assert bytes(e["bytes"]).decode("utf-8", "replace") == e["token"] or "\ufffd" in e["token"]
' <<<"$json"; then pass; else fail "logprobs: $json"; fi

# 4. logit bias bans the greedy first token; min_tokens keeps the EOS away
g1=$(json_check 'print(d["generated_ids"][0])' <<<"$base")
json=$(run -p "The quick brown fox" -n 3 --ignore-eos --logit-bias "${g1}-inf" --json 2>/dev/null)
if G="$g1" json_check 'import os; assert d["generated_ids"][0] != int(os.environ["G"])' <<<"$json"; then pass
else fail "--logit-bias ${g1}-inf: $json"; fi
json=$(run -p "What is 2+2?" -n 12 --json 2>/dev/null)
eos_first=$(json_check 'print(len(d["generated_ids"]))' <<<"$json")
json=$(run -p "What is 2+2?" -n 12 --min-tokens 6 --json 2>/dev/null)
if json_check 'g=d["generated_ids"]; assert len(g) >= 6 and 2 not in g[:5], g' <<<"$json"; then pass
else fail "--min-tokens 6 (without it: $eos_first tokens): $json"; fi

# 5. penalties change a repetitive greedy continuation
rep=$'one two one two one two one two one two'
plain=$(run -p "$rep" -n 16 --ignore-eos 2>/dev/null)
pen=$(run -p "$rep" -n 16 --ignore-eos --repeat-penalty 1.5 2>/dev/null)
freq=$(run -p "$rep" -n 16 --ignore-eos --frequency-penalty 1.5 --presence-penalty 1 2>/dev/null)
if [ "$plain" != "$pen" ] && [ "$plain" != "$freq" ]; then pass
else fail "penalties changed nothing: '$plain' / '$pen' / '$freq'"; fi

# 6. JSON stays valid: a path holding '"' and '\', a token cut mid-character
weird="$tmp/we\"ird\\name.gguf"
ln -s "$model" "$weird"
if "$bin" inspect "$weird" --json | W="$weird" json_check 'import os; assert d["path"]==os.environ["W"]'; then pass
else fail "inspect --json with a path holding a quote"; fi
if run -p 'x' -n 2 --json 2>/dev/null | json_check 'assert "generated_ids" in d'; then pass; else fail "run --json"; fi
json=$("$bin" tokenize -m "$model" $'\xf0\x9d\x84\x9e clef' --json)
if json_check 'assert d["text"] == "\U0001D11E clef"; assert any("\ufffd" in t for t in d["tokens"]), d["tokens"]' <<<"$json"
then pass; else fail "tokenize --json with a character split over tokens: $json"; fi
# a generation cut inside a character: its text is valid JSON with U+FFFD, the ids are exact
ids=$(json_check 'print(",".join(map(str, d["ids"][:1])))' <<<"$json")
json=$("$bin" tokenize -m "$model" --decode "$ids" --json)
if json_check 'assert d["text"] == "\ufffd" or "\ufffd" in d["text"]' <<<"$json"; then pass; else fail "decode of a cut character: $json"; fi

# eval's YT_METRICS and bench --json with a model directory named with '"' and '\'
quoted="$tmp/fix\"ture\\x"
ln -s "$fixtures/h9kv3_llama3rope_bf16" "$quoted"
line=$("$bin" eval -m "$quoted" --ref "$fixtures/h9kv3_llama3rope_bf16/eval_reference.bin" --decode-len 2 2>/dev/null)
if [ "${line#YT_METRICS=}" != "$line" ] && json_check 'assert d["model"]=="fix\"ture\\x" and d["top1"]==1.0' <<<"${line#YT_METRICS=}"
then pass; else fail "YT_METRICS with a quote in the model name: $line"; fi
if "$bin" bench -m "$quoted" -p 8 -n 2 -b 1 -r 1 --no-probe --json 2>/dev/null | Q="$quoted" json_check 'import os; assert d["model"]==os.environ["Q"] and d["results"]'
then pass; else fail "bench --json with a quote in the path"; fi

# 7. chat uses the same runtime: --stop cuts its answer, which is printed without <|im_end|>
answer=$(printf 'Name three colors.\n' | "$bin" chat -m "$model" -t 2 -n 40 2>/dev/null)
cut=${answer:6:5}
if [ -n "$cut" ]; then
    stopped=$(printf 'Name three colors.\n' | "$bin" chat -m "$model" -t 2 -n 40 --stop "$cut" 2>/dev/null)
    if [ "$stopped" = "${answer%%"$cut"*}" ] && ! grep -qF '<|im_end|>' <<<"$answer"; then pass
    else fail "chat --stop '$cut': '$stopped' (full answer '$answer')"; fi
else
    fail "chat answer too short: '$answer'"
fi

# 8. bad values: exit 2 naming the flag
expect_fail 2 "--min-p" -- "$bin" run -m "$model" -p hi --min-p 2
expect_fail 2 "--typical" -- "$bin" run -m "$model" -p hi --typical 0
expect_fail 2 "--repeat-penalty" -- "$bin" run -m "$model" -p hi --repeat-penalty -1
expect_fail 2 "--repeat-last-n" -- "$bin" run -m "$model" -p hi --repeat-last-n -5
expect_fail 2 "--logit-bias" -- "$bin" run -m "$model" -p hi --logit-bias 15
expect_fail 2 "--logit-bias" -- "$bin" run -m "$model" -p hi --logit-bias abc+1
expect_fail 2 "--stop" -- "$bin" run -m "$model" -p hi --stop ""
expect_fail 2 "--top-logprobs" -- "$bin" run -m "$model" -p hi --json --top-logprobs 21
expect_fail 2 "--json" -- "$bin" run -m "$model" -p hi --logprobs
expect_fail 2 "--presence-penalty" -- "$bin" chat -m "$model" --presence-penalty x
expect_fail 1 "outside the vocabulary" -- "$bin" run -m "$model" -p hi --logit-bias 99999999+1

finish cli_generation
