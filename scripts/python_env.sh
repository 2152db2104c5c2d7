#!/usr/bin/env bash
# Makes the project venv (.venv, or $MESHLLAMA_VENV) with every package of
# python/requirements.txt (pinned). The wheels are downloaded once into a wheelhouse
# ($MESHLLAMA_WHEELHOUSE, default ~/.cache/meshllama/wheels: torch and its CUDA wheels are
# ~5 GB, and pip's own HTTP cache does not reliably keep files that large), and every venv
# after the first installs from it without the network. Re-installs only when that file changed. With --package it also installs the meshllama
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
    wheels=${MESHLLAMA_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshllama/wheels}
    mkdir -p "$wheels"
    "$venv/bin/python" -m pip download -q --only-binary=:all: -d "$wheels" -r python/requirements.txt
    "$venv/bin/python" -m pip install -q --no-index --find-links "$wheels" -r python/requirements.txt
    echo "$want" >"$stamp"
fi
if [ "${1:-}" = --package ]; then
    "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps .
fi
