#!/usr/bin/env bash
# The main job: install what is missing, build, fetch the default model (SmolLM2-135M-Instruct,
# a real trained Llama), then run the seed's evaluation on it, tensor-parallel over a mesh of
# three devices: teacher forcing against the committed Hugging Face reference (prefill 20,
# decode 20), printing the YT_METRICS line, and a greedy generation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/fetch_default_model.sh
scripts/build.sh
echo "== meshllama eval (seed defaults: prefill 20, decode 20; tp 3)"
build/meshllama eval --ref tests/fixtures/smollm2/fox_p20_d20.bin --tp 3
echo "== meshllama run (tp 3): 'The quick brown fox jumps over the lazy dog.' continued, token ids"
build/meshllama run --prompt-ids 504,2365,6354,16438,27003,690,260,23790,2767,30 -n 24 --tp 3
