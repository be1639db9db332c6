"""The nnexposed command runs: bench (tiny), summary, demo, info; every mistake is one line."""

import json
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import nnexposed
from nnexposed import cli
from tests.helpers import cli_error


def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "nnexposed", *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def table_rows(stdout):
    """(network, batch, dtype) of each row of the bench table (above a busy-machine note)."""
    lines = stdout.splitlines()[2:]
    if "" in lines:
        lines = lines[:lines.index("")]
    return [tuple(line.split()[:3]) for line in lines]


def test_bench_prints_table_and_writes_json(tmp_path):
    target = tmp_path / "bench.json"
    result = run_cli("bench", "--repeat", "1", "--batch", "1,40", "--sizes", "3,5,5,5,2",
                     "--sizes", "4,3", "--dtype", "float64", "--json", str(target))
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["network", "batch", "dtype"]
    rows = [line.split() for line in lines[2:6]]
    assert table_rows(result.stdout) == [
        ("3-5-5-5-2", "1", "float64"), ("3-5-5-5-2", "40", "float64"),
        ("4-3", "1", "float64"), ("4-3", "40", "float64")]
    assert all(r[6].endswith("x") and float(r[6][:-1]) > 0 for r in rows)
    # On a busy machine, other processes' share of the CPUs is said beside the table.
    below = lines[6:]
    assert below == [] or (len(below) == 2 and below[0] == ""
                            and below[1].startswith("Note: other processes used"))
    assert "[4/4] done" in result.stderr
    data = json.loads(target.read_text())
    assert len(data["results"]) == 4
    assert {"nnexposed_us", "numpy_us", "python_us", "speedup_vs_numpy"} <= set(
        data["results"][0])
    assert all(row["nnexposed_us"] > 0 and row["numpy_us"] > 0 for row in data["results"])
    assert data["machine"]["numpy"]
    assert [path.name for path in tmp_path.iterdir()] == ["bench.json"]  # no temporary left


def test_bench_takes_sizes_and_models_positionally(tmp_path):
    path = tmp_path / "model.npz"
    nnexposed.save(nnexposed.Network.from_sizes([4, 6, 3], dtype="float64", seed=0), path)
    result = run_cli("bench", "3,5,2", str(path), "--repeat", "1", "--batch", "2",
                     "--activation", "tanh")
    assert table_rows(result.stdout) == [("3-5-2", "2", "float32"), ("4-6-3", "2", "float64")]


def test_bench_a_saved_model(tmp_path):
    path = tmp_path / "model.npz"
    nnexposed.save(nnexposed.Network.from_sizes([4, 6, 3], dtype="float64", seed=0), path)
    result = run_cli("bench", "--model", str(path), "--repeat", "1", "--batch", "1,8")
    assert table_rows(result.stdout) == [("4-6-3", "1", "float64"), ("4-6-3", "8", "float64")]


def test_summary_command():
    result = run_cli("summary", "3,5,5,5,2")
    assert "Total params: 92 (float32, 368 bytes)" in result.stdout


def test_summary_of_a_huge_network_allocates_nothing(capsys):
    tracemalloc.start()
    try:
        assert cli.main(["summary", "100000,100000,10", "--activation", "tanh"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().out
    assert peak < 1_000_000, peak
    assert re.search(r"100000 -> 100000 +tanh", out) and re.search(r"100000 -> 10 +linear", out)
    assert "Total params: 10,001,100,010 (float32, 40,004,400,040 bytes)" in out


def test_summary_table_equals_the_networks():
    network = nnexposed.Network.from_sizes([4, 6, 3], "elu", "softmax", dtype="float64")
    table = nnexposed.network.summary_table([4, 6, 3], ["elu", "softmax"], "float64")
    assert table == network.summary()


def test_summary_of_a_saved_model(tmp_path):
    network = nnexposed.Network.from_sizes([4, 6, 3], "elu", "softmax", dtype="float64", seed=0)
    path = tmp_path / "model.npz"
    nnexposed.save(network, path)
    result = run_cli("summary", str(path))
    assert "Network (4, 6, 3)" in result.stdout and "elu" in result.stdout
    assert "Total params: 51 (float64" in result.stdout
    result = run_cli("summary", str(path), "--dtype", "float32")
    assert "Total params: 51 (float32" in result.stdout


def test_info_command():
    result = run_cli("info")
    lines = result.stdout.splitlines()
    assert {"System:", "Python dependencies:", "Kernels:"} <= set(lines)
    fields = dict(line.strip().split(": ", 1) for line in lines if ": " in line)
    assert fields["nnexposed"] == nnexposed.__version__
    assert fields["openmp"] in ("True", "False") and fields["isa"]
    flags = fields["flags"].split()
    assert len(flags) == len(set(flags)), flags  # each flag once


def test_show_versions(capsys):
    nnexposed.show_versions()
    out = capsys.readouterr().out
    assert re.search(r"^ *numpy: \d", out, re.MULTILINE)
    assert re.search(r"^ *isa: (baseline|avx2|avx512)$", out, re.MULTILINE)


@pytest.mark.parametrize(("args", "message"), [
    (["bench", "--sizes", "3"], "argument --sizes: expected at least two positive layer sizes"),
    (["bench", "--batch", "a"], "argument --batch: expected comma-separated positive integers"),
    (["bench", "--batch", "0"], "argument --batch: expected comma-separated positive integers"),
    (["bench", "--batch", "1,-5"], "argument --batch: expected comma-separated positive"),
    (["bench", "--repeat", "0"], "argument --repeat: expected a positive integer, got '0'"),
    (["bench", "--repeat", "abc"], "argument --repeat: expected a positive integer, got 'abc'"),
    (["demo", "--repeat", "abc"], "argument --repeat: expected a positive integer, got 'abc'"),
    (["summary", "3,0,2"], "expected at least two positive layer sizes like 3,5,5,5,2"),
    (["summary"], "the following arguments are required: SIZES|MODEL"),
    (["summary", "3,5", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_arguments_are_one_line(args, message, capsys):
    status, err = cli_error(args, capsys)
    assert status == 2
    assert message in err and "--help" in err


def test_json_path_is_checked_before_the_benchmark(tmp_path, capsys):
    missing = tmp_path / "absent" / "out.json"
    status, err = cli_error(["bench", "--json", str(missing)], capsys)
    assert status == 2 and "argument --json: cannot write" in err and "no folder" in err
    status, err = cli_error(["bench", "--json", str(tmp_path)], capsys)
    assert status == 2 and "it is a folder" in err


@pytest.mark.parametrize("args", [["summary", "{}"], ["bench", "{}"], ["bench", "--model", "{}"]])
@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_not_a_model_file_is_worded_alike(args, kind, tmp_path, capsys):
    path = tmp_path / "absent.npz"
    if kind == "folder":
        path = tmp_path / "adir"
        path.mkdir()
    status, err = cli_error([arg.format(path) for arg in args], capsys)
    assert status == 2
    reason = "a folder" if kind == "folder" else "which does not exist"
    assert f"saved model file, got {str(path)!r}, {reason}" in err


@pytest.mark.parametrize("command", ["summary", "bench"])
def test_bad_model_file_is_a_clear_error(tmp_path, command, capsys):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    status, err = cli_error([command, str(path)], capsys)
    assert status == 1
    assert f"nnexposed {command}: error: cannot load model" in err and "broken.npz" in err


@pytest.mark.parametrize("option", ["--activation", "--output-activation"])
@pytest.mark.parametrize("command", ["summary", "bench"])
def test_activation_options_are_refused_for_models(tmp_path, command, option, capsys):
    path = tmp_path / "model.npz"
    nnexposed.save(nnexposed.Network.from_sizes([4, 3], seed=0), path)
    status, err = cli_error([command, str(path), option, "tanh"], capsys)
    assert status == 1
    assert f"{option} applies to networks given by layer sizes" in err


def test_demo_prints_accuracy_and_latency():
    result = run_cli("demo", "--repeat", "1")
    out = result.stdout
    match = re.search(r"Accuracy on 300 held-out test images: ([\d.]+)% \((\d+)/300\)", out)
    assert match and float(match.group(1)) > 90
    assert "64-64-32-10" in out
    latency = re.search(r"one image per call\s+([\d.]+)µs\s+([\d.]+)µs\s+([\d.]+)x", out)
    assert latency and float(latency.group(1)) > 0 and float(latency.group(2)) > 0


def test_summary_with_input_shows_layer_values(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((20, 3)))
    result = run_cli("summary", "3,5,5,5,2", "--input", str(tmp_path / "x.npy"))
    assert "Dead units" in result.stdout and result.stdout.count("/5") == 3
    status, err = cli_error(["summary", "3,5,5,5,2", "--input", "1,2"], capsys)
    assert status == 1 and "expected 3 values per sample" in err
    status, err = cli_error(["summary", "3,5,5,5,2", "--input", "1,x"], capsys)
    assert status == 2 and "comma-separated numbers" in err
