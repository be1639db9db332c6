"""The CPUs this process may use: its affinity mask and its cgroup's CPU quota (Linux).

A container limited to 2 CPUs (``docker run --cpus 2``, a Kubernetes CPU limit) still sees
every core of the host in ``os.cpu_count()``, and so does OpenMP. Threads beyond the quota do
not run in parallel: the kernel throttles the whole cgroup for the rest of each period, which
stalls a forward pass for milliseconds. So the default thread count is capped by
:func:`available_cpus`.

Every reader takes the root of the file system to read (``/`` normally), so the tests can fake
``/proc`` and ``/sys`` with a directory of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["affinity_cpus", "available_cpus", "cgroup_cpu_limit"]


def affinity_cpus() -> int:
    """CPUs the affinity mask lets this process run on (``taskset``, ``cpuset``), as
    ``os.process_cpu_count()`` (Python 3.13+, which also honours ``-X cpu_count``) sees them;
    ``os.cpu_count()`` where the OS has no affinity masks."""
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:
        count = process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count()
    return max(1, count or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_v2(text: str | None) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD")."""
    fields = (text or "").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(quota_text: str | None, period_text: str | None) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none)."""
    try:
        quota, period = int((quota_text or "").strip()), int((period_text or "").strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _mounts(root: Path) -> list[tuple[str, str, str, str]]:
    """(mount point, root of the mount, file system type, super options) of each cgroup
    mount in /proc/self/mountinfo."""
    mounts = []
    for line in (_read(root / "proc/self/mountinfo") or "").splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            mounts.append((fields[4], fields[3], tail[0], tail[2]))
    return mounts


def _cgroup_dirs(root: Path, mount_point: str, mount_root: str, path: str) -> list[Path]:
    """The directories of a cgroup ``path`` and of its ancestors up to the mount's root."""
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root):]
    elif mount_root != "/":
        path = "/"  # the cgroup lies outside this mount (a container's view): its root
    base = root / mount_point.lstrip("/")
    parts = [p for p in path.split("/") if p and p != ".."]
    return [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: str | os.PathLike[str] = "/") -> float | None:
    """CPUs the cgroup CPU quota of this process allows (e.g. 1.5), the tightest one along
    its cgroup's ancestors, cgroup v2 or v1; None without a quota or off Linux."""
    root = Path(root)
    limits: list[float | None] = []
    mounts = _mounts(root)
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/"):
            continue
        if hierarchy == "0" and controllers == "":
            for mount_point, mount_root, kind, _ in mounts or [("/sys/fs/cgroup", "/",
                                                                "cgroup2", "")]:
                if kind == "cgroup2":
                    for folder in _cgroup_dirs(root, mount_point, mount_root, path):
                        limits.append(_quota_v2(_read(folder / "cpu.max")))
                    break
        elif "cpu" in controllers.split(","):
            for mount_point, mount_root, kind, options in mounts:
                if kind == "cgroup" and "cpu" in options.split(","):
                    for folder in _cgroup_dirs(root, mount_point, mount_root, path):
                        limits.append(_quota_v1(_read(folder / "cpu.cfs_quota_us"),
                                                _read(folder / "cpu.cfs_period_us")))
                    break
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def available_cpus(root: str | os.PathLike[str] = "/") -> int:
    """CPUs this process may keep busy at once: its affinity, capped by its cgroup's quota
    rounded down (threads beyond a quota of 1.5 CPUs get throttled), at least 1."""
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, int(limit)))
    return cpus
