#!/usr/bin/env bash
# scripts/main.sh (setup skipped) on the default model: the YT_METRICS line of the seed's
# evaluation at tp 3 and the greedy generation shown as text beside its ids.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
root=$(cd "$fixtures/../.." && pwd)
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
if [ ! -f "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] && [ -z "${MESHLLAMA_DEFAULT_MODEL:-}" ]; then
    echo "FAIL: the default model is missing (scripts/fetch_default_model.sh)"
    exit 1
fi
out=$(MESHLLAMA_MAIN_SKIP_SETUP=1 MESHLLAMA_BIN="$bin" bash "$root/scripts/main.sh" 2>&1)
rc=$?
if [ $rc -eq 0 ]; then pass; else fail "scripts/main.sh exited $rc: $out"; fi
if grep -q '^YT_METRICS=.*"tp": *3' <<<"$out"; then pass; else fail "no YT_METRICS line at tp 3: $out"; fi
text=$(sed -n 's/^text: *//p' <<<"$out")
if [ -n "$text" ] && python3 -c 'import json,sys; t=json.loads(sys.argv[1]); sys.exit(0 if any(c.isalpha() for c in t) else 1)' "$text"; then
    pass
else
    fail "the generation is not shown as text: $out"
fi
if grep -qE '^ids: +[0-9]+(,[0-9]+)+$' <<<"$out"; then pass; else fail "the generated ids are not beside the text: $out"; fi
echo "$out" | grep -E '^(text|ids):'
finish cli_main_script
