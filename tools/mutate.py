"""Mutation testing of the kernels: does the test suite notice a small wrong change?

Each mutation below is a text patch of the kernel sources (an anchor, found exactly once in
the source tree, and its replacement). For each one this copies the source tree to a
temporary directory, applies the patch, builds the kernels there for this machine only
(``NNEXPOSED_NATIVE=1``: one build instead of one per ISA) and runs the fast suite against
that build in a child process (``pytest -x``, under a timeout: a hang counts as killed).
It prints a table: mutation -> the first test that failed, or SURVIVED.

An anchor that is not found, or found more than once, is an error (exit status 2), so the
list stays true as the code moves; so is a mutant that does not build. Any survivor gives
exit status 1.

    python tools/mutate.py                     # all mutations, then the table
    python tools/mutate.py --list              # names and descriptions only
    python tools/mutate.py softplus_log bias_tile   # some of them
    python tools/mutate.py --check             # only check that every anchor is found
    python tools/mutate.py --markdown FILE     # also write the table as Markdown

Builds and tests run under ``nice -n 15``, one mutant at a time (``--jobs N``: N at once).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_SUFFIXES = (".pyx", ".pxi", ".pxd", ".h", ".py")

# The fast suite, in the order it runs (the tests most likely to kill a mutant first): test
# files under tests/ by name pattern; each pattern must match a file. The importers, model
# files, command line and benchmarks are left out: they reach the kernels only through
# paths these tests cover.
FAST_SUITE = ["test_forward.py", "test_activations.py", "test_quantized.py", "*numerics.py",
              "*leaks.py",
              "test_network.py", "*regressions.py", "*fuzz.py", "test*threads.py", "*sizes.py",
              "test_dispatch.py"]


def fast_suite(tree: Path) -> list[str]:
    """The files of FAST_SUITE in ``tree``, in that order."""
    files = []
    for pattern in FAST_SUITE:
        found = sorted(str(p.relative_to(tree)) for p in (tree / "tests").rglob(pattern))
        if not found:
            raise MutationError(f"no test file matches {pattern!r}: update FAST_SUITE")
        files += [f for f in found if f not in files]
    return files


@dataclasses.dataclass(frozen=True)
class Mutation:
    """``edits``: (anchor, replacement) pairs; each anchor must occur exactly once among the
    source files under src/."""

    name: str
    description: str
    edits: tuple[tuple[str, str], ...]


def mutation(name: str, description: str, *edits: tuple[str, str]) -> Mutation:
    return Mutation(name, description, tuple(edits))


# An 8-byte allocation never freed, from the kernels' allocator (tracemalloc sees it).
LEAK = "PyMem_RawMalloc(8)"

# The float kernels' test of out= up to the call that explains a refusal (the quantized
# kernels repeat the call after a test of their own).
REFUSED_OUT = ("(is_behaved(out, self.typenum) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)\n"
               "                    and cnp.PyArray_NDIM(<cnp.ndarray>out) == ndim\n"
               "                    and cnp.PyArray_DIM(<cnp.ndarray>out, 0) == dims[0]\n"
               "                    and cnp.PyArray_DIM(<cnp.ndarray>out, ndim - 1) == dims[ndim - 1]):\n"
               "                ")

MUTATIONS = [
    mutation("bias_tile", "tile kernel adds the first bias of a block of neurons to all of them",
             ("NNX_V bias = nnx_v_splat(biases[r]);", "NNX_V bias = nnx_v_splat(biases[0]);")),
    mutation("bias_row", "one-sample kernel: the 4th row of a block takes the 3rd one's bias",
             ("+ biases[j + 3]", "+ biases[j + 2]")),
    mutation("bias_shared_rows",
             "one-sample shared path: neurons past the last panel offset their biases by the "
             "thread's first neuron",
             ("<const floating*>layer.weights + panels_end * n_in, biases + panels_end,",
              "<const floating*>layer.weights + panels_end * n_in, biases + panels_end - first,")),
    mutation("bias_blas", "BLAS path adds the first bias to every neuron",
             ("y[j * cols + t] += biases[j]", "y[j * cols + t] += biases[0]")),
    mutation("dot_tail_bound", "one-sample kernel drops the last input past the 16 lanes",
             ("for i in range(start, n_in):\n        total += row[i] * x[i]",
              "for i in range(start, n_in - 1):\n        total += row[i] * x[i]")),
    mutation("tile_row_remainder", "tile kernel skips the last neuron past the blocks",
             ("        for (; j < n_out; j++)", "        for (; j + 1 < n_out; j++)")),
    mutation("tile_input_blocks",
             "tile kernel restarts its sums at each block of inputs (NNX_KC of them)",
             ("first ? nnx_v_zero() : nnx_v_load(y + r * stride + t * NNX_LANES)",
              "nnx_v_zero()")),
    mutation("tile_edge", "one-thread batches skip the last, partial tile of a block",
             ("min(cols, (rows + TILE - 1) // TILE * TILE), work, max_width,",
              "min(cols, rows // TILE * TILE), work, max_width,")),
    mutation("panel_edge", "one-sample panels leave the last neuron of each panel unset",
             ("        for t in range(OUT_BLOCK):\n            y[p * OUT_BLOCK + t]",
              "        for t in range(OUT_BLOCK - 1):\n            y[p * OUT_BLOCK + t]")),
    mutation("no_barrier", "shared one-sample layers: no wait for a layer's last pieces",
             ("            if k < n_layers - 1:\n                nnx_wait_done(done, target)",
              "            if False:\n                nnx_wait_done(done, target)")),
    mutation("thread_share", "shared one-sample layers: each piece ends a neuron early",
             ("last = min(first + OUT_BLOCK, layers[k].n_out)",
              "last = min(first + OUT_BLOCK, layers[k].n_out) - 1")),
    mutation("row_chunk", "rows split over threads: each chunk stops a row short",
             ("count = min(<Py_ssize_t>ROW_CHUNK, layer.n_out - first)",
              "count = min(<Py_ssize_t>ROW_CHUNK, layer.n_out - first) - 1")),
    mutation("tile_workspace", "threads of a batch share one workspace",
             ("cols, work + member * block_size, max_width,", "cols, work, max_width,")),
    mutation("threads_never", "no forward ever starts threads (same results, fewer threads)",
             ("    if nnx_openmp_unusable(state):\n        return 1",
              "    if True:\n        return 1")),
    mutation("split_never", "one-sample layers are never shared among threads",
             ("if plan.may_share and threads > 1 and sharing != NNX_NEVER and (",
              "if False and (")),
    mutation("blas_never", "BLAS is never called, even where forced",
             ("plan.blas_usable and cols >= plan.blas_min_batch",
              "False and cols >= plan.blas_min_batch")),
    mutation("softplus_log", "float64 softplus as log(1 + e) instead of log1p(e)",
             ("log1p(exp(-fabs(v)))", "log1p((1 + exp(-fabs(v))) - 1)")),
    mutation("softplus_log_f32", "float32 softplus as log(1 + e) instead of log1p(e)",
             ("log1pf(expf(-fabsf(v)))", "log1pf((1 + expf(-fabsf(v))) - 1)")),
    mutation("gelu_erf", "float64 gelu as (1 + erf(x / sqrt 2)) / 2, which cancels below -6",
             ("times_gate(v, 0.5 * erfc(-v * SQRT_HALF))",
              "times_gate(v, 0.5 * (2 - erfc(v * SQRT_HALF)))")),
    mutation("int8_input_scale", "int8 kernels scale a sample's inputs by range / 256, not / 255",
             ("*x_scale = span / 255.0f;", "*x_scale = span / 256.0f;")),
    mutation("int8_zero_point",
             "int8 kernels truncate a sample's zero point instead of rounding it",
             ("*zero_point = nnx_round_small(-low * *inv);",
              "*zero_point = (int32_t)(-low * *inv);")),
    mutation("int8_weight_scale",
             "int8 weights scaled by the largest magnitude / 128: a neuron's largest weight "
             "is clipped",
             ("scales = np.where(largest > 0, largest / INT8_MAX, 1.0)",
              "scales = np.where(largest > 0, largest / (INT8_MAX + 1), 1.0)")),
    mutation("leak_one_sample", "an 8-byte leak per one-sample forward",
             ("        for s in range(batch):\n            if shared:",
              f"        {LEAK}\n        for s in range(batch):\n            if shared:")),
    mutation("leak_batch", "an 8-byte leak per batched forward",
             ("    work = <floating*>PyMem_RawMalloc(n_threads * block_size * sizeof(floating))\n",
              "    work = <floating*>PyMem_RawMalloc(n_threads * block_size * sizeof(floating))\n"
              f"    {LEAK}\n")),
    mutation("leak_construction", "an 8-byte leak per network construction",
             ("        self.arrays += tuple(panels)",
              f"        self.arrays += tuple(panels)\n        {LEAK}")),
    mutation("leak_activation", "an 8-byte leak per activation call",
             ("    n = cnp.PyArray_SIZE(values)", f"    n = cnp.PyArray_SIZE(values)\n    {LEAK}")),
    mutation("leak_blas", "an 8-byte leak per batched forward through BLAS",
             ("            plan.path = PATH_BLAS\n",
              f"            plan.path = PATH_BLAS\n            {LEAK}\n")),
    mutation("leak_threads", "an 8-byte leak per batched forward on several threads",
             ("    else:\n        network_blocks_shared(",
              f"    else:\n        {LEAK}\n        network_blocks_shared(")),
    mutation("leak_bad_out", "an 8-byte leak per forward refused for its out=",
             (REFUSED_OUT + "check_out(out, tuple(",
              REFUSED_OUT + f"{LEAK}\n                check_out(out, tuple(")),
]


class MutationError(Exception):
    """A mutation that does not apply to the current sources, or does not build."""


def source_files(tree: Path) -> list[Path]:
    return sorted(p for p in (tree / "src").rglob("*")
                  if p.suffix in SOURCE_SUFFIXES and p.is_file()
                  and "egg-info" not in str(p) and p.name != "_build_info.py")


def locate(tree: Path, anchor: str) -> Path:
    """The one source file holding ``anchor`` exactly once; MutationError otherwise."""
    hits = [(path, path.read_text().count(anchor)) for path in source_files(tree)]
    hits = [(path, count) for path, count in hits if count]
    if not hits:
        raise MutationError(f"anchor not found: {anchor!r}")
    if len(hits) > 1 or hits[0][1] > 1:
        where = ", ".join(f"{path.relative_to(tree)} ({count}x)" for path, count in hits)
        raise MutationError(f"anchor found more than once ({where}): {anchor!r}")
    return hits[0][0]


def check_anchors(tree: Path, mutations: list[Mutation]) -> list[str]:
    problems = []
    for m in mutations:
        for anchor, _ in m.edits:
            try:
                locate(tree, anchor)
            except MutationError as error:
                problems.append(f"{m.name}: {error}")
    return problems


def apply(tree: Path, m: Mutation) -> None:
    for anchor, replacement in m.edits:
        path = locate(tree, anchor)
        path.write_text(path.read_text().replace(anchor, replacement))


def copy_tree(destination: Path) -> None:
    """The tracked and new (not ignored) files of the repository, without build outputs."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listing):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


NICE = ["nice", "-n", "15"] if shutil.which("nice") else []


def build(tree: Path, log: Path, timeout: float) -> None:
    # No debug information: a third less compile time.
    env = dict(os.environ, NNEXPOSED_NATIVE="1",
               CFLAGS=(os.environ.get("CFLAGS", "") + " -g0").strip())
    with open(log, "w") as out:
        try:
            result = subprocess.run([*NICE, sys.executable, "setup.py", "build_ext", "--inplace"],
                                    cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise MutationError(f"build timed out after {timeout:.0f} s") from error
    if result.returncode != 0:
        raise MutationError(f"build failed (see {log})")


FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)
STARTED_LINE = re.compile(r"^(\S+::\S+) ", re.M)


def run_suite(tree: Path, pytest_args: list[str], log: Path, timeout: float) -> tuple[str, float]:
    """(verdict, seconds): 'passed', or what killed the mutant."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    command = [*NICE, sys.executable, "-m", "pytest", "-x", "-v", "-p", "no:cacheprovider",
               "-p", "no:randomly", *pytest_args]
    start = time.perf_counter()
    with open(log, "w") as out:
        try:
            # A process group of its own, so that a timeout also ends the children it started.
            process = subprocess.Popen(command, cwd=tree, env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            code = None
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    if code == 0:
        return "passed", seconds
    started = STARTED_LINE.findall(text)
    last = started[-1] if started else "?"
    if code is None:
        return f"hang (timeout {timeout:.0f} s) in {last}", seconds
    if code < 0:
        return f"crash (signal {-code}) in {last}", seconds
    failed = FAILED_LINE.findall(text)
    if failed:
        return failed[0][1], seconds
    return f"pytest exit {code} after {last}", seconds


def check_imports_mutant(tree: Path) -> None:
    """The suite must see the mutant's build, not an installed one."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    found = subprocess.run(
        [sys.executable, "-c", "import nnexposed; print(nnexposed.__file__)"],
        cwd=tree, env=env, capture_output=True, text=True).stdout.strip()
    if not found.startswith(str(tree)):
        raise MutationError(f"the mutant's tree is not what Python imports ({found!r})")


def test_mutant(m: Mutation | None, work: Path, args: argparse.Namespace) -> tuple[str, float]:
    name = m.name if m else "unmutated"
    tree = work / name
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    copy_tree(tree)
    if m is not None:
        apply(tree, m)
    build(tree, work / f"{name}.build.log", args.build_timeout)
    check_imports_mutant(tree)
    verdict, seconds = run_suite(tree, args.pytest_args or fast_suite(tree),
                                 work / f"{name}.test.log", args.timeout)
    if not args.keep:
        shutil.rmtree(tree)
    return verdict, seconds


def markdown_table(rows: list[tuple[Mutation, str]]) -> str:
    lines = ["| mutation | what it changes | killed by |", "|---|---|---|"]
    for m, verdict in rows:
        shown = "**SURVIVED**" if verdict == "SURVIVED" else f"`{verdict}`"
        lines.append(f"| `{m.name}` | {m.description} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that every anchor is found exactly once")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds the suite may take per mutant before it counts as a hang")
    parser.add_argument("--build-timeout", type=float, default=900)
    parser.add_argument("--no-control", action="store_true",
                        help="skip running the suite on the unmutated build first")
    parser.add_argument("--keep", action="store_true", help="keep the mutant trees")
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutants built and tested at once (default 1)")
    parser.add_argument("--work", type=Path, help="folder for trees and logs (default: a temp dir)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--pytest-args", nargs=argparse.REMAINDER,
                        help="arguments for pytest instead of the fast suite (last option)")
    args = parser.parse_args(argv)

    known = {m.name: m for m in MUTATIONS}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown mutations {unknown}; --list shows them")
    selected = [known[name] for name in args.names] or MUTATIONS
    if args.list:
        for m in selected:
            print(f"{m.name:20} {m.description}")
        return 0
    problems = check_anchors(ROOT, selected)
    try:
        fast_suite(ROOT)
    except MutationError as error:
        problems.append(str(error))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"all {len(selected)} mutations apply")
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="nnexposed-mutate-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"trees and logs in {work}", flush=True)
    if not args.no_control:
        verdict, seconds = test_mutant(None, work, args)
        print(f"unmutated: {verdict} in {seconds:.0f} s", flush=True)
        if verdict != "passed":
            print("the suite fails without any mutation: fix that first", file=sys.stderr)
            return 2
    def verdict_of(m: Mutation) -> str:
        try:
            verdict, seconds = test_mutant(m, work, args)
        except MutationError as error:
            verdict, seconds = f"ERROR: {error}", 0.0
        verdict = "SURVIVED" if verdict == "passed" else verdict
        print(f"{m.name:20} {verdict}  ({seconds:.0f} s)", flush=True)
        return verdict

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(zip(selected, pool.map(verdict_of, selected)))
    errors = sum(verdict.startswith("ERROR") for _, verdict in rows)
    print()
    width = max(len(m.name) for m, _ in rows)
    for m, verdict in rows:
        print(f"{m.name:{width}}  {verdict}")
    if args.markdown:
        args.markdown.write_text(markdown_table(rows))
    survivors = sum(verdict == "SURVIVED" for _, verdict in rows)
    print(f"\n{len(rows)} mutations: {len(rows) - survivors - errors} killed, "
          f"{survivors} survived, {errors} errors")
    return 2 if errors else (1 if survivors else 0)


if __name__ == "__main__":
    sys.exit(main())
