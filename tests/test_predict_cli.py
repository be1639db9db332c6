"""``nnexposed predict``: every input and output format, results equal to the local forward,
batches bounded by --batch-size, and every failure (bad input, Ctrl-C) a one-line message with
no output file left behind."""

import os
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

import nnexposed
from nnexposed import _predict, cli
from tests.helpers import assert_close, random_network

FEATURES = ["f0", "f1", "f2", "f3", "f4"]
OUTPUTS = ["output_0", "output_1", "output_2"]


@pytest.fixture
def network(rng):
    return random_network(rng, [5, 16, 3], ["relu", "softmax"], np.float32)


@pytest.fixture
def model(tmp_path, network):
    path = tmp_path / "model.npz"
    nnexposed.save(network, path)
    return str(path)


def frame_of(rng, n):
    frame = pd.DataFrame(rng.standard_normal((n, 5)), columns=FEATURES)
    frame.insert(0, "id", np.arange(n) * 10)
    frame["f2"] = rng.integers(-5, 5, n)            # an int column among the floats
    return frame


def write_input(frame, path):
    """The frame in the format of ``path``'s extension (.npy: the features only)."""
    path = str(path)
    if path.endswith(".npy"):
        np.save(path, frame[FEATURES].to_numpy())
    elif path.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                       row_group_size=97)
    return path


def read_output(path):
    path = str(path)
    if path.endswith(".npy"):
        return pd.DataFrame(np.load(path), columns=OUTPUTS)
    if path.endswith(".csv"):
        return pd.read_csv(path, dtype={name: np.float32 for name in OUTPUTS})
    return pd.read_parquet(path)


def run(*args):
    return cli.main(["predict", *map(str, args)])


def leftovers(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


@pytest.mark.parametrize("in_format", [".npy", ".csv", ".parquet"])
@pytest.mark.parametrize("out_format", [".npy", ".csv", ".parquet"])
def test_every_format_pair_equals_local_forward(tmp_path, rng, network, model, in_format,
                                                out_format, capsys):
    frame = frame_of(rng, 1003)
    source = write_input(frame, tmp_path / f"in{in_format}")
    target = tmp_path / f"out{out_format}"
    columns = [] if in_format == ".npy" else ["--columns", ",".join(FEATURES)]
    assert run(model, source, "-o", target, "--batch-size", 250, *columns) == 0
    assert capsys.readouterr().err == ""          # not a terminal: no progress bar
    result = read_output(target)
    assert list(result.columns) == OUTPUTS and len(result) == 1003
    assert list(result.dtypes) == [np.float32] * 3
    expected = nnexposed.forward(network, frame[FEATURES].to_numpy())
    assert_close(result.to_numpy(), expected, np.float32)
    if out_format != ".csv":                       # CSV text of float32 reads back exactly too
        assert result.to_numpy().dtype == np.float32
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("out_format", [".csv", ".parquet"])
def test_kept_and_named_columns(tmp_path, rng, network, model, out_format):
    frame = frame_of(rng, 300)
    frame["label"] = rng.choice(["cat", "dog"], 300)
    source = write_input(frame, tmp_path / "in.parquet")
    target = tmp_path / f"out{out_format}"
    assert run(model, source, "-o", target, "--columns", "f4,f3,f2,f1,f0",
               "--keep-columns", "label,id", "--output-columns", "p,q,r", "-q") == 0
    result = read_output(target)
    assert list(result.columns) == ["label", "id", "p", "q", "r"]
    assert list(result["label"]) == list(frame["label"]) and list(result["id"]) == list(frame["id"])
    expected = nnexposed.forward(network, frame[FEATURES[::-1]].to_numpy())
    assert_close(result[["p", "q", "r"]].to_numpy().astype(np.float32), expected, np.float32)


def test_float64_network_and_missing_values(tmp_path, rng):
    network = random_network(rng, [2, 4, 2], ["tanh", "linear"], np.float64)
    model = tmp_path / "model64.npz"
    nnexposed.save(network, model)
    table = pa.table({"a": pa.array([1, None, 3, 4], pa.int32()),
                      "b": pa.array([0.5, 1.0, None, True], pa.float64())})
    pq.write_table(table, tmp_path / "in.parquet")
    assert run(model, tmp_path / "in.parquet", "-o", tmp_path / "out.npy") == 0
    result = np.load(tmp_path / "out.npy")
    assert result.dtype == np.float64 and result.shape == (4, 2)
    assert np.isnan(result[1:3]).all()
    assert_close(result[[0, 3]], nnexposed.forward(network, [[1, 0.5], [4, 1.0]]), np.float64)


@pytest.mark.parametrize("in_format", [".npy", ".csv", ".parquet"])
def test_batches_never_exceed_batch_size(tmp_path, rng, network, model, in_format,
                                         monkeypatch):
    sizes = []

    def recording_forward(network, x, *, threads=None):
        sizes.append(len(x))
        return nnexposed.forward(network, x, threads=threads)

    monkeypatch.setattr(_predict, "forward", recording_forward)
    source = write_input(frame_of(rng, 2000), tmp_path / f"in{in_format}")
    columns = [] if in_format == ".npy" else ["--columns", ",".join(FEATURES)]
    assert run(model, source, "-o", tmp_path / "out.npy", "--batch-size", 64, *columns) == 0
    assert sum(sizes) == 2000 and max(sizes) <= 64 and len(sizes) >= 2000 // 64


def test_empty_inputs_give_valid_empty_outputs(tmp_path, rng, model):
    frame = frame_of(rng, 0)
    for in_format in [".npy", ".csv", ".parquet"]:
        source = write_input(frame, tmp_path / f"in{in_format}")
        for out_format in [".npy", ".csv", ".parquet"]:
            target = tmp_path / f"out{out_format}"
            columns = [] if in_format == ".npy" else ["--columns", ",".join(FEATURES)]
            assert run(model, source, "-o", target, *columns) == 0
            result = read_output(target)
            assert result.shape == (0, 3) and list(result.columns) == OUTPUTS


def test_progress_bar_on_a_terminal_only(tmp_path, rng, model, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    source = write_input(frame_of(rng, 500), tmp_path / "in.npy")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run(model, source, "-o", tmp_path / "out.npy", "--batch-size", 100) == 0
    assert "500/500" in capsys.readouterr().err
    assert run(model, source, "-o", tmp_path / "out.npy", "--quiet") == 0
    assert capsys.readouterr().err == ""


def assert_fails(capsys, folder, args, *messages, status=1):
    """Exit 1 (2: bad arguments), one line on stderr naming the problem, no traceback, no
    output file."""
    before = set(os.listdir(folder))
    if status == 2:
        with pytest.raises(SystemExit) as exit_info:
            run(*args)
        assert exit_info.value.code == 2
    else:
        assert run(*args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("nnexposed predict: error: "), captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert all(message in captured.err for message in messages), captured.err
    assert set(os.listdir(folder)) == before


def test_bad_input_is_one_line_and_no_file(tmp_path, rng, model, capsys):
    frame = frame_of(rng, 50)
    npy = write_input(frame, tmp_path / "in.npy")
    csv = write_input(frame, tmp_path / "in.csv")
    parquet = write_input(frame, tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    cols = ["--columns", ",".join(FEATURES)]
    cases = [
        ((model, tmp_path / "absent.csv", "-o", out), "absent.csv: No such file or directory"),
        ((model, npy, "-o", tmp_path / "out.txt"), "unknown output extension '.txt'"),
        ((model, tmp_path / "in.json", "-o", out), "unknown input extension '.json'"),
        ((model, csv, "-o", out), "expects 5 input features, the input has 6"),
        ((model, parquet, "-o", out, "--columns", "f0,f1"),
         "expects 5 input features, columns names 2"),
        ((model, parquet, "-o", out, "--columns", "f0,f1,f2,f3,nope"), "no column 'nope'"),
        ((model, npy, "-o", out, *cols), "a .npy input has no column names"),
        ((model, parquet, "-o", tmp_path / "o.npy", *cols, "--keep-columns", "id"),
         "a .npy output holds the outputs only"),
        ((model, parquet, "-o", out, *cols, "--keep-columns", "id", "--output-columns",
          "id,b,c"), "output column 'id' already exists"),
        ((model, parquet, "-o", out, *cols, "--output-columns", "a,b"),
         "has 3 outputs, output_columns names 2"),
        ((model, npy, "-o", npy), "is the input file"),
    ]
    for args, message in cases:
        assert_fails(capsys, tmp_path, args, message)
    assert_fails(capsys, tmp_path, (tmp_path / "no_model.npz", npy, "-o", out),
                 "expected a saved model file", "which does not exist", status=2)
    assert_fails(capsys, tmp_path, (model, npy, "-o", tmp_path / "missing" / "out.csv"),
                 "no folder", status=2)
    (tmp_path / "bad_model.npz").write_bytes(b"not a model")
    assert_fails(capsys, tmp_path, (tmp_path / "bad_model.npz", npy, "-o", out),
                 "cannot load model")

    np.save(tmp_path / "wide.npy", np.zeros((4, 6)))
    assert_fails(capsys, tmp_path, (model, tmp_path / "wide.npy", "-o", out),
                 "expected an array of shape (rows, 5), got shape (4, 6)")
    np.save(tmp_path / "text.npy", np.array([["a"] * 5]))
    assert_fails(capsys, tmp_path, (model, tmp_path / "text.npy", "-o", out),
                 "expected real numbers (bool, int or float), got dtype <U1")
    (tmp_path / "garbage.npy").write_bytes(b"not an array")
    assert_fails(capsys, tmp_path, (model, tmp_path / "garbage.npy", "-o", out),
                 "not a readable .npy array")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    assert_fails(capsys, tmp_path, (model, tmp_path / "garbage.parquet", "-o", out),
                 "not a readable Parquet file")
    text = frame.assign(f3=["x"] * 50)
    pq.write_table(pa.Table.from_pandas(text), tmp_path / "text.parquet")
    assert_fails(capsys, tmp_path, (model, tmp_path / "text.parquet", "-o", out, *cols),
                 "column 'f3' holds ", "string, expected real numbers")
    (tmp_path / "empty.csv").write_text("")
    assert_fails(capsys, tmp_path, (model, tmp_path / "empty.csv", "-o", out),
                 "empty file, expected a header row")


def test_failure_midway_leaves_the_old_output_untouched(tmp_path, rng, model, capsys):
    frame = frame_of(rng, 3000).astype({"f1": object})
    frame.loc[2500, "f1"] = "abc"                 # found only after batches were written
    source = write_input(frame, tmp_path / "in.csv")
    target = tmp_path / "out.parquet"
    target.write_bytes(b"previous results")
    assert_fails(capsys, tmp_path, (model, source, "-o", target, "--columns",
                                    ",".join(FEATURES), "--batch-size", 100),
                 "CSV column #2 ('f1'): ", "CSV conversion error to double: invalid value 'abc'")
    assert target.read_bytes() == b"previous results"


def test_interrupt_leaves_no_file(tmp_path, rng, model, capsys, monkeypatch):
    calls = []

    def interrupted_forward(network, x, *, threads=None):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return nnexposed.forward(network, x, threads=threads)

    monkeypatch.setattr(_predict, "forward", interrupted_forward)
    source = write_input(frame_of(rng, 1000), tmp_path / "in.npy")
    assert run(model, source, "-o", tmp_path / "out.parquet", "--batch-size", 100) == 130
    assert capsys.readouterr().err == "nnexposed predict: interrupted\n"
    assert sorted(os.listdir(tmp_path)) == ["in.npy", "model.npz"]


def test_command_line_errors_have_no_traceback(tmp_path, model):
    """The installed command, end to end: an argparse error and a data error."""
    command = [sys.executable, "-m", "nnexposed", "predict", model]
    result = subprocess.run([*command, str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy"),
                             "--batch-size", "0"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "expected a positive integer, got '0'" in result.stderr
    np.save(tmp_path / "in.npy", np.zeros((3, 4)))
    result = subprocess.run([*command, str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "got shape (3, 4)" in result.stderr
    assert not (tmp_path / "o.npy").exists()
