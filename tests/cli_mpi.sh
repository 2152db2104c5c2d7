#!/usr/bin/env bash
# The mpi mesh backend as a user runs it with mpirun on this machine: np = 2, 3 and 4 give the
# same tokens as the threads backend at the same tp and as Hugging Face; eval scores the same;
# a rank that cannot load, or that dies mid-run, ends the whole job with a message naming it,
# in bounded time. Skipped (exit 77) when the build has no MPI.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
test_tmp cli_mpi
if ! command -v mpirun >/dev/null; then echo "SKIP: mpirun not installed"; exit 77; fi
if "$bin" run -m "$fixtures/gqa_tied_bf16" --prompt-ids 1 -n 1 --backend mpi 2>&1 | grep -q "not in this build"; then
    echo "SKIP: built without MPI"; exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi=(mpirun --oversubscribe -np)

for fixture in h9kv3_llama3rope_bf16 gqa_tied_bf16 mha_sharded_bf16; do
    dir=$fixtures/$fixture
    read -r prompt expected < <(reference_ids "$dir/reference.bin" " ")
    for np in 2 3 4; do
        [ "$fixture" = gqa_tied_bf16 ] && [ "$np" = 4 ] && continue # 6 heads: np 4 is valid, keep runtime short
        got=$(timeout 120 "${mpi[@]}" "$np" "$bin" run -m "$dir" --prompt-ids "$prompt" -n 16 --ignore-eos -t 1 2>"$tmp/err")
        threads=$("$bin" run -m "$dir" --prompt-ids "$prompt" -n 16 --ignore-eos --tp "$np" 2>/dev/null)
        if [ "$got" = "$expected" ] && [ "$threads" = "$expected" ]; then pass
        else fail "$fixture np $np: mpi '$got', threads '$threads', HF '$expected' ($(cat "$tmp/err"))"; fi
    done
done

# biases over ranks (each rank's column-parallel bias rows; o/down biases once after the
# all-reduce on every rank's replica of the residual stream): HF's greedy tokens at np 3
for fixture in llama_bias_f32 qwen2_bias_bf16 gguf/llama_bias_f32.gguf; do
    dir=$fixtures/$fixture
    read -r prompt expected < <(reference_ids "$fixtures/$(basename "$fixture" .gguf)/reference.bin" " ")
    got=$(timeout 120 "${mpi[@]}" 3 "$bin" run -m "$dir" --prompt-ids "$prompt" -n 16 --ignore-eos -t 1 2>"$tmp/err")
    if [ "$got" = "$expected" ]; then pass; else fail "$fixture np 3: mpi '$got', HF '$expected' ($(cat "$tmp/err"))"; fi
done

# quantised GGUFs (kept in blocks; np 3 cuts some row-parallel columns inside a block, which then
# fall back to f32 on every rank): the threads backend's tokens at tp np, and its weight dtype
# (kquant_mix: every block type incl. the K-quants; np 2 keeps all blocks whole, np 3 cuts;
# gguf_llamacpp: files made by llama.cpp's llama-quantize; h8kv2 q8_0 at np 3: the FFN in whole
# blocks, uneven, 32 + 32 + 64 columns of down_proj kept as Q8_0 on the ranks; kquant_ffn_blocks
# at np 3: every K-quant block kept, the FFN as 256 + 256 + 512 columns)
for case in "gguf/gqa_tied_q8_0.gguf 2" "gguf/h8kv2_headdim_untied_q8_0.gguf 2" "gguf/h8kv2_headdim_untied_q8_0.gguf 3" \
    "gguf/kquant_mix.gguf 2" "gguf/kquant_mix.gguf 3" "gguf/kquant_ffn_blocks.gguf 3" "gguf_llamacpp/q4_k_m.gguf 2" \
    "gguf_llamacpp/q6_k.gguf 3" \
    "DEFAULT 2"; do
    read -r file np <<<"$case"
    model=$fixtures/$file
    if [ "$file" = DEFAULT ]; then
        default_model || continue
        model=$default_model_path
    fi
    got=$(timeout 120 "${mpi[@]}" "$np" "$bin" run -m "$model" --prompt-ids 5,6,7,8,9 -n 8 --ignore-eos -t 1 --json \
        --logprobs 2>"$tmp/err")
    threads=$("$bin" run -m "$model" --prompt-ids 5,6,7,8,9 -n 8 --ignore-eos --tp "$np" --json --logprobs 2>/dev/null)
    if python3 - "$got" "$threads" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["ranks"] > 1 and a["generated_ids"] == b["generated_ids"] and a["weight_dtype"] == b["weight_dtype"]
assert a["logprobs"] == b["logprobs"], "logprobs differ"
assert a["weight_dtype"] in ("q8_0", "q4_1", "mixed"), a["weight_dtype"]
PY
    then pass; else fail "$file np $np: mpi '$got' vs threads '$threads' ($(cat "$tmp/err"))"; fi
done

# MESHLLAMA_GGUF_DEQUANTIZE=1: every quantised matrix is made as float32 rows on demand, each rank
# its own rows (o/down packed from made rows): the same log-probabilities as the threads backend
model=$fixtures/gguf/kquant_mix.gguf
got=$(MESHLLAMA_GGUF_DEQUANTIZE=1 timeout 120 "${mpi[@]}" 3 -x MESHLLAMA_GGUF_DEQUANTIZE "$bin" run -m "$model" \
    --prompt-ids 5,6,7,8,9 -n 8 --ignore-eos -t 1 --json --logprobs 2>"$tmp/err")
threads=$(MESHLLAMA_GGUF_DEQUANTIZE=1 "$bin" run -m "$model" --prompt-ids 5,6,7,8,9 -n 8 --ignore-eos --tp 3 --json \
    --logprobs 2>/dev/null)
if python3 - "$got" "$threads" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["ranks"] == 3 and a["weight_dtype"] == b["weight_dtype"] == "f32", (a["weight_dtype"], b["weight_dtype"])
assert a["generated_ids"] == b["generated_ids"] and a["logprobs"] == b["logprobs"]
PY
then pass; else fail "dequantised kquant_mix np 3: mpi '$got' vs threads '$threads' ($(cat "$tmp/err"))"; fi

# two ranks x two devices each = tp 4
dir=$fixtures/h9kv3_llama3rope_bf16
read -r prompt expected < <(reference_ids "$dir/reference.bin" " ")
got=$(timeout 120 "${mpi[@]}" 2 "$bin" run -m "$dir" --prompt-ids "$prompt" -n 16 --ignore-eos --tp 4 -t 1 2>/dev/null)
if [ "$got" = "$expected" ]; then pass; else fail "2 ranks x 2 devices: '$got'"; fi

# only rank 0 prints
lines=$(timeout 120 "${mpi[@]}" 3 "$bin" run -m "$dir" --prompt-ids 1,2,3 -n 4 -t 1 2>/dev/null | wc -l)
if [ "$lines" -eq 1 ]; then pass; else fail "np 3 printed $lines lines"; fi

# eval: the same metrics as the threads backend
strip() { sed -E 's/"(ttft_ms|prefill_tok_s|decode_tok_s_u|backend|ranks)": [^,}]*//g'; }
ref=$dir/eval_reference.bin
m_mpi=$(timeout 120 "${mpi[@]}" 2 "$bin" eval -m "$dir" --ref "$ref" -t 1 --min-top1 1 2>/dev/null | strip)
m_threads=$("$bin" eval -m "$dir" --ref "$ref" --tp 2 --min-top1 1 2>/dev/null | strip)
if [ -n "$m_mpi" ] && [ "$m_mpi" = "$m_threads" ]; then pass; else fail "eval mpi '$m_mpi' vs threads '$m_threads'"; fi

# tp that the ranks cannot share
err=$(timeout 60 "${mpi[@]}" 2 "$bin" run -m "$dir" --prompt-ids 1,2 -n 2 --tp 3 -t 1 2>&1 >/dev/null)
rc=$?
if [ $rc -ne 0 ] && grep -q "multiple of the rank count" <<<"$err"; then pass; else fail "tp 3 on 2 ranks: rc $rc: $err"; fi

# one rank cannot load its model: the whole job stops, naming the rank, in seconds
cat >"$tmp/per_rank.sh" <<EOS
#!/usr/bin/env bash
model=$dir
[ "\${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && model=$tmp/missing-model
exec "$bin" run -m "\$model" --prompt-ids 1,2 -n 2 -t 1
EOS
chmod +x "$tmp/per_rank.sh"
start=$(date +%s)
err=$(timeout 60 "${mpi[@]}" 2 "$tmp/per_rank.sh" 2>&1 >/dev/null)
rc=$?
elapsed=$(($(date +%s) - start))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 1 of 2" <<<"$err" && grep -q "missing-model" <<<"$err" &&
    [ $elapsed -lt 30 ]; then pass; else fail "a rank failing to load: rc $rc after ${elapsed}s: $err"; fi

# a rank killed mid-run: mpirun ends the job non-zero within seconds, naming the rank
cat >"$tmp/long_run.sh" <<EOS
#!/usr/bin/env bash
echo \$\$ >"$tmp/rank\${OMPI_COMM_WORLD_RANK}.pid"
exec "$bin" run -m "$dir" --prompt-ids 1,2 -n 100000 -c 100100 --rope-extrapolate --ignore-eos -t 1
EOS
chmod +x "$tmp/long_run.sh"
timeout 120 "${mpi[@]}" 2 "$tmp/long_run.sh" >/dev/null 2>"$tmp/kill.err" &
job=$!
for _ in $(seq 1 100); do [ -s "$tmp/rank1.pid" ] && break; sleep 0.1; done
sleep 1
start=$(date +%s)
kill -9 "$(cat "$tmp/rank1.pid")" 2>/dev/null
wait $job
rc=$?
elapsed=$(($(date +%s) - start))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -lt 30 ] && grep -qi "rank 1" "$tmp/kill.err"; then pass
else fail "killed rank: rc $rc after ${elapsed}s: $(head -c 600 "$tmp/kill.err")"; fi

# ranks that disagree stop together, in seconds, with one message naming what differs (issue 14)
disagree() { # what needle -- rank-1 arguments (rank 0 runs the base command)
    local what=$1 needle=$2
    shift 3
    cat >"$tmp/disagree.sh" <<EOS
#!/usr/bin/env bash
if [ "\${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then exec "$bin" run $*; fi
exec "$bin" run -m "$dir" --prompt-ids 1,2,3 -n 4 -t 1
EOS
    chmod +x "$tmp/disagree.sh"
    local start rc elapsed err
    start=$(date +%s)
    err=$(timeout 60 "${mpi[@]}" 2 "$tmp/disagree.sh" 2>&1 >/dev/null)
    rc=$?
    elapsed=$(($(date +%s) - start))
    local count
    count=$(grep -c "ranks disagree" <<<"$err")
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$count" = 1 ] && grep -q "$needle" <<<"$err" && [ $elapsed -lt 30 ]; then
        pass
    else fail "$what: rc $rc after ${elapsed}s, $count messages: $(head -c 800 <<<"$err")"; fi
}
disagree "-n differs" "ranks disagree on the sampling options: rank 0 has -n 4" -- -m "$dir" --prompt-ids 1,2,3 -n 5 -t 1
disagree "prompt differs" "ranks disagree on the prompt: rank 0 has 3 tokens" -- -m "$dir" --prompt-ids 1,2 -n 4 -t 1
disagree "options differ" "ranks disagree on the model options" -- -m "$dir" --prompt-ids 1,2,3 -n 4 -t 1 -c 64
other=$tmp/other_weights
mkdir -p "$other" && cp "$dir"/*.json "$dir"/model.safetensors "$other"/
python3 - "$other/model.safetensors" <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack_from("<Q", data)[0]
data[8 + n] ^= 0x40  # one weight byte past the header
open(path, "wb").write(data)
PY
disagree "checkpoint differs" "ranks disagree on the weights" -- -m "$other" --prompt-ids 1,2,3 -n 4 -t 1

# eval: one rank scoring with --prefill-decode (a different number of forward passes)
cat >"$tmp/eval_disagree.sh" <<EOS
#!/usr/bin/env bash
extra=
[ "\${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && extra="--prefill-decode"
exec "$bin" eval -m "$dir" --ref "$dir/eval_reference.bin" -t 1 \$extra
EOS
chmod +x "$tmp/eval_disagree.sh"
err=$(timeout 60 "${mpi[@]}" 2 "$tmp/eval_disagree.sh" 2>&1 >/dev/null)
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c "ranks disagree on the eval options" <<<"$err")" = 1 ]; then pass
else fail "eval --prefill-decode on one rank: rc $rc: $(head -c 800 <<<"$err")"; fi

# a rank stopped with SIGSTOP: the watchdog ends the job naming it, once
cat >"$tmp/stopped.sh" <<EOS
#!/usr/bin/env bash
echo \$\$ >"$tmp/stopped\${OMPI_COMM_WORLD_RANK}.pid"
exec "$bin" run -m "$dir" --prompt-ids 1,2 -n 100000 -c 100100 --rope-extrapolate --ignore-eos -t 1 --collective-timeout 2
EOS
chmod +x "$tmp/stopped.sh"
rm -f "$tmp"/stopped*.pid
timeout 90 "${mpi[@]}" 2 "$tmp/stopped.sh" >"$tmp/stopped.out" 2>"$tmp/stopped.err" &
job=$!
# stop rank 1 once tokens stream (both ranks are generating; a rank stopped inside MPI_Init or
# the communicator set-up is outside the watchdog, see docs/DISTRIBUTED.md)
for _ in $(seq 1 600); do [ -s "$tmp/stopped1.pid" ] && [ -s "$tmp/stopped.out" ] && break; sleep 0.1; done
start=$(date +%s)
kill -STOP "$(cat "$tmp/stopped1.pid")" 2>/dev/null
wait $job
rc=$?
elapsed=$(($(date +%s) - start))
kill -CONT "$(cat "$tmp/stopped1.pid")" 2>/dev/null
kill -9 "$(cat "$tmp/stopped1.pid")" 2>/dev/null
count=$(grep -c "did not arrive" "$tmp/stopped.err")
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -lt 30 ] && [ "$count" = 1 ] &&
    grep -q "rank 1 of 2 did not arrive" "$tmp/stopped.err"; then pass
else fail "stopped rank: rc $rc after ${elapsed}s, $count messages: $(head -c 800 "$tmp/stopped.err")"; fi

finish cli_mpi
