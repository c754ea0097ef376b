/* tests/unit/test_quant.c - weight quantization (src/core/quant.h): exact codes and bytes for
 * hand-made rows (int4 nibble order, zero groups, the end codes -8 and -128), against plain
 * round-to-nearest over random matrices for int8 / int4 and several groups (odd K for packed int4
 * included, uniform and heavy-tailed values with outliers): never a larger error per group,
 * clearly smaller in total for int4, nearest codes inside the range, deterministic; subnormal
 * groups; and the argument errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/quant.h"

static void test_exact_codes(void) {
  /* int8, one scale per row: values on the grid of s = 1 come back exactly (round-to-nearest is
   * already optimal and is kept) */
  float w8[2][6] = {{127, -127, 3, -3, 0, -1}, {0, 0, 0, 0, 0, 0}};
  int8_t q8[12];
  float s8[2];
  CHECK_OK(kiln_quantize(&w8[0][0], 2, 6, KILN_DTYPE_INT8, 0, q8, s8));
  static const int8_t want8[12] = {127, -127, 3, -3, 0, -1, 0, 0, 0, 0, 0, 0};
  CHECK(memcmp(q8, want8, sizeof want8) == 0);
  CHECK_NEAR(s8[0], 1.0, 0);
  CHECK_NEAR(s8[1], 0.0, 0); /* an all-zero row */
  for (int i = 0; i < 12; i++) CHECK_EQ_INT(kiln_quant_code(q8, KILN_DTYPE_INT8, i), want8[i]);

  /* int4, group 4: element i in byte i / 2, even index in the low nibble, two's complement */
  float w4[8] = {7, -7, 3, -1, /* group 2: s = 2 */ 14, -4, 2, 0};
  uint8_t q4[4];
  float s4[2];
  CHECK_OK(kiln_quantize(w4, 1, 8, KILN_DTYPE_INT4, 4, q4, s4));
  CHECK_NEAR(s4[0], 1.0, 0);
  CHECK_NEAR(s4[1], 2.0, 0);
  CHECK_EQ_INT(q4[0], 0x97); /* 7 = 0x7 low, -7 = 0x9 high */
  CHECK_EQ_INT(q4[1], 0xF3); /* 3 low, -1 = 0xF high */
  CHECK_EQ_INT(q4[2], 0xE7); /* 7 low, -2 = 0xE high */
  CHECK_EQ_INT(q4[3], 0x01); /* 1 low, 0 high */
  static const int32_t want4[8] = {7, -7, 3, -1, 7, -2, 1, 0};
  for (int i = 0; i < 8; i++) CHECK_EQ_INT(kiln_quant_code(q4, KILN_DTYPE_INT4, i), want4[i]);
  float back[8];
  kiln_dequantize_rows(q4, KILN_DTYPE_INT4, s4, 4, 8, 0, 1, back);
  for (int i = 0; i < 8; i++) CHECK_NEAR(back[i], w4[i], 0);

  /* the full range: -8 7 1 0 is exact at s = 1 with code -8 (round-to-nearest, s = 8 / 7, is
   * not: its codes -7 6 1 0 leave 1.7 of squared error) */
  float wm[4] = {-8, 7, 1, 0};
  uint8_t qm[2];
  float sm;
  CHECK_OK(kiln_quantize(wm, 1, 4, KILN_DTYPE_INT4, 4, qm, &sm));
  CHECK_NEAR(sm, 1.0, 0);
  CHECK_EQ_INT(qm[0], 0x78); /* -8 = 0x8 low, 7 high */
  CHECK_EQ_INT(qm[1], 0x01);
  /* the same for int8 with -128 */
  float wn[3] = {-128, 127, 5};
  int8_t qn[3];
  float sn;
  CHECK_OK(kiln_quantize(wn, 1, 3, KILN_DTYPE_INT8, 0, qn, &sn));
  CHECK_NEAR(sn, 1.0, 0);
  CHECK_EQ_INT(qn[0], -128);
  CHECK_EQ_INT(qn[1], 127);
  CHECK_EQ_INT(qn[2], 5);
  /* nibble 0x8 decodes as -8 (every decoder: CPU, matmul_wq.cu, skinny.cu) */
  uint8_t b = 0x88;
  CHECK_EQ_INT(kiln_quant_code(&b, KILN_DTYPE_INT4, 0), -8);
  CHECK_EQ_INT(kiln_quant_code(&b, KILN_DTYPE_INT4, 1), -8);
}

/* Plain round-to-nearest (the quantizer before the search): s = max|w| / qmax, codes in
 * [-qmax, qmax]; the squared error of one span, c s rounded to fp32 as the dequantizer does. */
static double rtn_error(const float *w, int64_t n, int32_t qmax) {
  float amax = 0.0f;
  for (int64_t j = 0; j < n; j++) amax = fabsf(w[j]) > amax ? fabsf(w[j]) : amax;
  float s = amax / (float)qmax;
  double e = 0;
  for (int64_t j = 0; j < n; j++) {
    float c = s > 0.0f ? roundf(w[j] / s) : 0.0f;
    c = c > (float)qmax ? (float)qmax : c < (float)-qmax ? (float)-qmax : c;
    double d = (double)w[j] - (double)(c * s);
    e += d * d;
  }
  return e;
}

/* Random w [n, k] (uniform, or heavy-tailed with an outlier per row; some rows and groups all
 * zero): every group's squared error at most plain round-to-nearest's, the total clearly below
 * it for int4 (the search does something), codes inside the range within half a step of w
 * (nearest code; only the end codes may be further, clipped), zero groups zero, the same bytes
 * twice (deterministic), and a block of rows dequantized alike. */
static void vs_rtn(check_rng *r, kiln_dtype qdt, int64_t n, int64_t k, int32_t group, int heavy, int64_t *minus_end) {
  const int32_t qmax = qdt == KILN_DTYPE_INT8 ? 127 : 7, lo = -qmax - 1;
  const int64_t span = group ? group : k;
  float *w = malloc((size_t)(n * k) * sizeof *w), *back = malloc((size_t)(n * k) * sizeof *back);
  uint8_t *q = malloc(kiln_dtype_bytes(qdt, n * k) + 1), *q2 = malloc(kiln_dtype_bytes(qdt, n * k) + 1);
  float *s = malloc((size_t)kiln_quant_scale_count(n, k, group) * sizeof *s);
  float *s2 = malloc((size_t)kiln_quant_scale_count(n, k, group) * sizeof *s2);
  check_fill(r, w, n * k, -0.05f, 0.05f);
  if (heavy) /* a Laplace-like tail: u^3 keeps the sign and thins the middle */
    for (int64_t i = 0; i < n * k; i++) w[i] = w[i] * w[i] * w[i] * 400.0f;
  for (int64_t i = 0; i < n; i++) w[i * k + (i * 7) % k] = 0.8f * (i % 2 ? -1.0f : 1.0f); /* outliers */
  if (n > 2) memset(w + k, 0, (size_t)k * sizeof *w);                                    /* row 1 all zero */
  if (n > 3 && group && k / group > 1) memset(w + 3 * k + group, 0, (size_t)group * sizeof *w); /* one group */
  CHECK_OK(kiln_quantize(w, n, k, qdt, group, q, s));
  CHECK_OK(kiln_quantize(w, n, k, qdt, group, q2, s2));
  CHECK(memcmp(q, q2, kiln_dtype_bytes(qdt, n * k)) == 0);
  CHECK(memcmp(s, s2, (size_t)kiln_quant_scale_count(n, k, group) * sizeof *s) == 0);
  kiln_dequantize_rows(q, qdt, s, group, k, 0, n, back);
  int worse = 0, bad_near = 0, bad_zero = 0;
  double total = 0, total_rtn = 0, plain = 0, plain_rtn = 0; /* plain: groups without the outlier */
  for (int64_t i = 0; i < n; i++)
    for (int64_t g0 = 0; g0 < k; g0 += span) {
      float sc = s[group ? i * (k / group) + g0 / group : i];
      double e = 0, e_rtn = rtn_error(w + i * k + g0, span, qmax);
      int zero = 1;
      for (int64_t j = g0; j < g0 + span; j++) {
        int32_t c = kiln_quant_code(q, qdt, i * k + j);
        double d = (double)w[i * k + j] - back[i * k + j];
        e += d * d;
        zero &= w[i * k + j] == 0.0f;
        *minus_end += c == lo;
        if (c > lo && c < qmax && !(fabs(d) <= 0.5 * fabsf(sc) * (1.0 + 1e-5) + 1e-12)) bad_near++;
      }
      if (zero) bad_zero += sc != 0.0f;
      if (!zero) bad_zero += !(sc != 0.0f);
      worse += e > e_rtn;
      total += e, total_rtn += e_rtn;
      if ((i * 7) % k < g0 || (i * 7) % k >= g0 + span) plain += e, plain_rtn += e_rtn;
    }
  char what[128];
  snprintf(what, sizeof what, "%s [%lld, %lld] group %d%s", kiln_dtype_name(qdt), (long long)n, (long long)k,
           (int)group, heavy ? " heavy-tailed" : "");
  fprintf(stderr, "%s: squared error %.4g, round-to-nearest %.4g (ratio %.3f; groups without the outlier %.3f)\n",
          what, total, total_rtn, total_rtn > 0 ? total / total_rtn : 1.0, plain_rtn > 0 ? plain / plain_rtn : 1.0);
  if (worse || bad_near || bad_zero)
    fprintf(stderr, "%s: %d groups worse than round-to-nearest, %d inner codes not the nearest, %d bad zero-group scales\n",
            what, worse, bad_near, bad_zero);
  CHECK_EQ_INT(worse, 0);
  CHECK_EQ_INT(bad_near, 0);
  CHECK_EQ_INT(bad_zero, 0);
  /* int4 groups of >= 32 random values without an outlier: the full range (a step of max|w| / 8
   * where round-to-nearest takes max|w| / 7) gives clearly less error (where an outlier sets
   * the scale, little can be won: the values between round to 0 either way) */
  if (qdt == KILN_DTYPE_INT4 && span >= 32 && !(plain <= 0.97 * plain_rtn))
    CHECK_FAIL_("%s: error %.4g is not below 0.97 x round-to-nearest's %.4g", what, plain, plain_rtn);
  if (n > 2) {
    float *part = malloc((size_t)(2 * k) * sizeof *part);
    kiln_dequantize_rows(q, qdt, s, group, k, 1, 2, part);
    CHECK(memcmp(part, back + k, (size_t)(2 * k) * sizeof *part) == 0);
    free(part);
  }
  free(w), free(back), free(q), free(q2), free(s), free(s2);
}

static void test_vs_rtn(void) {
  check_rng r = {0xC0FFEEull};
  int64_t minus8 = 0, minus128 = 0;
  for (int heavy = 0; heavy < 2; heavy++) {
    vs_rtn(&r, KILN_DTYPE_INT8, 7, 64, 0, heavy, &minus128);
    vs_rtn(&r, KILN_DTYPE_INT8, 5, 96, 32, heavy, &minus128);
    vs_rtn(&r, KILN_DTYPE_INT8, 1, 1, 0, heavy, &minus128);
    vs_rtn(&r, KILN_DTYPE_INT8, 16, 2048, 0, heavy, &minus128);
    vs_rtn(&r, KILN_DTYPE_INT4, 9, 256, 128, heavy, &minus8);
    vs_rtn(&r, KILN_DTYPE_INT4, 9, 192, 64, heavy, &minus8);
    vs_rtn(&r, KILN_DTYPE_INT4, 4, 64, 32, heavy, &minus8);
    vs_rtn(&r, KILN_DTYPE_INT4, 3, 5, 0, heavy, &minus8); /* odd K: rows share bytes */
    vs_rtn(&r, KILN_DTYPE_INT4, 33, 1280, 128, heavy, &minus8);
  }
  /* the negative end code is used (the range is [-8, 7], not [-7, 7]) */
  fprintf(stderr, "codes -8: %lld, -128: %lld\n", (long long)minus8, (long long)minus128);
  CHECK(minus8 > 0);
  CHECK(minus128 > 0);
}

/* Tiny groups: subnormal values (max|w| / 7 may underflow to 0) and a single value. */
static void test_tiny(void) {
  float w[8] = {1e-44f, -3e-45f, 0, 1e-45f, /* group 2 */ 0, 0, -5.0f, 0};
  uint8_t q[4];
  float s[2], back[8];
  CHECK_OK(kiln_quantize(w, 1, 8, KILN_DTYPE_INT4, 4, q, s));
  CHECK(isfinite(s[0]));
  kiln_dequantize_rows(q, KILN_DTYPE_INT4, s, 4, 8, 0, 1, back);
  CHECK(rtn_error(back, 4, 7) >= 0); /* finite */
  for (int i = 0; i < 4; i++) CHECK(fabsf(back[i] - w[i]) <= 1e-44f);
  CHECK_NEAR(back[6], -5.0, 0); /* a lone value is exact */
  CHECK_NEAR(back[4], 0.0, 0);
}

static void test_errors(void) {
  float w[4] = {1, 2, NAN, 4}, s[2];
  uint8_t q[4];
  CHECK_STATUS(kiln_quantize(w, 1, 4, KILN_DTYPE_INT8, 0, q, s), KILN_ERR_INVALID_ARG);
  CHECK_MSG("finite");
  w[2] = INFINITY;
  CHECK_STATUS(kiln_quantize(w, 1, 4, KILN_DTYPE_INT4, 2, q, s), KILN_ERR_INVALID_ARG);
  w[2] = 3;
  CHECK_STATUS(kiln_quantize(w, 1, 4, KILN_DTYPE_INT4, 3, q, s), KILN_ERR_INVALID_ARG); /* 3 does not divide 4 */
  CHECK_MSG("divide");
  CHECK_STATUS(kiln_quantize(w, 1, 4, KILN_DTYPE_FP16, 0, q, s), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_quant_check(KILN_DTYPE_INT8, 1, 4, -2), KILN_ERR_INVALID_ARG);
  CHECK_OK(kiln_quant_check(KILN_DTYPE_INT4, 3, 5, 0));
  CHECK_EQ_INT(kiln_quant_scale_count(10, 256, 0), 10);
  CHECK_EQ_INT(kiln_quant_scale_count(10, 256, 64), 40);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT4, 3 * 5), 8); /* packed, rounded up */
}

int main(void) {
  test_exact_codes();
  test_vs_rtn();
  test_tiny();
  test_errors();
  return check_report();
}
