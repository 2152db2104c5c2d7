#!/usr/bin/env bash
# The main job: install what is missing, build, fetch the default model (SmolLM2-135M-Instruct,
# a real trained Llama), then run the seed's evaluation on it, tensor-parallel over a mesh of
# three devices: teacher forcing against the committed Hugging Face reference (prefill 20,
# decode 20), printing the YT_METRICS line, and a greedy generation shown as text with its
# token ids beside it.
# MESHLLAMA_MAIN_SKIP_SETUP=1 skips install, fetch and build and runs $MESHLLAMA_BIN (default
# build/meshllama): tests/cli_main_script.sh does that.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MESHLLAMA_BIN:-build/meshllama}
if [ "${MESHLLAMA_MAIN_SKIP_SETUP:-0}" != 1 ]; then
    scripts/install_deps.sh
    scripts/fetch_default_model.sh
    scripts/build.sh
fi
echo "== meshllama eval (seed defaults: prefill 20, decode 20; tp 3)"
"$bin" eval --ref tests/fixtures/smollm2/fox_p20_d20.bin --tp 3
prompt="The quick brown fox jumps over the lazy dog."
echo "== meshllama run (tp 3, greedy, 24 tokens): '$prompt' continued"
json=$("$bin" run -p "$prompt" -n 24 --tp 3 --json)
python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("prompt ids:", ",".join(map(str, r["prompt_ids"])))
print("text:      ", json.dumps(r["text"], ensure_ascii=False))
print("ids:       ", ",".join(map(str, r["generated_ids"])))
print("finish:    ", r.get("finish_reason", "?"))
PY
