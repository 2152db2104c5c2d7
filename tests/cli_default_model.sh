#!/usr/bin/env bash
# The default model (SmolLM2-135M-Instruct, Q4_1 GGUF, fetched by scripts/test.sh) against the
# committed Hugging Face references: accurate mode top1 >= 0.99 and top5 = 1 for the seed's
# 20/20 and for 128/128 on a public-domain text, at tp 1, 2, 3 and with --prefill-decode;
# fast mode top1 >= 0.90, top5 >= 0.99 (int8 activations on every matrix of this Q4_1/Q8_0 file,
# as llama.cpp does: 128/128 measured 0.93-0.97 by ISA and tp, since the last ulp of rmsnorm,
# attention and exp differs by ISA and a few near-tied tokens flip); --batch 4 scores the same in
# every slot; the prefill range; `run` without -m uses the default model.
# MESHLLAMA_QUICK=1 (the sanitizer build) runs the 20/20 points only.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
root=$(cd "$fixtures/../.." && pwd)
refs=$fixtures/smollm2
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
default_model || { finish cli_default_model; exit 1; }
model=$default_model_path
point() { # DESCRIPTION MIN_TOP1 MIN_TOP5 eval-args...
    local what=$1 top1=$2 top5=$3
    shift 3
    local out
    out=$("$bin" eval -m "$model" --min-top1 "$top1" --min-top5 "$top5" "$@" 2>&1)
    if [ $? -eq 0 ] && grep -q '^YT_METRICS=' <<<"$out"; then
        pass
        grep '^eval ' <<<"$out" | awk -v prefix="  [$what] " '{ print prefix $0 }'
    else
        fail "$what: $out"
    fi
}

for tp in 1 2 3; do point "20/20 tp $tp" 0.99 1 --ref "$refs/fox_p20_d20.bin" --tp "$tp"; done
point "20/20 prefill-decode" 0.99 1 --ref "$refs/fox_p20_d20.bin" --prefill-decode --tp 2
point "20/20 batch 4" 0.99 1 --ref "$refs/fox_p20_d20.bin" --batch 4 --tp 3
point "20/20 fast" 0.90 0.99 --ref "$refs/fox_p20_d20.bin" --act fast
if [ "${MESHLLAMA_QUICK:-0}" != 1 ]; then
    for tp in 1 2 3; do point "128/128 tp $tp" 0.99 1 --ref "$refs/declaration_p128_d128.bin" --tp "$tp"; done
    point "128/128 prefill-decode" 0.99 1 --ref "$refs/declaration_p128_d128.bin" --prefill-decode
    point "128/128 fast" 0.90 0.99 --ref "$refs/declaration_p128_d128.bin" --act fast --tp 2
    point "128/128 bf16 kv" 0.99 1 --ref "$refs/declaration_p128_d128.bin" --kv bf16
    point "prefill range" 0.99 1 --ref "$refs/fox_range_d20" --prefill-len-range 16:128:16 --tp 2
fi

# run with no -m uses the default model and reproduces HF's first greedy tokens
expected=$(python3 - "$refs/fox_p20_d20.bin" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
_, vocab, n_prompt, n_decode, top_k, steps, meta = struct.unpack_from("<7I", d, 8)
at = 36 + meta
ids = struct.unpack_from("<%di" % (n_prompt + n_decode), d, at)
print(",".join(map(str, ids[:n_prompt])), " ".join(map(str, ids[n_prompt:n_prompt + 8])))
PY
)
read -r prompt first8 <<<"$expected"
got=$(cd "$root" && MESHLLAMA_DEFAULT_MODEL=$model "$bin" run --prompt-ids "$prompt" -n 8 --ignore-eos 2>/dev/null)
if [ "$got" = "$first8" ]; then pass; else fail "run default: '$got' vs '$first8'"; fi

# text in, text out: the prompt tokenizes as HF does, the printed text is the generated ids decoded
json=$("$bin" run -m "$model" -p "The quick brown fox jumps over the lazy dog." -n 12 --ignore-eos --json 2>/dev/null)
if python3 - "$json" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
assert d["prompt_ids"] == [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30], d["prompt_ids"]
assert len(d["generated_ids"]) == 12 and isinstance(d["text"], str) and d["text"]
PY
then pass; else fail "run -p --json: $json"; fi
ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.loads(sys.argv[1])["generated_ids"])))' "$json")
text=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["text"])' "$json")
streamed=$("$bin" run -m "$model" -p "The quick brown fox jumps over the lazy dog." -n 12 --ignore-eos 2>/dev/null)
decoded=$("$bin" tokenize -m "$model" --decode "$ids" 2>/dev/null)
if [ "$streamed" = "$text" ] && [ "$decoded" = "$text" ]; then pass
else fail "streamed '$streamed' / decoded '$decoded' / json '$text'"; fi
printf 'The capital of France is' >"${MESHLLAMA_TMP:-/tmp}/prompt.$$"
from_file=$("$bin" run -m "$model" -f "${MESHLLAMA_TMP:-/tmp}/prompt.$$" -n 4 --json 2>/dev/null)
rm -f "${MESHLLAMA_TMP:-/tmp}/prompt.$$"
if grep -q '"prompt_ids":\[504,3575,282,4649,314\]' <<<"$from_file"; then pass
else fail "run -f: $from_file"; fi

finish cli_default_model
