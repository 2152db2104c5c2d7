#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang into build-fuzz and runs each one for SECONDS
# (default 60) on a scratch copy of its seed corpus (the committed corpus is left untouched).
# Exits non-zero if any harness finds a crash, leak, sanitizer report or timeout; the
# reproducer is left in build-fuzz/artifacts/<harness>/.
#
# usage: tests/fuzz/run_fuzz.sh [SECONDS] [HARNESS...]
#   harnesses: safetensors config gguf tokenizer tokenizer_json tokenizer_tiktoken tokenizer_gguf
#              tokenizer_arrays eval_reference hf_reference jinja
set -u
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(safetensors config gguf tokenizer tokenizer_json tokenizer_tiktoken tokenizer_gguf tokenizer_arrays
    eval_reference hf_reference jinja)

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHLLAMA_FUZZ=ON >/dev/null || exit 2
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build build-fuzz -j"$(nproc)" "${targets[@]}" >/dev/null || exit 2

status=0
for h in "${harnesses[@]}"; do
  work="build-fuzz/corpus-run/$h"
  artifacts="build-fuzz/artifacts/$h"
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  if [ -d tests/fuzz/corpus/"$h" ]; then cp tests/fuzz/corpus/"$h"/* "$work"/; fi
  # the Jinja harness starts from the real chat templates of the HF comparison
  if [ "$h" = jinja ]; then cp tests/fixtures/chat_templates/*.jinja "$work"/; fi
  if [ -d tests/fixtures/tokenizer/fuzz_seeds/"$h" ]; then cp tests/fixtures/tokenizer/fuzz_seeds/"$h"/* "$work"/; fi
  dict=()
  [ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")
  [ -f "tests/fixtures/tokenizer/fuzz_seeds/$h.dict" ] && dict=(-dict="tests/fixtures/tokenizer/fuzz_seeds/$h.dict")
  log="build-fuzz/fuzz_$h.log"
  echo "== fuzz_$h: ${seconds}s (log: $log)"
  ./build-fuzz/tests/fuzz/fuzz_"$h" "$work" "${dict[@]}" -max_total_time="$seconds" -max_len=16384 \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  grep -E "DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "$log" | sed 's/^/   /'
  if [ $rc -ne 0 ]; then
    echo "   fuzz_$h FAILED (exit $rc); reproducer in $artifacts:"
    ls "$artifacts" | sed 's/^/     /'
    grep -m1 -E "ERROR|runtime error|SUMMARY" "$log" | sed 's/^/   /'
    status=1
  fi
done
exit $status
