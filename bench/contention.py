"""Forward passes on shared cores: the default thread policy against one thread per call.

    python bench/contention.py [--quick] [--cases N3:1,N3:64,N4:1,N4:64] [--out DIR]

Three conditions, each case side by side with ``forward`` (default threads), ``forward(...,
threads=1)``, NumPy (``forward_numpy``) and ONNX Runtime (when installed), and on request
``threads=1-again``, a second ``threads=1`` arm whose ratio to the first is the noise floor:

- ``idle``: nothing started by this script (other processes' CPU share is recorded);
- ``busy``: a busy-loop process that this script starts and ends (by its PID) runs meanwhile;
- ``processes``: N processes (N = the CPUs this process may use) each call the same
  implementation in a loop for the same seconds; the total number of calls is counted. The
  processes live through the whole case, the implementations taking turns round by round.

Latency is timed call by call (mean and 99th percentile); the implementations take turns
round by round, with a pause before each, so a burst of load from elsewhere hits them alike.
Writes DIR/CONTENTION.md and DIR/contention.json (default DIR: bench/results; the JSON also holds
the back-off counts of each latency condition, which starts from a reset back-off).
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import peers  # noqa: E402
from run import NETWORKS, RESULTS, max_error, parse_cases  # noqa: E402

import nnexposed  # noqa: E402
from nnexposed import kernels  # noqa: E402
from nnexposed._cpu_limits import available_cpus  # noqa: E402
from nnexposed.benchmark import cpu_times, machine_info, others_busy  # noqa: E402
from nnexposed.reference import forward_numpy  # noqa: E402

CASES = [("N3", 1), ("N3", 64), ("N4", 1), ("N4", 64)]
QUICK_CASES = [("N3", 1), ("N3", 64)]
IMPLS = ["default", "threads=1", "numpy", "onnxruntime"]
# On request (--impls): threads=1 once more, taking its turns like any implementation.
NOISE_IMPL = "threads=1-again"
CONDITIONS = ["idle", "busy", "processes"]
BUSY_LOOP = "while True:\n    pass\n"


def build(impl, network, x):
    """(call, args) of one implementation on the case's input; raises peers.Unavailable."""
    if impl == "default":
        return nnexposed.forward, (network, x)
    if impl in ("threads=1", NOISE_IMPL):
        return (lambda net, inputs: nnexposed.forward(net, inputs, threads=1)), (network, x)
    if impl == "numpy":
        return forward_numpy, (network, x)
    prepared = peers.build_onnxruntime(network, x)
    return prepared.call, prepared.args


def make_case(name, batch):
    sizes = NETWORKS[name]
    network = nnexposed.Network.from_sizes(sizes, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((sizes[0],) if batch == 1 else (batch, sizes[0])).astype("float32")
    return network, x


def prepare(impls, network, x, log):
    """The implementations that run and give the right answer: {impl: (call, args)}, and a
    note for each one that does not."""
    ref = forward_numpy(network, x)
    ready, notes = {}, {}
    for impl in impls:
        try:
            call, args = build(impl, network, x)
            err, allowed = max_error(peers.output_of(impl, call(*args)), ref)
        except peers.Unavailable as exc:
            notes[impl] = f"skipped: {exc}"
            continue
        if not err <= allowed:
            notes[impl] = f"WRONG: max |error| {err:.3g} > {allowed:.3g}; not timed"
            log(f"    {impl}: {notes[impl]}")
            continue
        ready[impl] = (call, args)
    return ready, notes


def time_calls(call, args, seconds):
    """Nanoseconds of each call of ``call(*args)`` made during ``seconds`` (at least 10)."""
    times = []
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while True:
        start = clock()
        call(*args)
        stop = clock()
        times.append(stop - start)
        if stop >= end and len(times) >= 10:
            return times


def summarise(times_ns):
    times = np.asarray(times_ns, dtype=np.float64) / 1e3
    return {"calls": int(times.size), "mean_us": float(times.mean()),
            "p50_us": float(np.percentile(times, 50)), "p99_us": float(np.percentile(times, 99)),
            "max_us": float(times.max())}


def latency(ready, args):
    """Latency of each implementation, interleaved round by round: {impl: summary}."""
    samples = {impl: [] for impl in ready}
    order = list(ready)
    for round_ in range(args.rounds):
        for impl in order[round_ % len(order):] + order[:round_ % len(order)]:
            time.sleep(args.settle)  # the previous implementation's threads stop spinning
            call, call_args = ready[impl]
            samples[impl] += time_calls(call, call_args, args.round_seconds)
    return {impl: summarise(times) for impl, times in samples.items()}


@contextlib.contextmanager
def busy_process(log):
    """A process spinning on one core for the duration, ended by its PID."""
    process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    log(f"    busy-loop process started, PID {process.pid}")
    try:
        time.sleep(0.3)  # let it start spinning
        yield process.pid
    finally:
        process.kill()
        process.wait()
        log(f"    busy-loop process {process.pid} ended")


def backoff_counts():
    """The back-off's counts (kernels.thread_policy) that the benchmark records."""
    return {key: value for key, value in kernels.thread_policy().items()
            if key in ("parallel_forwards", "backoffs_started", "backed_off_forwards")}


def calling_worker(name, batch, impls, commands, results, barrier):
    """In a child process: for each (impl, seconds) on ``commands``, wait for the other
    workers at ``barrier``, call ``impl`` on the case in a loop for ``seconds``, and put
    (impl, calls completed, the back-off's counts meanwhile) on ``results``; None ends it."""
    network, x = make_case(name, batch)
    calls = {impl: build(impl, network, x) for impl in impls}
    for call, args in calls.values():
        call(*args)
    results.put(("ready", os.getpid()))
    for impl, seconds in iter(commands.get, None):
        call, args = calls[impl]
        before = backoff_counts()
        barrier.wait()
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            call(*args)
            n += 1
        after = backoff_counts()
        results.put((impl, n, {key: after[key] - before[key] for key in after}))


def throughput(impls, name, batch, args, log):
    """Total calls of ``args.processes`` processes all running the same implementation, the
    implementations taking turns for ``args.rounds`` rounds of ``args.process_seconds /
    args.rounds`` each (the processes live through all rounds, as a server's workers do):
    {impl: {"calls": total, "per_process": [...], "rounds": [total of each round],
    "thread_policy": {back-off count: total}}}."""
    context = multiprocessing.get_context("spawn")
    results, barrier = context.Queue(), context.Barrier(args.processes)
    commands = [context.Queue() for _ in range(args.processes)]
    workers = [context.Process(target=calling_worker,
                               args=(name, batch, impls, queue, results, barrier))
               for queue in commands]
    for worker in workers:
        worker.start()
    counts = {impl: [0] * args.processes for impl in impls}
    rounds = {impl: [] for impl in impls}
    policy = {impl: {} for impl in impls}
    seconds = args.process_seconds / args.rounds
    try:
        for _ in workers:
            results.get(timeout=300)
        for round_ in range(args.rounds):
            for impl in impls[round_ % len(impls):] + impls[:round_ % len(impls)]:
                time.sleep(args.settle)
                for queue in commands:
                    queue.put((impl, seconds))
                done = [results.get(timeout=300 + 10 * seconds)[1:] for _ in workers]
                calls = sorted(n for n, _ in done)
                counts[impl] = [a + b for a, b in zip(counts[impl], calls)]
                rounds[impl].append(sum(calls))
                for _, worker_counts in done:
                    for key, value in worker_counts.items():
                        policy[impl][key] = policy[impl].get(key, 0) + value
    finally:
        for queue in commands:
            queue.put(None)
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    for impl in impls:
        log(f"    {impl}: {sum(counts[impl]):,} calls {counts[impl]}, rounds {rounds[impl]}, "
            f"back-off {policy[impl]}")
    return {impl: {"calls": sum(counts[impl]), "per_process": counts[impl],
                   "rounds": rounds[impl], "thread_policy": policy[impl]} for impl in impls}


def fmt(us):
    return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


def markdown(results):
    impls = results["settings"]["impls"]
    noisy = NOISE_IMPL in impls
    lines = ["# Forward passes on shared cores", "",
             f"`{results['settings']['command']}`, {results['date']}; load average "
             f"{results['load_average_before']} before, {results['load_average_after']} after. "
             f"{results['machine']['cpus_available']} CPUs available, default threads "
             f"{results['machine']['threads']}, isa {results['machine']['isa']}.", ""]
    latency_rows = [r for r in results["rows"] if r["condition"] in ("idle", "busy")]
    if latency_rows:
        lines += ["## Latency (µs per call: mean / p99)", "",
                  "`busy`: a busy-loop process runs on one core. `others` is the share of the "
                  "machine's CPUs other processes used meanwhile (the busy loop included). "
                  "`ratio` is default / threads=1"
                  + (f", `noise` {NOISE_IMPL} / threads=1" if noisy else "") + ".", "",
                  "| case | condition | others | " + " | ".join(impls) + " | ratio mean | "
                  "ratio p99 |" + (" noise mean | noise p99 |" if noisy else ""),
                  "|---|---|---:|" + "---:|" * (len(impls) + 2 + 2 * noisy)]
        for row in latency_rows:
            cells = []
            for impl in impls:
                entry = row["impls"].get(impl)
                cells.append(f"{fmt(entry['mean_us'])} / {fmt(entry['p99_us'])}"
                             if entry else row["notes"].get(impl, "n/a"))
            others = row.get("others_busy")
            ratios = [f"{ratio[key]:.2f}" if key in ratio else "-"
                      for ratio in (row.get("ratio_default_vs_threads1") or {},
                                    row.get("ratio_noise") or {})[:1 + noisy]
                      for key in ("mean", "p99")]
            lines.append(
                f"| {row['case']} | {row['condition']} | "
                f"{'?' if others is None else f'{others:.0%}'} | "
                + " | ".join(cells + ratios) + " |")
        lines.append("")
    process_rows = [r for r in results["rows"] if r["condition"] == "processes"]
    if process_rows:
        seconds = results["settings"]["process_seconds"]
        lines += [f"## Throughput: {results['settings']['processes']} processes, each calling "
                  f"in a loop for {seconds} s in {results['settings']['rounds']} rounds "
                  f"(total calls)", "",
                  "| case | " + " | ".join(impls) + " | default / threads=1 |"
                  + (f" {NOISE_IMPL} / threads=1 |" if noisy else ""),
                  "|---|" + "---:|" * (len(impls) + 1 + noisy)]
        for row in process_rows:
            cells = [f"{row['impls'][i]['calls']:,}" if i in row["impls"]
                     else row["notes"].get(i, "n/a") for i in impls]
            ratios = [row.get("ratio_default_vs_threads1"), row.get("ratio_noise")]
            lines.append(f"| {row['case']} | " + " | ".join(
                cells + ["-" if r is None else f"{r:.2f}" for r in ratios[:1 + noisy]]) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=parse_cases, default=None,
                        help="comma-separated cases, e.g. N3:1,N4:64 (default: "
                             + ",".join(f"{n}:{b}" for n, b in CASES) + ")")
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help="some of idle,busy,processes (default: all)")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help="some of " + ",".join(IMPLS + [NOISE_IMPL])
                             + " (default: all but " + NOISE_IMPL + ")")
    parser.add_argument("--quick", action="store_true", help="two cases, shorter runs")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per implementation (default 5, 2 with --quick)")
    parser.add_argument("--round-seconds", type=float, default=None,
                        help="seconds of calls per round (default 0.4, 0.2 with --quick)")
    parser.add_argument("--process-seconds", type=float, default=None,
                        help="seconds each process calls for (default 3, 1 with --quick)")
    parser.add_argument("--processes", type=int, default=None,
                        help="processes in the throughput condition (default: CPUs available)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="pause before each timing, for thread pools to go idle")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    for value, allowed, what in ((conditions, CONDITIONS, "condition"),
                                 (impls, IMPLS + [NOISE_IMPL], "impl")):
        unknown = [v for v in value if v not in allowed]
        if unknown or not value:
            parser.error(f"unknown or no {what}(s) {unknown}; expected some of {allowed}")
    cases = args.cases or (QUICK_CASES if args.quick else CASES)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.round_seconds = args.round_seconds or (0.2 if args.quick else 0.4)
    args.process_seconds = args.process_seconds or (1.0 if args.quick else 3.0)
    args.processes = args.processes or available_cpus()

    def log(message):
        print(message, file=sys.stderr, flush=True)

    started = time.time()
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for name, batch in cases:
        case = f"{name} batch {batch:,}"
        network, x = make_case(name, batch)
        ready, notes = prepare(impls, network, x, log)
        for condition in conditions:
            log(f"{case} {NETWORKS[name]}: {condition}")
            row = {"case": case, "id": f"{name}:{batch}", "condition": condition,
                   "load_average_1min": round(os.getloadavg()[0], 2), "notes": notes}
            begin = cpu_times()
            if condition == "processes":
                row["impls"] = throughput(list(ready), name, batch, args, log)
                for key, impl in (("ratio_default_vs_threads1", "default"),
                                  ("ratio_noise", NOISE_IMPL)):
                    if {impl, "threads=1"} <= set(ready):
                        row[key] = (row["impls"][impl]["calls"]
                                    / row["impls"]["threads=1"]["calls"])
            else:
                # Each condition starts from a fresh back-off: one begun beside the previous
                # condition's busy loop (up to 2 s) would otherwise run into an idle one.
                kernels.reset_thread_policy()
                with busy_process(log) if condition == "busy" else \
                        contextlib.nullcontext() as busy_pid:
                    row["impls"] = latency(ready, args)
                row["thread_policy"] = backoff_counts()
                if busy_pid is not None:
                    row["busy_pid"] = busy_pid
                for key, impl in (("ratio_default_vs_threads1", "default"),
                                  ("ratio_noise", NOISE_IMPL)):
                    if {impl, "threads=1"} <= set(ready):
                        compared, single = row["impls"][impl], row["impls"]["threads=1"]
                        row[key] = {"mean": compared["mean_us"] / single["mean_us"],
                                    "p99": compared["p99_us"] / single["p99_us"]}
            row["others_busy"] = others_busy(begin, cpu_times())
            rows.append(row)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.time() - started, 1),
        "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": {**machine_info(), "cpus_available": available_cpus()},
        "settings": {"command": "python bench/contention.py " + " ".join(
                         sys.argv[1:] if argv is None else argv),
                     "impls": impls, "conditions": conditions, "rounds": args.rounds,
                     "round_seconds": args.round_seconds, "processes": args.processes,
                     "process_seconds": args.process_seconds, "settle": args.settle},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "contention.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "CONTENTION.md").write_text(text)
    print(text)
    log(f"wrote CONTENTION.md, contention.json to {args.out} in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
