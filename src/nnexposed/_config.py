"""Runtime settings of nnexposed: one owner, read by every kernel build.

``set_config`` changes the process-wide settings; ``config_context`` changes some of them
for the calling thread only, until the ``with`` block ends; ``get_config`` gives the settings
in effect for the calling thread. The values live in C (``nnexposed._settings``), where the
kernels read them once per call.

    >>> import nnexposed
    >>> with nnexposed.config_context(threads=1):
    ...     nnexposed.get_config()["threads"]
    1
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nnexposed import _settings, kernels
from nnexposed._validation import as_positive_int

MAX_THREADS: int = _settings.MAX_THREADS
"""Upper bound on the threads of one forward pass; larger requests are capped here."""

_MODES = {"never": _settings.NEVER, "auto": _settings.AUTO, "always": _settings.ALWAYS}
_MODE_NAMES = {code: name for name, code in _MODES.items()}
_MODE_SETTINGS = ("blas", "shared_panels")
# Thresholds in multiply-adds, weights or samples, up to 2**62 (they are C long longs).
_THRESHOLD_SETTINGS = ("parallel_min_macs", "row_split_min_macs", "share_min_macs",
                       "blas_min_weights", "blas_min_batch", "panel_max_weights")
_THRESHOLD_MAX = 1 << 62

_local = threading.local()   # .overrides: the calling thread's config_context stack
_process_lock = threading.Lock()


def clamp_threads(value: Any, name: str = "threads") -> int:
    """A positive thread count, at most MAX_THREADS (more means "as many as allowed")."""
    return min(as_positive_int(value, name), MAX_THREADS)


def _encode(name: str, value: Any) -> int:
    """The C value of one setting, after checking it."""
    if name == "threads":
        return 0 if value is None or value == "auto" else clamp_threads(value, "threads")
    if name in _MODE_SETTINGS:
        if not isinstance(value, str) or value not in _MODES:
            raise ValueError(f"{name} must be one of 'auto', 'always', 'never', got {value!r}")
        return _MODES[value]
    if name in _THRESHOLD_SETTINGS:
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value <= _THRESHOLD_MAX):
            raise ValueError(f"{name} must be an int from 0 to 2**62, got {value!r}")
        return value
    raise TypeError(f"unknown setting {name!r}: expected one of "
                    f"{', '.join(_settings.SETTING_NAMES)}")


def _decode(name: str, value: int) -> Any:
    if name == "threads":
        return "auto" if value == 0 else value
    if name in _MODE_SETTINGS:
        return _MODE_NAMES[value]
    return value


def _encode_all(settings: dict[str, Any]) -> dict[str, int]:
    return {name: _encode(name, value) for name, value in settings.items()}


def get_config() -> dict[str, Any]:
    """The settings in effect for the calling thread.

    Returns
    -------
    config : dict
        ``threads`` ("auto" or a count), ``blas`` and ``shared_panels`` ("auto", "always" or
        "never") and the size thresholds of the kernel paths (see ``set_config``).
    """
    return {name: _decode(name, value) for name, value in _settings.effective_settings().items()}


def set_config(**settings: Any) -> None:
    """Change settings for the whole process (a thread inside ``config_context`` keeps the
    values its context sets).

    Parameters
    ----------
    threads : int or "auto"
        Threads a forward pass may use, at most MAX_THREADS; "auto" (or None):
        ``OMP_NUM_THREADS``, else the CPUs this process may use (its affinity mask, capped by
        its cgroup's CPU quota; docs/threads.md).
    blas : {"auto", "always", "never"}
        SciPy's BLAS for wide layers of large batches: "auto" only where it beats the own
        kernels (layers of at least 2**22 weights, in builds without AVX-512), "always"
        wherever a layer is wide enough.
    shared_panels : {"auto", "always", "never"}
        One-sample forwards of mid-sized networks sharing each layer among threads: "auto"
        when they follow one another closely (the threads are still awake).
    parallel_min_macs, row_split_min_macs, share_min_macs : int
        Multiply-adds from which a call uses threads, a one-sample layer splits its rows
        over threads, a one-sample network may share its layers among threads.
    blas_min_weights, blas_min_batch : int
        BLAS takes layers of at least this many weights, on blocks of at least this many
        samples.
    panel_max_weights : int
        Layers of at most this many weights keep a copy as panels for one-sample forwards;
        read when a network is built.

    The thresholds exist so that tests can reach every path at small sizes; the defaults
    are what the benchmarks chose.
    """
    encoded = _encode_all(settings)
    with _process_lock:
        for name, value in encoded.items():
            _settings.set_process_setting(name, value)


@contextmanager
def config_context(**settings: Any) -> Iterator[None]:
    """Change settings for the calling thread until the ``with`` block ends.

    Other threads, and the threads the kernels start for this one's calls, are unaffected;
    contexts nest.

    Parameters
    ----------
    **settings
        The arguments of ``set_config``.

    Returns
    -------
    context manager
        Applies the settings on entering the ``with`` block, restores the previous ones on
        leaving it.

    Raises
    ------
    TypeError
        For an unknown setting.
    ValueError
        For a setting's invalid value.
    """
    encoded = _encode_all(settings)
    stack = _local.__dict__.setdefault("overrides", [])
    values = dict(stack[-1].values) if stack else {}
    values.update(encoded)
    override = _settings.Override(values)
    stack.append(override)
    _settings.install(override)
    try:
        yield
    finally:
        stack.pop()
        _settings.install(stack[-1] if stack else None)


def get_num_threads() -> int:
    """Threads a forward pass may use (at most ``MAX_THREADS``)."""
    threads = _settings.effective_settings()["threads"]
    return threads if threads > 0 else min(kernels.default_threads(), MAX_THREADS)


def set_num_threads(n: int | None) -> None:
    """Let forward passes use up to ``n`` threads; ``None`` restores the default."""
    set_config(threads="auto" if n is None else clamp_threads(n, "n"))


def path_counts() -> dict[str, int]:
    """For tests: how many forward passes took each kernel path, and how many OpenMP parallel
    regions they started, while counting (``counting_paths``) since the last reset."""
    return _settings.path_counts()


def reset_path_counts() -> None:
    _settings.reset_path_counts()


@contextmanager
def counting_paths() -> Iterator[dict[str, int]]:
    """For tests: count kernel paths in the ``with`` block; the dict it gives is filled with
    the counts of the block (keys as ``path_counts``) when it ends. Counts calls from every
    thread."""
    counts: dict[str, int] = {}
    before = _settings.path_counts()
    _settings.count_paths(True)
    try:
        yield counts
    finally:
        _settings.count_paths(False)
        after = _settings.path_counts()
        counts.update({name: after[name] - before[name] for name in after})
