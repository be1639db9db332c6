"""The kernels of nnexposed compiled for the avx512 instruction set (see _kernels/core.pxi)."""

include "_kernels/core.pxi"
