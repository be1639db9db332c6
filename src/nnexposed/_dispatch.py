"""Choose the compiled kernels for this CPU, once, at import.

The same kernels (``_kernels/core.pxi``) are compiled once per instruction set (see setup.py):
``nnexposed._core_baseline`` (x86-64-v2 on x86-64, the platform default elsewhere) and, on
x86-64, ``nnexposed._core_avx2`` (AVX2, FMA, F16C) and ``nnexposed._core_avx512`` (AVX-512 F,
CD, BW, DQ, VL). ``build`` is the best installed one that this CPU and OS can run, ``ISA`` its
name; ``nnexposed.kernels`` gives its functions to the rest of the package.

``NNEXPOSED_ISA=baseline|avx2|avx512`` asks for a given one, to test or debug: a lower one is
used as asked; one that this CPU cannot run, that is not installed, or an unknown name gives a
``RuntimeWarning`` and the best one that runs, never an illegal instruction. Unset, empty or
``auto``: the best one.
"""

import importlib
import importlib.util
import os
import warnings

from nnexposed._cpu import cpu_supports

ENV_VAR = "NNEXPOSED_ISA"
# Best first.
ISAS = ("avx512", "avx2", "baseline")
MODULES = {
    "baseline": "nnexposed._core_baseline",
    "avx2": "nnexposed._core_avx2",
    "avx512": "nnexposed._core_avx512",
}


def installed():
    """The ISAs whose kernels are installed, best first."""
    return tuple(isa for isa in ISAS
                 if isa == "baseline" or importlib.util.find_spec(MODULES[isa]) is not None)


def supported():
    """The ISAs that this CPU and OS can run, best first (whether installed or not)."""
    return tuple(isa for isa in ISAS if cpu_supports(isa))


def select(requested, supported, installed):
    """(isa, warning or None): the kernels to load for a value of NNEXPOSED_ISA.

    ``supported`` and ``installed`` are collections of ISA names; "baseline" is always usable.
    """
    usable = [isa for isa in ISAS
              if isa == "baseline" or (isa in supported and isa in installed)]
    best = usable[0]
    requested = (requested or "").strip().lower()
    if requested in ("", "auto"):
        return best, None
    if requested not in ISAS:
        return best, (f"{ENV_VAR}={requested!r} is not one of auto, "
                      f"{', '.join(reversed(ISAS))}; using {best}")
    if requested in usable:
        return requested, None
    reason = ("this CPU cannot run it" if requested not in supported
              else "its kernels are not installed")
    return best, f"{ENV_VAR}={requested}: {reason}; using {best}"


def _load():
    isa, message = select(os.environ.get(ENV_VAR), supported(), installed())
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    while True:
        try:
            return isa, importlib.import_module(MODULES[isa])
        except ImportError as error:  # installed but broken: say so, take the next one
            if isa == "baseline":
                raise
            fallback = select(None, supported(), [i for i in installed() if ISAS.index(i)
                                                  > ISAS.index(isa)])[0]
            warnings.warn(f"could not import the {isa} kernels ({error}); using {fallback}",
                          RuntimeWarning, stacklevel=3)
            isa = fallback


ISA, build = _load()
