"""The thread policy: CPUs available (affinity, cgroup quota, faked /proc and /sys), the busy
notice of the benchmarks. Never a timing."""

import os
import subprocess
import sys

import pytest

import nnexposed
from nnexposed import _cpu_limits, benchmark
from nnexposed import kernels

# /proc/self/mountinfo lines of the two layouts: a cgroup v2 host or container, and a v1
# (hybrid) host with the cpu controller mounted on its own.
MOUNTINFO_V2 = ("30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
                "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
MOUNTINFO_V1 = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")


def fake_root(tmp_path, cgroup, mountinfo, files):
    """A directory laid out as / with /proc/self/cgroup, /proc/self/mountinfo and ``files``
    ({path relative to /: content})."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    if mountinfo is not None:
        (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    return tmp_path


@pytest.mark.parametrize("cpu_max, expected", [
    ("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000\n", 1.5),
    ("50000 100000\n", 0.5), ("garbage\n", None), ("0 100000\n", None)])
def test_cgroup_v2_quota(tmp_path, cpu_max, expected):
    root = fake_root(tmp_path, "0::/\n", MOUNTINFO_V2, {"sys/fs/cgroup/cpu.max": cpu_max})
    assert _cpu_limits.cgroup_cpu_limit(root) == expected


def test_cgroup_v2_tightest_quota_along_the_ancestors(tmp_path):
    root = fake_root(tmp_path, "0::/user.slice/app.service\n", MOUNTINFO_V2, {
        "sys/fs/cgroup/cpu.max": "max 100000\n",
        "sys/fs/cgroup/user.slice/cpu.max": "300000 100000\n",
        "sys/fs/cgroup/user.slice/app.service/cpu.max": "max 100000\n"})
    assert _cpu_limits.cgroup_cpu_limit(root) == 3.0
    (tmp_path / "sys/fs/cgroup/user.slice/app.service/cpu.max").write_text("100000 50000\n")
    assert _cpu_limits.cgroup_cpu_limit(root) == 2.0


def test_cgroup_v2_without_mountinfo_reads_sys_fs_cgroup(tmp_path):
    root = fake_root(tmp_path, "0::/\n", None, {"sys/fs/cgroup/cpu.max": "100000 100000\n"})
    assert _cpu_limits.cgroup_cpu_limit(root) == 1.0


def test_cgroup_v2_mount_root_of_a_container(tmp_path):
    """A container sees its own cgroup as the root of the mount (mountinfo's 4th field)."""
    mountinfo = MOUNTINFO_V2.replace(" / /sys/fs/cgroup ", " /kubepods/pod1 /sys/fs/cgroup ")
    root = fake_root(tmp_path, "0::/kubepods/pod1\n", mountinfo,
                     {"sys/fs/cgroup/cpu.max": "250000 100000\n"})
    assert _cpu_limits.cgroup_cpu_limit(root) == 2.5


@pytest.mark.parametrize("quota, period, expected", [
    ("-1\n", "100000\n", None), ("200000\n", "100000\n", 2.0), ("50000\n", "100000\n", 0.5),
    ("x\n", "100000\n", None)])
def test_cgroup_v1_quota(tmp_path, quota, period, expected):
    root = fake_root(tmp_path, "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n", MOUNTINFO_V1, {
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": quota,
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": period})
    assert _cpu_limits.cgroup_cpu_limit(root) == expected


def test_no_cgroup_files(tmp_path):
    """Not Linux, or /proc unreadable: no quota."""
    assert _cpu_limits.cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize("affinity, cpu_max, expected", [
    (8, "max 100000", 8), (8, "200000 100000", 2), (8, "150000 100000", 1),
    (8, "50000 100000", 1), (2, "400000 100000", 2), (1, "max 100000", 1)])
def test_available_cpus(tmp_path, monkeypatch, affinity, cpu_max, expected):
    """Affinity capped by the quota rounded down, at least 1."""
    monkeypatch.setattr(_cpu_limits, "affinity_cpus", lambda: affinity)
    root = fake_root(tmp_path, "0::/\n", MOUNTINFO_V2, {"sys/fs/cgroup/cpu.max": cpu_max})
    assert _cpu_limits.available_cpus(root) == expected


def test_affinity_cpus_follows_the_mask(monkeypatch):
    if hasattr(os, "process_cpu_count"):
        monkeypatch.setattr(os, "process_cpu_count", lambda: 3)
        assert _cpu_limits.affinity_cpus() == 3
        monkeypatch.delattr(os, "process_cpu_count")
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5})
        assert _cpu_limits.affinity_cpus() == 2
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert _cpu_limits.affinity_cpus() == 1


def test_busy_notice():
    assert benchmark.busy_notice(None) is None
    assert benchmark.busy_notice(0.05) is None
    assert "47%" in benchmark.busy_notice(0.47)


def test_others_busy_share():
    """Machine CPU seconds minus this process's over wall time and CPUs, clipped to [0, 1]."""
    cpus = os.cpu_count() or 1
    start = (100.0, 1.0, 10.0)
    assert benchmark.others_busy(start, (100.0 + cpus * 0.5 + 0.2, 1.2, 11.0)) == \
        pytest.approx(0.5)
    assert benchmark.others_busy(start, (100.0, 2.0, 11.0)) == 0.0
    assert benchmark.others_busy(start, None) is None
    assert benchmark.others_busy(start, (100.0, 1.0, 10.0)) is None


def test_bench_table_says_when_others_were_busy():
    row = {"network": "3-5-2", "batch": 1, "dtype": "float32", "nnexposed_us": 1.0,
           "numpy_us": 5.0, "python_us": None, "speedup_vs_numpy": 5.0}
    quiet = benchmark.format_table([{**row, "others_busy": 0.02}])
    assert "others busy" not in quiet and "Note" not in quiet
    busy = benchmark.format_table([{**row, "others_busy": 0.02}, {**row, "others_busy": 0.5}])
    lines = busy.splitlines()
    assert lines[0].split()[-2:] == ["others", "busy"]
    assert lines[2].endswith(" 2%") and lines[3].endswith(" 50%")
    assert lines[-1].startswith("Note: other processes used 50%")


def test_default_threads_capped_by_the_cpus_available():
    previous = kernels.default_threads()
    try:
        kernels.cap_default_threads(1)
        assert kernels.default_threads() == 1 and nnexposed.get_num_threads() == 1
        nnexposed.set_num_threads(2)  # an explicit setting is not capped
        assert nnexposed.get_num_threads() == 2
    finally:
        nnexposed.set_num_threads(None)
        kernels.cap_default_threads(previous)
    assert kernels.default_threads() == previous


def child_threads(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(env_changes)
    result = subprocess.run([sys.executable, "-c", code + "; import nnexposed; "
                             "print(nnexposed.get_num_threads())"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not kernels.openmp_enabled(),
                    reason="needs affinity masks and OpenMP")
def test_default_threads_follow_the_affinity_mask():
    assert child_threads("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})") \
        == 1
    assert child_threads("pass") == min(_cpu_limits.available_cpus(), kernels.MAX_THREADS)


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
def test_explicit_omp_num_threads_is_kept():
    assert child_threads("pass", OMP_NUM_THREADS="3") == 3
