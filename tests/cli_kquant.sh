#!/usr/bin/env bash
# K-quant GGUFs as a user meets them (issue 16): tests/fixtures/gguf/kquant_mix.gguf mixes every
# block type the engine keeps (Q2_K ... Q8_K, Q5_0, Q5_1, IQ4_NL) per tensor.
#   - `inspect` says when a tp cuts a quantised o_proj/down_proj inside a block (held as float32)
#     and which tp values keep every block whole; never a silent fallback; the FFN range goes in
#     whole blocks of down_proj where there are enough (not here at tp 3: 512 = 2 super-blocks);
#   - `run` at tp 1, 2 and 3: log-probabilities of the kept blocks equal those of the float32
#     path (MESHLLAMA_GGUF_DEQUANTIZE=1) exactly, tp 2 gives tp 1's tokens;
#   - a Q4_K_M file made by llama.cpp's llama-quantize: the same exactness;
#   - a truncated file is refused naming the K-quant tensor that is cut short.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
test_tmp cli_kquant
model=$fixtures/gguf/kquant_mix.gguf

out=$("$bin" inspect "$model" --tp 3 2>&1)
if grep -q "FLOAT32 FALLBACK: 4 of 4 quantised o_proj/down_proj matrices" <<<"$out" &&
    grep -q "tp values that keep every matrix in its blocks: 1 2$" <<<"$out" &&
    grep -q "ffn split evenly: its 512 features are 2 blocks of 256 (down_proj's), fewer than tp" <<<"$out"; then pass
else fail "inspect --tp 3 does not report the float32 fallback: $out"; fi
out=$("$bin" inspect "$model" --tp 2 2>&1)
if grep -q "all 4 o_proj/down_proj matrices split on block boundaries (kept as stored)" <<<"$out" &&
    grep -q "ffn split in whole blocks of 256 (down_proj's quantisation blocks)" <<<"$out" &&
    ! grep -q "FALLBACK" <<<"$out"; then pass
else fail "inspect --tp 2: $out"; fi
if "$bin" inspect "$model" --tp 3 --json | python3 -c '
import json, sys
plan = json.load(sys.stdin)["shard_plan"]
assert plan["tp_keeping_blocks"] == [1, 2], plan["tp_keeping_blocks"]
assert plan["float32_fallback"] == ["model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight",
                                    "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight"]
'; then pass; else fail "inspect --json float32_fallback / tp_keeping_blocks"; fi
# Q8_0 with FFN 128 (4 blocks of 32) at tp 3: down_proj in whole blocks, 32 + 32 + 64 columns
# (an even split, 42/43/43, cut them and fell back to float32); o_proj's 96/48/48 columns (heads of
# 24) still cut its blocks
if "$bin" inspect "$fixtures/gguf/h8kv2_headdim_untied_q8_0.gguf" --tp 3 --json | python3 -c '
import json, sys
plan = json.load(sys.stdin)["shard_plan"]
assert plan["ffn_block"] == 32, plan["ffn_block"]
assert [d["ffn"] for d in plan["devices"]] == [[0, 32], [32, 32], [64, 64]], plan["devices"]
assert plan["float32_fallback"] == ["model.layers.0.self_attn.o_proj.weight", "model.layers.1.self_attn.o_proj.weight"]
'; then pass; else fail "inspect --json: down_proj in whole blocks at tp 3"; fi
# K-quants with FFN 1024 (4 super-blocks) and 4 heads of 64 per KV group: tp 3 keeps every block,
# the FFN as 256 + 256 + 512 columns (an even split, 341/341/342, cut every super-block)
out=$("$bin" inspect "$fixtures/gguf/kquant_ffn_blocks.gguf" --tp 3 2>&1)
if grep -q "ffn split in whole blocks of 256 (down_proj's quantisation blocks)" <<<"$out" &&
    grep -q "all 2 o_proj/down_proj matrices split on block boundaries (kept as stored)" <<<"$out" &&
    grep -q "tp values that keep every matrix in its blocks: 1 2 3$" <<<"$out" && ! grep -q FALLBACK <<<"$out"
then pass; else fail "inspect kquant_ffn_blocks --tp 3: $out"; fi
if "$bin" inspect "$fixtures/gguf/kquant_ffn_blocks.gguf" --tp 3 --json | python3 -c '
import json, sys
plan = json.load(sys.stdin)["shard_plan"]
assert plan["ffn_block"] == 256 and plan["float32_fallback"] == [], plan
assert [d["ffn"] for d in plan["devices"]] == [[0, 256], [256, 256], [512, 512]], plan["devices"]
'; then pass; else fail "inspect --json kquant_ffn_blocks --tp 3"; fi

for tp in 1 2 3; do
    kept=$("$bin" run -m "$model" --prompt-ids 5,6,7,8,9,10,11 -n 12 --ignore-eos --tp "$tp" --json --logprobs \
        --top-logprobs 3 2>"$tmp/err")
    plain=$(MESHLLAMA_GGUF_DEQUANTIZE=1 "$bin" run -m "$model" --prompt-ids 5,6,7,8,9,10,11 -n 12 --ignore-eos \
        --tp "$tp" --json --logprobs --top-logprobs 3 2>>"$tmp/err")
    if python3 - "$kept" "$plain" "$tp" <<'PY'
import json, sys
kept, plain = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert kept["weight_dtype"] == "mixed" and plain["weight_dtype"] == "f32", (kept["weight_dtype"], plain["weight_dtype"])
assert kept["generated_ids"] == plain["generated_ids"], (kept["generated_ids"], plain["generated_ids"])
assert kept["logprobs"] == plain["logprobs"], "log-probabilities differ"
PY
    then pass; else fail "tp $tp: kept blocks vs dequantised: $kept / $plain ($(cat "$tmp/err"))"; fi
    echo "$kept" >"$tmp/tp$tp.json"
done
if python3 - "$tmp/tp1.json" "$tmp/tp2.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["generated_ids"] == b["generated_ids"]
PY
then pass; else fail "tp 2 tokens differ from tp 1"; fi

# A Q4_K_M file made by llama.cpp's llama-quantize (tools/make_llamacpp_quant_fixture.py): the
# kept blocks give the float32 path's log-probabilities exactly (tests/cli_mpi.sh runs it on
# 2 MPI ranks).
llamacpp=$fixtures/gguf_llamacpp/q4_k_m.gguf
args=(--prompt-ids 5,6,7,8,9,10,11 -n 12 --ignore-eos --json --logprobs --top-logprobs 3)
kept=$("$bin" run -m "$llamacpp" "${args[@]}" --tp 2 2>"$tmp/err")
plain=$(MESHLLAMA_GGUF_DEQUANTIZE=1 "$bin" run -m "$llamacpp" "${args[@]}" --tp 2 2>>"$tmp/err")
if python3 - "$kept" "$plain" <<'PY'
import json, sys
kept, plain = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert kept["weight_dtype"] == "mixed" and plain["weight_dtype"] == "f32", (kept["weight_dtype"], plain["weight_dtype"])
assert kept["generated_ids"] == plain["generated_ids"] and kept["logprobs"] == plain["logprobs"]
PY
then pass; else fail "llama-quantize Q4_K_M: kept blocks vs dequantised: $kept / $plain ($(cat "$tmp/err"))"; fi

# truncated inside blk.1.ffn_down (Q4_K, the file's last matrix but one)
size=$(stat -c %s "$model")
head -c $((size - 2500)) "$model" >"$tmp/truncated.gguf"
expect_fail 1 'tensor "blk.1.ffn_down.weight": bytes [850176, 923904) are beyond the end of the data section' -- \
    "$bin" run -m "$tmp/truncated.gguf" --prompt-ids 5 -n 1

finish cli_kquant
