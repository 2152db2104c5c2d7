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

. "$(dirname "$0")/lib/apt_pinned.sh"
apt_install_pinned "${packages[@]}"
