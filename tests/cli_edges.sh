#!/usr/bin/env bash
# Command-line edges (issue 12): `bench` without -m names the default model; -c beyond the
# model's positions is clamped with a warning naming max_position_embeddings; `eval` names the max_seq_len of
# each point of a range and says "n/a" for a logit error over 0 steps; `inspect` lists layers in
# numeric order and takes the default model when no path is given; `run` stops at the end of the
# context with a message.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
root=$(cd "$fixtures/../.." && pwd)
default=${MESHLLAMA_DEFAULT_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
tiny=$fixtures/h9kv3_llama3rope_bf16 # max_position_embeddings 256
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"

# -c: up to the model's positions is kept; beyond them it is clamped with a warning, unless
# --rope-extrapolate
if "$bin" run -m "$tiny" --prompt-ids 1,2,3 -n 2 -c 256 2>&1 >/dev/null | grep -q warning; then fail "-c 256 warned"; else pass; fi
err=$("$bin" run -m "$tiny" --prompt-ids 1,2,3 -n 300 --ignore-eos -c 1000 2>&1 >/dev/null)
if [ $? -eq 0 ] && grep -q "warning: -c 1000 exceeds the model's 256 positions (max_position_embeddings" <<<"$err" &&
    grep -q "end of the context (256 positions" <<<"$err"; then pass; else fail "-c 1000 not clamped to 256: $err"; fi
err=$("$bin" run -m "$tiny" --prompt-ids 1,2,3 -n 300 --ignore-eos -c 1000 --rope-extrapolate 2>&1 >/dev/null)
if [ $? -eq 0 ] && ! grep -q "warning" <<<"$err" && grep -q "300 generated" <<<"$err"; then pass
else fail "--rope-extrapolate: $err"; fi

# run at the context end: stops there with a message (finish reason length), or refuses a
# prompt that fills the context
err=$("$bin" run -m "$tiny" --prompt-ids 1,2,3 -n 40 -c 16 2>&1 >"${MESHLLAMA_TMP:-/tmp}/cli_edges_ids.$$")
rc=$?
ids=$(wc -w <"${MESHLLAMA_TMP:-/tmp}/cli_edges_ids.$$")
rm -f "${MESHLLAMA_TMP:-/tmp}/cli_edges_ids.$$"
if [ $rc -eq 0 ] && [ "$ids" -eq 13 ] && grep -q "stopped at the end of the context (16 positions" <<<"$err"; then pass
else fail "run at the context end: rc $rc, $ids ids: $err"; fi
json=$("$bin" run -m "$tiny" --prompt-ids 1,2,3 -n 40 -c 16 --json 2>/dev/null)
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["finish_reason"]=="length" and len(d["generated_ids"])==13 else 1)' "$json"; then pass
else fail "run --json at the context end: $json"; fi
expect_fail 1 "fills the context (max_seq_len 16)" -- "$bin" run -m "$tiny" --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -n 4 -c 16

# eval: each point of a range names its max_seq_len
err=$("$bin" eval -m "$tiny" --ref "$tiny/eval_reference.bin" --act fast --max-seq-len-range 80:120:20 \
    --min-top1 0.95 --min-top5 0.99 2>&1 >/dev/null)
for n in 80 100 120; do
    if grep -q "max_seq_len $n," <<<"$err"; then pass; else fail "eval range: no summary names max_seq_len $n: $err"; fi
done

if [ -f "$default" ]; then
    # bench without -m names the default model it opened
    out=$(cd "$root" && "$bin" bench -p 4 -n 2 --no-probe 2>/dev/null | head -n 1)
    if grep -q "SmolLM2-135M-Instruct" <<<"$out" && ! grep -q "(null)" <<<"$out"; then pass; else fail "bench without -m: $out"; fi
    # the range references store no logits: the logit error is n/a over 0 steps
    err=$("$bin" eval --ref "$fixtures/smollm2/fox_range_d20" --prefill-len 16 --min-top1 0 --min-top5 0 2>&1 >/dev/null)
    if grep -q "logits vs HF n/a over 0 steps" <<<"$err"; then
        pass
    else
        fail "eval logit error: $err"
    fi
    # tokenize without -m: the default model's tokenizer
    out=$(cd "$root" && "$bin" tokenize "Hello world" 2>&1)
    if [ $? -eq 0 ] && grep -qE '[0-9]' <<<"$out"; then pass; else fail "tokenize without -m: $out"; fi
    # inspect: the default model, layers 0, 1, 2, ..., 10, ... in order
    out=$(cd "$root" && "$bin" inspect 2>&1)
    if [ $? -eq 0 ]; then pass; else fail "inspect without a path: $out"; fi
    order=$(grep -oE 'layers\.[0-9]+\.' <<<"$out" | grep -oE '[0-9]+' | uniq | tr '\n' ' ')
    sorted=$(tr ' ' '\n' <<<"$order" | grep . | sort -n | uniq | tr '\n' ' ')
    if [ -n "$order" ] && [ "$order" = "$sorted" ]; then pass; else fail "inspect layer order: $order"; fi
else
    fail "the default model $default is missing (scripts/fetch_default_model.sh)"
fi
finish cli_edges
