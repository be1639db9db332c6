"""Time the forward pass of two commits in turns, on the same machine in the same minutes.

Each revision is checked out in a worktree and built as a wheel is (every ISA's kernels,
with the wheel's flags; the import picks the best one this CPU runs, as an installed package
does); then every round times each case in a child interpreter of each build in turn (before,
after, before, after, ...), so that a change of the machine's load hits both sides alike.
Prints the kernels each side ran (float ISA, reduced-precision kernel set) and the back-offs
to one thread it started (a back-off begun in one case runs into the next), the median time
per call of each side and after / before.

    python tools/ab_commits.py 717af04                     # 717af04 against HEAD
    python tools/ab_commits.py bafdb30 HEAD --cases N4:256,N4:1024 --rounds 5
    python tools/ab_commits.py 717af04 --threads 1
    python tools/ab_commits.py main --cases N4:1,N4:256 --precision int8

The builds take minutes: with ``--builds DIR`` they are kept in DIR (one folder per commit)
and reused (git worktrees: ``git worktree remove DIR/<commit>`` when done), so that they can
be made first (``--build-only``) apart from the timing:

    python tools/ab_commits.py main HEAD --builds /tmp/ab --build-only
    python tools/ab_commits.py main HEAD --builds /tmp/ab --cases N3:64

Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the command if they are set, and run the
timing with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
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
from nnexposed import _dispatch, _quantized
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
try:
    from nnexposed.kernels import thread_policy
except ImportError:  # before the back-off existed
    thread_policy = dict
policy = thread_policy()
print(json.dumps({"kernels": f"{_dispatch.ISA}, reduced precision {_quantized.kernel_set()}",
                  "seconds": result, "backoffs": policy.get("backoffs_started", 0)}))
"""
BUILT = ".ab_commits_built"


def parse_cases(text: str) -> list[tuple[list[int], int, str]]:
    cases = []
    for item in text.split(","):
        name, _, batch = item.partition(":")
        if name not in NETWORKS or not batch.isdigit() or int(batch) < 1:
            raise SystemExit(f"ab_commits: expected cases like N3:64 (networks "
                             f"{', '.join(NETWORKS)}), got {item!r}")
        cases.append((NETWORKS[name], int(batch), item))
    return cases


def commit_of(revision: str) -> str:
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify",
                            f"{revision}^{{commit}}"], capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"ab_commits: no commit {revision!r}")
    return found.stdout.strip()


def checkout(commit: str, folder: Path) -> None:
    added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder),
                            commit], capture_output=True, text=True)
    if added.returncode != 0:
        raise SystemExit(f"ab_commits: {added.stderr.strip().splitlines()[-1]}")


def build(revision: str, folder: Path) -> Path:
    """The kernels of the worktree ``folder`` (of ``revision``) built in place as a wheel's
    (NNEXPOSED_NATIVE unset: -march=native would leave only the baseline module, which the
    reduced-precision kernels take for a baseline CPU); its src folder."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("NNEXPOSED_NATIVE", "NNEXPOSED_ISA")}
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                            cwd=folder, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"ab_commits: {revision} does not build:\n{result.stderr[-2000:]}")
    (folder / BUILT).write_text(revision + "\n")
    return folder / "src"


def time_once(source: Path, cases, threads, min_time, precision) -> tuple[str, dict, int]:
    """(the kernels the build ran, {case: seconds per call}, back-offs to one thread started
    (thread_policy.h; 0 before it existed))."""
    environment = {key: value for key, value in os.environ.items() if key != "NNEXPOSED_ISA"}
    environment["PYTHONPATH"] = str(source)
    output = subprocess.run([sys.executable, "-c", TIMER,
                             json.dumps([cases, threads, min_time, precision])],
                            env=environment, capture_output=True, text=True, check=True).stdout
    result = json.loads(output)
    return result["kernels"], result["seconds"], result["backoffs"]


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
    parser.add_argument("--builds", type=Path, default=None,
                        help="keep the builds in this folder and reuse them (default: "
                             "temporary ones)")
    parser.add_argument("--build-only", action="store_true",
                        help="build (into --builds) and time nothing")
    args = parser.parse_args(argv)
    cases = parse_cases(args.cases)
    if args.build_only and args.builds is None:
        parser.error("--build-only needs --builds")
    with contextlib.ExitStack() as cleanup:
        if args.builds is None:
            builds = Path(cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="nnexposed-ab-")))
        else:
            builds = args.builds.resolve()
            builds.mkdir(parents=True, exist_ok=True)
        sources = {}
        for side in ("before", "after"):
            commit = commit_of(getattr(args, side))
            folder = builds / commit
            if (folder / BUILT).exists():
                sources[side] = folder / "src"
                continue
            if not folder.exists():
                checkout(commit, folder)
            if args.builds is None:
                cleanup.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove",
                                                  "--force", str(folder)], capture_output=True)
            sources[side] = build(getattr(args, side), folder)
        if args.build_only:
            print(f"built {args.before} and {args.after} in {builds}")
            return 0
        samples: dict[str, dict[str, list[float]]] = {
            side: {name: [] for *_, name in cases} for side in sources}
        kernels = {}
        backoffs = dict.fromkeys(sources, 0)
        for _ in range(args.rounds):
            for side, source in sources.items():
                kernels[side], seconds_per_call, started = time_once(
                    source, cases, args.threads, args.min_time, args.precision)
                backoffs[side] += started
                for name, seconds in seconds_per_call.items():
                    samples[side][name].append(seconds)
    for side in sources:
        print(f"{getattr(args, side)}: kernels {kernels[side]}; back-offs to one thread "
              f"started {backoffs[side]}")
    print(f"{'case':12} {args.before + ' µs':>16} {args.after + ' µs':>16}  after/before")
    for *_, name in cases:
        before = statistics.median(samples["before"][name]) * 1e6
        after = statistics.median(samples["after"][name]) * 1e6
        print(f"{name:12} {before:16.4g} {after:16.4g}  {after / before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
