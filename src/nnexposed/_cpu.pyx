"""Which kernel builds this CPU and OS can run.

Compiled with the baseline flags, apart from the kernels, so that choosing a build
(``nnexposed._dispatch``) loads none of them first.
"""

cdef extern from "_kernels/cpu_features.h":
    int nnx_cpu_avx2() noexcept nogil
    int nnx_cpu_avx512() noexcept nogil


def cpu_supports(isa):
    """True when this CPU and OS can run the kernels built for ``isa``: "baseline", "avx2"
    (AVX2, FMA, F16C) or "avx512" (AVX-512 F, CD, BW, DQ, VL)."""
    if isa == "baseline":
        return True
    if isa == "avx2":
        return bool(nnx_cpu_avx2())
    if isa == "avx512":
        return bool(nnx_cpu_avx512())
    raise ValueError(f"unknown ISA {isa!r}: expected 'baseline', 'avx2' or 'avx512'")
