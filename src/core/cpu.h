/* src/core/cpu.h - the x86-64 instruction sets kiln's host code dispatches on at run time:
 * AVX2 + FMA (the row arithmetic of decoding, core/rowmath.c) and F16C (fp16 -> fp32
 * conversions, core/dtype.c). Every query answers 0 on other CPUs and architectures, where the
 * portable C code runs. kiln_cpu_set_portable(1) makes every query answer 0, so that tests and
 * benchmarks can run the portable code on a machine that has the instructions.
 * Thread safety: the queries may be called from any thread; kiln_cpu_set_portable is for tests
 * and benchmarks, called while no other thread uses kiln. Not a public header. */
#ifndef KILN_CORE_CPU_H
#define KILN_CORE_CPU_H

/* 1 when the CPU (and the OS) can run AVX2 and FMA instructions. */
int kiln_cpu_has_avx2_fma(void);
/* 1 when the CPU (and the OS) can run F16C's conversion instructions (vcvtph2ps). */
int kiln_cpu_has_f16c(void);
/* 1: every query above answers 0 from now on (the portable code runs); 0: they answer again what
 * the CPU has. */
void kiln_cpu_set_portable(int portable);

#endif
