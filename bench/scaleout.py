"""Rows per second of nnexposed on Dask, Spark and files, against what users write today.

    python bench/scaleout.py [--rows 1000000] [--repeat 3] [--only dask-array,files] [--out DIR]

One 64-128-128-3 scikit-learn MLPClassifier (ReLU hidden, softmax output, float32) and the same
network in nnexposed (``Network.from_sklearn``) score the same rows on each engine:

- local: one ``nnexposed.forward`` call on all cores, and one ``predict_proba`` call;
- Dask array / DataFrame (``LocalCluster``, one single-threaded worker process per core, the
  data generated and persisted on the workers): ``nnexposed.dask.forward`` / ``predict``
  against ``map_blocks`` / ``map_partitions`` of ``predict_proba``; results persisted on the
  workers (nothing is gathered); each worker gets --partitions-per-core blocks (default 2,
  64 MB each at 10^6 rows: Dask advises partitions of about 100 MB, since every task costs a
  scheduler round trip);
- Spark (``local[N]``), in four layouts of the same features: 64 float columns cached, the same
  columns read from a Parquet file, one cached array<float> column, one cached ML vector column
  (``VectorAssembler``): ``nnexposed.spark.predict`` against a pandas UDF calling
  ``predict_proba`` written as for that layout (``np.stack`` of the arrays; ``vector_to_array``
  first for vectors); written to Spark's ``noop`` sink;
- files: ``nnexposed predict`` (in process) from a Parquet file to a Parquet file, against
  reading the file (pyarrow) plus one ``forward`` call.

Each figure is the median of --repeat runs after one warm-up run; every route's output is
checked against the local forward (or predict_proba) before it is timed. Needs the dask, spark
and files extras and scikit-learn. Writes DIR/scaleout.md and DIR/scaleout.json (default DIR:
bench/results), with the machine's load before and after each case.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial

import numpy as np

import nnexposed
from nnexposed.benchmark import machine_info

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SIZES = (64, 128, 128, 3)
COLUMNS = [f"f{k}" for k in range(SIZES[0])]
OUTPUTS = [f"p{k}" for k in range(SIZES[-1])]
ENGINES = ["local", "dask-array", "dask-dataframe", "spark", "files"]


def fitted_models(seed=0):
    """The scikit-learn classifier (fitted briefly on random float32 data) and its network."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3000, SIZES[0])).astype(np.float32)
    labels = (x[:, :3].argmax(axis=1)).astype(int)
    classifier = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], max_iter=20, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(x, labels)
    network = nnexposed.Network.from_sklearn(classifier)
    assert network.sizes == SIZES and network.dtype == np.float32, network
    return classifier, network


def timed(function, repeat, before=None):
    """Median and all of ``repeat`` timed runs of ``function()``, after one warm-up run;
    ``before()`` (untimed) runs before each."""
    times = []
    for _ in range(repeat + 1):
        if before is not None:
            before()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), times[1:]


def check(name, got, expected, rtol=1e-3):
    error = np.max(np.abs(np.asarray(got, np.float64) - expected))
    if not error <= rtol * max(1.0, np.max(np.abs(expected))):
        raise AssertionError(f"{name}: max |error| {error} against the local result")


# --------------------------------------------------------------------------------------------


def bench_local(classifier, network, rows, repeat, record):
    x = np.random.default_rng(1).standard_normal((rows, SIZES[0])).astype(np.float32)
    expected = nnexposed.forward(network, x)
    check("predict_proba", classifier.predict_proba(x), expected)
    record("local", "nnexposed.forward (one call)", *timed(lambda: nnexposed.forward(network, x),
                                                            repeat))
    record("local", "scikit-learn predict_proba (one call)",
           *timed(lambda: classifier.predict_proba(x), repeat))


def dask_cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=os.cpu_count(), threads_per_worker=1, processes=True,
                           dashboard_address=None, worker_dashboard_address=None)
    return cluster, Client(cluster)


def bench_dask(classifier, network, rows, repeat, record, frames, partitions_per_core):
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd
    from distributed import wait

    import nnexposed.dask

    cluster, client = dask_cluster()
    try:
        chunk = max(1, rows // (partitions_per_core * os.cpu_count()))
        x = da.random.default_rng(1).standard_normal((rows, SIZES[0]), chunks=(chunk, -1),
                                                      dtype=np.float32)
        x = client.persist(x)
        wait(x)
        sample = x[:2000].compute()
        expected = nnexposed.forward(network, sample)

        def scheduler_tasks():
            return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

        results = []
        baseline = []

        def run(collection):
            """Compute every partition on the workers, keeping the results there."""
            results.append(client.persist(collection))
            wait(results[-1])

        def forget():
            """Drop the previous run's results and wait until the scheduler has forgotten
            them, so that the next run computes them again."""
            if not results:
                baseline[:] = [scheduler_tasks()]
                return
            results.pop()   # released, not cancelled: the same keys are computed again next
            deadline = time.perf_counter() + 30
            while scheduler_tasks() > baseline[0] and time.perf_counter() < deadline:
                time.sleep(0.01)

        if not frames:
            ours = nnexposed.dask.forward(network, x)
            theirs = x.map_blocks(classifier.predict_proba, dtype=np.float64,
                                  chunks=(x.chunks[0], (SIZES[-1],)))
            check("dask forward", ours[:2000].compute(), expected)
            check("dask map_blocks", theirs[:2000].compute(), expected)
            record("dask-array", "nnexposed.dask.forward",
                   *timed(lambda: run(ours), repeat, forget))
            record("dask-array", "map_blocks(predict_proba)",
                   *timed(lambda: run(theirs), repeat, forget))
        else:
            frame = client.persist(dd.from_dask_array(x, columns=COLUMNS))
            wait(frame)
            ours = nnexposed.dask.predict(network, frame, output_columns=OUTPUTS)

            def proba(part):
                values = classifier.predict_proba(part[COLUMNS].to_numpy())
                return part.assign(**{name: values[:, k] for k, name in enumerate(OUTPUTS)})

            meta = frame._meta.assign(**{name: np.float64() for name in OUTPUTS})
            theirs = frame.map_partitions(proba, meta=meta)
            head = pd.concat([ours.head(2000, npartitions=-1)])[OUTPUTS].to_numpy()
            check("dask predict", head, nnexposed.forward(
                network, frame.head(2000, npartitions=-1)[COLUMNS].to_numpy()))
            check("dask map_partitions", theirs.head(2000, npartitions=-1)[OUTPUTS].to_numpy(),
                  head)
            record("dask-dataframe", "nnexposed.dask.predict",
                   *timed(lambda: run(ours), repeat, forget))
            record("dask-dataframe", "map_partitions(predict_proba)",
                   *timed(lambda: run(theirs), repeat, forget))
    finally:
        client.close()
        cluster.close()


SPARK_LAYOUTS = {
    # engine: how the features are laid out and stored
    "spark": "64 float columns, cached",
    "spark-parquet": "64 float columns, read from Parquet",
    "spark-array": "one array<float> column, cached",
    "spark-vector": "one ML vector column (VectorAssembler), cached",
}


def bench_spark(classifier, network, rows, repeat, record):
    import pandas as pd
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    import nnexposed.spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(f"local[{os.cpu_count()}]")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "4g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    folder = tempfile.TemporaryDirectory()
    try:
        columns, outputs = list(COLUMNS), list(OUTPUTS)  # the UDFs carry them, not this module
        generated = spark.range(rows, numPartitions=4 * os.cpu_count()).select(
            "id", *[F.randn(seed=k).cast("float").alias(name) for k, name in enumerate(columns)])
        parquet = os.path.join(folder.name, "features.parquet")
        generated.write.parquet(parquet)
        frames = {
            "spark": generated,
            "spark-parquet": spark.read.parquet(parquet),
            "spark-array": generated.select("id", F.array(*columns).alias("features")),
            "spark-vector": VectorAssembler(inputCols=columns, outputCol="features")
            .transform(generated).select("id", "features"),
        }
        schema = T.StructType([T.StructField(name, T.DoubleType()) for name in outputs])

        @F.pandas_udf(schema)
        def proba_of_columns(*features: pd.Series) -> pd.DataFrame:
            values = classifier.predict_proba(pd.concat(features, axis=1).to_numpy())
            return pd.DataFrame(values, columns=outputs)

        @F.pandas_udf(schema)
        def proba_of_arrays(features: pd.Series) -> pd.DataFrame:
            values = classifier.predict_proba(np.stack(features.to_numpy()))
            return pd.DataFrame(values, columns=outputs)

        def run(frame):
            frame.write.format("noop").mode("overwrite").save()

        for engine, df in frames.items():
            if engine != "spark-parquet":
                df = df.cache()
                df.count()
            if engine in ("spark", "spark-parquet"):
                ours = nnexposed.spark.predict(network, df, input_cols=columns,
                                               output_cols=outputs)
                theirs = df.withColumn("proba", proba_of_columns(*columns))
            else:
                ours = nnexposed.spark.predict(network, df, input_cols="features",
                                               output_cols=outputs)
                arrays = F.col("features") if engine == "spark-array" else \
                    vector_to_array("features", "float32")
                theirs = df.withColumn("proba", proba_of_arrays(arrays))
            sample = ours.orderBy("id").limit(2000).toPandas()
            features = generated.orderBy("id").limit(2000).select(columns).toPandas()
            expected = nnexposed.forward(network, features.to_numpy())
            check(f"{engine} predict", sample[outputs].to_numpy(), expected)
            other = theirs.orderBy("id").limit(2000).select("proba.*").toPandas().to_numpy()
            check(f"{engine} pandas UDF", other, expected)
            record(engine, "nnexposed.spark.predict", *timed(partial(run, ours), repeat))
            record(engine, "pandas UDF of predict_proba", *timed(partial(run, theirs), repeat))
            if engine != "spark-parquet":
                df.unpersist(blocking=True)
    finally:
        spark.stop()
        folder.cleanup()


def bench_files(network, rows, repeat, record):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nnexposed._predict import predict_file

    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "features.parquet")
        target = os.path.join(folder, "scores.parquet")
        x = np.random.default_rng(1).standard_normal((rows, SIZES[0])).astype(np.float32)
        pq.write_table(pa.table({name: x[:, k] for k, name in enumerate(COLUMNS)}), source,
                       row_group_size=65536)
        del x

        def read_and_forward():
            table = pq.read_table(source)
            features = np.column_stack([table.column(name).to_numpy() for name in COLUMNS])
            return nnexposed.forward(network, features)

        expected = read_and_forward()
        predict_file(network, source, target)
        check("nnexposed predict", pq.read_table(target).to_pandas().to_numpy(), expected)
        record("files", "nnexposed predict (Parquet to Parquet)",
               *timed(lambda: predict_file(network, source, target), repeat))
        record("files", "read the Parquet file + one forward call",
               *timed(read_and_forward, repeat))


# --------------------------------------------------------------------------------------------


TARGETS = [
    # (engine, ours, baseline, how the ratio is read)
    ("dask-array", "nnexposed.dask.forward", "map_blocks(predict_proba)", ">= 2x"),
    ("dask-dataframe", "nnexposed.dask.predict", "map_partitions(predict_proba)", ">= 2x"),
    *[(engine, "nnexposed.spark.predict", "pandas UDF of predict_proba", ">= 2x")
      for engine in SPARK_LAYOUTS],
    ("dask-array", "nnexposed.dask.forward", "local:nnexposed.forward (one call)", ">= 0.7x"),
    ("dask-dataframe", "nnexposed.dask.predict", "local:nnexposed.forward (one call)",
     ">= 0.7x"),
    ("files", "nnexposed predict (Parquet to Parquet)",
     "read the Parquet file + one forward call", ">= 1/1.5 = 0.67x"),
]


def report(results, rows, command):
    by_name = {(r["engine"], r["route"]): r for r in results}
    lines = ["# Scale-out throughput", "",
             f"{rows:,} rows through a {'-'.join(map(str, SIZES))} MLP (float32). Command: "
             f"`{command}`", "",
             "| engine | route | rows/s | median s | runs (s) | load before / after |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['engine']} | {r['route']} | {rows / r['median']:,.0f} | "
                     f"{r['median']:.3f} | {', '.join(f'{t:.3f}' for t in r['times'])} | "
                     f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    lines += ["", "Spark engines, by how the features are laid out: " + "; ".join(
        f"`{engine}`: {layout}" for engine, layout in SPARK_LAYOUTS.items()) + "."]
    lines += ["", "| target | ratio of throughputs | wanted |", "|---|---|---|"]
    for engine, ours, baseline, wanted in TARGETS:
        other_engine, _, other = baseline.rpartition(":")
        a, b = by_name.get((engine, ours)), by_name.get((other_engine or engine, other))
        if a and b:
            lines.append(f"| {engine}: {ours} / {other_engine or engine}: {other} | "
                         f"{b['median'] / a['median']:.2f}x | {wanted} |")
    info = machine_info()
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()
                                         if k in ("cpu", "cores", "isa", "openmp", "python",
                                                  "numpy", "nnexposed")),
              "Load: the 1-minute load average (`os.getloadavg()`) before and after each route; "
              "other processes sharing the cores slow every route."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(ENGINES),
                        help=f"comma-separated engines (default: {','.join(ENGINES)})")
    parser.add_argument("--partitions-per-core", type=int, default=2,
                        help="Dask chunks (row blocks) per worker (default 2: 64 MB each at "
                             "10^6 rows, towards Dask's advice of ~100 MB partitions)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    engines = args.only.split(",")
    unknown = set(engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; expected some of {ENGINES}")
    classifier, network = fitted_models()
    results = []
    load = [os.getloadavg()[0]]

    def record(engine, route, median, times):
        load_after = os.getloadavg()[0]
        results.append({"engine": engine, "route": route, "median": median, "times": times,
                        "rows_per_second": args.rows / median, "load_before": load[0],
                        "load_after": load_after})
        load[0] = load_after
        print(f"{engine:<15} {route:<42} {args.rows / median:>14,.0f} rows/s "
              f"(median {median:.3f} s; load {load_after:.1f})", flush=True)

    if "local" in engines or {"dask-array", "dask-dataframe"} & set(engines):
        bench_local(classifier, network, args.rows, args.repeat, record)
    if "dask-array" in engines:
        bench_dask(classifier, network, args.rows, args.repeat, record, frames=False,
                   partitions_per_core=args.partitions_per_core)
    if "dask-dataframe" in engines:
        bench_dask(classifier, network, args.rows, args.repeat, record, frames=True,
                   partitions_per_core=args.partitions_per_core)
    if "spark" in engines:
        bench_spark(classifier, network, args.rows, args.repeat, record)
    if "files" in engines:
        bench_files(network, args.rows, args.repeat, record)

    command = "python bench/scaleout.py" + (f" {' '.join(argv or sys.argv[1:])}"
                                            if (argv or sys.argv[1:]) else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaleout.md").write_text(report(results, args.rows, command))
    (args.out / "scaleout.json").write_text(json.dumps(
        {"rows": args.rows, "sizes": SIZES, "command": command, "machine": machine_info(),
         "results": results}, indent=2))
    print(f"wrote {args.out / 'scaleout.md'} and scaleout.json", file=sys.stderr)


if __name__ == "__main__":
    main()
