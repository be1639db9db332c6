"""``nnexposed.show_versions()``: what a bug report needs to know, as scikit-learn's."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

# Run-time dependencies, then what builds the kernels and what the benchmarks compare against.
DEPENDENCIES = ("nnexposed", "numpy", "scipy", "threadpoolctl", "pip", "setuptools", "Cython")
BUILD_KEYS = ("compiler", "flags", "openmp", "isa", "isa_supported", "isa_installed",
              "threads", "blas")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, dict[str, object]]:
    """The sections that :func:`show_versions` prints, as dictionaries.

    Returns
    -------
    dict of str to dict
        ``"System"`` (Python, its executable, the machine), ``"Python dependencies"``
        (installed versions, ``"not installed"`` for the absent ones) and ``"Kernels"``
        (compiler and flags of the build, OpenMP, the instruction sets used, supported and
        installed, threads, BLAS).
    """
    from nnexposed.benchmark import machine_info

    info = machine_info()
    return {
        "System": {
            "python": sys.version.replace("\n", " "),
            "executable": sys.executable,
            "machine": platform.platform(),
            "processor": info["processor"],
            "cpu_count": info["cpu_count"],
        },
        "Python dependencies": {name: _version(name) for name in DEPENDENCIES},
        "Kernels": {key: info[key] for key in BUILD_KEYS},
    }


def show_versions() -> None:
    """Print the versions of Python, nnexposed, its dependencies and the kernels' build.

    For bug reports: the build of the kernels in use; ``nnexposed info`` prints the same.

    Returns
    -------
    None
        Prints the sections of ``versions()``.

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.show_versions()  # doctest: +ELLIPSIS
    System:
    ...
    """
    sections = versions()
    width = max(len(key) for section in sections.values() for key in section)
    print("\n\n".join(
        "\n".join([f"{title}:", *(f"{key:>{width}}: {value}" for key, value in section.items())])
        for title, section in sections.items()))
