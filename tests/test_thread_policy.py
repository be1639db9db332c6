"""The thread policy: CPUs available (affinity, cgroup quota, faked /proc and /sys), the busy
notice of the benchmarks. Never a timing."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nnexposed
from nnexposed import _config, _cpu_limits, benchmark, forward, kernels
from tests.helpers import random_network

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
    assert child_threads("pass") == min(_cpu_limits.available_cpus(), _config.MAX_THREADS)


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
def test_explicit_omp_num_threads_is_kept():
    assert child_threads("pass", OMP_NUM_THREADS="3") == 3


# ---------------------------------------------------------------------------------------------
# Back-off: the judgement of a parallel forward, on made-up times
# ---------------------------------------------------------------------------------------------

MS = 1_000_000


@pytest.fixture
def policy():
    """The back-off switched on and reset; reset and switched off again afterwards."""
    kernels.reset_thread_policy()
    previous = kernels.allow_backoff(True)
    yield kernels._build
    kernels.allow_backoff(previous)
    kernels.reset_thread_policy()


def test_no_loss_no_backoff(policy):
    now = policy._now_ns()
    # threads awake (a parallel forward just ended): faster than the caller alone, or as fast
    policy._observe_parallel_forward(now - 200_000, now - 150_000, 0, 0)
    assert policy._observe_parallel_forward(now - 100_000, now, 60_000, 100_000) == 0
    assert policy._observe_parallel_forward(now, now + 50_000, 100_000, 100_000) == 0
    state = kernels.thread_policy()
    assert state["backoffs_started"] == 0 and state["backing_off_ns"] == 0
    assert state["parallel_forwards"] == 3


def test_a_loss_backs_off_in_proportion(policy):
    now = policy._now_ns()
    policy._observe_parallel_forward(now - 200_000, now - 150_000, 0, 0)
    # 3 ms lost (a thread kept off its core for a time slice): 50 x 3 ms on one thread
    backoff = policy._observe_parallel_forward(now - 100_000, now, 3_100_000, 100_000)
    assert backoff == 50 * 3_000_000
    state = kernels.thread_policy()
    assert state["backoffs_started"] == 1 and state["last_backoff_ns"] == backoff
    assert 0 < state["backing_off_ns"] <= backoff and state["debt_ns"] == 0


def test_small_losses_add_up_and_savings_pay_them(policy):
    """Losses under a fifth of the caller's time are no stalls: they back off only once they
    add up to more than 0.1 ms beyond the savings."""
    now = policy._now_ns()
    policy._observe_parallel_forward(now - 200_000, now - 150_000, 0, 0)
    for _ in range(3):  # 30 us lost each time, of 1 ms
        assert policy._observe_parallel_forward(now, now + 10_000, 1_030_000, 1_000_000) == 0
    assert kernels.thread_policy()["debt_ns"] == 90_000
    assert policy._observe_parallel_forward(now, now + 10_000, 500_000, 1_000_000) == 0
    assert kernels.thread_policy()["debt_ns"] == -410_000
    for _ in range(4):  # 120 us lost each time
        assert policy._observe_parallel_forward(now, now + 10_000, 1_120_000, 1_000_000) == 0
    assert policy._observe_parallel_forward(now, now + 10_000, 1_120_000, 1_000_000) == 10 * MS
    assert kernels.thread_policy()["backoffs_started"] == 1


def test_the_credit_of_savings_is_capped_at_10_ms(policy):
    now = policy._now_ns()
    policy._observe_parallel_forward(now - 200_000, now - 150_000, 0, 0)
    assert policy._observe_parallel_forward(now, now + 10_000, 0, 1_000 * MS) == 0
    assert kernels.thread_policy()["debt_ns"] == -10 * MS
    # 10.05 ms lost of 100 ms (no stall): paid but for 50 us; 0.1 ms more backs off
    assert policy._observe_parallel_forward(now, now + 10_000, 110_050_000, 100 * MS) == 0
    assert kernels.thread_policy()["debt_ns"] == 50_000
    assert policy._observe_parallel_forward(now, now + 10_000, 100_100_000, 100 * MS) > 0


def test_stalls_more_often_than_one_in_200_back_off(policy):
    """A forward slower than the caller alone by a fifth is a stall: four in a row pass (the
    credit of savings pays them), the fifth backs off; then one more passes per 200
    forwards."""
    now = policy._now_ns()
    policy._observe_parallel_forward(now - 200_000, now - 150_000, 0, 0)
    policy._observe_parallel_forward(now, now + 10_000, 0, 1_000 * MS)  # full credit
    for _ in range(4):  # 1 ms lost, of 0.1 ms
        assert policy._observe_parallel_forward(now, now + 10_000, 1_100_000, 100_000) == 0
    assert policy._observe_parallel_forward(now, now + 10_000, 1_100_000, 100_000) == 50 * MS
    assert kernels.thread_policy()["debt_ns"] == 0
    later = now + 1_000 * MS
    for _ in range(199):
        policy._observe_parallel_forward(later, later + 10_000, 50_000, 100_000)
    assert policy._observe_parallel_forward(later, later + 10_000, 1_100_000, 100_000) == 0
    assert policy._observe_parallel_forward(later, later + 10_000, 1_100_000, 100_000) > 0


def test_waking_sleeping_threads_is_no_loss(policy):
    """After a pause, the threads sleep: waking them may cost up to 0.2 ms."""
    now = policy._now_ns()
    assert policy._observe_parallel_forward(now - 10_000, now, 150_000, 10_000) == 0
    assert kernels.thread_policy()["backoffs_started"] == 0
    assert policy._observe_parallel_forward(now + 10 * MS, now + 11 * MS, 400_000, 10_000) > 0
    # the allowance forgives, it saves nothing
    kernels.reset_thread_policy()
    assert policy._observe_parallel_forward(now - 10_000, now, 10_000, 100_000) == 0
    assert kernels.thread_policy()["debt_ns"] == -90_000
    assert policy._observe_parallel_forward(now + 10 * MS, now + 11 * MS, 150_000, 100_000) == 0
    assert kernels.thread_policy()["debt_ns"] == -90_000


def test_repeated_losses_double_the_backoff_up_to_two_seconds(policy):
    now = policy._now_ns()
    policy._observe_parallel_forward(now - 200_000, now - 150_000, 0, 0)
    first = policy._observe_parallel_forward(now - 100_000, now, 300_000, 100_000)
    assert first == 10 * MS
    backoffs = [first]
    end = now + first
    for _ in range(12):  # each loss right after the previous back-off ended (threads asleep)
        backoffs.append(policy._observe_parallel_forward(end, end + 10_000, 400_000, 100_000))
        end += 10_000 + backoffs[-1]
    assert backoffs[1] == 2 * first and backoffs[2] == 4 * first
    assert max(backoffs) == backoffs[-1] == 2_000 * MS
    # a loss long after the last back-off starts again from its own size
    later = end + 60_000 * MS
    assert policy._observe_parallel_forward(later, later + 10_000, 400_000, 100_000) == 10 * MS


def backoff_ended_at(policy, ended):
    """Start a back-off of 10 ms (0.2 ms lost) with a forward that ended at ``ended``, then
    another as its first probe stalls: that one lasts 100 forwards beyond its time."""
    policy._observe_parallel_forward(ended - 200_000, ended - 150_000, 0, 0)
    assert policy._observe_parallel_forward(ended - 100_000, ended, 300_000, 100_000) == 10 * MS
    assert kernels.thread_policy()["backoff_forwards_left"] == 0
    ended += 20 * MS
    assert policy._observe_parallel_forward(ended - 100_000, ended, 1_100_000, 100_000) > 0


def test_a_backoff_whose_probe_stalls_lasts_100_forwards_beyond_its_time(policy):
    """A lone stall backs off for its time only; when the first parallel forward after it
    (a probe) stalls again, the contention lasts: 100 forwards more on one thread."""
    backoff_ended_at(policy, policy._now_ns() - 1_000 * MS)  # its time is long past
    state = kernels.thread_policy()
    assert state["backing_off_ns"] == 0 and state["backoff_forwards_left"] == 100
    assert all(policy._backing_off() for _ in range(100))
    assert not policy._backing_off()
    state = kernels.thread_policy()
    assert state["backed_off_forwards"] == 100 and state["backoff_forwards_left"] == 0


def test_backoffs_whose_probes_stall_double_their_forwards_up_to_800(policy):
    """Each back-off that starts within 16 parallel forwards of the previous one runs twice
    its forwards, so that under lasting contention the probes fall under 1 in 100 calls
    however long each call takes and however irregular the calling."""
    past = policy._now_ns() - 5_000 * MS  # the back-offs' times long past
    lengths = []
    for _ in range(6):
        for _ in range(3):  # probes that pass, then one that stalls
            policy._observe_parallel_forward(past, past + 10_000, 100_000, 100_000)
        assert policy._observe_parallel_forward(past, past + 10_000, 1_100_000, 100_000) > 0
        lengths.append(kernels.thread_policy()["backoff_forwards_left"])
        assert sum(policy._backing_off() for _ in range(1_000)) == lengths[-1]
        past += 100 * MS
    assert lengths == [0, 100, 200, 400, 800, 800]
    for _ in range(17):  # probes that pass: the next stall is a lone one
        policy._observe_parallel_forward(past, past + 10_000, 100_000, 100_000)
    assert policy._observe_parallel_forward(past, past + 10_000, 10 * MS, 100_000) > 0
    assert kernels.thread_policy()["backoff_forwards_left"] == 0


def test_the_count_of_forwards_lapses_after_10_seconds(policy):
    """A process that calls seldom gets its threads back 10 s after the back-off began."""
    backoff_ended_at(policy, policy._now_ns() - 10_030 * MS)  # the second began 20 ms later
    assert kernels.thread_policy()["backoff_forwards_left"] == 0
    assert not policy._backing_off()
    kernels.reset_thread_policy()
    backoff_ended_at(policy, policy._now_ns() - 9_000 * MS)
    assert policy._backing_off()


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
def test_forwards_run_on_one_thread_while_backing_off(policy, rng):
    network = random_network(rng, [64, 256, 64, 5], ["relu", "relu", "linear"], np.float32)
    x = rng.standard_normal((512, 64)).astype(np.float32)  # 2**24 multiply-adds: threads
    expected = forward(network, x, threads=1)
    np.testing.assert_array_equal(forward(network, x, threads=2), expected)
    assert kernels.thread_policy()["parallel_forwards"] == 1
    now = policy._now_ns()  # a made-up loss of 100 ms: 2 s on one thread
    policy._observe_parallel_forward(now, now + 100 * MS, 100 * MS, 0)
    for _ in range(3):
        np.testing.assert_array_equal(forward(network, x, threads=2), expected)
    state = kernels.thread_policy()
    assert state["parallel_forwards"] == 2 and state["backed_off_forwards"] == 3
    kernels.allow_backoff(False)  # switched off: threads again, whatever the state
    np.testing.assert_array_equal(forward(network, x, threads=2), expected)
    assert kernels.thread_policy()["parallel_forwards"] == 3


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
def test_forwards_judged_at_once_lose_no_update(policy):
    """Threads judging forwards at the same time (concurrent calls) each count: 4 x 2,000
    forwards that each saved 1 us leave 8 ms of credit, not less."""
    now = policy._now_ns()
    policy._observe_parallel_forward(now, now, 0, 0)  # threads awake: no allowance
    policy._observe_from_threads(4, 2_000, 100_000, 101_000)
    state = kernels.thread_policy()
    assert state["parallel_forwards"] == 1 + 8_000
    assert state["debt_ns"] == -8 * MS and state["backoffs_started"] == 0


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
def test_stalls_judged_at_once_start_one_backoff_at_a_time(policy):
    """Threads finding the limits passed at once start one back-off between them: the others
    see it under way."""
    now = policy._now_ns()
    policy._observe_parallel_forward(now, now, 0, 0)
    policy._observe_from_threads(4, 50, 10 * MS, 1 * MS)  # 9 ms lost each: stalls
    state = kernels.thread_policy()
    assert state["backoffs_started"] == 1 and state["parallel_forwards"] == 201
    assert state["backing_off_ns"] > 0


# ---------------------------------------------------------------------------------------------
# Work claimed as threads come free: a delayed thread changes no bit and delays nobody
# ---------------------------------------------------------------------------------------------

# Each parallel path: (network sizes, activations, batch, shared_panels setting).
PARALLEL_PATHS = {
    "shared panels": ([784, 256, 256, 10], ["relu", "relu", "softmax"], 1, "always"),
    "uneven panels": ([300, 455, 130, 3], ["tanh", "softmax", "sigmoid"], 1, "always"),
    "row chunks": ([2048, 2049, 7], ["relu", "linear"], 1, "never"),
    "blocks": ([64, 256, 64, 5], ["tanh", "leaky_relu", "softmax"], 1001, "never"),
}


def assert_one_parallel_forward(network, x, threads, expected):
    """forward(network, x, threads=threads) ran in parallel and gave ``expected`` bit for
    bit."""
    before = kernels.thread_policy()["parallel_forwards"]
    result = forward(network, x, threads=threads)
    assert kernels.thread_policy()["parallel_forwards"] == before + 1
    np.testing.assert_array_equal(result, expected)


@pytest.fixture
def delayed():
    """Calls kernels._build._delay_thread; undone afterwards."""
    yield kernels._build._delay_thread
    kernels._build._delay_thread(-1, 0)


def path_case(rng, path, dtype):
    sizes, activations, batch, sharing = PARALLEL_PATHS[path]
    network = random_network(rng, sizes, activations, dtype)
    x = rng.standard_normal((sizes[0],) if batch == 1 else (batch, sizes[0])).astype(dtype)
    return network, x, sharing


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PARALLEL_PATHS)
def test_a_thread_that_never_comes_leaves_its_work_to_the_others(rng, path, dtype, delayed):
    """Thread 1 waits until the others have finished all the work: the caller does all of it
    (with work handed out in fixed shares, this would never end)."""
    network, x, sharing = path_case(rng, path, dtype)
    expected = forward(network, x, threads=1)
    with _config.config_context(shared_panels=sharing):
        delayed(1, -1)
        assert_one_parallel_forward(network, x, 2, expected)
        assert kernels.thread_policy()["last_caller_share"] == 1.0
        assert_one_parallel_forward(network, x, 3, expected)
        delayed(0, -1)  # the caller waits: the other threads do everything
        assert_one_parallel_forward(network, x, 2, expected)
        assert kernels.thread_policy()["last_caller_share"] == 0.0


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
@pytest.mark.parametrize("member", [0, 1])
@pytest.mark.parametrize("path", PARALLEL_PATHS)
def test_a_late_thread_changes_no_bit(rng, path, member, delayed):
    """One thread waits 50 µs before each piece it claims: whoever computes a piece, the
    result is the same, bit for bit."""
    network, x, sharing = path_case(rng, path, np.float32)
    expected = forward(network, x, threads=1)
    with _config.config_context(shared_panels=sharing):
        delayed(member, 50_000)
        for threads in (2, 4):
            assert_one_parallel_forward(network, x, threads, expected)


def test_delay_hook_checks_its_argument():
    with pytest.raises(ValueError, match="ns must be >= -1"):
        kernels._build._delay_thread(1, -2)


# ---------------------------------------------------------------------------------------------
# A process-wide thread budget shared by the forward passes running at once
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def budget():
    """The kernels' test entries to the budget; every thread given back afterwards."""
    yield kernels._build
    assert kernels.threads_in_use() == 0


def test_calls_at_once_share_the_budget(budget):
    take, give_back = budget._take_threads, budget._give_back_threads
    assert take(2, 2) == 2  # alone: all it wants
    assert take(2, 2) == 1  # a second call meanwhile: its own thread only
    assert take(4, 2) == 1  # asking for 4 (above the budget): 4 less the 3 in use
    assert kernels.threads_in_use() == 4
    give_back(2)
    assert take(3, 2) == 1  # 3 less the 2 still in use
    give_back(1)
    give_back(1)
    give_back(1)
    assert take(4, 2) == 4 and take(3, 8) == 3 and take(8, 8) == 1
    give_back(4)
    give_back(3)
    give_back(1)
    assert take(3, 8) == 3 and take(8, 8) == 5
    give_back(3)
    give_back(5)


def forward_while_budget_held(budget, network, x):
    """forward(network, x, threads=2) while other calls hold every thread of the budget;
    checked to start no parallel forward and to take no thread. The result."""
    taken = budget._take_threads(2, 2)
    try:
        before = kernels.thread_policy()["parallel_forwards"]
        result = forward(network, x, threads=2)
        assert kernels.thread_policy()["parallel_forwards"] == before
        assert kernels.threads_in_use() == taken
    finally:
        budget._give_back_threads(taken)
    return result


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
@pytest.mark.parametrize("path", PARALLEL_PATHS)
def test_a_call_finding_the_budget_used_runs_on_its_own_thread(rng, path, budget):
    """While other calls hold the process's threads, a forward runs on one thread (the
    one-sample paths as one_sample), bit for bit as ever; threads again once they are back."""
    network, x, sharing = path_case(rng, path, np.float32)
    expected = forward(network, x, threads=1)
    nnexposed.set_num_threads(2)
    try:
        with _config.config_context(shared_panels=sharing):
            with _config.counting_paths() as counts:
                result = forward_while_budget_held(budget, network, x)
            np.testing.assert_array_equal(result, expected)
            assert counts["parallel_regions"] == 0
            if x.ndim == 1:
                assert counts["one_sample"] == 1
            assert_one_parallel_forward(network, x, 2, expected)
    finally:
        nnexposed.set_num_threads(None)


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
def test_python_threads_calling_at_once_stay_within_the_budget(rng, budget):
    """Four Python threads forwarding at once, 2 threads each allowed: at most the budget
    plus one thread per other call in use, never 2 per call; the same results bit for bit,
    and every thread given back."""
    import threading

    network, x, _ = path_case(rng, "blocks", np.float32)
    expected = forward(network, x, threads=1)
    callers, calls = 4, 30
    seen, results, stop = [], [], threading.Event()

    def call():
        for _ in range(calls):
            results.append(forward(network, x, threads=2))

    def watch():
        while not stop.is_set():
            seen.append(kernels.threads_in_use())

    nnexposed.set_num_threads(2)
    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=call) for _ in range(callers)]
    try:
        watcher.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        watcher.join()
        nnexposed.set_num_threads(None)
    assert len(results) == callers * calls
    for result in results:
        np.testing.assert_array_equal(result, expected)
    assert max(seen) <= 2 + callers - 1


# ---------------------------------------------------------------------------------------------
# Reduced-precision networks: the same budget, back-off and work claiming
# ---------------------------------------------------------------------------------------------

# Each parallel path of the quantized kernels: (network sizes, batch).
QUANTIZED_PATHS = {"one-sample rows": ([2048, 2048, 10], 1), "blocks": ([64, 256, 64, 5], 1001)}


def quantized_case(rng, path, precision):
    if precision == "bfloat16":
        pytest.importorskip("ml_dtypes")
    sizes, batch = QUANTIZED_PATHS[path]
    network = random_network(rng, sizes, ["relu"] * (len(sizes) - 2) + ["linear"],
                             np.float32).quantize(precision)
    x = rng.standard_normal((sizes[0],) if batch == 1 else (batch, sizes[0])).astype(np.float32)
    return network, x


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
@pytest.mark.parametrize("precision", ["int8", "bfloat16", "float16"])
@pytest.mark.parametrize("path", QUANTIZED_PATHS)
def test_quantized_work_is_claimed_as_threads_come_free(rng, path, precision, delayed):
    """A thread that never comes leaves its work to the caller, a caller that never comes
    leaves it to the others, and a late thread changes no bit."""
    network, x = quantized_case(rng, path, precision)
    expected = forward(network, x, threads=1)
    delayed(1, -1)
    assert_one_parallel_forward(network, x, 2, expected)
    assert kernels.thread_policy()["last_caller_share"] == 1.0
    delayed(0, -1)
    assert_one_parallel_forward(network, x, 2, expected)
    assert kernels.thread_policy()["last_caller_share"] == 0.0
    for member in (0, 1):
        delayed(member, 50_000)
        assert_one_parallel_forward(network, x, 3, expected)


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
@pytest.mark.parametrize("path", QUANTIZED_PATHS)
def test_quantized_forwards_back_off_with_the_float_ones(rng, path, policy):
    """One back-off for the process: a loss judged on float forwards sends int8 forwards to
    one thread too, bit for bit as ever; switched off, they use threads again."""
    network, x = quantized_case(rng, path, "int8")
    expected = forward(network, x, threads=1)
    assert_one_parallel_forward(network, x, 2, expected)
    now = policy._now_ns()
    policy._observe_parallel_forward(now, now + 100 * MS, 100 * MS, 0)
    for _ in range(3):
        np.testing.assert_array_equal(forward(network, x, threads=2), expected)
    state = kernels.thread_policy()
    assert state["parallel_forwards"] == 2 and state["backed_off_forwards"] == 3
    kernels.allow_backoff(False)
    assert_one_parallel_forward(network, x, 2, expected)


@pytest.mark.skipif(not kernels.openmp_enabled(), reason="needs OpenMP")
@pytest.mark.parametrize("path", QUANTIZED_PATHS)
def test_quantized_forwards_take_threads_from_the_budget(rng, path, budget):
    """While other calls hold the process's threads, an int8 forward runs on its own thread;
    what it takes it gives back."""
    network, x = quantized_case(rng, path, "int8")
    expected = forward(network, x, threads=1)
    nnexposed.set_num_threads(2)
    try:
        np.testing.assert_array_equal(forward_while_budget_held(budget, network, x), expected)
        assert_one_parallel_forward(network, x, 2, expected)
    finally:
        nnexposed.set_num_threads(None)


@pytest.mark.skipif(not kernels.openmp_enabled() or kernels.default_threads() < 2,
                    reason="needs OpenMP and two threads")
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_cap_on_default_threads_holds_for_every_network(rng, precision, policy):
    """One cap for the process (the CPUs it may use): float and reduced-precision forwards
    take their default threads from it alike."""
    network, x = quantized_case(rng, "blocks", "int8")
    if precision == "float32":
        sizes, _ = QUANTIZED_PATHS["blocks"]
        network = random_network(rng, sizes, ["relu", "relu", "linear"], np.float32)
    expected = forward(network, x, threads=1)
    previous = kernels.default_threads()
    try:
        kernels.cap_default_threads(1)
        np.testing.assert_array_equal(forward(network, x), expected)
        assert kernels.thread_policy()["parallel_forwards"] == 0
        kernels.cap_default_threads(2)
        np.testing.assert_array_equal(forward(network, x), expected)
        assert kernels.thread_policy()["parallel_forwards"] == 1
    finally:
        kernels.cap_default_threads(previous)
