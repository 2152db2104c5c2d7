#!/usr/bin/env bash
# meshllama beside llama.cpp on the GGUF types people download, in one run: the numbers of
# issue 15 (bf16 batched decode) and issue 16 (Q8_0 and Q4_K_M prefill, decode, batched decode).
#
#   bench/compare_quant.sh [--threads N] [--rounds R] [--out DIR] [--types LIST]
#
# LIST is a comma list of bf16, q8_0 and llama-quantize type names in lower case (q4_k_m,
# q3_k_m, q2_k, q5_k_m, q6_k, q4_0, ...); default bf16,q8_0,q4_k_m. The checkpoints are the
# Llama-3.2-1B-shaped random weights: models/llama-3.2-1b-shape (tools/make_llama1b_shape.py),
# its GGUF twins (tools/make_llama1b_shape_gguf.py: BF16 and Q8_0) and the other types made from
# the BF16 twin by llama.cpp's own llama-quantize (so each K-quant mix is llama.cpp's choice).
# llama.cpp comes from bench/compare_llamacpp.sh --build-only (built once, cached).
#
# Per type, R rounds, each program once per round (a slow spell of a shared machine hits both
# sides), best round kept:
#   q8_0, q4_k_m:  meshllama bench -p 512 -n 128 -b 1 (--act fast and accurate)
#                  llama-bench -p 512 -n 128 -r 1
#   all types:     meshllama bench -p 0 -n 32 -b 1,8,32 -d 128 --kv bf16 (fast and accurate)
#                  llama-batched-bench -npp 128 -ntg 32 -npl 1,8,32   (its S_TG column)
# bf16 runs meshllama on the safetensors checkpoint (the same weights as the BF16 GGUF).
# bench/summarize_quant.py prints the table (also saved as summary.md in the run directory).
# Not run in CI. BENCH_PREFIX wraps every timed command (e.g. "nice -n -10").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
THREADS=$(nproc)
ROUNDS=2
TYPES=bf16,q8_0,q4_k_m
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) THREADS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --types) TYPES=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "compare_quant.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${OUT:-$ROOT/bench/results/quant-$(date +%Y%m%d-%H%M%S)}
PREFIX=${BENCH_PREFIX:-}
say() { echo "== $*" >&2; }

LLAMA_BIN=$("$ROOT/bench/compare_llamacpp.sh" --build-only | tail -1)
MODEL=$ROOT/models/llama-3.2-1b-shape
GGUF_BF16=$ROOT/models/llama-3.2-1b-shape-bf16.gguf
[ -f "$MODEL/model.safetensors" ] || python3 "$ROOT/tools/make_llama1b_shape.py"
[ -f "$GGUF_BF16" ] && [ -f "$ROOT/models/llama-3.2-1b-shape-q8_0.gguf" ] || python3 "$ROOT/tools/make_llama1b_shape_gguf.py"
IFS=, read -r -a types <<<"$TYPES"
for t in "${types[@]}"; do
    [[ "$t" =~ ^[a-z0-9_]+$ ]] || { echo "compare_quant.sh: bad type name '$t'" >&2; exit 2; }
    made=$ROOT/models/llama-3.2-1b-shape-$t.gguf
    if [ "$t" != bf16 ] && [ ! -f "$made" ]; then
        say "making the ${t^^} with llama-quantize"
        "$LLAMA_BIN/llama-quantize" "$GGUF_BF16" "$made" "${t^^}" "$THREADS" >/dev/null
    fi
done

say "building meshllama in build-bench/"
cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-bench" -j "$(nproc)" --target meshllama_cli >/dev/null
ML=$ROOT/build-bench/meshllama
mkdir -p "$OUT"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    grep -m1 'model name' /proc/cpuinfo || true
    echo "cpus: $(nproc); threads used: $THREADS; rounds: $ROUNDS; prefix: ${PREFIX:-none}"
    echo "meshllama: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "llama.cpp: $("$LLAMA_BIN/llama-bench" --version 2>&1 | head -1 || true)"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

gguf_of() { echo "$ROOT/models/llama-3.2-1b-shape-$1.gguf"; }
ml_model_of() { if [ "$1" = bf16 ]; then echo "$MODEL"; else gguf_of "$1"; fi; }

for t in "${types[@]}"; do  # warm the page cache through meshllama's huge-page mapping
    "$ML" run -m "$(ml_model_of "$t")" -t "$THREADS" --prompt-ids 1,2,3 -n 1 >/dev/null 2>&1 || true
done
for round in $(seq 1 "$ROUNDS"); do
    for t in "${types[@]}"; do
        m=$(ml_model_of "$t")
        if [ "$t" != bf16 ]; then
            for act in fast accurate; do
                say "round $round: $t meshllama pp512/tg128 $act"
                $PREFIX "$ML" bench -m "$m" -t "$THREADS" --act "$act" -p 512 -n 128 -b 1 -r 1 --json \
                    >"$OUT/ml_${t}_${act}_single.r$round.json"
            done
            say "round $round: $t llama-bench"
            $PREFIX "$LLAMA_BIN/llama-bench" -m "$m" -t "$THREADS" -p 512 -n 128 -r 1 -o json \
                >"$OUT/llamacpp_${t}_single.r$round.json" 2>"$OUT/llamacpp_${t}_single.r$round.log"
        fi
        for act in fast accurate; do
            say "round $round: $t meshllama batched $act"
            $PREFIX "$ML" bench -m "$m" -t "$THREADS" --act "$act" --kv bf16 -p 0 -n 32 -b 1,8,32 -d 128 -r 1 --json \
                >"$OUT/ml_${t}_${act}_batch.r$round.json"
        done
        say "round $round: $t llama-batched-bench"
        $PREFIX "$LLAMA_BIN/llama-batched-bench" -m "$(gguf_of "$t")" -t "$THREADS" -c 5200 \
            -npp 128 -ntg 32 -npl 1,8,32 --output-format jsonl \
            >"$OUT/llamacpp_${t}_batch.r$round.jsonl" 2>"$OUT/llamacpp_${t}_batch.r$round.log"
    done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 "$ROOT/bench/summarize_quant.py" "$OUT" | tee "$OUT/summary.md"
