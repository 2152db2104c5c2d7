#!/usr/bin/env bash
# meshllama serve beside llama.cpp's llama-server on the same GGUF, in one run.
#
#   bench/compare_server.sh [--model GGUF] [--threads N] [--slots S] [--ctx C] [--rounds R]
#                           [--concurrency 1,8,32] [--requests N] [--out DIR]
#
# 1. llama.cpp's llama-server from bench/compare_llamacpp.sh --build-only (same vendored source,
#    cached); meshllama built in build-bench/ (Release).
# 2. Both servers up side by side on loopback (meshllama serve --slots S --ctx C, llama-server
#    --parallel S -c S*C, the same threads). An idle server sleeps; only one is loaded at a time.
# 3. R rounds; each round runs bench/serve_load.py at every concurrency against both servers,
#    the order swapped every round, so a slow spell of a shared machine hits both sides. The
#    summary keeps each (server, concurrency)'s round with the best output tok/s.
# 4. The single-stream reference: `meshllama run` on the same 128 prompt ids, 128 new tokens.
# Everything lands in bench/results/serve-<date>/ (git-ignored); summary.md holds the table.
# Not run in CI. BENCH_PREFIX wraps the servers (e.g. "nice -n -10" on a shared machine).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=$(nproc)
SLOTS=32
CTX=512
ROUNDS=3
CONC=1,8,32
REQUESTS=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --model) MODEL=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --slots) SLOTS=$2; shift ;;
    --ctx) CTX=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "compare_server.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${OUT:-$ROOT/bench/results/serve-$(date +%Y%m%d-%H%M%S)}
PREFIX=${BENCH_PREFIX:-}
ML_PORT=${ML_PORT:-18080}
LC_PORT=${LC_PORT:-18081}
say() { echo "== $*" >&2; }

[ -f "$MODEL" ] || { echo "compare_server.sh: $MODEL is missing (scripts/fetch_default_model.sh)" >&2; exit 2; }
LLAMA_BIN=$("$ROOT/bench/compare_llamacpp.sh" --build-only | tail -1)
cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-bench" -j "$(nproc)" --target meshllama_cli >/dev/null
ML=$ROOT/build-bench/meshllama
mkdir -p "$OUT"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_health() {
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "compare_server.sh: the server on port $1 did not come up (see $OUT/*.log)" >&2
    exit 1
}
say "starting meshllama serve (:$ML_PORT) and llama-server (:$LC_PORT)"
$PREFIX "$ML" serve -m "$MODEL" -t "$THREADS" --slots "$SLOTS" --ctx "$CTX" --port "$ML_PORT" \
    >"$OUT/meshllama-serve.log" 2>&1 &
pids+=($!)
$PREFIX "$LLAMA_BIN/llama-server" -m "$MODEL" -t "$THREADS" --parallel "$SLOTS" -c $((SLOTS * CTX)) \
    --port "$LC_PORT" >"$OUT/llama-server.log" 2>&1 &
pids+=($!)
wait_health "$ML_PORT"
wait_health "$LC_PORT"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    grep -m1 'model name' /proc/cpuinfo || true
    echo "cpus: $(nproc); threads: $THREADS; slots: $SLOTS; ctx per slot: $CTX; model: $(basename "$MODEL")"
    echo "meshllama: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "llama.cpp: $("$LLAMA_BIN/llama-server" --version 2>&1 | grep -m1 -i version || true)"
    echo "prefix: ${PREFIX:-none}; rounds: $ROUNDS; requests per client: $REQUESTS"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

for round in $(seq 1 "$ROUNDS"); do
    order=("meshllama:$ML_PORT" "llama.cpp:$LC_PORT")
    if [ $((round % 2)) = 0 ]; then order=("llama.cpp:$LC_PORT" "meshllama:$ML_PORT"); fi
    for c in ${CONC//,/ }; do
        for entry in "${order[@]}"; do
            name=${entry%%:*}
            port=${entry##*:}
            say "round $round, concurrency $c, $name"
            python3 "$ROOT/bench/serve_load.py" --url "http://127.0.0.1:$port" --concurrency "$c" \
                --requests "$REQUESTS" | sed "s/^{/{\"server\": \"$name\", \"round\": $round, /" >>"$OUT/load.jsonl"
        done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

say "single-stream reference: meshllama run on the same prompt ids"
ids=$(curl -sf "http://127.0.0.1:$ML_PORT/tokenize" -H 'Content-Type: application/json' \
    -d "{\"content\": \"$(printf 'The quick brown fox jumps over the lazy dog while the farmer watches. %.0s' $(seq 1 18))\"}" |
    python3 -c 'import json, sys; print(",".join(map(str, json.load(sys.stdin)["tokens"][:128])))')
cleanup
pids=()
for round in $(seq 1 "$ROUNDS"); do
    $PREFIX "$ML" run -m "$MODEL" -t "$THREADS" --prompt-ids "$ids" -n 128 --ignore-eos 2>&1 >/dev/null |
        grep 'generated in' >>"$OUT/run.txt"
done
python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json, re, sys
out = sys.argv[1]
rows = [json.loads(line) for line in open(out + "/load.jsonl")]
best = {}
for r in rows:
    key = (r["server"], r["concurrency"])
    if key not in best or r["output_tok_s"] > best[key]["output_tok_s"]:
        best[key] = r
runs = []
for line in open(out + "/run.txt"):
    m = re.search(r"(\d+) prompt tokens in ([\d.]+) ms, (\d+) generated in ([\d.]+) ms", line)
    if m:
        p_ms, n, g_ms = float(m.group(2)), int(m.group(3)), float(m.group(4))
        runs.append((n / ((p_ms + g_ms) / 1e3), n / (g_ms / 1e3)))
print(open(out + "/machine.txt").read())
print("| concurrency | server | output tok/s | TTFT p50 / p99 (ms) | inter-event p50 / p99 (ms) | meshllama / llama.cpp |")
print("|---|---|---|---|---|---|")
for c in sorted({k[1] for k in best}):
    m, l = best.get(("meshllama", c)), best.get(("llama.cpp", c))
    for name, r in (("meshllama", m), ("llama.cpp", l)):
        if r is None:
            continue
        ratio = "%.2fx" % (m["output_tok_s"] / l["output_tok_s"]) if (m and l and name == "meshllama") else ""
        print("| %d | %s | %.1f | %s / %s | %s / %s | %s |" % (c, name, r["output_tok_s"], r["ttft_ms_p50"],
              r["ttft_ms_p99"], r["itl_ms_p50"], r["itl_ms_p99"], ratio))
if runs:
    e2e, dec = max(runs)
    print("\n`meshllama run`, same 128 prompt ids, 128 new tokens (best of %d): %.1f tok/s end to end "
          "(prefill + decode), %.1f tok/s decode" % (len(runs), e2e, dec))
    m1 = best.get(("meshllama", 1))
    if m1:
        print("meshllama serve at concurrency 1: %.1f tok/s = %.3fx of run end to end" % (m1["output_tok_s"], m1["output_tok_s"] / e2e))
EOF
say "results in $OUT"
