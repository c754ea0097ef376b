/* bench/bench_util.h - what the benchmark programs in bench/ share: fatal errors that name the
 * program (define BENCH_NAME before including), a check of kiln calls, a small random
 * generator, and the options every GPU benchmark takes (--iterations, --warmup, --device).
 * Header-only, for benchmarks: it exits on errors, which the library never does.
 */
#ifndef KILN_BENCH_UTIL_H
#define KILN_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

#define DIE(...)                            \
  do {                                      \
    fprintf(stderr, "%s: ", BENCH_NAME);    \
    fprintf(stderr, __VA_ARGS__);           \
    fprintf(stderr, "\n");                  \
    exit(1);                                \
  } while (0)
#define REQUIRE(expr)                                                                    \
  do {                                                                                   \
    kiln_status s_ = (expr);                                                             \
    if (s_ != KILN_OK) DIE("%s:%d: %s: %s", __FILE__, __LINE__, #expr, kiln_last_error()); \
  } while (0)

/* Uniform in [-1, 1) (xorshift64, fixed seed: every run times the same data). */
static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;
static inline float uniform(void) {
  bench_rng ^= bench_rng << 13, bench_rng ^= bench_rng >> 7, bench_rng ^= bench_rng << 17;
  return (float)((bench_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* --iterations N --warmup N --device N; prints the usage and exits on anything else. */
static inline void bench_options(int argc, char **argv, int *iterations, int *warmup, int *device) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc) *iterations = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) *warmup = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--device") && i + 1 < argc) *device = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--iterations N] [--warmup N] [--device N]\n", BENCH_NAME);
      exit(2);
    }
  }
  if (*iterations < 1) *iterations = 1;
}

#endif /* KILN_BENCH_UTIL_H */
