"""The kernels of nnexposed compiled for the baseline instruction set (see _kernels/core.pxi)."""

include "_kernels/core.pxi"
