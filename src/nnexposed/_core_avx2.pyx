"""The kernels of nnexposed compiled for the avx2 instruction set (see _kernels/core.pxi)."""

include "_kernels/core.pxi"
