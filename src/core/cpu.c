/* src/core/cpu.c - run-time checks of the x86-64 instruction sets kiln's host code uses (see
 * cpu.h), made once (pthread_once: CPUID is slow, in a virtual machine especially).
 * __builtin_cpu_supports answers AVX/AVX2/FMA (it checks that the OS saves the YMM state too);
 * F16C comes from CPUID (leaf 1, ECX) as not every compiler's builtin knows it. */
#include "core/cpu.h"

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int avx2_fma, f16c, portable_only;

static void detect(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  int avx = __builtin_cpu_supports("avx") != 0;
  avx2_fma = avx && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f16c = avx && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#endif
}

int kiln_cpu_has_avx2_fma(void) {
  pthread_once(&once, detect);
  return avx2_fma && !portable_only;
}

int kiln_cpu_has_f16c(void) {
  pthread_once(&once, detect);
  return f16c && !portable_only;
}

void kiln_cpu_set_portable(int portable) { portable_only = portable != 0; }
