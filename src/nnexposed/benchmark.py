"""Microbenchmarks: median time per call of ``forward`` against the references, in one process."""

import os
import platform
import statistics
import sys
import time
import timeit

import numpy as np

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

from nnexposed import _dispatch, kernels
from nnexposed._config import get_num_threads
from nnexposed._version import __version__
from nnexposed.inference import forward
from nnexposed.network import Network
from nnexposed.reference import forward_numpy, forward_python

# forward_python is skipped above this many multiply-adds per call (about 0.1 s of Python).
PYTHON_MAX_MACS = 2_000_000


# Seconds to wait before timing: BLAS and OpenMP worker threads of whatever ran just before
# keep spinning for up to ~0.1 s (OpenBLAS) and would compete with the code being timed.
SETTLE_SECONDS = 0.25


# Other processes using at least this share of the machine's CPUs while a table is timed get
# a notice beside it: the times, and the ratios to threaded peers, are then the machine's.
BUSY_NOTICE_SHARE = 0.1


def cpu_times():
    """(seconds of CPU used by the whole machine, by this process, wall clock), or None where
    /proc/stat is missing (not Linux)."""
    if resource is None:
        return None
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # - idle - iowait
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy / ticks, own.ru_utime + own.ru_stime, time.perf_counter()


def others_busy(start, end):
    """Share of the machine's CPUs used by other processes between two cpu_times(), or None."""
    if start is None or end is None or end[2] <= start[2]:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return min(1.0, max(0.0, others / ((end[2] - start[2]) * (os.cpu_count() or 1))))


def busy_notice(share):
    """A note for a table timed while other processes used ``share`` of the CPUs, or None
    when they used less than BUSY_NOTICE_SHARE (or it is unknown)."""
    if share is None or share < BUSY_NOTICE_SHARE:
        return None
    return (f"Note: other processes used {share:.0%} of the CPUs while this was timed; the "
            f"times and ratios are then partly theirs (threaded code slows down most).")


def time_per_call(func, *args, repeat=7, min_time=0.01, settle=SETTLE_SECONDS):
    """Median seconds per call of ``func(*args)`` over ``repeat`` runs of >= min_time each,
    after ``settle`` seconds of idleness."""
    timer = timeit.Timer("func(*args)", globals={"func": func, "args": args})
    time.sleep(settle)
    number = 1
    while True:  # grow the loop count until one run takes min_time, as timeit's autorange
        elapsed = timer.timeit(number)
        if elapsed >= min_time:
            break
        number *= 2 if elapsed <= 0 else max(2, min(10, int(1.2 * min_time / elapsed)))
    runs = [elapsed] + timer.repeat(repeat=max(0, repeat - 1), number=number)
    return statistics.median(runs) / number


def bench_case(network, batch, *, repeat=7, seed=0, python=True):
    """One row of the benchmark table: network, batch, dtype and µs per call of each path."""
    rng = np.random.default_rng(seed)
    shape = (network.n_in,) if batch == 1 else (batch, network.n_in)
    x = rng.standard_normal(shape).astype(network.dtype)
    macs = batch * sum(layer.n_in * layer.n_out for layer in network.layers)
    start = cpu_times()
    row = {
        "network": "-".join(map(str, network.sizes)),
        "batch": batch,
        "dtype": str(network.dtype),
        "precision": network.precision,
        "nnexposed_us": 1e6 * time_per_call(forward, network, x, repeat=repeat),
        "numpy_us": 1e6 * time_per_call(forward_numpy, network, x, repeat=repeat),
        "python_us": None,
    }
    if python and macs <= PYTHON_MAX_MACS and network.precision != "int8":
        row["python_us"] = 1e6 * time_per_call(forward_python, network, x,
                                               repeat=max(1, min(repeat, 3)))
    row["speedup_vs_numpy"] = row["numpy_us"] / row["nnexposed_us"]
    row["others_busy"] = others_busy(start, cpu_times())
    return row


def run(sizes_list, batches, dtype="float32", *, repeat=7, progress=None):
    """Benchmark every (network, batch) pair; ``progress(done, total, label)`` is told of each.

    sizes_list: layer sizes such as (3, 5, 5, 5, 2), for random ReLU networks of ``dtype``,
    or Networks, run as they are (``dtype`` None) or converted to ``dtype``.
    """
    cases = [(sizes, batch) for sizes in sizes_list for batch in batches]
    rows = []
    for done, (sizes, batch) in enumerate(cases):
        if isinstance(sizes, Network):
            network = sizes if dtype is None else sizes.astype(dtype)
        else:
            network = Network.from_sizes(sizes, dtype=dtype or "float32", seed=0)
        if progress is not None:
            progress(done, len(cases), f"{'-'.join(map(str, network.sizes))} batch {batch}")
        rows.append(bench_case(network, batch, repeat=repeat))
    if progress is not None:
        progress(len(cases), len(cases), "done")
    return rows


def format_table(rows):
    """The rows as an aligned text table; where other processes used the CPUs while a row
    was timed, a column of their share and a note below the table."""
    header = ("network", "batch", "dtype", "nnexposed µs", "numpy µs", "python µs",
              "vs numpy", "precision")
    shares = [r.get("others_busy") for r in rows]
    notice = busy_notice(max((s for s in shares if s is not None), default=None))

    def fmt(us):
        return "-" if us is None else f"{us:,.2f}" if us < 100 else f"{us:,.0f}"

    cells = [header] + [
        (r["network"], f"{r['batch']:,}", r["dtype"], fmt(r["nnexposed_us"]),
         fmt(r["numpy_us"]), fmt(r["python_us"]), f"{r['speedup_vs_numpy']:.1f}x",
         r.get("precision", r["dtype"]))
        for r in rows
    ]
    if notice:
        cells = [row + (label,) for row, label in zip(
            cells, ["others busy"] + ["?" if s is None else f"{s:.0%}" for s in shares])]
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    if notice:
        lines += ["", notice]
    return "\n".join(lines)


def machine_info():
    """What the figures were measured on."""
    try:
        from nnexposed import _build_info
        isa_flags = getattr(_build_info, "variants", {}).get(_dispatch.ISA, "")
        build = {"compiler": _build_info.compiler,
                 "flags": " ".join(filter(None, [_build_info.flags, isa_flags]))}
    except ImportError:
        build = {"compiler": "unknown", "flags": "unknown"}
    return {
        "nnexposed": __version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "isa": _dispatch.ISA,
        "isa_supported": ",".join(_dispatch.supported()),
        "isa_installed": ",".join(_dispatch.installed()),
        "openmp": kernels.openmp_enabled(),
        "threads": get_num_threads(),
        "blas": kernels.blas_available(),
        **build,
    }
