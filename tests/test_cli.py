"""The nnexposed command runs: bench (tiny), summary, info."""

import json
import subprocess
import sys

import pytest

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
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("3-5-5-5-2", "1", "float64"), ("3-5-5-5-2", "40", "float64"),
        ("4-3", "1", "float64"), ("4-3", "40", "float64")]
    assert all(r[-1].endswith("x") and float(r[-1][:-1]) > 0 for r in rows)
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
