#!/usr/bin/env bash
# Build the compiled kernels with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# whole test suite against that build, with the sanitizer runtimes preloaded into CPython.
# Exits non-zero on any sanitizer report (or test failure).
#
# The build happens in a copy of the tree (default: a fresh temporary directory) with its own
# venv, so the normal build of the working tree is never touched.
#
#   tools/sanitize.sh [extra pytest args]        e.g. tools/sanitize.sh -x -k fuzz
#   SANITIZE_DIR=/tmp/nnx-asan tools/sanitize.sh  keep (and reuse) the venv between runs
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${SANITIZE_DIR:-$(mktemp -d /tmp/nnexposed-sanitize.XXXXXX)}"
mkdir -p "$work"
cc="${CC:-gcc}"

asan="$("$cc" -print-file-name=libasan.so)"
ubsan="$("$cc" -print-file-name=libubsan.so)"
for lib in "$asan" "$ubsan"; do
    if [[ "$lib" != /* || ! -e "$lib" ]]; then
        echo "sanitize.sh: $cc has no sanitizer runtime ($lib)" >&2
        exit 2
    fi
done

# A copy of the tracked (and new, not ignored) files: builds write into the source tree.
rm -rf "$work/tree"
mkdir -p "$work/tree"
if git -C "$root" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    (cd "$root" && git ls-files --cached --others --exclude-standard -z \
        | xargs -0 cp --parents -t "$work/tree")
else
    (cd "$root" && tar --exclude='./.venv*' --exclude=./build --exclude='*.so' \
        --exclude=./.git -cf - .) | tar -xf - -C "$work/tree"
fi

if [[ ! -x "$work/venv/bin/python" ]]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install --quiet --upgrade pip
    "$work/venv/bin/python" -m pip install --quiet "setuptools>=77" "Cython>=3.1" \
        "numpy>=2.0,!=2.5.0" scipy pytest hypothesis mpmath
fi
py="$work/venv/bin/python"

# The flags go into CC itself so that every compile and link uses them, including the
# OpenMP probe executable of setup.py (with CFLAGS/LDFLAGS only, the probe fails to link and
# the sanitized build silently loses OpenMP).
sanitize="-fsanitize=address,undefined -fno-omit-frame-pointer"
(cd "$work/tree" && CC="$cc $sanitize" CFLAGS="-g -fno-sanitize-recover=undefined" \
    LDFLAGS="$sanitize" \
    "$py" -m pip install --quiet --no-build-isolation --force-reinstall --no-deps .)

# The installed extension(s) must really be instrumented.
# (Found without importing: an instrumented module needs the runtime preloaded to load.)
mapfile -t modules < <("$py" -c '
import glob, importlib.util, os
folder = importlib.util.find_spec("nnexposed").submodule_search_locations[0]
print("\n".join(glob.glob(os.path.join(folder, "_core_*.so"))
                + glob.glob(os.path.join(folder, "_cpu*.so"))))')
[[ ${#modules[@]} -gt 0 ]] || { echo "sanitize.sh: no compiled module installed" >&2; exit 2; }
for module in "${modules[@]}"; do
    if ! ldd "$module" | grep -q libasan; then
        echo "sanitize.sh: $module is not linked with libasan" >&2
        exit 2
    fi
done

folder="$(dirname "${modules[0]}")"
if [[ "${NNEXPOSED_OPENMP:-1}" != "0" ]] && ! grep -q "openmp = True" "$folder/_build_info.py"; then
    echo "sanitize.sh: the sanitized build has no OpenMP ($folder/_build_info.py)" >&2
    exit 2
fi
grep -E "^(compiler|flags|openmp)" "$folder/_build_info.py"

export LD_PRELOAD="$asan:$ubsan"
# CPython and NumPy keep allocations alive until exit by design: leak detection off.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONFAULTHANDLER=1
log="$work/pytest.log"
status=0
# Run the tests of the copy (imports resolve to the sanitized install, not to src/).
(cd "$work/tree" && "$py" -m pytest -q -p no:cacheprovider "$@") 2>&1 | tee "$log" \
    || status=$?
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer" \
        "$log"; then
    echo "sanitize.sh: sanitizer report found (see $log)" >&2
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "sanitize.sh: tests failed under the sanitizers (status $status, log $log)" >&2
    exit "$status"
fi
echo "sanitize.sh: clean (ASan + UBSan, log $log)"
if [[ -z "${SANITIZE_DIR:-}" ]]; then
    rm -rf "$work"
fi
