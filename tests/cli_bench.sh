#!/usr/bin/env bash
# `meshllama bench` as a user drives it, on fixture checkpoints: the JSON report is complete and
# self-consistent (tokens, times and rates agree; the bytes per decode step equal the matrices
# `inspect` lists; fractions of the probed limits are present and positive), the table prints,
# and bad arguments are refused with a message naming them. Speed itself is never asserted here
# (timed results belong in bench/ and docs/BENCHMARKS.md, not in tests).
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
test_tmp cli_bench

# check_report JSON_FILE INSPECT_JSON PROMPTS BATCHES N_GEN PROBED DEPTH: prints one line per problem
check_report() {
    python3 - "$@" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
inspect = json.load(open(sys.argv[2]))
prompts = [int(p) for p in sys.argv[3].split(",") if int(p) > 0]
batches = [int(b) for b in sys.argv[4].split(",")]
n_gen, probed, depth = int(sys.argv[5]), sys.argv[6] == "1", int(sys.argv[7])
problems = []
def expect(cond, what):
    if not cond:
        problems.append(what)

# bytes one decode step reads: every projection matrix and the LM head (the embedding if tied)
tensors = {t["name"]: t for t in inspect["tensors"]}
tied = inspect["config"]["tie_word_embeddings"]
matrices = [t for n, t in tensors.items() if n.endswith("_proj.weight")]
head = tensors["model.embed_tokens.weight" if tied else "lm_head.weight"]
expected_bytes = sum(t["bytes"] for t in matrices) + head["bytes"]
if report["weight_dtype"] == inspect["tensors"][0]["dtype"]:
    expect(report["cost"]["weight_bytes_per_step"] == expected_bytes,
           "weight_bytes_per_step %s, inspect's matrices %d" % (report["cost"]["weight_bytes_per_step"], expected_bytes))
expect(report["cost"]["intermediate_size"] == inspect["config"]["intermediate_size"], "intermediate_size")

names = [r["test"] for r in report["results"]]
want = ["pp%d" % p for p in prompts] + ["tg%d%s" % (n_gen, "@d%d" % depth if depth else "")] * (len(batches) if n_gen else 0)
expect(names == want, "tests %s, expected %s" % (names, want))
decode = [r for r in report["results"] if r["test"].startswith("tg")]
expect([r["batch"] for r in decode] == (batches if n_gen else []), "decode batches %s" % [r["batch"] for r in decode])
for r in report["results"]:
    per_run = r["tokens"]
    expect(r["median_ms"] > 0 and r["best_ms"] > 0 and r["best_ms"] <= r["median_ms"] * (1 + 1e-9), r["test"] + " times")
    # median_ms is printed to 1 us and tok_s to 0.001: the rate must lie within those roundings
    # (the second matters below ~500 tok/s, e.g. under the sanitizers on a loaded machine)
    lo, hi = per_run * 1e3 / (r["median_ms"] + 6e-4), per_run * 1e3 / max(r["median_ms"] - 6e-4, 1e-9)
    expect(lo * (1 - 1e-6) - 6e-4 <= r["tok_s"] <= hi * (1 + 1e-6) + 6e-4, r["test"] + " tok_s %s vs %s tokens in %s ms" % (r["tok_s"], per_run, r["median_ms"]))
    expect(abs(r["tok_s_per_seq"] * r["batch"] - r["tok_s"]) <= 1e-3 * r["tok_s"] + 1e-3, r["test"] + " per seq")
    if r["test"].startswith("tg"):
        expect(per_run == n_gen * r["batch"], r["test"] + " tokens %d" % per_run)
        expect(r.get("gb_s", 0) > 0 and r.get("median_step_ms", 0) > 0, r["test"] + " gb_s / step")
    else:
        expect(per_run == int(r["test"][2:]), r["test"] + " tokens")
        expect(r.get("gflop_s", 0) > 0, r["test"] + " gflop_s")
    if probed:
        expect(r.get("limit_tok_s", 0) > 0 and r.get("fraction", 0) > 0, r["test"] + " fraction")
    else:
        expect("fraction" not in r, r["test"] + " has a fraction without probes")
if probed:
    m = report["machine"]
    expect(m["read_gb_s"] > 0 and m["peak_gflop_s"] > 0, "machine limits")
    expect(m["read_gb_s"] >= max(m["read_gb_s_before"], m["read_gb_s_after"]) - 1e-3, "best of the probes")
else:
    expect("machine" not in report, "machine limits without probes")
expect(report["load_ms"] > 0 and report["first_token_ms"] > 0 and report["peak_rss_mb"] > 0, "load/first/rss")
for p in problems:
    print(p)
PY
}

run_case() { # NAME MODEL INSPECT PROMPTS BATCHES N_GEN PROBED DEPTH extra args...
    local name=$1 model=$2 insp=$3 prompts=$4 batches=$5 n_gen=$6 probed=$7 depth=$8
    shift 8
    local probe_args=(--no-probe)
    if [ "$probed" = 1 ]; then probe_args=(--probe-mib 64); fi
    if ! "$bin" bench -m "$model" -p "$prompts" -b "$batches" -n "$n_gen" -d "$depth" -r 2 "${probe_args[@]}" --json "$@" \
        >"$tmp/$name.json" 2>"$tmp/$name.err"; then
        fail "$name: bench failed: $(cat "$tmp/$name.err")"
        return
    fi
    local problems
    problems=$(check_report "$tmp/$name.json" "$insp" "$prompts" "$batches" "$n_gen" "$probed" "$depth" 2>&1)
    if [ -z "$problems" ]; then pass; else fail "$name: $problems"; fi
}

for fixture in gqa_tied_bf16 h8kv2_headdim_untied_f32; do
    "$bin" inspect -m "$fixtures/$fixture" --json >"$tmp/$fixture.inspect.json" || fail "inspect $fixture"
done
g=$fixtures/gqa_tied_bf16
run_case tied_probed "$g" "$tmp/gqa_tied_bf16.inspect.json" 16,32 1,4 6 1 0
run_case tied_tp2_fast "$g" "$tmp/gqa_tied_bf16.inspect.json" 24 1,3 5 0 0 --tp 2 --act fast --kv bf16
run_case untied_tp3 "$fixtures/h8kv2_headdim_untied_f32" "$tmp/h8kv2_headdim_untied_f32.inspect.json" 8 2 4 0 0 --tp 3
run_case depth "$g" "$tmp/gqa_tied_bf16.inspect.json" 0 1,2 4 0 20
run_case prefill_only "$g" "$tmp/gqa_tied_bf16.inspect.json" 12 1 0 0 0
# a GGUF (Q8_0, kept in blocks of 32 weights in 34 bytes): bytes follow the dtype held in memory;
# with MESHLLAMA_GGUF_DEQUANTIZE=1 the matrices are float32 (4 bytes a weight) as before
run_case gguf_q8 "$fixtures/gguf/gqa_tied_q8_0.gguf" "$tmp/gqa_tied_bf16.inspect.json" 8 1 3 0 0
bytes_per_step() { # JSON DTYPE BYTES: exit 0 when the report says so
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["weight_dtype"]==sys.argv[2] and d["cost"]["weight_bytes_per_step"]==int(sys.argv[3]) else 1)' "$@" 2>/dev/null
}
if bytes_per_step "$tmp/gguf_q8.json" q8_0 $((331776 / 2 / 32 * 34)); then
    pass
else
    fail "gguf_q8: expected q8_0 weights of 176256 bytes per step: $(head -c 400 "$tmp/gguf_q8.json")"
fi
MESHLLAMA_GGUF_DEQUANTIZE=1 run_case gguf_q8_f32 "$fixtures/gguf/gqa_tied_q8_0.gguf" "$tmp/gqa_tied_bf16.inspect.json" 8 1 3 0 0
if bytes_per_step "$tmp/gguf_q8_f32.json" f32 $((2 * 331776)); then
    pass
else
    fail "gguf_q8_f32: expected f32 weights of 663552 bytes per step: $(head -c 400 "$tmp/gguf_q8_f32.json")"
fi

# the roofline's compute peak is that of the instruction the products use: int8 in fast mode on a
# quantised GGUF (where the CPU has AVX2 or AVX512_VNNI), a float one (f32 FMA or vdpbf16ps) else
peak_isa() { # MODEL ARGS...: the peak_isa a probed run reports
    local model=$1
    shift
    "$bin" bench -m "$model" -p 8 -n 0 -b 1 -r 1 --probe-mib 64 --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["machine"]["peak_isa"])'
}
q8=$fixtures/gguf/gqa_tied_q8_0.gguf
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    isa=$(peak_isa "$q8" --act fast)
    if [[ "$isa" == *int8* ]]; then pass; else fail "fast on Q8_0: peak '$isa', expected an int8 product peak"; fi
fi
isa=$(peak_isa "$q8" --act accurate)
if [[ "$isa" != *int8* ]]; then pass; else fail "accurate on Q8_0: peak '$isa', expected a float peak"; fi
isa=$(peak_isa "$g" --act fast)
if [[ "$isa" != *int8* ]]; then pass; else fail "fast on bf16: peak '$isa', expected a float peak"; fi

# the table a person reads
table=$("$bin" bench -m "$g" -p 16 -n 4 -b 1,2 -r 1 --probe-mib 64 2>&1)
for needle in "machine: read" "GFLOP/s" "tok/s/seq" "fraction" "pp16" "tg4" "peak RSS" "first token"; do
    if grep -qF -- "$needle" <<<"$table"; then pass; else fail "table lacks '$needle': $table"; fi
done

# bad input: usage errors exit 2 naming the argument; model errors exit 1 naming the path
expect_fail 2 "--batch" -- "$bin" bench -m "$g" -b 0
expect_fail 2 "--batch" -- "$bin" bench -m "$g" -b 33
expect_fail 2 "--batch" -- "$bin" bench -m "$g" -b 1,,2
expect_fail 2 "--n-prompt" -- "$bin" bench -m "$g" -p abc
expect_fail 2 "--n-prompt" -- "$bin" bench -m "$g" -p 16,
expect_fail 2 "--repetitions" -- "$bin" bench -m "$g" -r 0
expect_fail 2 "--probe-mib" -- "$bin" bench -m "$g" --probe-mib 1
expect_fail 2 "--depth" -- "$bin" bench -m "$g" -d -3
expect_fail 2 "unexpected argument 'extra'" -- "$bin" bench -m "$g" extra
expect_fail 1 "$tmp/missing" -- "$bin" bench -m "$tmp/missing" --no-probe
# a context too small for the tests asked for: refused by the forward pass, not a crash
expect_fail 1 "max_seq_len" -- "$bin" bench -m "$g" -p 64 -n 0 -c 32 --no-probe

finish cli_bench
