"""Microbenchmarks of nnexposed.forward against forward_numpy on the project's reference cases.

    python bench/run.py [--repeat 7] [--quick]

Writes bench/results/RESULTS.md and bench/results/results.json (median µs per call, ratio to
NumPy measured in the same process, and the machine's description). For fair NumPy figures on
machines that set them, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

import argparse
import json
import pathlib
import sys

from nnexposed import benchmark

# (sizes, batch) per case: N1 is the article's network, N2-N4 grow to a memory-bound layer.
N1, N2, N3, N4 = (3, 5, 5, 5, 2), (64, 128, 128, 10), (784, 256, 256, 10), (4096, 4096)
CASES = [
    (N1, 1), (N2, 1), (N3, 1), (N4, 1),
    (N1, 1_000), (N1, 1_000_000), (N2, 4_096), (N3, 64), (N3, 65_536), (N4, 1_024),
]
QUICK_CASES = [(N1, 1), (N2, 1), (N3, 1), (N1, 1_000), (N3, 64)]
RESULTS = pathlib.Path(__file__).parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true", help="only the fast cases")
    args = parser.parse_args(argv)

    rows = []
    cases = QUICK_CASES if args.quick else CASES
    for k, (sizes, batch) in enumerate(cases):
        print(f"[{k + 1}/{len(cases)}] {'-'.join(map(str, sizes))} batch {batch}",
              file=sys.stderr, flush=True)
        rows.append(benchmark.run([sizes], [batch], args.dtype, repeat=args.repeat)[0])
    table = benchmark.format_table(rows)
    print(table)

    RESULTS.mkdir(exist_ok=True)
    machine = benchmark.machine_info()
    (RESULTS / "results.json").write_text(
        json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    lines = ["# nnexposed microbenchmarks", "",
             "Median µs per call; `vs numpy` is forward_numpy time / nnexposed time, both "
             "measured in the same process (`python bench/run.py`).", "", "```", table, "```",
             "", "Machine:", ""] + [f"- {key}: {value}" for key, value in machine.items()]
    (RESULTS / "RESULTS.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
