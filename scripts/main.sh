#!/usr/bin/env bash
# The main job: install, build, then generate with meshllama tensor-parallel over a mesh of
# two devices, on a committed checkpoint, and compare with Hugging Face's greedy tokens.
# (The default model, SmolLM2-135M-Instruct, arrives with the GGUF reader.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
model=tests/fixtures/h9kv3_llama3rope_bf16
read -r prompt expected < <(python3 - "$model/reference.bin" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
_, _, n_prompt, n_gen = struct.unpack_from("<4I", data, 8)
ids = struct.unpack_from("<%di" % (n_prompt + n_gen), data, 24)
print(",".join(map(str, ids[:n_prompt])), ",".join(map(str, ids[n_prompt:])))
PY
)
build/meshllama inspect "$model" --tp 2
echo "prompt ids: $prompt"
echo "generated (meshllama, tp 2):"
got=$(build/meshllama run -m "$model" --prompt-ids "$prompt" -n 16 --tp 2 --ignore-eos)
echo "$got"
echo "Hugging Face greedy reference:"
echo "$expected" | tr ',' ' '
[ "$(tr ' ' ',' <<<"$got")" = "$expected" ] && echo "identical to Hugging Face"
