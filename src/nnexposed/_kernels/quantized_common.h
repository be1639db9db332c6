/* Shared by the reduced-precision kernels (int8.h, half.h): per-function ISA targets and the
 * run-time CPU checks that choose among them. Every kernel for an ISA extension is compiled
 * with a target attribute (gcc, clang) and only ever called after the check for that
 * extension passed, so the module itself builds for the baseline of its platform. MSVC
 * compiles intrinsics of any ISA without attributes; other CPUs (ARM) get the portable
 * kernels only. */
#ifndef NNX_QUANTIZED_COMMON_H
#define NNX_QUANTIZED_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#if !defined(_M_ARM64EC)
#define NNX_X86 1
#endif
#endif

#if defined(NNX_X86)
#include <immintrin.h>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define NNX_TARGET(features)
#else
#include <cpuid.h>
#define NNX_TARGET(features) __attribute__((target(features)))
#endif
#endif

#define NNX_TARGET_AVX2 NNX_TARGET("avx2,fma,f16c")
#define NNX_TARGET_AVX512 NNX_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")
#define NNX_TARGET_VNNI \
    NNX_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#define NNX_TARGET_BF16 \
    NNX_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")

/* Kernel sets, best first within each family; the Cython side maps names to these. */
enum {
    NNX_Q_PORTABLE = 0,
    NNX_Q_AVX2 = 1,
    NNX_Q_AVX512 = 2,       /* AVX-512 F/BW/DQ/VL; half kernels convert in registers */
    NNX_Q_AVX512_VNNI = 3,  /* int8: vpdpbusd */
    NNX_Q_AVX512_BF16 = 4,  /* bfloat16: vdpbf16ps */
};

/* CPUID leaf 7 bits the float dispatch does not check (it has already checked that the OS
 * saves the AVX-512 state before these are asked about). */
static int nnx_cpuid_leaf7(unsigned int subleaf, unsigned int regs[4]) {
#if defined(NNX_X86) && defined(_MSC_VER) && !defined(__clang__)
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuidex(r, 7, (int)subleaf);
    regs[0] = (unsigned int)r[0]; regs[1] = (unsigned int)r[1];
    regs[2] = (unsigned int)r[2]; regs[3] = (unsigned int)r[3];
    return 1;
#elif defined(NNX_X86)
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, subleaf, regs[0], regs[1], regs[2], regs[3]);
    return 1;
#else
    (void)subleaf; (void)regs;
    return 0;
#endif
}

static int nnx_cpu_avx512_vnni(void) {
    unsigned int r[4];
    return nnx_cpuid_leaf7(0, r) && (r[2] & (1u << 11)) != 0;
}

static int nnx_cpu_avx512_bf16(void) {
    unsigned int r[4];
    return nnx_cpuid_leaf7(0, r) && r[0] >= 1 && nnx_cpuid_leaf7(1, r) && (r[0] & (1u << 5)) != 0;
}

/* round-to-nearest-even of |v| < 2**22 as an int, as np.rint then astype(int32): adding
 * 1.5 * 2**23 leaves the rounded integer in the low mantissa bits (no SSE4.1 needed). */
#define NNX_ROUND_MAGIC 12582912.0f
static inline int32_t nnx_round_small(float v) {
    return (int32_t)(v + NNX_ROUND_MAGIC) - 12582912;
}

#endif
