"""Microbenchmarks of nnexposed.forward against NumPy, PyTorch, ONNX Runtime and numba.

    python bench/run.py [--quick] [--cases N1:1,N3:64] [--repeat 7] [--dtype float32] [--out DIR]
                        [--precision float32,int8,bfloat16,float16]
    python bench/run.py --isa avx2,baseline [other options]     # one child process per ISA

Every case of issue 3's table (networks N1..N4, float32, ReLU hidden, linear output, the same
weights for every implementation) is run in one process. Each implementation's output is
checked against ``forward_numpy`` before it is timed (a wrong one is reported, not timed); the
measurements of a case are interleaved round by round, and each figure is the median of the
rounds. The peers (``pip install '.[bench]'``) are optional: a missing one is skipped with a
note. Writes DIR/RESULTS.md, DIR/results.json and DIR/speedup.png (default DIR: bench/results).

``--isa`` runs the cases once per kernel build, each in a child process with NNEXPOSED_ISA set
to it and NumPy's OpenBLAS held to the same class of CPU (OPENBLAS_CORETYPE, see
OPENBLAS_CORETYPES), and writes DIR/isa-<name>/ per build and DIR/ISA.md, their tables side by
side.

For fair NumPy figures on machines that set them, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
for this command only: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/run.py``.
"""

import argparse
import functools
import gc
import inspect
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import peers  # noqa: E402
import report  # noqa: E402

from nnexposed import Network, _dispatch  # noqa: E402
from nnexposed.benchmark import cpu_times, others_busy, time_per_call  # noqa: E402
from nnexposed.reference import forward_numpy  # noqa: E402

# N1 is the article's network; N2-N4 grow to a memory-bound layer.
NETWORKS = {
    "N1": (3, 5, 5, 5, 2),
    "N2": (64, 128, 128, 10),
    "N3": (784, 256, 256, 10),
    "N4": (4096, 4096),
}
CASES = [("N1", 1), ("N2", 1), ("N3", 1), ("N4", 1), ("N1", 1_000), ("N1", 1_000_000),
         ("N2", 4_096), ("N3", 64), ("N3", 65_536), ("N4", 1_024)]
QUICK_CASES = [("N1", 1), ("N2", 1), ("N3", 1), ("N1", 1_000), ("N3", 64)]
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# OpenBLAS kernels of the same class of x86-64 CPU as each nnexposed build: x86-64-v2, AVX2+FMA,
# AVX-512. Elsewhere (ARM) the baseline build is the platform's own and OpenBLAS keeps the
# kernels it picks for the CPU.
OPENBLAS_CORETYPES = {"baseline": "Nehalem", "avx2": "Haswell", "avx512": "SkylakeX"}
X86_64 = platform.machine().lower() in ("x86_64", "amd64")

# Outputs must match forward_numpy to this relative tolerance, with atol = rtol * max|output|
# (summation orders differ between implementations). Reduced precisions are checked against
# the float32 network's output, within the error of their own quantization (the peers
# quantize differently: docs/quantization.md has their errors).
RTOL = {"float32": 2e-3, "float64": 1e-9, "int8": 0.08, "bfloat16": 0.02, "float16": 5e-3}
MIN_REPEAT = 3  # a slow measurement gets fewer rounds than --repeat, but at least this many
# time_per_call pauses before timing (settle=) in newer nnexposed versions; older ones do not.
TIMER_SETTLES = "settle" in inspect.signature(time_per_call).parameters


def settle(seconds):
    """time_per_call's keyword for a pause of ``seconds`` before timing, where it has one."""
    return {"settle": seconds} if TIMER_SETTLES else {}


def parse_cases(text):
    """'N1:1,N3:64,N2' -> [("N1", 1), ("N3", 64), every case of N2 in CASES]."""
    cases = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, batch = part.upper().partition(":")
        if name not in NETWORKS:
            raise argparse.ArgumentTypeError(
                f"unknown network {name!r} in {part!r}; expected one of {', '.join(NETWORKS)}")
        if not batch:
            cases += [case for case in CASES if case[0] == name]
            continue
        try:
            value = int(batch.replace("_", ""))
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"expected a positive batch after ':' in {part!r}, e.g. N1:1000")
        cases.append((name, value))
    if not cases:
        raise argparse.ArgumentTypeError(f"no case in {text!r}")
    return list(dict.fromkeys(cases))


def parse_impls(text):
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [n for n in names if n not in peers.IMPLEMENTATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown implementation(s) {unknown}; expected some of "
            f"{', '.join(peers.IMPLEMENTATIONS)}")
    return ["nnexposed", "numpy"] + [n for n in peers.IMPLEMENTATIONS[2:] if n in names]


def parse_precisions(text):
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in peers.PRECISION_IMPLEMENTATIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown precision(s) {unknown}; expected some of "
            f"{', '.join(peers.PRECISION_IMPLEMENTATIONS)}")
    return names


def parse_isas(text):
    """'avx2,baseline' -> ["avx2", "baseline"]; 'all' -> every ISA, best first."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(_dispatch.ISAS)
    unknown = [n for n in names if n not in _dispatch.ISAS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown ISA(s) {unknown or text!r}; expected 'all' or some of "
            f"{', '.join(_dispatch.ISAS)}")
    return list(dict.fromkeys(names))


def without_options(argv, *names):
    """argv without the given options and their values (``--name value`` or ``--name=value``)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{name}=" for name in names)):
            kept.append(arg)
    return kept


def run_per_isa(args, argv, log):
    """Run the cases once per ISA of --isa, each in a child process; write DIR/ISA.md.
    Returns the exit status (non-zero if a child failed)."""
    supported = set(_dispatch.supported()) & set(_dispatch.installed())
    child_argv = without_options(argv, "--isa", "--out")
    tables, status = [], 0
    for isa in args.isa:
        if isa not in supported:
            log(f"{isa}: skipped, this CPU cannot run it or its kernels are not installed")
            tables.append((isa, None, None))
            continue
        env = dict(os.environ, NNEXPOSED_ISA=isa)
        env.pop("OPENBLAS_CORETYPE", None)
        coretype = OPENBLAS_CORETYPES[isa] if X86_64 else None
        if coretype:
            env["OPENBLAS_CORETYPE"] = coretype
        out = args.out / f"isa-{isa}"
        log(f"== {isa} kernels, NumPy's OpenBLAS as {coretype or 'it chooses'}: {out}")
        child = subprocess.run([sys.executable, __file__, *child_argv, "--out", str(out),
                                "--expect-isa", isa], env=env, check=False)
        if child.returncode != 0:
            status = child.returncode
            tables.append((isa, coretype, None))
            continue
        results = json.loads((out / "results.json").read_text())
        tables.append((isa, coretype, results))
    text = report.isa_markdown(tables, "python bench/run.py " + " ".join(argv))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ISA.md").write_text(text)
    print(text)
    log(f"wrote ISA.md to {args.out}")
    return status


def case_label(name, batch):
    return f"{name} batch {batch:,}"


def max_error(out, ref, rtol=None):
    """(max |out - ref|, allowed error: rtol * max|ref|, by default the tolerance of ref's
    dtype) or raises ValueError on a shape mismatch."""
    rtol = RTOL[str(ref.dtype)] if rtol is None else rtol
    out = np.asarray(out).reshape(ref.shape) if np.size(out) == ref.size else None
    if out is None:
        raise ValueError("output has the wrong size")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
    if np.isnan(out).any() != np.isnan(ref).any():
        err = float("inf")
    return err, rtol * max(scale, 1.0)


def peak_extra_bytes(func, *args):
    """Peak bytes traced by tracemalloc during func(*args), beyond its result: (extra, output)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = func(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base - result.nbytes, result.nbytes


def wait_quiet(limit, log, threshold=0.25, window=1.0):
    """Wait up to ``limit`` seconds for a ``window`` in which other processes use less than
    ``threshold`` of the machine; returns the last share seen (None if unknown)."""
    deadline = time.perf_counter() + limit
    while True:
        start = cpu_times()
        time.sleep(window)
        busy = others_busy(start, cpu_times())
        if busy is None or busy < threshold or time.perf_counter() >= deadline:
            return busy
        log(f"    other processes use {busy:.0%} of the machine; waiting")


def run_case(name, batch, args, log, precision=None):
    """Measure one case with every implementation of ``precision`` (None: float, the
    benchmark's dtype); returns the results row."""
    sizes = NETWORKS[name]
    network = Network.from_sizes(sizes, dtype=args.dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((sizes[0],) if batch == 1 else (batch, sizes[0])).astype(args.dtype)
    ref = forward_numpy(network, x)
    precision = precision or args.dtype
    if precision != args.dtype:
        network = network.quantize(precision)
    impls = [impl for impl in args.impls if impl in peers.PRECISION_IMPLEMENTATIONS[precision]]
    label = case_label(name, batch) + ("" if precision == args.dtype else f" {precision}")
    row = {"case": label, "id": f"{name}:{batch}", "network": name,
           "sizes": list(sizes), "batch": batch, "dtype": args.dtype, "precision": precision,
           "macs": batch * sum(a * b for a, b in zip(sizes, sizes[1:])),
           "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
           else None, "impls": {}}
    if args.wait_quiet > 0:
        row["others_busy_before"] = wait_quiet(args.wait_quiet, log)
    case_start = cpu_times()

    prepared = {}
    for impl in impls:
        entry = row["impls"][impl] = {"status": None}
        try:
            prep = peers.BUILDERS[impl](network, x)
            with prep.context():  # up to 3 calls (the first may include lazy set-up)
                times = []
                while len(times) < 3 and sum(times) < 0.5:
                    start = time.perf_counter()
                    out = prep.call(*prep.args)
                    times.append(time.perf_counter() - start)
                estimate = min(times)
            err, allowed = max_error(peers.output_of(impl, out), ref, RTOL[precision])
        except peers.Unavailable as exc:
            entry.update(status="skipped", note=str(exc))
            continue
        except Exception as exc:  # a broken peer is reported, the run goes on
            entry.update(status="error", note=f"{type(exc).__name__}: {exc}")
            log(f"    {impl}: error {entry['note']}")
            continue
        entry.update(info=prep.info, max_abs_err=err, allowed_err=allowed)
        if not err <= allowed:
            entry.update(status="wrong", note=f"max |error| {err:.3g} > {allowed:.3g} "
                                              f"against forward_numpy; not timed")
            log(f"    {impl}: WRONG OUTPUT, {entry['note']}")
            continue
        entry["status"] = "ok"
        entry["target_repeats"] = min(args.repeat, max(min(MIN_REPEAT, args.repeat),
                                                       int(args.max_time / max(estimate, 1e-9))))
        entry["samples_us"] = []
        prepared[impl] = prep

    # Interleaved rounds: a burst of load from elsewhere hits every implementation alike. Before
    # each measurement, a pause lets the thread pools of the previous one (OpenBLAS, OpenMP,
    # ONNX Runtime) stop spinning, which would otherwise take cores from this one.
    order = list(prepared)
    for round_ in range(max((row["impls"][i]["target_repeats"] for i in order), default=0)):
        for impl in order[round_ % len(order):] + order[:round_ % len(order)]:
            entry, prep = row["impls"][impl], prepared[impl]
            if len(entry["samples_us"]) < entry["target_repeats"]:
                if not TIMER_SETTLES:
                    time.sleep(args.settle)
                with prep.context():
                    seconds = time_per_call(prep.call, *prep.args, repeat=1,
                                            min_time=args.min_time, **settle(args.settle))
                entry["samples_us"].append(1e6 * seconds)
    for impl in order:
        entry = row["impls"][impl]
        entry["us"] = statistics.median(entry["samples_us"])
        entry["min_us"] = min(entry["samples_us"])
        entry["repeats"] = len(entry["samples_us"])
        del entry["target_repeats"]

    # Other processes' share of the machine while the case was timed: noise to judge it by.
    row["others_busy"] = others_busy(case_start, cpu_times())

    base = row["impls"]["nnexposed"].get("us")
    numpy_us = row["impls"].get("numpy", {}).get("us")
    for impl in order:
        entry = row["impls"][impl]
        entry["ratio"] = entry["us"] / base if base else None  # peer / nnexposed
        entry["speedup_vs_numpy"] = numpy_us / entry["us"] if numpy_us else None
    # nnexposed's own float32 network is a reference column, not a peer
    timed_peers = [i for i in order if i not in ("nnexposed", "nnexposed-float32")]
    best = min(timed_peers, key=lambda i: row["impls"][i]["us"], default=None)
    row["best_peer"] = best
    row["best_peer_us"] = row["impls"][best]["us"] if best else None
    row["ratio_vs_best_peer"] = row["best_peer_us"] / base if best and base else None
    # The keys of `nnexposed bench --json`, for tools that read both.
    row["nnexposed_us"], row["numpy_us"] = base, numpy_us
    row["speedup_vs_numpy"] = numpy_us / base if base and numpy_us else None

    if "torch" in prepared:  # what a NumPy caller adds around the torch call
        y = ref if ref.ndim == 2 else ref.reshape(1, -1)
        row["torch_from_numpy_us"], row["torch_to_numpy_us"] = peers.torch_conversion_us(
            x, y, functools.partial(time_per_call, **settle(0)), min(args.repeat, 3))

    if batch > 1:
        row["memory"] = {}
        for impl in ("nnexposed", "numpy"):
            if impl in prepared:
                extra, output = peak_extra_bytes(prepared[impl].call, *prepared[impl].args)
                row["memory"][impl] = {"peak_extra_bytes": extra, "output_bytes": output}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7,
                        help="rounds per measurement; the median is reported (default 7)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true",
                        help="the fast cases only, shorter timing runs")
    parser.add_argument("--cases", type=parse_cases, default=None,
                        help="comma-separated cases, e.g. N1:1,N3:64 or N2 (its table rows)")
    parser.add_argument("--impls", type=parse_impls, default=list(peers.IMPLEMENTATIONS),
                        help="peers to run besides nnexposed and numpy, e.g. torch,numba")
    parser.add_argument("--precision", type=parse_precisions, default=None,
                        help="comma-separated precisions, each case timed in each: the "
                             "dtype's float (its float peers), int8 (ORT and torch int8), "
                             "bfloat16 (torch bf16), float16; every one beside nnexposed "
                             "float32. Default: the dtype's float only")
    parser.add_argument("--max-time", type=float, default=None,
                        help="seconds of calls per measurement before repeats are cut down "
                             f"(to no fewer than {MIN_REPEAT}); default 2, 0.5 with --quick")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds per timing run (loop of calls); default 0.02, 0.005 "
                             "with --quick")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of pause before each measurement, for other thread "
                             "pools to go idle; default 0.2, 0.1 with --quick")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each case, wait up to SECONDS for a second in which other "
                             "processes use under 25%% of the machine (default 0: no wait)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="directory for RESULTS.md, results.json, speedup.png")
    parser.add_argument("--no-plot", action="store_true", help="skip speedup.png")
    parser.add_argument("--isa", type=parse_isas, default=None,
                        help="comma-separated kernel builds (baseline, avx2, avx512) or 'all': "
                             "each runs in its own process, NumPy's OpenBLAS held to the same "
                             "class of CPU; results in DIR/isa-<name>/ and DIR/ISA.md")
    parser.add_argument("--expect-isa", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.max_time is None:
        args.max_time = 0.5 if args.quick else 2.0
    if args.min_time is None:
        args.min_time = 0.005 if args.quick else 0.02
    if args.settle is None:
        args.settle = 0.1 if args.quick else 0.2
    cases = args.cases or (QUICK_CASES if args.quick else CASES)
    precisions = args.precision or [args.dtype]
    if args.dtype == "float64" and set(precisions) - {"float64"}:
        parser.error("--precision int8/bfloat16/float16/float32 compare with float32 "
                     "networks; leave out --dtype float64")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.isa is not None:
        return run_per_isa(args, sys.argv[1:] if argv is None else list(argv), log)
    if args.expect_isa is not None and args.expect_isa != _dispatch.ISA:
        log(f"asked for the {args.expect_isa} kernels, got {_dispatch.ISA}: not measured")
        return 2

    started = time.time()
    def load():
        return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None

    load_before = load()
    rows = []
    runs = [(case, precision) for case in cases for precision in precisions]
    for k, ((name, batch), precision) in enumerate(runs):
        log(f"[{k + 1}/{len(runs)}] {case_label(name, batch)} {precision} {NETWORKS[name]}")
        rows.append(run_case(name, batch, args, log, precision))
    settings = {
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "repeat": args.repeat, "min_repeat": MIN_REPEAT, "max_time_s": args.max_time,
        "min_time_s": args.min_time, "settle_s": args.settle,
        "wait_quiet_s": args.wait_quiet, "dtype": args.dtype, "precisions": precisions,
        "quick": args.quick,
        "isa": _dispatch.ISA,
        "expect_isa": args.expect_isa,
        "rtol": {p: RTOL[p] for p in precisions},
        "seconds": round(time.time() - started, 1),
        "load_average_before": load_before,
        "load_average_after": load(),
    }
    results = report.collect(rows, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.out / "results.json")
    markdown = report.markdown(results)
    (args.out / "RESULTS.md").write_text(markdown)
    print(report.times_table(results))
    written = ["RESULTS.md", "results.json"]
    if not args.no_plot:
        note = report.plot(results, args.out / "speedup.png")
        if note:
            log(note)
        else:
            written.append("speedup.png")
    log(f"wrote {', '.join(written)} to {args.out} in {settings['seconds']} s")
    wrong = [r["case"] for r in rows if r["impls"]["nnexposed"]["status"] != "ok"]
    if wrong:
        log(f"nnexposed failed the output check on: {', '.join(wrong)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
