/* tests/unit/test_quant.c - weight quantization (src/core/quant.h): exact codes and bytes for
 * hand-made rows (int4 nibble order, rounding, clamping, zero groups), the round-trip error bound
 * |w - q s| <= s / 2 over random matrices for int8 / int4 and several groups (odd K for packed
 * int4 included), and the argument errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/quant.h"

static void test_exact_codes(void) {
  /* int8, one scale per row: amax 127 -> s = 1; halves round away from zero */
  float w8[2][6] = {{127, -127, 2.5f, -2.5f, 0.4f, -0.6f}, {0, 0, 0, 0, 0, 0}};
  int8_t q8[12];
  float s8[2];
  CHECK_OK(kiln_quantize(&w8[0][0], 2, 6, KILN_DTYPE_INT8, 0, q8, s8));
  static const int8_t want8[12] = {127, -127, 3, -3, 0, -1, 0, 0, 0, 0, 0, 0};
  CHECK(memcmp(q8, want8, sizeof want8) == 0);
  CHECK_NEAR(s8[0], 1.0, 0);
  CHECK_NEAR(s8[1], 0.0, 0); /* an all-zero row */
  for (int i = 0; i < 12; i++) CHECK_EQ_INT(kiln_quant_code(q8, KILN_DTYPE_INT8, i), want8[i]);

  /* int4, group 4: element i in byte i / 2, even index in the low nibble, two's complement */
  float w4[8] = {7, -7, 3, -1, /* group 2: amax 14 -> s = 2 */ 14, -3, 1, 0};
  uint8_t q4[4];
  float s4[2];
  CHECK_OK(kiln_quantize(w4, 1, 8, KILN_DTYPE_INT4, 4, q4, s4));
  CHECK_NEAR(s4[0], 1.0, 0);
  CHECK_NEAR(s4[1], 2.0, 0);
  /* codes 7 -7 3 -1 | 7 -2 (-1.5 rounds away) 1 (0.5 rounds away) 0 */
  CHECK_EQ_INT(q4[0], 0x97); /* 7 = 0x7 low, -7 = 0x9 high */
  CHECK_EQ_INT(q4[1], 0xF3); /* 3 low, -1 = 0xF high */
  CHECK_EQ_INT(q4[2], 0xE7); /* 7 low, -2 = 0xE high */
  CHECK_EQ_INT(q4[3], 0x01); /* 1 low, 0 high */
  static const int32_t want4[8] = {7, -7, 3, -1, 7, -2, 1, 0};
  for (int i = 0; i < 8; i++) CHECK_EQ_INT(kiln_quant_code(q4, KILN_DTYPE_INT4, i), want4[i]);
  float back[8];
  kiln_dequantize_rows(q4, KILN_DTYPE_INT4, s4, 4, 8, 0, 1, back);
  static const float want_back[8] = {7, -7, 3, -1, 14, -4, 2, 0};
  for (int i = 0; i < 8; i++) CHECK_NEAR(back[i], want_back[i], 0);
  /* -8 is never written but decodes as itself */
  uint8_t b = 0x88;
  CHECK_EQ_INT(kiln_quant_code(&b, KILN_DTYPE_INT4, 0), -8);
  CHECK_EQ_INT(kiln_quant_code(&b, KILN_DTYPE_INT4, 1), -8);
}

/* Random w [n, k] (with an outlier per row): codes in range, the largest |w| of each group maps
 * to +-qmax, and every element comes back within half a step. */
static void round_trip(check_rng *r, kiln_dtype qdt, int64_t n, int64_t k, int32_t group) {
  const int32_t qmax = qdt == KILN_DTYPE_INT8 ? 127 : 7;
  const int64_t span = group ? group : k;
  float *w = malloc((size_t)(n * k) * sizeof *w), *back = malloc((size_t)(n * k) * sizeof *back);
  uint8_t *q = malloc(kiln_dtype_bytes(qdt, n * k) + 1);
  float *s = malloc((size_t)kiln_quant_scale_count(n, k, group) * sizeof *s);
  check_fill(r, w, n * k, -0.05f, 0.05f);
  for (int64_t i = 0; i < n; i++) w[i * k + (i * 7) % k] = 0.8f * (i % 2 ? -1.0f : 1.0f); /* outliers */
  CHECK_OK(kiln_quantize(w, n, k, qdt, group, q, s));
  kiln_dequantize_rows(q, qdt, s, group, k, 0, n, back);
  int bad_range = 0, bad_max = 0, bad_err = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t g0 = 0; g0 < k; g0 += span) {
      float sc = s[group ? i * (k / group) + g0 / group : i];
      int32_t amax_code = 0;
      for (int64_t j = g0; j < g0 + span; j++) {
        int32_t c = kiln_quant_code(q, qdt, i * k + j);
        bad_range += c < -qmax || c > qmax;
        if (abs(c) > amax_code) amax_code = abs(c);
        bad_err += !(fabsf(w[i * k + j] - back[i * k + j]) <= 0.5f * sc * (1.0f + 1e-5f) + 1e-7f);
      }
      bad_max += amax_code != qmax;
    }
  char what[96];
  snprintf(what, sizeof what, "%s [%lld, %lld] group %d", kiln_dtype_name(qdt), (long long)n, (long long)k, (int)group);
  if (bad_range || bad_max || bad_err)
    fprintf(stderr, "%s: %d codes out of range, %d groups without a +-qmax code, %d elements beyond s / 2\n", what,
            bad_range, bad_max, bad_err);
  CHECK_EQ_INT(bad_range, 0);
  CHECK_EQ_INT(bad_max, 0);
  CHECK_EQ_INT(bad_err, 0);
  /* dequantizing a block of rows gives the same values as the whole matrix */
  if (n > 2) {
    float *part = malloc((size_t)(2 * k) * sizeof *part);
    kiln_dequantize_rows(q, qdt, s, group, k, 1, 2, part);
    CHECK(memcmp(part, back + k, (size_t)(2 * k) * sizeof *part) == 0);
    free(part);
  }
  free(w), free(back), free(q), free(s);
}

static void test_round_trip(void) {
  check_rng r = {0xC0FFEEull};
  round_trip(&r, KILN_DTYPE_INT8, 7, 64, 0);
  round_trip(&r, KILN_DTYPE_INT8, 5, 96, 32);
  round_trip(&r, KILN_DTYPE_INT8, 1, 1, 0);
  round_trip(&r, KILN_DTYPE_INT4, 9, 256, 128);
  round_trip(&r, KILN_DTYPE_INT4, 9, 192, 64);
  round_trip(&r, KILN_DTYPE_INT4, 4, 64, 32);
  round_trip(&r, KILN_DTYPE_INT4, 3, 5, 0); /* odd K: rows share bytes */
  round_trip(&r, KILN_DTYPE_INT4, 33, 1280, 128);
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
  test_round_trip();
  test_errors();
  return check_report();
}
