#!/usr/bin/env bash
# `meshllama chat` on the default model (its own Jinja template, ChatML) driven through standard
# input: two turns answered, the second reusing the first turn's KV cache, end of input exits 0;
# the built-in chatml template gives the same answer; an unknown --template is a usage error (2)
# and a model without a tokenizer fails with a message; a full context drops the oldest turns
# but keeps the system message.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
default_model || { finish cli_chat; exit 1; }
model=$default_model_path
test_tmp cli_chat

printf 'What is the capital of France?\n\nAnd of Italy?\n' |
    "$bin" chat -m "$model" -n 24 --system "You are a concise assistant." >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ]; then pass; else fail "chat exited $rc: $(cat "$tmp/err")"; fi
if [ "$(grep -c . "$tmp/out")" -ge 2 ]; then pass; else fail "expected two answers: $(cat "$tmp/out")"; fi
if grep -qi "paris" "$tmp/out"; then pass; else fail "first answer lacks Paris: $(cat "$tmp/out")"; fi
kept=$(grep -o 'kept [0-9]*' "$tmp/err" | awk '{print $2}' | tr '\n' ' ')
read -r first second <<<"$kept"
if [ "${first:-x}" = 0 ] && [ "${second:-0}" -gt 20 ]; then pass; else fail "KV reuse: kept '$kept'"; fi

# the same first question alone gives the same first answer (greedy, cache reuse changes nothing)
printf 'What is the capital of France?\n' |
    "$bin" chat -m "$model" -n 24 --system "You are a concise assistant." >"$tmp/alone" 2>/dev/null
if [ "$(head -n 1 "$tmp/alone")" = "$(head -n 1 "$tmp/out")" ]; then pass; else fail "first answers differ"; fi
# the built-in ChatML rendering is the same prompt as the model's own template, so the same answer
printf 'What is the capital of France?\n' |
    "$bin" chat -m "$model" -n 24 --system "You are a concise assistant." --template chatml >"$tmp/builtin" 2>/dev/null
if [ "$(head -n 1 "$tmp/builtin")" = "$(head -n 1 "$tmp/alone")" ]; then pass; else fail "--template chatml answer differs"; fi

err=$(printf 'hi\n' | "$bin" chat -m "$model" --template nonsense 2>&1 >/dev/null)
if [ $? -eq 2 ] && grep -q "nonsense" <<<"$err" && grep -q -- "--template must be" <<<"$err"; then pass; else fail "forced unknown template: $err"; fi
err=$(printf 'hi\n' | "$bin" chat -m "$fixtures/gqa_tied_bf16" 2>&1 >/dev/null)
if [ $? -eq 1 ] && grep -qi "tokenizer" <<<"$err"; then pass; else fail "no tokenizer: $err"; fi
# a message that cannot fit even alone is not answered (exit 1 at the end), without a crash
err=$(printf 'hi\n' | "$bin" chat -m "$model" -c 16 2>&1 >/dev/null)
if [ $? -eq 1 ] && grep -q "does not fit" <<<"$err"; then pass; else fail "context overflow: $err"; fi
# context full: the oldest turns are dropped, the system message stays, every question is answered
printf 'What is the capital of France?\nAnd of Italy?\nAnd of Spain?\nAnd of Germany?\n/save %s\n' "$tmp/full.json" |
    "$bin" chat -m "$model" -c 90 -n 24 --system "You are a concise assistant." >"$tmp/full" 2>"$tmp/full_err"
rc=$?
if [ $rc -eq 0 ] && grep -q "dropped the [0-9]* oldest messages, kept the system message" "$tmp/full_err"; then pass
else fail "context full: rc $rc: $(cat "$tmp/full_err")"; fi
if [ "$(grep -c '^\[kept' "$tmp/full_err")" -eq 4 ]; then pass; else fail "context full: not 4 answers: $(cat "$tmp/full_err")"; fi
if python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; sys.exit(0 if m[0]["role"]=="system" and m[-2]["content"]=="And of Germany?" and len(m)<9 else 1)' "$tmp/full.json"; then
    pass
else
    fail "context full: saved conversation $(cat "$tmp/full.json" 2>/dev/null)"
fi
# a read error on standard input is a failure, not the end of the conversation (issue 14)
err=$("$bin" chat -m "$model" -n 4 <"$tmp" 2>&1 >/dev/null)
rc=$?
if [ $rc -eq 1 ] && grep -q "Is a directory" <<<"$err"; then pass; else fail "stdin read error: rc $rc: $err"; fi

finish cli_chat
