"""nnexposed.spark on a real local[2] SparkSession: results equal the local forward on the
same rows for numeric, array and vector input columns, the network travels as one broadcast,
and bad input is refused before any job runs."""

import os
import re
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
    pytest.skip("PySpark needs Java 17+", allow_module_level=True)

from pyspark.ml.linalg import Vectors
from pyspark.sql import SparkSession
from pyspark.sql import types as T

import nnexposed
import nnexposed.spark as nnspark
from tests.helpers import assert_close, random_network

FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("nnexposed-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "128")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((600, 3))
    x[:, 2] = rng.integers(-4, 4, 600)
    return x


def frame(spark, x):
    rows = [(i, float(r[0]), float(r[1]), int(r[2]), f"row{i}") for i, r in enumerate(x)]
    schema = "id long, a double, b double, c int, label string"
    return spark.createDataFrame(rows, schema).repartition(3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numeric_columns_equal_local_forward(spark, data, dtype):
    network = random_network(np.random.default_rng(1), [3, 16, 4], ["relu", "softmax"], dtype)
    result = nnspark.predict(network, frame(spark, data), input_cols=FEATURES)
    value_type = T.FloatType() if dtype == np.float32 else T.DoubleType()
    assert result.columns == ["id", "a", "b", "c", "label"] + [f"output_{k}" for k in range(4)]
    assert [f.dataType for f in result.schema.fields[5:]] == [value_type] * 4
    rows = sorted(result.collect(), key=lambda row: row.id)
    assert [row.id for row in rows] == list(range(600))
    assert [row.label for row in rows] == [f"row{i}" for i in range(600)]
    outputs = np.array([[row[f"output_{k}"] for k in range(4)] for row in rows], dtype)
    assert_close(outputs, nnexposed.forward(network, data), dtype)


def test_array_and_vector_columns(spark, data):
    network = random_network(np.random.default_rng(2), [3, 8, 2], ["tanh", "linear"],
                             np.float32)
    rows = [(i, [float(v) for v in r], Vectors.dense(r) if i % 2 else
             Vectors.sparse(3, {j: float(v) for j, v in enumerate(r) if j != 1}),
             [int(v * 100) for v in r]) for i, r in enumerate(data[:200])]
    df = spark.createDataFrame(rows, ["id", "array", "vector", "ints"])
    expected_sparse = data[:200].copy()
    expected_sparse[::2, 1] = 0.0
    ints = np.array([[int(v * 100) for v in r] for r in data[:200]])
    for column, x in [("array", data[:200]), ("vector", expected_sparse), ("ints", ints)]:
        result = nnspark.predict(network, df, input_cols=column, output_cols=["p", "q"])
        assert result.columns == ["id", "array", "vector", "ints", "p", "q"]
        got = sorted(result.select("id", "p", "q").collect())
        assert_close(np.array([[row.p, row.q] for row in got], np.float32),
                     nnexposed.forward(network, x), np.float32)


def test_any_column_names_and_one_evaluation_per_batch(spark, data):
    network = random_network(np.random.default_rng(6), [3, 6, 3], ["relu", "softmax"],
                             np.float64)
    names = ["a.b", "c`d", "e f"]
    df = spark.createDataFrame([(i, *map(float, r)) for i, r in enumerate(data[:50])],
                               ["id", *names])
    result = nnspark.predict(network, df, input_cols=names, output_cols=["p.0", "p`1", "p 2"])
    assert result.columns == ["id", *names, "p.0", "p`1", "p 2"]
    rows = sorted(result.collect())
    assert_close(np.array([row[4:] for row in rows]), nnexposed.forward(network, data[:50]),
                 np.float64)
    # Taking three fields of the UDF's struct runs the UDF once, not once per field.
    plan = result._jdf.queryExecution().executedPlan().toString()
    assert set(re.findall(r"pythonUDF\d+", plan)) == {"pythonUDF0"}, plan


def test_nulls_give_nan_rows(spark):
    network = random_network(np.random.default_rng(3), [2, 4, 1], ["relu", "linear"],
                             np.float64)
    df = spark.createDataFrame([(0, 1.0, 2.0, [1.0, 2.0]), (1, None, 2.0, None),
                                (2, 3.0, 4.0, [3.0, None])],
                               "id int, a double, b double, v array<double>")
    by_columns = sorted(nnspark.predict(network, df, input_cols=["a", "b"]).collect())
    by_array = sorted(nnspark.predict(network, df, input_cols="v").collect())
    expected = nnexposed.forward(network, [[1.0, 2.0], [3.0, 4.0]])
    assert np.isnan(by_columns[1].output_0) and np.isnan(by_array[1].output_0)
    assert np.isnan(by_array[2].output_0)
    assert_close(np.array([[by_columns[0].output_0], [by_columns[2].output_0]]), expected,
                 np.float64)
    assert by_array[0].output_0 == by_columns[0].output_0


def test_network_is_one_broadcast_of_its_model_file(spark, data, monkeypatch):
    network = random_network(np.random.default_rng(4), [3, 5, 2], ["relu", "linear"],
                             np.float32)
    context = spark.sparkContext
    sent = []
    original = type(context).broadcast

    def recording_broadcast(self, value):
        sent.append(value)
        return original(self, value)

    monkeypatch.setattr(type(context), "broadcast", recording_broadcast)
    result = nnspark.predict(network, frame(spark, data), input_cols=FEATURES)
    assert len(sent) == 1 and isinstance(sent[0], bytes)
    loaded = nnexposed.load(__import__("io").BytesIO(sent[0]))
    assert loaded.sizes == network.sizes
    np.testing.assert_array_equal(loaded.layers[0].weights, network.layers[0].weights)
    assert result.count() == 600


def test_bad_input_is_refused(spark, data):
    network = random_network(np.random.default_rng(5), [3, 4, 2], ["relu", "linear"],
                             np.float32)
    df = frame(spark, data)
    with pytest.raises(TypeError, match="expects a nnexposed.Network, got str"):
        nnspark.predict("model", df, input_cols=FEATURES)
    with pytest.raises(TypeError, match="expects a pyspark.sql.DataFrame, got list"):
        nnspark.predict(network, [], input_cols=FEATURES)
    with pytest.raises(ValueError, match="no column 'zz' in the DataFrame"):
        nnspark.predict(network, df, input_cols=["a", "b", "zz"])
    with pytest.raises(TypeError, match="column 'label' holds string, expected numbers"):
        nnspark.predict(network, df, input_cols=["a", "b", "label"])
    with pytest.raises(TypeError, match="column 'label' holds string, expected numbers, an "
                                        "array"):
        nnspark.predict(network, df, input_cols="label")
    with pytest.raises(ValueError, match="expects 3 input features, input_cols names 2"):
        nnspark.predict(network, df, input_cols=["a", "b"])
    with pytest.raises(ValueError, match="has 2 outputs, output_columns names 1"):
        nnspark.predict(network, df, input_cols=FEATURES, output_cols=["p"])
    with pytest.raises(ValueError, match="output column 'id' already exists"):
        nnspark.predict(network, df, input_cols=FEATURES, output_cols=["id", "p"])
    short = spark.createDataFrame([([1.0, 2.0],)], "v array<double>")
    with pytest.raises(Exception, match="column 'v' holds a row of 2 values, the network "
                                        "expects 3"):
        nnspark.predict(network, short, input_cols="v").collect()
