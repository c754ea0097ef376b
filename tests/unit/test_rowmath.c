/* tests/unit/test_rowmath.c - src/core/rowmath.c: kiln_row_max, kiln_row_argmax and
 * kiln_row_logsumexp against naive references written here in double precision, on both code
 * paths (AVX2 + FMA where this CPU has it, and the portable C, forced with kiln_cpu_set_portable):
 * random rows of logits (std 3, offsets up to +-1000) of every length around the vector widths
 * and block sizes, at unaligned starts; rows with -inf ranges as the logit filters leave them;
 * ties (the first maximum wins); a single finite entry; all -inf; empty rows; NaN and +inf
 * entries; and exp over its whole range through two-entry rows {0, d}.
 * Tolerance of logsumexp: 1e-6 absolute + 1e-7 relative (openai-whisper computes it in float32);
 * max and argmax exactly. Prints the largest errors seen on each path.
 */
#include <math.h>

#include "check.h"
#include "core/cpu.h"
#include "core/rowmath.h"

/* ---- references ----------------------------------------------------------------------------- */

static float ref_max(const float *x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (x[i] > m) m = x[i];
  return m;
}

static int64_t ref_argmax(const float *x, int64_t n) { /* the first maximum, NaN skipped */
  int64_t best = -1;
  for (int64_t i = 0; i < n; i++)
    if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
  return best < 0 ? 0 : best;
}

static double ref_logsumexp(const float *x, int64_t n) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i]) || x[i] == INFINITY) return NAN;
    if (x[i] > m) m = x[i];
  }
  if (m == -INFINITY) return -INFINITY;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += exp((double)x[i] - m);
  return m + log(s);
}

/* ---- checks --------------------------------------------------------------------------------- */

static double worst_err[2]; /* largest |error| of logsumexp over the tolerance's scale, per path */

static void check_row(const char *what, const float *x, int64_t n, int path) {
  float m = kiln_row_max(x, n), want_m = ref_max(x, n);
  int64_t a = kiln_row_argmax(x, n), a2 = -1, want_a = ref_argmax(x, n);
  double lse = kiln_row_logsumexp(x, n, &a2), want = ref_logsumexp(x, n);
  int ok_m = m == want_m || (isnan(m) && isnan(want_m));
  if (!ok_m) fprintf(stderr, "%s (n %lld, %s): max %.9g, want %.9g\n", what, (long long)n, path ? "portable" : "simd", m, want_m);
  CHECK(ok_m);
  if (a != want_a || a2 != want_a)
    fprintf(stderr, "%s (n %lld, %s): argmax %lld / %lld, want %lld\n", what, (long long)n, path ? "portable" : "simd",
            (long long)a, (long long)a2, (long long)want_a);
  CHECK_EQ_INT(a, want_a);
  CHECK_EQ_INT(a2, want_a);
  if (isnan(want) || isinf(want)) {
    int same = isnan(want) ? isnan(lse) : lse == want;
    if (!same) fprintf(stderr, "%s (n %lld, %s): logsumexp %.9g, want %.9g\n", what, (long long)n, path ? "portable" : "simd", lse, want);
    CHECK(same);
    return;
  }
  double err = fabs(lse - want), scale = 3e-7; /* absolute: m is exact, the error is log(s)'s */
  if (err / scale > worst_err[path]) worst_err[path] = err / scale;
  if (!(err <= scale))
    fprintf(stderr, "%s (n %lld, %s): logsumexp %.12g, want %.12g (error %.3g)\n", what, (long long)n, path ? "portable" : "simd",
            lse, want, err);
  CHECK(err <= scale);
}

static float gaussian(check_rng *r) {
  float u = check_uniform(r, 1e-7f, 1.0f), v = check_uniform(r, 0.0f, 1.0f);
  return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const int64_t lengths[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65,
                                  127, 128, 129, 255, 256, 257, 1000, 1501, 4099, 51865};

static void test_random_rows(int path, float *buf) {
  check_rng r = {0x1234567ull + (uint64_t)path};
  for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
    int64_t n = lengths[li];
    for (int start = 0; start < 3; start++) { /* unaligned starts */
      float *x = buf + start;
      for (int trial = 0; trial < 3; trial++) {
        float offset = trial == 0 ? 0.0f : trial == 1 ? 1000.0f : -1000.0f, std = trial == 2 ? 30.0f : 3.0f;
        for (int64_t i = 0; i < n; i++) x[i] = offset + std * gaussian(&r);
        check_row("random", x, n, path);
        /* -inf ranges as the filters leave them: a prefix, a middle run, scattered entries */
        for (int64_t i = 0; i < n / 3; i++) x[i] = -INFINITY;
        for (int64_t i = n / 2; i < n / 2 + n / 8; i++) x[i] = -INFINITY;
        for (int64_t i = 5; i < n; i += 97) x[i] = -INFINITY;
        check_row("random with -inf", x, n, path);
        if (n < 2) continue;
        /* ties: the maximum at several places, the first one to win */
        float m = ref_max(x, n);
        int64_t p1 = n / 2 + (int64_t)check_uniform(&r, 0, (float)(n / 2)), p0 = (int64_t)check_uniform(&r, 0, (float)(n / 2));
        if (p1 >= n) p1 = n - 1;
        x[p1] = m + 1.0f, x[p0] = m + 1.0f;
        check_row("ties", x, n, path);
      }
    }
  }
}

static void test_special_rows(int path, float *x) {
  for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
    int64_t n = lengths[li];
    for (int64_t i = 0; i < n; i++) x[i] = -INFINITY;
    check_row("all -inf", x, n, path);
    if (n == 0) {
      CHECK(kiln_row_logsumexp(x, 0, NULL) == -INFINITY);
      CHECK_EQ_INT(kiln_row_argmax(x, 0), 0);
      continue;
    }
    x[n - 1] = 2.5f; /* one finite entry: logsumexp is that entry exactly */
    CHECK(kiln_row_logsumexp(x, n, NULL) == 2.5);
    check_row("one finite entry", x, n, path);
    for (int64_t i = 0; i < n; i++) x[i] = 0.25f * (float)(i % 13) - 1.0f;
    check_row("small values", x, n, path);
    x[n / 2] = NAN;
    check_row("a NaN", x, n, path); /* max / argmax skip it, logsumexp is NaN */
    CHECK(isnan(kiln_row_logsumexp(x, n, NULL)));
    x[n / 2] = INFINITY;
    check_row("+inf", x, n, path);
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
    check_row("all NaN", x, n, path);
    for (int64_t i = 0; i < n; i++) x[i] = 7.0f; /* all equal: argmax 0, log(n) + 7 */
    check_row("all equal", x, n, path);
  }
}

/* exp over its range: rows {0, d} (logsumexp = log(1 + exp(d))) and {d, 0}, padded with -inf to
 * lengths that reach the vector code. */
static void test_exp_range(int path, float *x) {
  for (int64_t n = 2; n <= 40; n += 19) {
    for (int64_t i = 0; i < n; i++) x[i] = -INFINITY;
    for (float d = -100.0f; d <= 0.0f; d += 0.0137f) {
      x[0] = 0.0f, x[n - 1] = d;
      check_row("{0, d}", x, n, path);
      x[0] = d, x[n - 1] = 0.0f;
      check_row("{d, 0}", x, n, path);
    }
  }
}

int main(void) {
  float *buf = malloc(sizeof(float) * (51865 + 8));
  if (!buf) return 1;
  int simd = kiln_cpu_has_avx2_fma();
  for (int path = 0; path < 2; path++) {
    kiln_cpu_set_portable(path);
    test_random_rows(path, buf);
    test_special_rows(path, buf);
    test_exp_range(path, buf);
  }
  kiln_cpu_set_portable(0);
  fprintf(stderr, "test_rowmath: AVX2+FMA %s; largest logsumexp error over its tolerance: %.3f (%s), %.3f (portable)\n",
          simd ? "present" : "absent (both runs portable)", worst_err[0], simd ? "simd" : "portable", worst_err[1]);
  free(buf);
  return check_report();
}
