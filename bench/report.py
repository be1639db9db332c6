"""Results of bench/run.py: machine description, RESULTS.md, results.json and speedup.png."""

import datetime
import importlib.metadata
import json
import os
import platform

import peers

from nnexposed.benchmark import machine_info

LIBRARIES = ["numpy", "torch", "onnx", "onnxruntime", "numba", "llvmlite", "scipy",
             "matplotlib", "threadpoolctl", "Cython"]
ENVIRONMENT = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER"]
SIMD_FLAGS = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "amx_tile", "neon", "asimd", "sve"]


# --------------------------------------------------------------------------------------------
# Collecting
# --------------------------------------------------------------------------------------------


def cpu_description():
    """CPU model and SIMD flags from /proc/cpuinfo (Linux), else what platform tells."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu_model": model or platform.processor() or "unknown",
            "cpu_simd": " ".join(f for f in SIMD_FLAGS if f in flags) or "unknown",
            "cores_available": peers.cpu_count()}


def library_versions():
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def thread_pools():
    """Native thread pools loaded in this process (BLAS, OpenMP), as threadpoolctl sees them."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return [{key: pool.get(key) for key in ("user_api", "internal_api", "num_threads", "version",
                                            "architecture")}
            | {"library": os.path.basename(pool.get("filepath", ""))}
            for pool in threadpoolctl.threadpool_info()]


def thread_settings(rows):
    """Threads each implementation ran with, as recorded when it was built."""
    import nnexposed
    from nnexposed import kernels

    get_threads = getattr(nnexposed, "get_num_threads", None)
    threads = {"nnexposed": get_threads() if get_threads is not None else
               f"no nnexposed.get_num_threads; kernels.default_threads() = "
               f"{kernels.default_threads()}, openmp {kernels.openmp_enabled()}"}
    for impl in peers.IMPLEMENTATIONS[1:]:
        for row in rows:
            info = row["impls"].get(impl, {}).get("info")
            if info:
                threads[impl] = {key: value for key, value in info.items()
                                 if "thread" in key or key in ("mode", "flags", "tile",
                                                               "providers", "blas")}
                break
    return threads


def collect(rows, settings):
    machine = machine_info()
    machine.update(cpu_description())
    machine["environment"] = {name: os.environ.get(name) for name in ENVIRONMENT}
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": settings,
        "machine": machine,
        "versions": library_versions(),
        "threads": thread_settings(rows),
        "thread_pools": thread_pools(),
        "implementations": peers.IMPLEMENTATIONS,
        "results": rows,
    }


def write_json(results, path):
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def fmt_us(us):
    if us is None:
        return "-"
    return f"{us:,.2f}" if us < 10 else f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


def fmt_ratio(ratio):
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


STATUS_CELL = {"skipped": "n/a", "error": "error", "wrong": "WRONG", None: "-"}


def _columns(results):
    """Implementations that appear in at least one row."""
    return [impl for impl in results["implementations"]
            if any(impl in row["impls"] for row in results["results"])]


def _cell(results, entry, value):
    if entry is None:
        return "-"
    if entry["status"] != "ok":
        return STATUS_CELL.get(entry["status"], entry["status"])
    mark = " †" if entry["repeats"] < results["settings"]["repeat"] else ""
    return value + mark


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if k == 0 else "---:" for k in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def times_table(results):
    """Median µs per call of every implementation, with the ratios to NumPy and the best peer."""
    columns = _columns(results)
    header = (["case"] + [peers.LABELS[c] for c in columns]
              + ["vs NumPy", "best peer", "vs best peer", "others' CPU"])
    body = []
    for row in results["results"]:
        cells = [row["case"]]
        for impl in columns:
            entry = row["impls"].get(impl)
            cells.append(_cell(results, entry, fmt_us(entry.get("us") if entry else None)))
        best = row["best_peer"]
        cells += [fmt_ratio(row["speedup_vs_numpy"]),
                  f"{peers.LABELS[best]} {fmt_us(row['best_peer_us'])}" if best else "-",
                  fmt_ratio(row["ratio_vs_best_peer"])]
        busy = row.get("others_busy")
        cells.append("-" if busy is None else f"{busy:.0%}")
        body.append(cells)
    return "\n".join(_table(header, body))


def round_ratios(row):
    """NumPy time / nnexposed time of each round (the rounds are interleaved), or []."""
    ours = row["impls"].get("nnexposed", {}).get("samples_us") or []
    theirs = row["impls"].get("numpy", {}).get("samples_us") or []
    return [numpy_us / us for us, numpy_us in zip(ours, theirs) if us > 0]


def isa_markdown(tables, command):
    """ISA.md: for each kernel build of ``tables`` [(isa, OpenBLAS core type or None, results
    of its run or None)], each case's nnexposed and NumPy times and their ratio."""
    lines = [
        "# nnexposed per kernel build", "",
        "Each kernel build ran in its own process (`NNEXPOSED_ISA`), NumPy's OpenBLAS held to "
        "the same class of CPU (`OPENBLAS_CORETYPE`). Median µs per call; `vs NumPy` = NumPy "
        "time / nnexposed time (above 1, nnexposed is faster), with the range of that ratio "
        "over the interleaved rounds; `others' CPU`: the share of the machine other processes "
        "used meanwhile. Written by", "", f"    {command}", ""]
    for isa, coretype, results in tables:
        lines += [f"## {isa}: NumPy's OpenBLAS as {coretype or 'it chooses for this CPU'}", ""]
        if results is None:
            lines += ["Not measured: this CPU cannot run these kernels, they are not installed, "
                      "or the run failed.", ""]
            continue
        body = []
        for row in results["results"]:
            ratios = round_ratios(row)
            busy = row.get("others_busy")
            body.append([row["case"], fmt_us(row["nnexposed_us"]), fmt_us(row["numpy_us"]),
                         fmt_ratio(row["speedup_vs_numpy"]),
                         f"{fmt_ratio(min(ratios))}–{fmt_ratio(max(ratios))}" if ratios
                         else "-", "-" if busy is None else f"{busy:.0%}"])
        lines += _table(["case", "nnexposed", "NumPy", "vs NumPy", "rounds", "others' CPU"],
                        body)
        s = results["settings"]
        machine = results["machine"]
        lines += ["", f"{results['date']}, {machine.get('cpu_model')}, {machine.get('threads')} "
                      f"threads, {s['dtype']}, load average before/after "
                      f"{s['load_average_before']} / {s['load_average_after']}.", ""]
    return "\n".join(lines)


def ratios_table(results):
    columns = [c for c in _columns(results) if c != "nnexposed"]
    body = []
    for row in results["results"]:
        cells = [row["case"]]
        for impl in columns:
            entry = row["impls"].get(impl)
            cells.append(_cell(results, entry, fmt_ratio(entry.get("ratio") if entry else None)))
        body.append(cells)
    return "\n".join(_table(["case"] + [peers.LABELS[c] for c in columns], body))


def memory_table(results):
    body = []
    for row in results["results"]:
        memory = row.get("memory")
        if not memory:
            continue
        output = next(iter(memory.values()))["output_bytes"]
        cells = [row["case"], fmt_bytes(output)]
        for impl in ("nnexposed", "numpy"):
            m = memory.get(impl)
            cells.append("-" if m is None else
                         f"{fmt_bytes(m['peak_extra_bytes'])} "
                         f"({m['peak_extra_bytes'] / m['output_bytes']:.2f}x output)")
        body.append(cells)
    if not body:
        return None
    return "\n".join(_table(["case", "output", "nnexposed peak extra", "NumPy peak extra"],
                            body))


def conversion_table(results):
    body = [[row["case"], fmt_us(row["torch_from_numpy_us"]), fmt_us(row["torch_to_numpy_us"]),
             fmt_us(row["impls"]["torch"]["us"] + row["torch_from_numpy_us"]
                    + row["torch_to_numpy_us"])]
            for row in results["results"] if "torch_from_numpy_us" in row]
    if not body:
        return None
    return "\n".join(_table(["case", "torch.from_numpy(x) µs", "tensor.numpy() µs",
                             "PyTorch eager incl. both µs"], body))


def _notes(results):
    notes = []
    repeat = results["settings"]["repeat"]
    fewer = [f"{row['case']} {peers.LABELS[impl]}: {entry['repeats']}"
             for row in results["results"] for impl, entry in row["impls"].items()
             if entry["status"] == "ok" and entry["repeats"] < repeat]
    if fewer:
        notes.append(f"† median of fewer than {repeat} rounds (each measurement is capped at "
                     f"about {results['settings']['max_time_s']:g} s of calls, "
                     f"{results['settings']['min_repeat']} rounds at least): "
                     + "; ".join(fewer) + ".")
    problems = {}
    for row in results["results"]:
        for impl, entry in row["impls"].items():
            if entry["status"] in ("skipped", "error", "wrong"):
                problems.setdefault((impl, entry["status"], entry.get("note")), []).append(
                    row["case"])
    for (impl, status, note), cases in problems.items():
        where = ("every case" if len(cases) == len(results["results"])
                 else ", ".join(cases))
        notes.append(f"{peers.LABELS[impl]} {status} ({where}): {note}")
    return notes


def _environment_sentence(results):
    env = results["machine"]["environment"]
    if results["settings"].get("expect_isa"):
        return (f"(The {results['settings']['isa']} kernels, NumPy's OpenBLAS as "
                f"{env.get('OPENBLAS_CORETYPE') or 'it chooses for this CPU'}: "
                f"`bench/run.py --isa`.) ")
    set_ = [f"{name}={env[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
            if env.get(name) is not None]
    if set_:
        return (f"(Measured with {' '.join(set_)} set, which slows NumPy's BLAS on some "
                f"machines: prefix the command with `env -u OPENBLAS_CORETYPE -u "
                f"OPENBLAS_L2_SIZE` for fair NumPy figures.) ")
    return "(OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.) "


def markdown(results):
    s = results["settings"]
    intro = (
        _environment_sentence(results)
        + "Every implementation runs the same network (ReLU hidden layers, linear output, the "
        "same weights) and its output is checked against `forward_numpy` before it is timed. "
        f"The rounds of a case are interleaved; each figure is the median of {s['repeat']} "
        "rounds (fewer where marked †), a round being one timing loop of at least "
        f"{s['min_time_s'] * 1e3:g} ms after a {s['settle_s']:g} s pause (for the previous "
        "implementation's threads to go idle). `vs NumPy` = NumPy time / nnexposed time; "
        "`vs best peer` = fastest other implementation's time / nnexposed time: above 1, "
        "nnexposed is faster. `others' CPU` is the share of the machine's "
        f"{results['machine']['cpu_count']} cores that other processes used while the case "
        "was measured: such work slows the multi-threaded implementations most.")
    reduced = [p for p in s.get("precisions", []) if p not in ("float32", "float64")]
    if reduced:
        intro += (
            " Rows marked " + ", ".join(reduced) + " time `Network.quantize(precision)` against "
            "the peers' own reduced-precision modes (ORT int8: `quantize_dynamic` QInt8; torch "
            "int8: `quantize_dynamic` qint8; torch bf16: model and input in bfloat16), and "
            "nnexposed's float32 network (`nnexposed fp32`, not counted as a peer). Their "
            "outputs are checked "
            "against the float32 network's, within " + ", ".join(
                f"{s['rtol'][p]:g} × max|output| for {p}" for p in reduced) + ".")
    lines = [
        "# nnexposed microbenchmarks", "",
        (f"Median µs per call, {s['dtype']}, measured side by side in one process on "
         f"{results['date']} with"), "", f"    {s['command']}", "", intro,
        "", "## Time per call (µs)", "", times_table(results), "",
        "## Ratio: implementation's time / nnexposed time", "", ratios_table(results), "",
    ]
    optional_sections = [
        ("Peak extra memory of a batched forward",
         "Peak bytes traced by `tracemalloc` during one call, beyond the returned output "
         "(NumPy's arrays and Python's allocators are traced; memory a kernel takes with C "
         "`malloc` is not).", memory_table(results)),
        ("PyTorch: NumPy conversion cost",
         "The PyTorch column times `model(x_tensor)` under `torch.inference_mode()` with the "
         "tensor made beforehand; a caller holding NumPy arrays also pays these (both are "
         "zero-copy).", conversion_table(results)),
    ]
    for title, text, table in optional_sections:
        if table:
            lines += [f"## {title}", "", text, "", table, ""]
    notes = _notes(results)
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines += ["## Threads", ""]
    for impl, value in results["threads"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{key} {item}" for key, item in value.items())
        lines.append(f"- {peers.LABELS[impl]}: {value}")
    lines += ["", "## Machine", ""]
    for key, value in results["machine"].items():
        lines.append(f"- {key}: {value}")
    lines.append(f"- load average before/after: {s['load_average_before']} / "
                 f"{s['load_average_after']}; run took {s['seconds']} s")
    lines += ["", "## Library versions", ""]
    lines += [f"- {name}: {version or 'not installed'}"
              for name, version in results["versions"].items()]
    if results["thread_pools"]:
        lines += ["", "## Native thread pools (threadpoolctl)", ""]
        lines += [f"- {pool['library']}: {pool['internal_api']} {pool['version'] or ''} "
                  f"({pool['user_api']}), {pool['num_threads']} threads"
                  + (f", {pool['architecture']}" if pool.get("architecture") else "")
                  for pool in results["thread_pools"]]
    return "\n".join(lines) + "\n"


def plot(results, path):
    """speedup.png: speed-up vs NumPy by case, one bar per implementation (log scale).

    Returns None, or a note saying why there is no plot.
    """
    from nnexposed.plot import speedup_chart

    rows = results["results"]
    columns = [c for c in _columns(results)
               if any(row["impls"].get(c, {}).get("speedup_vs_numpy") for row in rows)]
    if not columns:
        return "nothing to plot"
    speedups = {peers.LABELS[impl]: [row["impls"].get(impl, {}).get("speedup_vs_numpy")
                                     for row in rows] for impl in columns}
    title = (f"MLP forward pass, {results['settings']['dtype']}, "
             f"{results['machine']['cpu_model']}, "
             f"{results['machine']['cores_available']} cores (higher is faster)")
    try:
        figure = speedup_chart([row["case"] for row in rows], speedups, title=title)
    except ImportError:
        return "matplotlib is not installed: no speedup.png (pip install '.[bench]')"
    figure.savefig(path)
    return None
