# Counting checks for the CLI tests (tests/cli_*.sh source this file):
#   pass                        one check passed
#   fail MESSAGE                one check failed; MESSAGE goes to stderr
#   expect_fail CODE NEEDLE -- command...
#                               the command exits with CODE and its stderr contains NEEDLE
#   finish NAME                 prints "NAME: P passed, F failed"; exit status 0 only if none failed
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

finish() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}
