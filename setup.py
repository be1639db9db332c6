"""Build the compiled kernels of nnexposed.

Portable optimisation flags only: a wheel must run on any CPU of its platform tag.
``NNEXPOSED_NATIVE=1`` adds ``-march=native`` for local experiments (never for wheels);
``NNEXPOSED_OPENMP=0`` builds without OpenMP.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = """
#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
"""


def _flag_enabled(name, default):
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


def _openmp_flags(compiler):
    """(compile_args, link_args) that enable OpenMP with this compiler, or None."""
    if not _flag_enabled("NNEXPOSED_OPENMP", "1"):
        return None
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for compile_args, link_args in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
                compiler.link_executable(
                    objects, "probe", output_dir=tmp, extra_postargs=link_args
                )
            except Exception:
                continue
        return compile_args, link_args
    return None


def _compiler_version(compiler):
    if compiler.compiler_type == "msvc":
        return "msvc"
    try:
        out = subprocess.run(
            [compiler.compiler_so[0], "--version"], capture_output=True, text=True, check=True
        ).stdout
        return out.splitlines()[0].strip()
    except Exception:
        return compiler.compiler_so[0]


class BuildExt(build_ext):
    """Adds optimisation and OpenMP flags, and records them in ``_build_info.py``."""

    def build_extensions(self):
        compiler = self.compiler
        if compiler.compiler_type == "msvc":
            flags = ["/O2"]
        else:
            flags = ["-O3", "-fno-math-errno"]
            if _flag_enabled("NNEXPOSED_NATIVE", "0"):
                flags.append("-march=native")
        link_flags = []
        openmp = _openmp_flags(compiler)
        if openmp is not None:
            flags += openmp[0]
            link_flags += openmp[1]
        for ext in self.extensions:
            ext.extra_compile_args = flags + list(ext.extra_compile_args)
            ext.extra_link_args = link_flags + list(ext.extra_link_args)
        super().build_extensions()
        self._write_build_info(
            compiler=_compiler_version(compiler),
            flags=" ".join(flags + link_flags),
            openmp=openmp is not None,
        )

    def _write_build_info(self, **info):
        text = '"""Written by setup.py at build time."""\n\n' + "".join(
            f"{key} = {value!r}\n" for key, value in info.items()
        )
        folders = {os.path.join(self.build_lib, "nnexposed")}
        if self.inplace or getattr(self, "editable_mode", False):
            folders.add(self.get_finalized_command("build_py").get_package_dir("nnexposed"))
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "_build_info.py"), "w") as f:
                f.write(text)


extensions = [
    Extension(
        "nnexposed._core",
        ["src/nnexposed/_core.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
