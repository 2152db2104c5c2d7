#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole test suite (ctest). Exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/fetch_default_model.sh
scripts/build.sh "$@"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)"
