#!/usr/bin/env bash
# `meshllama chat` on a terminal (a pseudo-terminal driven by tests/chat_pty.py) with the
# default model: /help, /system, /save, /load, /clear, unknown commands, a `\` continued line,
# the up arrow recalling history (when built with libedit), Ctrl-C during an answer, Ctrl-D and
# Ctrl-C at the prompt.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
root=$(cd "$fixtures/../.." && pwd)
model=${MESHLLAMA_DEFAULT_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$model" ]; then echo "FAIL: default model missing (scripts/fetch_default_model.sh)"; exit 1; fi
tmp=${MESHLLAMA_TMP:-/tmp}/cli_chat_pty.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
editing=plain
if ldd "$bin" 2>/dev/null | grep -q libedit; then editing=libedit; fi
python3 "$(dirname "$0")/chat_pty.py" "$bin" "$model" "$tmp" "$editing"
