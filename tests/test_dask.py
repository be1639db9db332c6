"""nnexposed.dask on a real two-process cluster: results equal the local forward on the same
rows, the network is one graph key sent to the workers (not copied into every task), and bad
input is refused before anything is computed."""

import math
import pickle

import numpy as np
import pytest

pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import dask
import dask.array as da
import dask.dataframe as dd
import pandas as pd
from dask.utils import key_split

import nnexposed
import nnexposed.dask as nndask
from nnexposed.reference import forward_numpy
from tests.helpers import DTYPES, assert_close, random_network

ACTIVATIONS = ["relu", "tanh", "softmax"]


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def network_of(rng, sizes, dtype):
    return random_network(rng, sizes, ["relu"] * (len(sizes) - 2) + ["softmax"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, chunks", [
    ((1, 3), (1, 3)),
    ((257, 7), (50, 3)),          # columns split: rechunked into one
    ((1000, 16), (333, 16)),
    ((0, 5), (0, 5)),             # no rows
    ((64, 2), ((10, 0, 54), (1, 1))),  # an empty block among others
])
def test_forward_equals_local_forward(client, rng, dtype, shape, chunks):
    network = network_of(rng, [shape[1], 9, 4], dtype)
    x = rng.standard_normal(shape)
    result = nndask.forward(network, da.from_array(x, chunks=chunks))
    assert result.dtype == np.dtype(dtype) and result.shape == (shape[0], 4)
    assert result.chunks[0] == da.from_array(x, chunks=chunks).chunks[0]
    computed = client.compute(result).result()
    assert_close(computed, nnexposed.forward(network, x), dtype)
    assert_close(computed, forward_numpy(network, x.astype(dtype)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_casts_any_real_input(client, rng, dtype):
    network = network_of(rng, [4, 6, 3], dtype)
    for x in [rng.integers(-3, 3, (40, 4)), rng.random((40, 4)) > 0.5,
              rng.standard_normal((40, 4)).astype(np.float16)]:
        computed = client.compute(nndask.forward(network, da.from_array(x, chunks=7))).result()
        assert_close(computed, nnexposed.forward(network, x), dtype)


def test_forward_nan_rows_stay_nan(client, rng):
    network = network_of(rng, [3, 5, 2], np.float64)
    x = rng.standard_normal((20, 3))
    x[[2, 11]] = np.nan
    computed = nndask.forward(network, da.from_array(x, chunks=6)).compute()
    assert np.isnan(computed[[2, 11]]).all() and not np.isnan(np.delete(computed, [2, 11], 0)).any()


def task_sizes(collection):
    """The keys holding a network, and the pickled size of each task running one."""
    graph = dict(collection.__dask_graph__())
    network_keys = [k for k in graph if key_split(k) == "nnexposed-network"]
    sizes = [len(pickle.dumps(task)) for k, task in graph.items()
             if key_split(k) in ("nnexposed-forward", "predict_partition")]
    return network_keys, sizes


def test_network_is_one_key_not_copied_into_tasks(rng):
    network = network_of(rng, [64, 512, 512, 3], np.float32)   # ~1.1 MB of weights
    x = da.from_array(rng.standard_normal((4000, 64)), chunks=(100, 64))
    keys, sizes = task_sizes(nndask.forward(network, x))
    assert len(keys) == 1 and len(sizes) == 40
    assert max(sizes) < 2_000   # each forward task refers to the network by its key
    frame = dd.from_pandas(pd.DataFrame(rng.standard_normal((4000, 64))), npartitions=40)
    predict_keys, sizes = task_sizes(nndask.predict(network, frame).optimize())
    assert len(predict_keys) == 1 and len(sizes) == 40 and max(sizes) < 2_000
    # The key is the network's content: an equal network gives the same key, another one not.
    same = nnexposed.Network(network.layers)
    assert task_sizes(nndask.forward(same, x))[0] == keys
    other = network_of(rng, [64, 512, 512, 3], np.float32)
    assert task_sizes(nndask.forward(other, x))[0] != keys


def test_tasks_use_one_thread_by_default(rng, monkeypatch):
    network = network_of(rng, [3, 4, 2], np.float32)
    seen = []

    def recording_forward(network, x, *, threads=None):
        seen.append(threads)
        return nnexposed.forward(network, x, threads=threads)

    monkeypatch.setattr(nndask, "_forward", recording_forward)
    x = da.from_array(rng.standard_normal((30, 3)), chunks=10)
    frame = dd.from_pandas(pd.DataFrame(rng.standard_normal((30, 3))), npartitions=3)
    with dask.config.set(scheduler="sync"):
        nndask.forward(network, x).compute()
        nndask.predict(network, frame).compute()
        assert set(seen) == {1}
        seen.clear()
        nndask.forward(network, x, threads=2).compute()
        nndask.predict(network, frame, threads=None).compute()
    assert seen == [2] * 3 + [None] * len(seen[3:]) and len(seen) >= 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_appends_outputs_with_correct_meta(client, rng, dtype):
    network = network_of(rng, [3, 8, 4], dtype)
    n = 503
    pdf = pd.DataFrame({"id": np.arange(n), "b": rng.standard_normal(n),
                        "label": rng.choice(["x", "y"], n), "a": rng.standard_normal(n),
                        "c": rng.integers(0, 9, n).astype(np.int32)},
                       index=np.repeat(np.arange(n // 2 + 1), 2)[:n])   # duplicate labels
    frame = dd.from_pandas(pdf, npartitions=4)
    result = nndask.predict(network, frame, columns=["a", "b", "c"])
    names = [f"output_{k}" for k in range(4)]
    assert list(result.columns) == list(pdf.columns) + names
    assert list(result.dtypes[names]) == [np.dtype(dtype)] * 4
    assert result.npartitions == frame.npartitions
    computed = client.compute(result).result()
    expected = nnexposed.forward(network, pdf[["a", "b", "c"]].to_numpy())
    assert_close(computed[names].to_numpy(), expected, dtype)
    # (Dask stores text as its own string dtype; the values must be the same)
    pd.testing.assert_frame_equal(computed[list(pdf.columns)],
                                  pdf.astype({"label": computed["label"].dtype}))
    assert list(computed.dtypes) == list(result.dtypes)


def test_predict_all_columns_and_named_outputs(client, rng):
    network = network_of(rng, [4, 5, 2], np.float64)
    pdf = pd.DataFrame(rng.standard_normal((60, 4)), columns=list("wxyz"))
    result = nndask.predict(network, dd.from_pandas(pdf, npartitions=3),
                            output_columns=["p", "q"])
    assert list(result.columns) == list("wxyzpq")
    computed = client.compute(result).result()
    assert_close(computed[["p", "q"]].to_numpy(), nnexposed.forward(network, pdf.to_numpy()),
                 np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_leaves_the_input_partitions_unchanged(client, rng, dtype):
    # The outputs are added beside the partition's columns, which are not copied: the
    # partitions held on the workers must keep their columns and values.
    network = network_of(rng, [4, 5, 2], dtype)
    pdf = pd.DataFrame(rng.standard_normal((60, 4)).astype(dtype), columns=list("wxyz"))
    frame = client.persist(dd.from_pandas(pdf, npartitions=3))
    for columns in (None, list("zyxw")):
        computed = client.compute(nndask.predict(network, frame, columns=columns)).result()
        expected = nnexposed.forward(network, pdf[columns or list("wxyz")].to_numpy())
        assert_close(computed[["output_0", "output_1"]].to_numpy(), expected, dtype)
        pd.testing.assert_frame_equal(client.compute(frame).result(), pdf)


@pytest.mark.parametrize("copy_on_write", [False, True])
@pytest.mark.parametrize("n_out", [3, 40])     # columns of their own; one joined block
def test_predict_partition_shares_the_partitions_columns(rng, copy_on_write, n_out):
    network = network_of(rng, [4, 9, n_out], np.float32)
    values = rng.standard_normal((300, 4)).astype(np.float32)
    outputs = [f"p{k}" for k in range(n_out)]
    with pd.option_context("mode.copy_on_write", copy_on_write):
        # Row order, and column order as from Parquet or under copy-on-write.
        for layout in (values, np.asfortranarray(values)):
            part = pd.DataFrame(layout, columns=list("wxyz"), copy=False,
                                index=pd.RangeIndex(100, 400))
            scored = nndask._predict_partition(part, network, list("wxyz"), outputs, 1)
            assert list(part.columns) == list("wxyz") and list(scored.columns) == [
                *"wxyz", *outputs]
            pd.testing.assert_frame_equal(scored[list("wxyz")], part)
            assert_close(scored[outputs].to_numpy(), forward_numpy(network, values),
                         np.float32)
            if n_out <= nndask._MAX_INSERTED_COLUMNS:
                assert np.shares_memory(scored["w"].to_numpy(), part["w"].to_numpy())


def test_predict_missing_values_give_nan_rows(client, rng):
    network = network_of(rng, [2, 3, 2], np.float32)
    pdf = pd.DataFrame({"a": pd.array([1, None, 3, 4], dtype="Int64"),
                        "b": [0.5, 1.0, math.nan, 2.0]})
    computed = client.compute(nndask.predict(network, dd.from_pandas(pdf, npartitions=2)))
    outputs = computed.result()[["output_0", "output_1"]].to_numpy()
    assert np.isnan(outputs[1:3]).all() and not np.isnan(outputs[[0, 3]]).any()
    assert_close(outputs[[0, 3]], nnexposed.forward(network, [[1, 0.5], [4, 2.0]]),
                 np.float32)


def test_bad_input_is_refused_before_computing(rng):
    network = network_of(rng, [3, 4, 2], np.float32)
    x = da.zeros((10, 3), chunks=5)
    with pytest.raises(TypeError, match="expects a nnexposed.Network, got list"):
        nndask.forward([1], x)
    with pytest.raises(TypeError, match="expects a dask.array.Array, got ndarray"):
        nndask.forward(network, np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 3\), got shape \(10, 4\)"):
        nndask.forward(network, da.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 3\), got shape \(3,\)"):
        nndask.forward(network, da.zeros(3))
    with pytest.raises(TypeError, match="expected x of real numbers .* got dtype complex128"):
        nndask.forward(network, da.zeros((10, 3), dtype=complex))

    pdf = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "s": ["text"]})
    frame = dd.from_pandas(pdf, npartitions=1)
    with pytest.raises(TypeError, match="expects a dask.dataframe.DataFrame, got DataFrame"):
        nndask.predict(network, pdf)
    with pytest.raises(TypeError, match="expected column 's' of real numbers"):
        nndask.predict(network, frame, columns=["a", "b", "s"])
    with pytest.raises(ValueError, match="expects 3 input features, the input has 4"):
        nndask.predict(network, frame)
    with pytest.raises(ValueError, match="expects 3 input features, columns names 2"):
        nndask.predict(network, frame, columns=["a", "b"])
    with pytest.raises(ValueError, match="no column 'zz' in the input"):
        nndask.predict(network, frame, columns=["a", "b", "zz"])
    with pytest.raises(ValueError, match="names a column twice"):
        nndask.predict(network, frame, columns=["a", "a", "b"])
    with pytest.raises(TypeError, match="must be a list of column names, got the string"):
        nndask.predict(network, frame, columns="abc")
    with pytest.raises(ValueError, match="has 2 outputs, output_columns names 3"):
        nndask.predict(network, frame, columns=["a", "b", "c"], output_columns=["p", "q", "r"])
    with pytest.raises(ValueError, match="output column 'a' already exists"):
        nndask.predict(network, frame, columns=["a", "b", "c"], output_columns=["a", "q"])


def test_predict_command_on_the_cluster(client, rng, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    from nnexposed import cli

    network = network_of(rng, [4, 6, 3], np.float32)
    nnexposed.save(network, tmp_path / "model.npz")
    frame = pd.DataFrame(rng.standard_normal((1000, 4)), columns=list("abcd"))
    frame["id"] = np.arange(1000)
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=128)
    address = client.scheduler.address
    assert cli.main(["predict", str(tmp_path / "model.npz"), str(tmp_path / "in.parquet"),
                     "-o", str(tmp_path / "out.parquet"), "--columns", "a,b,c,d",
                     "--keep-columns", "id", "--batch-size", "100",
                     "--scheduler", address]) == 0
    result = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert list(result.columns) == ["id", "output_0", "output_1", "output_2"]
    assert list(result["id"]) == list(range(1000))   # in the input's order
    assert_close(result.iloc[:, 1:].to_numpy(), nnexposed.forward(network, frame.iloc[:, :4]),
                 np.float32)
    # An unreachable scheduler: one line, no file.
    assert cli.main(["predict", str(tmp_path / "model.npz"), str(tmp_path / "in.parquet"),
                     "-o", str(tmp_path / "other.npy"), "--columns", "a,b,c,d",
                     "--scheduler", "tcp://127.0.0.1:1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("nnexposed predict: error: cannot reach the Dask scheduler at "
                            "tcp://127.0.0.1:1")
    assert error.count("\n") == 1 and not (tmp_path / "other.npy").exists()
