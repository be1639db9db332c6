"""Runtime choice of the kernels: per-ISA builds, NNEXPOSED_ISA, what `nnexposed info` says."""

import json
import os
import platform
import subprocess
import sys

import pytest

import nnexposed
from nnexposed import _cpu, _dispatch, benchmark, kernels

ISAS = ("baseline", "avx2", "avx512")
X86_64 = platform.machine().lower() in ("x86_64", "amd64")

# A forward pass on every ISA's kernels against the NumPy reference, in a fresh interpreter
# because the choice is made once, at import.
CHECK = """
import json, sys, warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from nnexposed import _dispatch, benchmark, Network
    from nnexposed.reference import forward_numpy
rng = np.random.default_rng(0)
for dtype, tol in (("float32", 2e-4), ("float64", 1e-10)):
    for sizes, batch in (((3, 5, 5, 5, 2), 1), ((3, 5, 5, 5, 2), 1000), ((64, 300, 130, 10), 77)):
        for act in ("relu", "sigmoid", "tanh", "leaky_relu"):
            net = Network.from_sizes(sizes, act, "softmax", dtype=dtype, seed=1)
            x = rng.standard_normal((batch, sizes[0])).astype(dtype)
            np.testing.assert_allclose(net(x), forward_numpy(net, x), rtol=tol, atol=tol / 10)
print(json.dumps({"isa": _dispatch.ISA, "module": _dispatch.build.__name__,
                  "info_isa": benchmark.machine_info()["isa"],
                  "builds_loaded": sorted(m for m in sys.modules
                                          if m.startswith("nnexposed._core")),
                  "warnings": [str(w.message) for w in caught]}))
"""


def run_check(isa):
    env = dict(os.environ)
    env.pop("NNEXPOSED_ISA", None)
    if isa is not None:
        env["NNEXPOSED_ISA"] = isa
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def built_variants():
    try:
        from nnexposed import _build_info
    except ImportError:
        return None
    return getattr(_build_info, "variants", None)


@pytest.mark.parametrize("isa", ISAS)
def test_forward_on_each_isa(isa):
    if isa not in _dispatch.installed():
        pytest.skip(f"the {isa} kernels are not installed")
    if not _cpu.cpu_supports(isa):
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    out = run_check(isa)
    # Choosing the kernels loads no other build than the one chosen.
    assert out == {"isa": isa, "module": _dispatch.MODULES[isa], "info_isa": isa,
                   "builds_loaded": [_dispatch.MODULES[isa]], "warnings": []}


def test_default_is_best_usable():
    best = next(isa for isa in _dispatch.ISAS
                if isa in _dispatch.installed() and isa in _dispatch.supported())
    out = run_check(None)
    assert out["isa"] == out["info_isa"] == best and out["warnings"] == []
    assert run_check("auto")["isa"] == best


def test_unknown_value_warns_and_uses_best():
    out = run_check("avx9000")
    assert out["isa"] == run_check(None)["isa"]
    assert len(out["warnings"]) == 1 and "'avx9000' is not one of" in out["warnings"][0]


def test_unsupported_value_falls_back_with_warning():
    missing = [isa for isa in ISAS
               if isa not in _dispatch.supported() or isa not in _dispatch.installed()]
    if not missing:
        pytest.skip("this CPU runs every ISA and all are installed")
    out = run_check(missing[0])
    assert out["isa"] != missing[0] and len(out["warnings"]) == 1
    assert f"NNEXPOSED_ISA={missing[0]}:" in out["warnings"][0]


@pytest.mark.parametrize("requested, supported, installed, expected, warns", [
    (None, ISAS, ISAS, "avx512", None),
    ("", ISAS, ISAS, "avx512", None),
    (" AUTO ", ISAS, ISAS, "avx512", None),
    ("avx2", ISAS, ISAS, "avx2", None),
    ("Baseline", ISAS, ISAS, "baseline", None),
    ("avx512", ("avx2", "baseline"), ISAS, "avx2", "this CPU cannot run it"),
    ("avx2", ("baseline",), ISAS, "baseline", "this CPU cannot run it"),
    (None, ("avx2", "baseline"), ISAS, "avx2", None),
    (None, ISAS, ("avx2", "baseline"), "avx2", None),
    ("avx512", ISAS, ("avx2", "baseline"), "avx2", "not installed"),
    (None, ISAS, ("baseline",), "baseline", None),
    (None, ("baseline",), ("baseline",), "baseline", None),
    ("sse2", ISAS, ISAS, "avx512", "is not one of"),
])
def test_select(requested, supported, installed, expected, warns):
    isa, message = _dispatch.select(requested, supported, installed)
    assert isa == expected
    if warns is None:
        assert message is None
    else:
        assert warns in message


def test_cpu_supports():
    assert _cpu.cpu_supports("baseline") is True
    for isa in ("avx2", "avx512"):
        assert isinstance(_cpu.cpu_supports(isa), bool)
    if _cpu.cpu_supports("avx512"):
        assert _cpu.cpu_supports("avx2")
    if not X86_64:
        assert not _cpu.cpu_supports("avx2") and not _cpu.cpu_supports("avx512")
    with pytest.raises(ValueError, match="unknown ISA"):
        _cpu.cpu_supports("avx9000")


def test_cpu_supports_agrees_with_linux_cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags")
    has_avx2 = {"avx2", "fma", "f16c"} <= set(flags)
    has_avx512 = has_avx2 and {"avx512f", "avx512cd", "avx512bw", "avx512dq",
                               "avx512vl"} <= set(flags)
    assert _cpu.cpu_supports("avx2") == has_avx2
    assert _cpu.cpu_supports("avx512") == has_avx512


def test_variants_built_are_installed():
    variants = built_variants()
    if variants is None:
        pytest.skip("no build information")
    assert set(variants) <= set(_dispatch.installed())
    assert "baseline" in variants
    from nnexposed import _build_info
    if X86_64 and not _build_info.native:
        assert set(variants) == set(ISAS)


def test_info_reports_isa_and_openmp():
    info = benchmark.machine_info()
    assert info["isa"] == _dispatch.ISA
    assert info["openmp"] == kernels.openmp_enabled() == _dispatch.build.openmp_enabled()
    assert kernels.ACTIVATION_NAMES == nnexposed.ACTIVATIONS


def test_openmp_when_expected(pytestconfig):
    # --expect-openmp is given by the wheel builds' test runs: every wheel has OpenMP.
    if not pytestconfig.getoption("expect_openmp"):
        pytest.skip("--expect-openmp is not given")
    assert kernels.openmp_enabled()
