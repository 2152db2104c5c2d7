# Counting checks for the CLI tests (tests/cli_*.sh source this file):
#   pass                        one check passed
#   fail MESSAGE                one check failed; MESSAGE goes to stderr
#   expect_fail CODE NEEDLE -- command...
#                               the command exits with CODE and its stderr contains NEEDLE
#   finish NAME                 prints "NAME: P passed, F failed"; exit status 0 only if none failed
#   test_tmp NAME               makes $tmp, a fresh folder NAME.PID under $MESHLLAMA_TMP (else
#                               $TMPDIR or /tmp), removed when the script exits
#   reference_ids FILE [SEP]    prints an MLHFREF1 reference's prompt ids (comma-separated), a space,
#                               and HF's greedy continuation joined by SEP (default ",")
#   default_model               sets $default_model_path to the default model, or records a failure
#                               and returns 1 (see below)
passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

expect_fail() {
    local code=$1 needle=$2
    shift 3
    local err
    err=$("$@" 2>&1 >/dev/null)
    local rc=$?
    if [ "$rc" -ne "$code" ]; then fail "$* exited $rc, expected $code: $err"; return; fi
    if ! grep -qF -- "$needle" <<<"$err"; then fail "$*: message lacks '$needle': $err"; return; fi
    pass
}

test_tmp() {
    tmp=${MESHLLAMA_TMP:-${TMPDIR:-/tmp}}/$1.$$
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
}

finish() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}

# The default model: $MESHLLAMA_DEFAULT_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf in the
# checkout (what `meshllama run` without -m opens). One rule for every test, shell and C
# (tests/test_util.c has the same): a missing default model is a FAILURE, never a SKIP, since
# scripts/test.sh fetches it (scripts/fetch_default_model.sh) and a skipped check would hide
# that the accuracy tests did not run.
default_model() {
    local root
    root=$(cd "${MESHLLAMA_FIXTURES:?}/../.." && pwd)
    default_model_path=${MESHLLAMA_DEFAULT_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
    [ -f "$default_model_path" ] && return 0
    fail "the default model $default_model_path is missing: scripts/fetch_default_model.sh fetches it (scripts/test.sh runs it)"
    return 1
}

# HF's prompt and greedy continuation from a fixture's reference.bin (MLHFREF1, docs/FIXTURES.md).
reference_ids() {
    python3 - "$1" "${2:-,}" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"MLHFREF1"
version, vocab, n_prompt, n_gen = struct.unpack_from("<4I", data, 8)
ids = struct.unpack_from("<%di" % (n_prompt + n_gen), data, 24)
print(",".join(map(str, ids[:n_prompt])), sys.argv[2].join(map(str, ids[n_prompt:])))
PY
}
