/* tests/check.h - typed asserts for kiln's tests.
 *
 * Each CHECK prints both values and the location, counts a failure and goes on; a test's main()
 * ends with `return check_report();`, which returns 0 when every check passed and 1 otherwise.
 * CHECK_OK(expr) checks that a kiln call returned KILN_OK and prints kiln_last_error() if not.
 * check_close() compares arrays with atol/rtol and reports the worst element and the normalized
 * mean squared error; check_nmse() checks the nmse alone. Fatal problems (cannot allocate) abort.
 * SKIP_TEST(why) exits with 77, which ctest reports as skipped (GPU tests without a GPU).
 */
#ifndef KILN_TESTS_CHECK_H
#define KILN_TESTS_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/status.h"

static int check_failures_ = 0;
static int check_count_ = 0;

#define CHECK_FAIL_(...)                                           \
  do {                                                             \
    check_failures_++;                                             \
    fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__);                                  \
    fprintf(stderr, "\n");                                         \
  } while (0)

#define CHECK(cond)                                    \
  do {                                                 \
    check_count_++;                                    \
    if (!(cond)) CHECK_FAIL_("%s", #cond);             \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                             \
  do {                                                                                 \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
    check_count_++;                                                                    \
    if (check_a_ != check_b_) CHECK_FAIL_("%s == %s (%lld vs %lld)", #a, #b, check_a_, check_b_); \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                          \
  do {                                                                              \
    const char *check_a_ = (a), *check_b_ = (b);                                    \
    check_count_++;                                                                 \
    if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0)                  \
      CHECK_FAIL_("%s == %s (\"%s\" vs \"%s\")", #a, #b, check_a_ ? check_a_ : "(null)", \
                  check_b_ ? check_b_ : "(null)");                                   \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                             \
  do {                                                                                    \
    double check_a_ = (double)(a), check_b_ = (double)(b);                                \
    check_count_++;                                                                       \
    if (!(fabs(check_a_ - check_b_) <= (tol)))                                            \
      CHECK_FAIL_("%s ~= %s (%.9g vs %.9g, tol %.3g)", #a, #b, check_a_, check_b_, (double)(tol)); \
  } while (0)

#define CHECK_OK(expr)                                                                     \
  do {                                                                                     \
    kiln_status check_s_ = (expr);                                                         \
    check_count_++;                                                                        \
    if (check_s_ != KILN_OK)                                                               \
      CHECK_FAIL_("%s returned %d (%s): %s", #expr, (int)check_s_, kiln_status_str(check_s_), \
                  kiln_last_error());                                                      \
  } while (0)

#define CHECK_STATUS(expr, expected)                                                      \
  do {                                                                                    \
    kiln_status check_s_ = (expr);                                                        \
    check_count_++;                                                                       \
    if (check_s_ != (expected))                                                           \
      CHECK_FAIL_("%s returned %d (%s), expected %d (%s); message: %s", #expr, (int)check_s_, \
                  kiln_status_str(check_s_), (int)(expected), kiln_status_str(expected),  \
                  kiln_last_error());                                                     \
  } while (0)

/* The last error message contains `needle`. */
#define CHECK_MSG(needle)                                                       \
  do {                                                                          \
    check_count_++;                                                             \
    if (!strstr(kiln_last_error(), (needle)))                                   \
      CHECK_FAIL_("message \"%s\" lacks \"%s\"", kiln_last_error(), (needle)); \
  } while (0)

#define SKIP_TEST(why)                       \
  do {                                       \
    fprintf(stderr, "skipped: %s\n", (why)); \
    exit(77);                                \
  } while (0)

/* Normalized mean squared error: sum((a-b)^2) / max(sum(b^2), tiny). */
static inline double check_nmse_value(const float *got, const float *want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)got[i] - (double)want[i];
    num += d * d;
    den += (double)want[i] * (double)want[i];
  }
  return num / (den > 1e-30 ? den : 1e-30);
}

/* Every element within atol + rtol * |want|; NaN never passes. Returns 1 on success. */
static inline int check_close_(const char *what, const float *got, const float *want, int64_t n,
                               double atol, double rtol, const char *file, int line) {
  int64_t worst = -1, bad = 0;
  double worst_excess = 0;
  check_count_++;
  for (int64_t i = 0; i < n; i++) {
    double diff = fabs((double)got[i] - (double)want[i]);
    double tol = atol + rtol * fabs((double)want[i]);
    if (!(diff <= tol)) {
      bad++;
      double excess = isnan(diff) ? INFINITY : diff - tol;
      if (worst < 0 || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
      }
    }
  }
  if (bad) {
    check_failures_++;
    fprintf(stderr,
            "%s:%d: check failed: %s: %" PRId64 " of %" PRId64
            " elements off (atol %.3g rtol %.3g); worst [%" PRId64 "] got %.9g want %.9g; nmse %.3g\n",
            file, line, what, bad, n, atol, rtol, worst, (double)got[worst], (double)want[worst],
            check_nmse_value(got, want, n));
    return 0;
  }
  return 1;
}
#define check_close(what, got, want, n, atol, rtol) \
  check_close_((what), (got), (want), (n), (atol), (rtol), __FILE__, __LINE__)

#define CHECK_NMSE(what, got, want, n, max_nmse)                                             \
  do {                                                                                      \
    double check_e_ = check_nmse_value((got), (want), (n));                                 \
    check_count_++;                                                                         \
    if (!(check_e_ <= (max_nmse))) CHECK_FAIL_("%s: nmse %.3g > %.3g", (what), check_e_, (double)(max_nmse)); \
  } while (0)

/* Deterministic random numbers for tests (xorshift64*), uniform in [lo, hi). */
typedef struct check_rng {
  uint64_t s;
} check_rng;
static inline float check_uniform(check_rng *r, float lo, float hi) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  uint64_t x = r->s * 2685821657736338717ull;
  return lo + (hi - lo) * (float)((x >> 40) * (1.0 / 16777216.0));
}
static inline void check_fill(check_rng *r, float *p, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) p[i] = check_uniform(r, lo, hi);
}

static inline int check_report(void) {
  if (check_failures_) {
    fprintf(stderr, "%d of %d checks failed\n", check_failures_, check_count_);
    return 1;
  }
  fprintf(stderr, "all %d checks passed\n", check_count_);
  if (check_count_ == 0) {
    fprintf(stderr, "no checks ran: a test that checks nothing fails\n");
    return 1;
  }
  return 0;
}

#endif /* KILN_TESTS_CHECK_H */
