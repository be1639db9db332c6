"""Time the forward pass of two commits in turns, on the same machine in the same minutes.

Each revision is checked out in a temporary worktree and built for this machine only
(``NNEXPOSED_NATIVE=1``: one build, the best ISA); then every round times each case in a child
interpreter of each build in turn (before, after, before, after, ...), so that a change of the
machine's load hits both sides alike. Prints the median time per call of each side and
after / before.

    python tools/ab_commits.py 717af04                     # 717af04 against HEAD
    python tools/ab_commits.py bafdb30 HEAD --cases N4:256,N4:1024 --rounds 5
    python tools/ab_commits.py 717af04 --threads 1
    python tools/ab_commits.py main --cases N4:1,N4:256 --precision int8

Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the command if they are set, and run it
with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = {"N1": [3, 5, 5, 5, 2], "N2": [64, 128, 128, 10], "N3": [784, 256, 256, 10],
            "N4": [4096, 4096]}
DEFAULT_CASES = "N1:1,N3:1,N4:1,N1:1000,N3:64,N2:4096,N3:4096,N4:256,N4:1024"

# Run in a child interpreter of one build: the median seconds per call of each case.
TIMER = """
import json, sys, time
import numpy as np, nnexposed
cases, threads, min_time, precision = json.loads(sys.argv[1])
def per_call(call):
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n
        n = max(2 * n, int(n * min_time / max(elapsed, 1e-9) * 1.2))
result = {}
for sizes, batch, name in cases:
    net = nnexposed.Network.from_sizes(sizes, seed=0)
    if precision != "float32":
        net = net.quantize(precision)
    shape = (sizes[0],) if batch == 1 else (batch, sizes[0])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    result[name] = per_call(lambda: nnexposed.forward(net, x, threads=threads))
print(json.dumps(result))
"""


def parse_cases(text: str) -> list[tuple[list[int], int, str]]:
    cases = []
    for item in text.split(","):
        name, _, batch = item.partition(":")
        if name not in NETWORKS or not batch.isdigit() or int(batch) < 1:
            raise SystemExit(f"ab_commits: expected cases like N3:64 (networks "
                             f"{', '.join(NETWORKS)}), got {item!r}")
        cases.append((NETWORKS[name], int(batch), item))
    return cases


def build(revision: str, folder: Path) -> Path:
    """The kernels of the worktree ``folder`` (of ``revision``) built in place; its src folder."""
    environment = dict(os.environ, NNEXPOSED_NATIVE="1")
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                            cwd=folder, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"ab_commits: {revision} does not build:\n{result.stderr[-2000:]}")
    return folder / "src"


def time_once(source: Path, cases, threads, min_time, precision) -> dict[str, float]:
    environment = dict(os.environ, PYTHONPATH=str(source))
    output = subprocess.run([sys.executable, "-c", TIMER,
                             json.dumps([cases, threads, min_time, precision])],
                            env=environment, capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the revision to compare against")
    parser.add_argument("after", nargs="?", default="HEAD", help="default: HEAD")
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"default: {DEFAULT_CASES}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: the library's")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "int8", "bfloat16", "float16"],
                        help="the networks' weights (Network.quantize; default float32)")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds each timing loop runs at least")
    args = parser.parse_args(argv)
    cases = parse_cases(args.cases)
    with tempfile.TemporaryDirectory(prefix="nnexposed-ab-") as temporary:
        sources = {}
        worktrees = []
        try:
            for side in ("before", "after"):
                folder = Path(temporary) / side
                added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                                        str(folder), getattr(args, side)],
                                       capture_output=True, text=True)
                if added.returncode != 0:
                    raise SystemExit(f"ab_commits: {added.stderr.strip().splitlines()[-1]}")
                worktrees.append(folder)
                sources[side] = build(getattr(args, side), folder)
            samples: dict[str, dict[str, list[float]]] = {
                side: {name: [] for *_, name in cases} for side in sources}
            for _ in range(args.rounds):
                for side, source in sources.items():
                    for name, seconds in time_once(source, cases, args.threads,
                                                   args.min_time, args.precision).items():
                        samples[side][name].append(seconds)
        finally:
            for folder in worktrees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(folder)], capture_output=True)
    print(f"{'case':12} {args.before + ' µs':>16} {args.after + ' µs':>16}  after/before")
    for *_, name in cases:
        before = statistics.median(samples["before"][name]) * 1e6
        after = statistics.median(samples["after"][name]) * 1e6
        print(f"{name:12} {before:16.4g} {after:16.4g}  {after / before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
