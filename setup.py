"""Build the compiled kernels of nnexposed.

Portable optimisation flags only: a wheel must run on any CPU of its platform tag.
The kernels (``src/nnexposed/_kernels/``) are compiled once per instruction set:
``nnexposed._core_baseline`` (x86-64-v2 on x86-64, the compiler's default elsewhere) and, on
x86-64 only, ``nnexposed._core_avx2`` (AVX2, FMA, F16C) and ``nnexposed._core_avx512`` (AVX-512
F, CD, BW, DQ, VL); ``nnexposed._dispatch`` imports the best one the CPU runs, as told by
``nnexposed._cpu``. ``nnexposed._cpu`` and ``nnexposed._settings`` (the settings every build
reads) are compiled once, with the baseline flags.

Environment variables:

- ``NNEXPOSED_NATIVE=1`` compiles for the build machine (``-march=native``) and skips the
  per-ISA variants; for local experiments only, never for wheels.
- ``NNEXPOSED_OPENMP=0`` builds without OpenMP; ``1`` (default) uses it when the compiler has
  it and falls back to a serial build otherwise; ``require`` fails the build without it.
- ``NNEXPOSED_OPENMP_PREFIX``: where libomp is installed (``include/omp.h``, ``lib/``), for
  Apple clang; Homebrew's libomp is found without it.
"""

import glob
import os
import shutil
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

X86_64_PROBE = """
#if !(defined(__x86_64__) || defined(_M_X64)) || defined(_M_ARM64EC)
#error not x86-64
#endif
int main(void) { return 0; }
"""

# Extension name -> (compile flags for gcc/clang, for MSVC) on top of the common flags.
# 512-bit vectors: with gcc's generic tuning AVX-512 code stays at 256 bits, measured 10-20%
# slower on small batched networks on an AMD EPYC (a 32-sample tile is two zmm registers).
X86_64_VARIANTS = {
    "nnexposed._core_baseline": (["-march=x86-64-v2"], []),
    "nnexposed._core_avx2": (
        ["-march=x86-64-v2", "-mavx2", "-mfma", "-mf16c"], ["/arch:AVX2"]),
    "nnexposed._core_avx512": (
        ["-march=x86-64-v2", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512cd",
         "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"],
        ["/arch:AVX512"]),
}
ISA_NAMES = {"nnexposed._core_baseline": "baseline", "nnexposed._core_avx2": "avx2",
             "nnexposed._core_avx512": "avx512"}
# Compiled once, with the flags of the baseline kernels. nnexposed._quantized's ISA-specific
# kernels carry per-function target attributes and are chosen at run time.
BASELINE_MODULES = ("nnexposed._core_baseline", "nnexposed._cpu", "nnexposed._settings",
                    "nnexposed._quantized")
# Without contraction into fused multiply-adds (gcc/clang flag; MSVC does not contract by
# default), so that the int8 kernels round as their NumPy reference does.
GNU_MODULE_FLAGS = {"nnexposed._quantized": ["-ffp-contract=off"]}
# Spelled out for compilers that do not know -march=x86-64-v2 (gcc < 11, clang < 12).
X86_64_V2_FALLBACK = ["-msse3", "-mssse3", "-msse4.1", "-msse4.2", "-mpopcnt", "-mcx16"]


def _openmp_mode():
    value = os.environ.get("NNEXPOSED_OPENMP", "1").strip().lower()
    if value in ("0", "false", "no", "off", ""):
        return "off"
    if value in ("require", "required", "force"):
        return "require"
    return "auto"


def _flag_enabled(name, default):
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


def _try_build(compiler, source_text, compile_args=(), link_args=(), link=True):
    """True when ``source_text`` compiles (and links) with these arguments."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(source_text)
        try:
            objects = compiler.compile([source], output_dir=tmp,
                                       extra_postargs=list(compile_args))
            if link:
                compiler.link_executable(objects, "probe", output_dir=tmp,
                                         extra_postargs=list(link_args))
        except Exception:
            return False
    return True


def _libomp_prefixes():
    """Where Apple clang may find libomp: NNEXPOSED_OPENMP_PREFIX, then Homebrew's."""
    prefixes = []
    if os.environ.get("NNEXPOSED_OPENMP_PREFIX"):
        prefixes.append(os.environ["NNEXPOSED_OPENMP_PREFIX"])
    prefixes += ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    if shutil.which("brew"):
        try:
            prefixes.append(subprocess.run(["brew", "--prefix", "libomp"], capture_output=True,
                                           text=True, check=True).stdout.strip())
        except Exception:
            pass
    seen = []
    for prefix in prefixes:
        if prefix and prefix not in seen and os.path.exists(os.path.join(prefix, "include",
                                                                         "omp.h")):
            seen.append(prefix)
    return seen


def _openmp_flags(compiler):
    """(compile_args, link_args) that enable OpenMP with this compiler, or None."""
    mode = _openmp_mode()
    if mode == "off":
        return None
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        # Apple clang has no OpenMP runtime of its own: it takes libomp's header and library.
        candidates = [(["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                       [f"-L{prefix}/lib", "-lomp"]) for prefix in _libomp_prefixes()]
        candidates += [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for compile_args, link_args in candidates:
        if _try_build(compiler, OPENMP_PROBE, compile_args, link_args):
            return compile_args, link_args
    message = (f"nnexposed: no OpenMP with this compiler (tried {candidates}); "
               f"{'building serial kernels' if mode == 'auto' else 'NNEXPOSED_OPENMP=require'}")
    if mode == "require":
        raise RuntimeError(message + ": install OpenMP (macOS: brew install libomp) or set "
                                     "NNEXPOSED_OPENMP=1 to allow a serial build")
    print(message, file=sys.stderr)
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
    """Adds optimisation, ISA and OpenMP flags, and records them in ``_build_info.py``."""

    def build_extensions(self):
        compiler = self.compiler
        msvc = compiler.compiler_type == "msvc"
        native = _flag_enabled("NNEXPOSED_NATIVE", "0")
        if msvc:
            flags = ["/O2"]
        else:
            flags = ["-O3", "-fno-math-errno"]
            if native:
                flags.append("-march=native")
        link_flags = []
        openmp = _openmp_flags(compiler)
        if openmp is not None:
            flags += openmp[0]
            link_flags += openmp[1]

        # The per-ISA variants only where the compiler targets x86-64 (not for arm64, nor a
        # universal2 build), and not when -march=native already picks the build machine's.
        variant_flags = {}
        if not native and _try_build(compiler, X86_64_PROBE, link=False):
            for name, (gnu, ms) in X86_64_VARIANTS.items():
                extra = ms if msvc else gnu
                if not msvc and "-march=x86-64-v2" in extra and not _try_build(
                        compiler, "int main(void) { return 0; }", ["-march=x86-64-v2"],
                        link=False):
                    extra = [f for f in extra if f != "-march=x86-64-v2"] + X86_64_V2_FALLBACK
                variant_flags[name] = extra
        self.extensions = [ext for ext in self.extensions
                           if ext.name in BASELINE_MODULES or ext.name in variant_flags]
        baseline_flags = variant_flags.get("nnexposed._core_baseline", [])
        for ext in self.extensions:
            isa_flags = variant_flags.get(ext.name, baseline_flags)
            own_flags = [] if msvc else GNU_MODULE_FLAGS.get(ext.name, [])
            ext.extra_compile_args = flags + isa_flags + own_flags + list(ext.extra_compile_args)
            ext.extra_link_args = link_flags + list(ext.extra_link_args)
        super().build_extensions()
        self._write_build_info(
            compiler=_compiler_version(compiler),
            flags=" ".join(dict.fromkeys(flags + link_flags)),  # -fopenmp compiles and links
            openmp=openmp is not None,
            native=native,
            variants={ISA_NAMES[ext.name]: " ".join(variant_flags.get(ext.name, []))
                      for ext in self.extensions if ext.name in ISA_NAMES},
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
        name,
        [f"src/nnexposed/{name.split('.')[1]}.pyx"],
        include_dirs=[np.get_include(), "src/nnexposed"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")],
        depends=glob.glob("src/nnexposed/_kernels/*"),
    )
    for name in ("nnexposed._cpu", "nnexposed._settings", "nnexposed._quantized", *X86_64_VARIANTS)
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            # State written after import is atomic (settings, counters, the BLAS lookup; see
            # _kernels/atomics.h) or per thread (config_context), the kernels allocate their
            # workspace per call and a CompiledNetwork is immutable once built: safe without
            # the GIL.
            "freethreading_compatible": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
