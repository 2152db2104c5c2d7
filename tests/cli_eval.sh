#!/usr/bin/env bash
# `meshllama eval` on a committed HF teacher-forcing reference: accurate mode scores 100% at
# every tp, in batches (all slots agree) and through prefill_decode; YT_METRICS carries the
# seed's keys; bad references and flags fail with a message.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
model=$fixtures/h9kv3_llama3rope_bf16
ref=$model/eval_reference.bin
tmp=${MESHLLAMA_TMP:-/tmp}/cli_eval.$$
mkdir -p "$tmp"
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"

check_metrics() { # LINE KEY=VALUE...
    local line=$1
    shift
    python3 - "$line" "$@" <<'PY'
import json, sys
line = sys.argv[1]
assert line.startswith("YT_METRICS="), line
m = json.loads(line[len("YT_METRICS="):])
for key in ["mode", "trace", "top1", "top5", "prefill_len", "decode_len", "max_seq_len", "batch", "total",
            "top5_ref", "model", "tp", "mesh", "backend", "dtype", "ttft_ms", "prefill_tok_s", "decode_tok_s_u"]:
    assert key in m, "missing " + key
for pair in sys.argv[2:]:
    key, value = pair.split("=")
    assert str(m[key]) == value, f"{key}={m[key]}, expected {value}"
PY
}

for tp in 1 2 3 4 9; do
    line=$("$bin" eval -m "$model" --ref "$ref" --tp "$tp" -t 2 --min-top1 1 --min-top5 1 2>/dev/null)
    if [ $? -eq 0 ] && check_metrics "$line" top1=1.0 top5=1.0 top5_ref=1.0 tp="$tp" total=24 prefill_len=48; then pass
    else fail "tp $tp: $line"; fi
done
line=$("$bin" eval -m "$model" --ref "$ref" --tp 2 --batch 4 --min-top1 1 2>/dev/null)
if [ $? -eq 0 ] && check_metrics "$line" batch=4 slots_agree=True top1=1.0; then pass; else fail "batch 4: $line"; fi
line=$("$bin" eval -m "$model" --ref "$ref" --prefill-decode --decode-len 8 --min-top1 1 2>/dev/null)
if [ $? -eq 0 ] && check_metrics "$line" prefill_decode=True total=8; then pass; else fail "prefill-decode: $line"; fi
lines=$("$bin" eval -m "$model" --ref "$ref" --act fast --max-seq-len-range 80:120:20 --min-top1 0.95 --min-top5 0.99 2>/dev/null)
if [ "$(grep -c '^YT_METRICS=' <<<"$lines")" -eq 3 ]; then pass; else fail "max-seq-len-range: $lines"; fi

# a directory of references, one per prefill length
mkdir -p "$tmp/refs" && cp "$ref" "$tmp/refs/prefill48.bin"
line=$("$bin" eval -m "$model" --ref "$tmp/refs" --prefill-len 48 --min-top1 1 2>/dev/null)
if [ $? -eq 0 ]; then pass; else fail "reference directory"; fi

# --dump-layers: the 48-token prompt's named intermediates (embed, 13 per layer for 3 layers,
# final_norm: 41), read back by tools/compare_layers.py --list (which checks every size)
"$bin" eval -m "$model" --ref "$ref" --dump-layers "$tmp/dump" --decode-len 2 >/dev/null 2>&1
listing=$(python3 "$(dirname "$0")/../tools/compare_layers.py" - "$tmp/dump/hidden_prefill48.bin" --list 2>&1)
if grep -q '^version 2, 48 tokens, 41 entries$' <<<"$listing" && grep -Eq '^ +0 k +48$' <<<"$listing" &&
   grep -Eq '^ +2 ffn_act +256$' <<<"$listing" && grep -Eq '^ +-1 final_norm +144$' <<<"$listing"; then
    pass
else
    fail "--dump-layers: $listing"
fi

head -c 100 "$ref" >"$tmp/truncated.bin"
printf 'NOTAREF!xxxxxxxxxxxxxxxxxxxxxxxxxxxx' >"$tmp/magic.bin"
expect_fail 1 "truncated" -- "$bin" eval -m "$model" --ref "$tmp/truncated.bin"
expect_fail 1 "MLEVREF1" -- "$bin" eval -m "$model" --ref "$tmp/magic.bin"
expect_fail 1 "cannot open" -- "$bin" eval -m "$model" --ref "$tmp/missing.bin"
expect_fail 1 "not --prefill-len 20" -- "$bin" eval -m "$model" --ref "$ref" --prefill-len 20
expect_fail 1 "holds only 24" -- "$bin" eval -m "$model" --ref "$ref" --decode-len 30
expect_fail 1 "vocab" -- "$bin" eval -m "$fixtures/gqa_tied_bf16" --ref "$ref"
expect_fail 1 "exceeds --max-seq-len 50" -- "$bin" eval -m "$model" --ref "$ref" --max-seq-len 50
expect_fail 2 "--prefill-len-range" -- "$bin" eval -m "$model" --ref "$ref" --prefill-len-range 40:20
expect_fail 2 "no reference" -- "$bin" eval -m "$model"
rm -rf "$tmp"
finish cli_eval
