#!/usr/bin/env bash
# Memory errors in the fused kernels: builds descend.kernels._fused with AddressSanitizer and UndefinedBehaviorSanitizer
# in a scratch copy of the sources (the normal build in the working tree is not touched) and runs the kernel and fuzz
# tests against that build. Any invalid read or write, use after free or undefined behaviour aborts the run with a
# report on stderr; the script then exits non-zero.
#
# Usage: tests/sanitize.sh [extra pytest arguments]     (with the project's virtual environment active)
# Linux and gcc only. Not part of CI: it takes a few minutes. The memory-flatness tests are left out (the sanitizer's
# quarantine of freed memory grows the resident set by design).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/descend-asan.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

cp -r "$ROOT/src" "$ROOT/tests" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$SCRATCH/"
rm -rf "$SCRATCH"/src/descend/kernels/_fused*.so "$SCRATCH"/src/*.egg-info
find "$SCRATCH" -name __pycache__ -prune -exec rm -rf {} +

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
echo "building the kernels with: $SAN"
(cd "$SCRATCH" && CFLAGS="$SAN" LDFLAGS="$SAN" "$PY" setup.py -q build_ext --inplace >"$SCRATCH/build.log" 2>&1) || {
    cat "$SCRATCH/build.log"
    exit 1
}
ls "$SCRATCH"/src/descend/kernels/_fused*.so >/dev/null || { cat "$SCRATCH/build.log"; exit 1; }

# Python itself is not instrumented, so the runtime is preloaded; leaks are not checked (the interpreter keeps memory
# at exit on purpose). PYTHONMALLOC=malloc lets the sanitizer see Python's own allocations too. Reports go to files,
# because pytest captures the tests' stderr and an abort would lose them.
PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:log_path=$SCRATCH/report"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$SCRATCH/report"
run() { LD_PRELOAD="$PRELOAD" PYTHONMALLOC=malloc PYTHONPATH="$SCRATCH/src:$SCRATCH" "$PY" "$@"; }

cd "$SCRATCH"
run -c 'import os, descend.kernels as k; assert k.available()[0] and k.__file__.startswith(os.getcwd()), k.__file__
print("sanitized build loaded:", k._fused.__file__, k.available()[1])'

# One pytest process per target, so that an abort in one still lets the others run and report.
TARGETS=(
    tests/test_kernels.py
    tests/test_kernels_half.py
    tests/test_kernels_torch_front.py
    tests/test_torch_plan.py
    tests/test_atomic_steps.py
    tests/test_threads.py
    tests/test_engine.py
    tests/test_fork.py
    tests/test_hostile.py
    tests/test_torch_state_dtype.py
    tests/test_torch_lowbit.py
    tests/test_torch_versions.py
    tests/test_numpy_lowbit.py
    tests/test_fuzz.py
    tests/test_long_runs.py::test_two_threads_give_the_bits_of_one_after_the_other
    tests/test_long_runs.py::test_both_fronts_in_two_threads_at_once
)
failed=0
for target in "${TARGETS[@]}"; do
    [ -e "${target%%::*}" ] || continue
    echo "== $target"
    status=0
    run -m pytest -q -p no:cacheprovider -m "not slow" "$target" "$@" || status=$?
    for report in "$SCRATCH"/report.*; do
        [ -e "$report" ] || continue
        echo "-- sanitizer report:"
        cat "$report"
        rm -f "$report"
        status=1
    done
    [ "$status" -eq 0 ] || failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "sanitizer run: FAILED (reports and failures above)"
    exit 1
fi
echo "sanitizer run: no invalid access reported"
