#!/usr/bin/env bash
# Makes the project venv (.venv, or $MESHLLAMA_VENV) with every package of
# python/requirements.txt (pinned; pip's cache is reused, so only the first run downloads).
# Re-installs them only when that file changed. With --package it also installs the meshllama
# package itself with `pip install .` (scikit-build-core builds libmeshllama.so with the
# project's CMake in build/python-*, kept between runs); without it, the tests run the package
# from python/ against the library of build/ (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MESHLLAMA_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    echo "meshllama: creating the Python venv $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
fi
stamp=$venv/.requirements.sha256
want=$(sha256sum python/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "meshllama: installing python/requirements.txt into $venv (torch is large: minutes on a fresh machine)" >&2
    "$venv/bin/python" -m pip install -q -r python/requirements.txt
    echo "$want" >"$stamp"
fi
if [ "${1:-}" = --package ]; then
    "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps .
fi
