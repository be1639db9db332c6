"""bench/run.py runs on a tiny subset and writes its results; no timing is ever asserted."""

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
if not (BENCH / "run.py").exists():  # tests copied out of the source tree, run on a wheel
    pytest.skip("bench/ is not beside these tests", allow_module_level=True)
CASES = ["N1:1", "N1:7"]  # one batch-1 and one small batched case: seconds, every code path
PEERS = ["torch", "onnxruntime", "numba", "numba-parallel"]


def run_bench(out, *extra, env=None):
    result = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--repeat", "1", "--settle", "0",
         "--cases", ",".join(CASES), "--out", str(out), *extra],
        check=False, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result


def check_results(out, peers=PEERS):
    results = json.loads((out / "results.json").read_text())
    rows = results["results"]
    assert [row["id"] for row in rows] == CASES
    for row in rows:
        for impl in ("nnexposed", "numpy"):
            entry = row["impls"][impl]
            assert entry["status"] == "ok", entry
            assert entry["us"] > 0 and entry["repeats"] == 1
        for impl in peers:
            assert row["impls"][impl]["status"] in ("ok", "skipped"), row["impls"][impl]
        assert row["speedup_vs_numpy"] > 0
    batched = rows[1]
    assert set(batched["memory"]) == {"nnexposed", "numpy"}
    assert batched["memory"]["numpy"]["output_bytes"] == 7 * 2 * 4
    assert "cpu_model" in results["machine"] and "threads" in results

    markdown = (out / "RESULTS.md").read_text()
    for label in ("N1 batch 1", "N1 batch 7"):
        assert sum(line.startswith(f"| {label} |") for line in markdown.splitlines()) >= 2
    return results


def test_bench_writes_results(tmp_path):
    result = run_bench(tmp_path)
    results = check_results(tmp_path)
    assert "| N1 batch 1 |" in result.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "speedup.png").stat().st_size > 0
    for impl in PEERS:  # an installed peer is timed and checked against forward_numpy
        module = "numba" if impl.startswith("numba") else impl
        if importlib.util.find_spec(module) is not None and (
                impl != "onnxruntime" or importlib.util.find_spec("onnx") is not None):
            assert results["results"][1]["impls"][impl]["status"] == "ok"


def test_bench_without_peers(tmp_path):
    """Peers and matplotlib made unimportable: skipped with a note, the rest still runs."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("torch", "onnx", "onnxruntime", "numba", "matplotlib"):
        (blocked / f"{module}.py").write_text(
            f"raise ImportError('no {module} here', name={module!r})\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocked), env.get("PYTHONPATH")]))
    out = tmp_path / "out"
    run_bench(out, env=env)
    results = check_results(out)
    for row in results["results"]:
        for impl in PEERS:
            assert row["impls"][impl]["status"] == "skipped"
    assert not (out / "speedup.png").exists()
    assert "skipped" in (out / "RESULTS.md").read_text()


def load_run_module():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_cases():
    run = load_run_module()
    assert run.parse_cases("N1:1, n3:64") == [("N1", 1), ("N3", 64)]
    assert run.parse_cases("N1:1_000") == [("N1", 1000)]
    assert run.parse_cases("N2") == [case for case in run.CASES if case[0] == "N2"]
    for bad in ("N9:1", "N1:0", "N1:x", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            run.parse_cases(bad)


def test_bench_per_isa(tmp_path):
    """--isa runs each build in its own process, NumPy's OpenBLAS held to the same class of
    CPU, and writes a table per build."""
    result = run_bench(tmp_path, "--isa", "baseline", "--impls", "numpy", "--no-plot")
    results = check_results(tmp_path / "isa-baseline", peers=[])
    assert results["settings"]["isa"] == "baseline"
    assert results["settings"]["expect_isa"] == "baseline"
    run = load_run_module()
    expected_coretype = run.OPENBLAS_CORETYPES["baseline"] if run.X86_64 else None
    assert results["machine"]["environment"]["OPENBLAS_CORETYPE"] == expected_coretype
    table = (tmp_path / "ISA.md").read_text()
    assert table in result.stdout
    assert "## baseline: NumPy's OpenBLAS as" in table
    for label in ("N1 batch 1", "N1 batch 7"):
        assert sum(line.startswith(f"| {label} |") for line in table.splitlines()) == 1


def test_bench_refuses_another_isa(tmp_path):
    """A child that does not get the kernels it was started for measures nothing."""
    env = dict(os.environ, NNEXPOSED_ISA="baseline")
    result = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--repeat", "1", "--cases", "N1:1",
         "--out", str(tmp_path), "--expect-isa", "avx512"],
        check=False, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 2
    assert "asked for the avx512 kernels, got baseline" in result.stderr
    assert not (tmp_path / "results.json").exists()


def test_parse_isas():
    run = load_run_module()
    assert run.parse_isas("AVX2, baseline") == ["avx2", "baseline"]
    assert run.parse_isas("all") == ["avx512", "avx2", "baseline"]
    for bad in ("sse9", ",", "avx2,neon"):
        with pytest.raises(argparse.ArgumentTypeError):
            run.parse_isas(bad)
    assert run.without_options(["--isa", "all", "--quick", "--out=x", "--repeat", "3"],
                               "--isa", "--out") == ["--quick", "--repeat", "3"]


def test_contention_bench_writes_results(tmp_path):
    """bench/contention.py on one tiny case and every condition: the files, the rows, and the
    busy-loop process ended. No timing is asserted."""
    result = subprocess.run(
        [sys.executable, str(BENCH / "contention.py"), "--cases", "N1:1", "--rounds", "1",
         "--round-seconds", "0.05", "--process-seconds", "0.2", "--processes", "2",
         "--settle", "0", "--impls", "default,threads=1,numpy", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "contention.json").read_text())
    rows = {row["condition"]: row for row in results["rows"]}
    assert set(rows) == {"idle", "busy", "processes"}
    for condition in ("idle", "busy"):
        for impl in ("default", "threads=1", "numpy"):
            entry = rows[condition]["impls"][impl]
            assert entry["calls"] >= 10 and 0 < entry["mean_us"] and 0 < entry["p99_us"]
    for impl in ("default", "threads=1", "numpy"):
        assert len(rows["processes"]["impls"][impl]["per_process"]) == 2
        assert rows["processes"]["impls"][impl]["calls"] > 0
    with pytest.raises(ProcessLookupError):  # the busy loop was ended
        os.kill(rows["busy"]["busy_pid"], 0)
    markdown = (tmp_path / "CONTENTION.md").read_text()
    assert "| N1 batch 1 | busy |" in markdown and "| N1 batch 1 |" in markdown
