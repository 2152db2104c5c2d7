#!/usr/bin/env bash
# LeakSanitizer under mpirun (issue 14): the settings .ci/run uses for the MPI tests of the
# sanitizer build must (1) report nothing for a clean run, although Open MPI keeps
# process-lifetime allocations, and (2) still report a leak in our own code. Open MPI's
# libraries have no frame pointers, so LSan's default fast unwinder stops at their first frame
# and tests/lsan.supp cannot match them: fast_unwind_on_malloc=0 is what makes the suppressions
# work. Runs only in the sanitizer build with MPI (mpi_leak_probe exists there); SKIP otherwise.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
probe=$(dirname "$bin")/tests/mpi_leak_probe
if [ ! -x "$probe" ]; then echo "SKIP: not the sanitizer build with MPI (no $probe)"; exit 77; fi
if ! command -v mpirun >/dev/null; then echo "SKIP: mpirun not installed"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# shellcheck source=lib/check.sh
source "$(dirname "$0")/lib/check.sh"
supp=$(cd "$(dirname "$0")" && pwd)/lsan.supp
dir=$fixtures/gqa_tied_bf16
# exactly what .ci/run exports for the MPI tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
export LSAN_OPTIONS=suppressions=$supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

out=$(timeout 120 mpirun --oversubscribe -np 2 "$probe" "$dir" clean 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! grep -q "LeakSanitizer" <<<"$out"; then pass
else fail "clean run under mpirun: rc $rc: $(grep -m3 -A12 "LeakSanitizer" <<<"$out" | head -c 1500)"; fi

out=$(timeout 120 mpirun --oversubscribe -np 2 "$probe" "$dir" leak 2>&1)
rc=$?
if [ $rc -ne 0 ] && grep -q "detected memory leaks" <<<"$out" && grep -q "deliberate_leak_in_meshllama" <<<"$out"; then pass
else fail "deliberate leak not reported: rc $rc: $(head -c 1500 <<<"$out")"; fi
# and nothing but ours: every leak reported is the probe's
others=$(grep -E "^(Direct|Indirect) leak" -A4 <<<"$out" | grep -c -E "libmpi|libopen-pal|libopen-rte|libpmix|libhwloc|libevent" || true)
if [ "$others" = 0 ]; then pass; else fail "Open MPI leaks not suppressed ($others frames)"; fi

# for the record: with the default fast unwinder the suppressions miss Open MPI's allocations
unset LSAN_OPTIONS
fast=$(ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$supp:print_suppressions=0 \
    timeout 120 mpirun --oversubscribe -np 2 "$probe" "$dir" clean 2>&1 | grep -c "^Direct leak" || true)
echo "with fast_unwind_on_malloc=1 a clean run reports $fast direct leaks (Open MPI's)"

finish cli_mpi_asan
