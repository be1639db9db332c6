"""The nnexposed command runs: bench (tiny), summary, demo, info."""

import json
import re
import subprocess
import sys

import pytest

import nnexposed
from nnexposed import cli


def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "nnexposed", *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_bench_prints_table_and_writes_json(tmp_path):
    target = tmp_path / "bench.json"
    result = run_cli("bench", "--repeat", "1", "--batch", "1,40", "--sizes", "3,5,5,5,2",
                     "--sizes", "4,3", "--dtype", "float64", "--json", str(target))
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["network", "batch", "dtype"]
    rows = [line.split() for line in lines[2:6]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
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


def test_summary_command():
    result = run_cli("summary", "3,5,5,5,2")
    assert "Total params: 92" in result.stdout


def test_info_command():
    result = run_cli("info")
    assert "nnexposed" in result.stdout and "openmp" in result.stdout
    assert any(line.split()[:1] == ["isa"] for line in result.stdout.splitlines())


@pytest.mark.parametrize("args", [
    ["bench", "--sizes", "3"], ["bench", "--batch", "a"], ["summary", "3,0,2"],
    ["bench", "--repeat", "0"], [],
])
def test_bad_arguments_exit_with_usage(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_summary_of_a_saved_model(tmp_path):
    network = nnexposed.Network.from_sizes([4, 6, 3], "elu", "softmax", dtype="float64", seed=0)
    path = tmp_path / "model.npz"
    nnexposed.save(network, path)
    result = run_cli("summary", str(path))
    assert "Network (4, 6, 3)" in result.stdout and "elu" in result.stdout
    assert "Total params: 51 (float64" in result.stdout
    result = run_cli("summary", str(path), "--dtype", "float32")
    assert "Total params: 51 (float32" in result.stdout


def test_bench_a_saved_model(tmp_path):
    path = tmp_path / "model.npz"
    nnexposed.save(nnexposed.Network.from_sizes([4, 6, 3], dtype="float64", seed=0), path)
    result = run_cli("bench", "--model", str(path), "--repeat", "1", "--batch", "1,8")
    rows = [line.split() for line in result.stdout.splitlines()[2:4]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("4-6-3", "1", "float64"),
                                                  ("4-6-3", "8", "float64")]


def test_summary_of_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["summary", str(tmp_path / "absent.npz")])
    assert exit_info.value.code == 2
    assert "is neither an existing model file nor layer sizes" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["summary", "bench"])
def test_bad_model_file_is_a_clear_error(tmp_path, command, capsys):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    args = [command, str(path)] if command == "summary" else [command, "--model", str(path)]
    assert cli.main(args) == 1
    error = capsys.readouterr().err
    assert "cannot load model" in error and "broken.npz" in error


def test_demo_prints_accuracy_and_latency():
    result = run_cli("demo", "--repeat", "1")
    out = result.stdout
    match = re.search(r"Accuracy on 300 held-out test images: ([\d.]+)% \((\d+)/300\)", out)
    assert match and float(match.group(1)) > 90
    assert "64-64-32-10" in out
    latency = re.search(r"one image per call\s+([\d.]+)µs\s+([\d.]+)µs\s+([\d.]+)x", out)
    assert latency and float(latency.group(1)) > 0 and float(latency.group(2)) > 0
