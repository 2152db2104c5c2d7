#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole test suite: the C and CLI tests
# (ctest), then the Python package's tests (pytest in the project venv, made by
# scripts/python_env.sh, against the library just built). Exits non-zero on any failure,
# including a pytest run that collected no test. MESHLLAMA_SKIP_PYTHON=1 runs ctest only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_dir=${BUILD_DIR:-build}
scripts/install_deps.sh
scripts/fetch_default_model.sh
scripts/build.sh "$@"
(cd "$build_dir" && ctest --output-on-failure -j"$(nproc)")
if [ "${MESHLLAMA_SKIP_PYTHON:-0}" = 1 ]; then
    echo "SKIP: Python tests (MESHLLAMA_SKIP_PYTHON=1)"
    exit 0
fi
start=$(date +%s)
scripts/python_env.sh
status=0
case $build_dir in /*) built=$build_dir ;; *) built=$root/$build_dir ;; esac
PYTHONPATH=$root/python MESHLLAMA_LIBRARY=$built/libmeshllama.so MESHLLAMA_CLI=$built/meshllama \
    "${MESHLLAMA_VENV:-.venv}/bin/python" -m pytest -q python/tests || status=$?
if [ "$status" -eq 5 ]; then
    echo "FAIL: pytest collected no test (exit 5)" >&2
    exit 1
fi
echo "python tests: $(($(date +%s) - start)) s (venv + pytest)"
exit "$status"
