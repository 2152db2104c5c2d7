#!/usr/bin/env bash
# Installs what the libFuzzer harnesses (tests/fuzz/, docs/RELIABILITY.md) need beyond
# scripts/install_deps.sh: clang and its runtime libraries (libFuzzer, ASan, UBSan), pinned to
# Debian 12's versions. Skips apt entirely when they are already present.
set -euo pipefail

packages=(
    "clang-14=1:14.0.6-12"            # the compiler (-fsanitize=fuzzer)
    "libclang-rt-14-dev=1:14.0.6-12"  # libFuzzer and the sanitizer runtimes
    "clang=1:14.0-55.7~deb12u1"       # the plain `clang` name run_fuzz.sh calls
)

missing=()
for spec in "${packages[@]}"; do
    name=${spec%%=*}
    version=${spec#*=}
    installed=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
    case "$installed" in
        "install ok installed"*)
            if [ "${installed##* }" != "$version" ]; then missing+=("$spec"); fi ;;
        *) missing+=("$spec") ;;
    esac
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi

echo "meshllama: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
