#!/usr/bin/env bash
# Prefill and decode throughput of the threads backend at tp 2 against the mpi backend with
# two ranks (one device each) on the same machine, same checkpoint, same total threads.
#   bench/mpi_vs_threads.sh [MODEL] [PROMPT_TOKENS] [DECODE_TOKENS] [REPEATS]
# Prints one line per run and the median ratio mpi/threads. Not a test: timings are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/llama-3.2-1b-shape}
prompt_len=${2:-128}
decode_len=${3:-32}
repeats=${4:-3}
bin=build/meshllama
cores=$(nproc)
prompt=$(python3 -c "import random; random.seed(1); print(','.join(str(random.randrange(1000, 30000)) for _ in range($prompt_len)))")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run_threads() { "$bin" run -m "$model" --prompt-ids "$prompt" -n "$decode_len" --ignore-eos --tp 2 -t "$cores" --json; }
run_mpi() {
    mpirun -np 2 --bind-to core "$bin" run -m "$model" --prompt-ids "$prompt" -n "$decode_len" \
        --ignore-eos -t $((cores / 2 > 0 ? cores / 2 : 1)) --json
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['timings']['$1'])"; }
declare -a tp_prefill tp_decode mpi_prefill mpi_decode
for i in $(seq 1 "$repeats"); do
    t=$(run_threads 2>/dev/null)
    m=$(run_mpi 2>/dev/null)
    tp_prefill+=("$(field prefill_tok_s <<<"$t")")
    tp_decode+=("$(field decode_tok_s <<<"$t")")
    mpi_prefill+=("$(field prefill_tok_s <<<"$m")")
    mpi_decode+=("$(field decode_tok_s <<<"$m")")
    echo "run $i: threads tp2 prefill ${tp_prefill[-1]} tok/s decode ${tp_decode[-1]} tok/s | mpi np2 prefill ${mpi_prefill[-1]} tok/s decode ${mpi_decode[-1]} tok/s"
done
python3 - "${tp_prefill[*]}" "${tp_decode[*]}" "${mpi_prefill[*]}" "${mpi_decode[*]}" <<'PY'
import statistics, sys
tp_p, tp_d, mpi_p, mpi_d = ([float(x) for x in a.split()] for a in sys.argv[1:])
med = statistics.median
print(f"median: threads prefill {med(tp_p):.1f} decode {med(tp_d):.2f} tok/s; mpi prefill {med(mpi_p):.1f} "
      f"decode {med(mpi_d):.2f} tok/s; mpi/threads prefill {med(mpi_p) / med(tp_p):.3f}, decode {med(mpi_d) / med(tp_d):.3f}")
PY
