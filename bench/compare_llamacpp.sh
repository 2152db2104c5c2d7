#!/usr/bin/env bash
# meshllama beside llama.cpp on the same Llama-3.2-1B-shaped checkpoint, in one run.
#
#   bench/compare_llamacpp.sh [--quick] [--threads N] [--out DIR] [--reps R] [--drop-caches] [--build-only]
#
# --build-only builds llama.cpp (step 1) and stops: bench/serve_load.py then finds llama-server there.
#
# 1. llama.cpp, built from source out of the PyPI sdist of llama-cpp-python (pinned below):
#    pip download --no-binary, then its vendored llama.cpp with cmake directly (GGML_NATIVE=ON,
#    Release), targets llama-bench, llama-batched-bench, llama-server (for bench/serve_load.py) and
#    llama-quantize (bench/compare_quant.sh's Q4_K_M). Cached in $MESHLLAMA_BENCH_CACHE
#    (default ~/.cache/meshllama-bench); the first build takes about 20 minutes on 2 cores.
# 2. The checkpoints: models/llama-3.2-1b-shape (tools/make_llama1b_shape.py) and the same
#    weights as GGUF BF16 and Q8_0 (tools/make_llama1b_shape_gguf.py), made if missing.
# 3. meshllama, built in build-bench/ (Release).
# 4. With the page cache warm, one after the other on the same threads:
#      REPS rounds of the short tests, each program once per round (-r 1), best round kept:
#        meshllama bench  tp 1 and 2 x act accurate and fast, safetensors bf16, and tp 1 on the
#                         Q8_0 GGUF: -p 128,512 -n 128 -b 1   (pp128, pp512, tg128, empty cache)
#        llama-bench -p 128,512 -n 128 -r 1 on the BF16 and Q8_0 GGUF
#      then batched decode once: meshllama bench -p 0 -n 128 -b 1,8,32 -d 128 (tp 1 and 2 x
#      both modes) and llama-batched-bench -npp 128 -ntg 128 -npl 1,8,32 (BF16 and Q8_0)
#      a minimal run of each under /usr/bin/time (load + short prompt: wall time, peak RSS)
#    meshllama's KV cache is bf16 here (llama.cpp's default is f16: the same bytes).
# 5. bench/summarize.py prints the tables (also saved as summary.md in the run directory).
# Everything lands in bench/results/<date>/ (git-ignored).
# Not run in CI. Set BENCH_PREFIX to wrap every timed command, e.g. BENCH_PREFIX="nice -n -10"
# on a machine shared with other work (as in docs/BENCHMARKS.md).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MESHLLAMA_BENCH_CACHE:-$HOME/.cache/meshllama-bench}
THREADS=$(nproc)
REPS=3
QUICK=0
BUILD_ONLY=0
DROP=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    --drop-caches) DROP=1 ;;
    --threads) THREADS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "compare_llamacpp.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
PROMPTS=128,512
NGEN=128
BATCHES=1,8,32
DEPTH=128
if [ "$QUICK" = 1 ]; then PROMPTS=128; NGEN=16; BATCHES=1,8; REPS=1; fi
PREFIX=${BENCH_PREFIX:-}
MODEL=$ROOT/models/llama-3.2-1b-shape
GGUF_BF16=$ROOT/models/llama-3.2-1b-shape-bf16.gguf
GGUF_Q8=$ROOT/models/llama-3.2-1b-shape-q8_0.gguf
LLAMA_DIR=$CACHE/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION  # as the sdist unpacks
LLAMA_BIN=$LLAMA_DIR/vendor/llama.cpp/build/bin
ML_BUILD=$ROOT/build-bench
say() { echo "== $*" >&2; }

# ggml's AMX kernels (compiled in by GGML_NATIVE where the CPU lists AMX) die with SIGILL on
# virtual machines that list AMX but do not enable its tile state: a smoke run on the default
# model finds out, and llama.cpp is then rebuilt with AMX off (-mno-amx-*; AVX-512 and VNNI stay).
llamacpp_runs() {
    local smoke=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
    [ -f "$smoke" ] || return 0
    "$LLAMA_BIN/llama-bench" -m "$smoke" -t 1 -p 8 -n 1 -r 1 >/dev/null 2>&1
}

configure_build_llamacpp() {
    local flags=$1
    cmake -S "$LLAMA_DIR/vendor/llama.cpp" -B "$LLAMA_DIR/vendor/llama.cpp/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON \
        -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" >/dev/null
    cmake --build "$LLAMA_DIR/vendor/llama.cpp/build" -j "$(nproc)" --target llama-bench llama-batched-bench llama-server llama-quantize >/dev/null
}

build_llamacpp() {
    if [ -x "$LLAMA_BIN/llama-bench" ] && [ -x "$LLAMA_BIN/llama-batched-bench" ] && [ -x "$LLAMA_BIN/llama-server" ] &&
        [ -x "$LLAMA_BIN/llama-quantize" ] && llamacpp_runs; then
        return
    fi
    mkdir -p "$CACHE"
    local sdist=$CACHE/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
    if [ ! -f "$sdist" ]; then
        say "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (sdist)"
        python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$CACHE"
    fi
    if [ ! -x "$LLAMA_BIN/llama-bench" ]; then
        rm -rf "$LLAMA_DIR"
        tar -xzf "$sdist" -C "$CACHE"
        say "building llama.cpp (vendored in llama-cpp-python $LLAMA_CPP_PYTHON_VERSION)"
        configure_build_llamacpp ""
    elif [ ! -x "$LLAMA_BIN/llama-server" ] || [ ! -x "$LLAMA_BIN/llama-quantize" ]; then
        configure_build_llamacpp ""  # a cache from before a target was added
    fi
    if ! llamacpp_runs; then
        say "llama-bench failed its smoke run (AMX on a machine that does not enable it?): rebuilding with AMX off"
        configure_build_llamacpp "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        llamacpp_runs || { echo "compare_llamacpp.sh: llama-bench still fails on the default model" >&2; exit 1; }
    fi
}

make_models() {
    if [ ! -f "$MODEL/model.safetensors" ]; then
        say "writing $MODEL"
        python3 "$ROOT/tools/make_llama1b_shape.py"
    fi
    if [ ! -f "$GGUF_BF16" ] || [ ! -f "$GGUF_Q8" ]; then
        say "writing the GGUF twins"
        python3 "$ROOT/tools/make_llama1b_shape_gguf.py"
    fi
}

build_meshllama() {
    say "building meshllama in $ML_BUILD"
    cmake -S "$ROOT" -B "$ML_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ML_BUILD" -j "$(nproc)" --target meshllama_cli >/dev/null
}

build_llamacpp
if [ "$BUILD_ONLY" = 1 ]; then echo "$LLAMA_BIN"; exit 0; fi
make_models
build_meshllama
mkdir -p "$OUT"
ML=$ML_BUILD/meshllama
# the bench command; MESHLLAMA_BENCH_CMD overrides it (e.g. a build of apps/cmd_bench.c alone)
read -r -a ML_BENCH <<<"${MESHLLAMA_BENCH_CMD:-$ML bench}"
say "results in $OUT"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm)"
    grep -m1 'model name' /proc/cpuinfo || true
    echo "cpus: $(nproc); threads used: $THREADS"
    grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512_bf16|avx512bw)$' | tr '\n' ' '
    echo
    echo "meshllama: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) (working tree may differ)"
    echo "llama.cpp: llama-cpp-python $LLAMA_CPP_PYTHON_VERSION, $("$LLAMA_BIN/llama-bench" --version 2>&1 | head -1 || true)"
    echo "prefix: ${PREFIX:-none}; quick: $QUICK; reps: $REPS"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

if [ "$DROP" = 1 ]; then
    say "dropping the page cache (root)"
    sync
    echo 1 >/proc/sys/vm/drop_caches
fi
# Warm the page cache through meshllama's own mapping first: its 2 MiB-aligned MADV_HUGEPAGE
# mapping makes the kernel read the file into huge folios where the filesystem supports them
# (a plain read() would leave small ones; see docs/BENCHMARKS.md). Then the rest by cat.
say "warming the page cache"
for m in "$MODEL" "$GGUF_BF16" "$GGUF_Q8"; do
    "$ML" run -m "$m" -t "$THREADS" --prompt-ids 1,2,3 -n 1 >/dev/null 2>&1 || true
done
cat "$MODEL/model.safetensors" "$GGUF_BF16" "$GGUF_Q8" >/dev/null
grep -E '^(FileHugePages|AnonHugePages)' /proc/meminfo >>"$OUT/machine.txt" || true

say "cold-start runs (load + 8-token prompt + 1 token) under /usr/bin/time"
$PREFIX /usr/bin/time -f "%e %M" -o "$OUT/load_meshllama.txt" \
    "$ML" run -m "$MODEL" -t "$THREADS" --kv bf16 --prompt-ids 128000,791,4062,14198,39935,35308,927,279 -n 1 \
    >/dev/null 2>"$OUT/load_meshllama.log"
$PREFIX /usr/bin/time -f "%e %M" -o "$OUT/load_llamacpp.txt" \
    "$LLAMA_BIN/llama-bench" -m "$GGUF_BF16" -t "$THREADS" -p 8 -n 1 -r 1 >/dev/null 2>&1

# Short tests in rounds: every round runs each program once (-r 1), so a slow spell of a
# shared machine hits both sides; the summary takes each test's best round.
ml_single() { # NAME MODEL ARGS...: one meshllama round of the short tests
    local name=$1 model=$2
    shift 2
    $PREFIX "${ML_BENCH[@]}" -m "$model" --kv bf16 -t "$THREADS" -p "$PROMPTS" -n "$NGEN" -b 1 -r 1 --json "$@" \
        >"$OUT/ml_${name}_single.r$round.json"
}
for round in $(seq 1 "$REPS"); do
    for tp in 1 2; do
        for act in accurate fast; do
            say "round $round: meshllama tp $tp, act $act"
            ml_single "tp${tp}_${act}" "$MODEL" --tp "$tp" --act "$act"
        done
    done
    say "round $round: meshllama on the Q8_0 GGUF, tp 1"
    ml_single "q8_0_tp1_accurate" "$GGUF_Q8" --tp 1
    for q in bf16 q8_0; do
        gguf=$GGUF_BF16
        [ "$q" = q8_0 ] && gguf=$GGUF_Q8
        say "round $round: llama-bench $q"
        $PREFIX "$LLAMA_BIN/llama-bench" -m "$gguf" -t "$THREADS" -p "$PROMPTS" -n "$NGEN" -r 1 -o json \
            >"$OUT/llamacpp_$q.r$round.json" 2>"$OUT/llamacpp_$q.r$round.log"
    done
done
# Batched decode: one round (each run is long), meshllama and llama.cpp alternating.
max_batch=${BATCHES##*,}
for tp in 1 2; do
    for act in accurate fast; do
        say "meshllama batched decode, tp $tp, act $act"
        $PREFIX "${ML_BENCH[@]}" -m "$MODEL" --tp "$tp" --act "$act" --kv bf16 -t "$THREADS" \
            -p 0 -n "$NGEN" -b "$BATCHES" -d "$DEPTH" -r 1 --json >"$OUT/ml_tp${tp}_${act}_batch.json"
    done
    q=bf16
    [ "$tp" = 2 ] && q=q8_0
    gguf=$GGUF_BF16
    [ "$q" = q8_0 ] && gguf=$GGUF_Q8
    say "llama-batched-bench $q"
    $PREFIX "$LLAMA_BIN/llama-batched-bench" -m "$gguf" -t "$THREADS" -c $((max_batch * (DEPTH + NGEN) + 64)) \
        -npp "$DEPTH" -ntg "$NGEN" -npl "$BATCHES" --output-format jsonl \
        >"$OUT/llamacpp_${q}_batched.jsonl" 2>"$OUT/llamacpp_${q}_batched.log"
done
python3 "$ROOT/bench/summarize.py" "$OUT" | tee "$OUT/summary.md"
