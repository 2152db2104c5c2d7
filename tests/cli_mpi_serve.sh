#!/usr/bin/env bash
# `mpirun -np 2 meshllama serve`: rank 0 serves and both ranks step the batch (server/sync.c).
# tests/serve_client.py drives it (routes, concurrent requests, vanishing clients, greedy answers
# equal to solo runs), a greedy completion equals `meshllama run` on the threads backend, and
# SIGTERM to rank 0 ends the whole job with status 0. SKIP (77) without MPI or libmicrohttpd.
set -u
bin=${MESHLLAMA_BIN:?}
tmp=${MESHLLAMA_TMP:-/tmp}/cli_mpi_serve.$$
mkdir -p "$tmp"
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
if ! command -v mpirun >/dev/null; then echo "SKIP: mpirun not installed"; exit 77; fi
if "$bin" serve --slots 0 2>&1 | grep -q "no HTTP server"; then echo "SKIP: built without libmicrohttpd"; exit 77; fi
default_model || { finish cli_mpi_serve; exit 1; }
if "$bin" run -m "$default_model_path" -p x -n 1 --backend mpi 2>&1 | grep -q "not in this build"; then
    echo "SKIP: built without MPI"; exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
job=
trap '[ -n "$job" ] && kill -KILL "$job" 2>/dev/null; rm -rf "$tmp"' EXIT

timeout 600 mpirun --oversubscribe -np 2 "$bin" serve -m "$default_model_path" --port 0 --ctx 512 --slots 4 \
    --max-body 65536 --drain-timeout 2 -t 1 2>"$tmp/log" &
job=$!
url=
for _ in $(seq 1 900); do
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$tmp/log" | head -1)
    [ -n "$url" ] && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$url" ]; then
    fail "the MPI server did not start: $(cat "$tmp/log")"
else
    grep -q "2 ranks" "$tmp/log" && pass || fail "not 2 ranks: $(cat "$tmp/log")"
    rounds=2
    [ "${MESHLLAMA_QUICK:-0}" = 1 ] && rounds=1
    if python3 "$(dirname "$0")/serve_client.py" "$url" "$rounds"; then pass; else fail "serve_client.py over MPI"; fi
    want=$("$bin" run -m "$default_model_path" -p "The capital of France is" -n 12 --tp 2 --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["text"]))')
    got=$(python3 - "$url" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/completions", method="POST", data=json.dumps(
    {"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}).encode())
print(json.dumps(json.loads(urllib.request.urlopen(req, timeout=120).read())["choices"][0]["text"]))
PY
)
    if [ -n "$want" ] && [ "$got" = "$want" ]; then pass; else fail "MPI server '$got', threads run '$want'"; fi
    rank0=$(grep -o 'pid [0-9]*' "$tmp/log" | head -1 | cut -d' ' -f2)
    kill -TERM "$rank0"
    wait "$job"
    rc=$?
    job=
    if [ "$rc" -eq 0 ]; then pass; else fail "mpirun exited $rc after SIGTERM to rank 0: $(tail -5 "$tmp/log")"; fi
fi
finish cli_mpi_serve
