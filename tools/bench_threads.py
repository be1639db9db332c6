"""Is the GIL really released? Wall time of N forward calls on a big batch, serial versus
spread over N Python threads (each call on one OpenMP thread, own kernels, no BLAS), and
the 16-thread case with 2 OpenMP threads inside each call (oversubscription).

    python tools/bench_threads.py [--threads 2] [--batch 20000] [--repeat 5]

Prints the median wall times and the speed-up; nothing is asserted (timers belong here, not
in the test suite).
"""

import argparse
import statistics
import threading
import time

import numpy as np

import nnexposed
from nnexposed import kernels

CPU_PER_WALL = []   # process CPU time / wall time of each threaded run: > 1 means parallel


def timed_threads(network, inputs, omp_threads):
    barrier = threading.Barrier(len(inputs) + 1)

    def work(x):
        barrier.wait()
        network(x, threads=omp_threads)

    threads = [threading.Thread(target=work, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    CPU_PER_WALL.append((time.process_time() - cpu) / wall)
    return wall


def timed_serial(network, inputs, omp_threads):
    start = time.perf_counter()
    for x in inputs:
        network(x, threads=omp_threads)
    return time.perf_counter() - start


def progress_during_call(network, x):
    """Python loop iterations the main thread makes while another thread runs one call."""
    done = threading.Event()
    started = threading.Event()

    def work():
        started.set()
        network(x, threads=1)
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    iterations = 0
    while not done.is_set():
        iterations += 1
    thread.join()
    return iterations


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    network = nnexposed.Network.from_sizes([64, 256, 256, 10], seed=0)
    rng = np.random.default_rng(0)
    # The own kernels only, in every thread (this process ends with the measurement).
    nnexposed.set_config(blas="never")
    for n_threads, omp in [(args.threads, 1), (16, 2)]:
        inputs = [rng.standard_normal((args.batch, 64)).astype(np.float32)
                  for _ in range(n_threads)]
        network(inputs[0], threads=omp)
        serial = statistics.median(timed_serial(network, inputs, omp)
                                   for _ in range(args.repeat))
        CPU_PER_WALL.clear()
        threaded = statistics.median(timed_threads(network, inputs, omp)
                                     for _ in range(args.repeat))
        print(f"{n_threads} calls of batch {args.batch} ({omp} OpenMP thread(s) each): "
              f"serial {serial * 1e3:.1f} ms, {n_threads} Python threads "
              f"{threaded * 1e3:.1f} ms, speed-up {serial / threaded:.2f}x, "
              f"CPU time / wall time of the threaded runs "
              f"{statistics.median(CPU_PER_WALL):.2f}")
    x = rng.standard_normal((4 * args.batch, 64)).astype(np.float32)
    print(f"main-thread Python loop iterations during one call of batch {4 * args.batch} "
          f"in another thread: {progress_during_call(network, x):,} "
          f"(about 0 if the call held the GIL)")
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = "?"
    print(f"({kernels.default_threads()} cores for OpenMP, load average {load}: "
          f"on a busy machine the CPU/wall ratio shows the parallelism the wall time hides)")


if __name__ == "__main__":
    main()
