/* Can this CPU and OS run the code of the AVX2 (AVX2+FMA+F16C) or AVX-512 (F+CD+BW+DQ+VL)
   builds? 0 on non-x86. Compiled with the baseline flags, so calling them never executes an
   instruction the CPU may lack. */
#ifndef NNX_CPU_FEATURES_H
#define NNX_CPU_FEATURES_H

#if defined(_MSC_VER) && !defined(__clang__) && (defined(_M_X64) || defined(_M_IX86))
#include <intrin.h>
static unsigned long long nnx_xcr0(int leaf1_ecx) {
    return (leaf1_ecx & (1 << 27)) ? _xgetbv(0) : 0;    /* OSXSAVE, then XCR0 */
}
static int nnx_cpu_avx2(void) {
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuid(r, 1);
    int ecx1 = r[2];
    if ((nnx_xcr0(ecx1) & 0x6) != 0x6) return 0;         /* OS saves XMM and YMM state */
    if (!(ecx1 & (1 << 12)) || !(ecx1 & (1 << 28)) || !(ecx1 & (1 << 29))) return 0;
    __cpuidex(r, 7, 0);                                  /* FMA, AVX, F16C above; AVX2 */
    return (r[1] & (1 << 5)) != 0;
}
static int nnx_cpu_avx512(void) {
    int r[4];
    if (!nnx_cpu_avx2()) return 0;
    __cpuid(r, 1);
    if ((nnx_xcr0(r[2]) & 0xe6) != 0xe6) return 0;       /* and opmask, ZMM state */
    __cpuidex(r, 7, 0);                                  /* F, DQ, CD, BW, VL */
    unsigned int need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    return ((unsigned int)r[1] & need) == need;
}
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
static int nnx_cpu_avx2(void) {
    unsigned int a, b, c, d;
    __builtin_cpu_init();                  /* the builtins check the OS saves the state */
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 29)) != 0;          /* F16C, not named by every compiler's builtin */
}
#if defined(__APPLE__)
#include <sys/sysctl.h>
static int nnx_sysctl_flag(const char* name) {
    int value = 0;
    size_t size = sizeof(value);
    return sysctlbyname(name, &value, &size, NULL, 0) == 0 && value != 0;
}
static int nnx_cpu_avx512(void) {     /* macOS enables the AVX-512 state on first use */
    return nnx_cpu_avx2() && nnx_sysctl_flag("hw.optional.avx512f")
        && nnx_sysctl_flag("hw.optional.avx512cd") && nnx_sysctl_flag("hw.optional.avx512bw")
        && nnx_sysctl_flag("hw.optional.avx512dq") && nnx_sysctl_flag("hw.optional.avx512vl");
}
#else
static int nnx_cpu_avx512(void) {
    return nnx_cpu_avx2() && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#endif
#else
static int nnx_cpu_avx2(void) { return 0; }
static int nnx_cpu_avx512(void) { return 0; }
#endif

#endif
