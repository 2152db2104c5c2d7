#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then a C program outside the project
# (tests/install/consumer.c) is built against the installed copy through pkg-config, once on the
# shared library and once on the static one (pkg-config --static: Requires.private and
# Libs.private must be enough), and run; the installed `meshllama` command runs.
# Usage: install_check.sh BUILD_DIR PREFIX [EXTRA_CFLAGS]
set -u
build=${1:?build dir}
prefix=${2:?prefix}
extra=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/check.sh"
root=$(cd "$here/.." && pwd)
model=${MESHLLAMA_DEFAULT_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config missing"; exit 77; }
cc=${CC:-cc}

rm -rf "$prefix"
if out=$(cmake --install "$build" --prefix "$prefix" 2>&1); then pass; else fail "cmake --install: $out"; fi
pc=$(find "$prefix" -name meshllama.pc | head -n 1)
libdir=$(dirname "$(dirname "$pc")")
for f in "$prefix/include/meshllama.h" "$libdir/libmeshllama.a" "$prefix/bin/meshllama" "$pc"; do
    if [ -f "$f" ]; then pass; else fail "not installed: $f"; fi
done
if ls "$libdir"/libmeshllama.so.0* >/dev/null 2>&1; then pass; else fail "libmeshllama.so.0 not in $libdir"; fi
export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
if [ "$(pkg-config --modversion meshllama)" = "$("$prefix/bin/meshllama" --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1)" ]; then
    pass
else
    fail "pkg-config version $(pkg-config --modversion meshllama) differs from the command's"
fi

args=()
[ -f "$model" ] && args=("$model")
# shellcheck disable=SC2046,SC2086
if out=$($cc $extra -o "$prefix/consumer_shared" "$here/install/consumer.c" $(pkg-config --cflags --libs meshllama) 2>&1); then
    pass
    if out=$(LD_LIBRARY_PATH="$libdir" "$prefix/consumer_shared" "${args[@]}" 2>&1) && grep -q '^meshllama ' <<<"$out"; then
        pass
        echo "  shared: $out" | tr '\n' ' '; echo
    else
        fail "consumer (shared) failed: $out"
    fi
else
    fail "building against the shared library: $out"
fi
static_libs=$(pkg-config --static --libs meshllama | sed 's/-lmeshllama\b/-l:libmeshllama.a/')
# shellcheck disable=SC2046,SC2086
if out=$($cc $extra -o "$prefix/consumer_static" "$here/install/consumer.c" $(pkg-config --cflags meshllama) $static_libs 2>&1); then
    pass
    if ldd "$prefix/consumer_static" | grep -q libmeshllama; then fail "the static consumer loads libmeshllama.so"; else pass; fi
    if out=$("$prefix/consumer_static" "${args[@]}" 2>&1) && grep -q '^meshllama ' <<<"$out"; then pass; else fail "consumer (static) failed: $out"; fi
else
    fail "building against the static library ($static_libs): $out"
fi
finish install_check
