/* tests/cpu/test_cpu_elementwise.c - the CPU backend's add, mul, activations, layernorm,
 * add_layernorm and softmax against double-precision references written here, over shapes
 * with odd, size-1 and zero-size dims and fp32/fp16/bf16, plus error paths.
 */
#include <math.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "cpu_test_util.h"

/* ---- add / mul ------------------------------------------------------------------------------ */

static void binary_case(check_rng *r, kiln_dtype at, kiln_dtype bt, kiln_dtype yt, int32_t rank,
                        const int64_t *d, int32_t b_rank, int is_mul) {
  ttensor a = tt_rand(r, at, rank, d, -2, 2), b = tt_rand(r, bt, b_rank, d + (rank - b_rank), -2, 2);
  ttensor y = tt_alloc(yt, rank, d);
  double *want = (double *)tt_xmalloc((size_t)a.n * sizeof(double));
  for (int64_t i = 0; i < a.n; i++) {
    double vb = b.val[i % (b.n ? b.n : 1)];
    want[i] = is_mul ? (double)a.val[i] * vb : (double)a.val[i] + vb;
  }
  char what[128];
  snprintf(what, sizeof what, "%s rank %d b rank %d %s", is_mul ? "mul" : "add", (int)rank,
           (int)b_rank, kiln_dtype_name(yt));
  kiln_status s = is_mul ? kiln_cpu_mul(&a.t, &b.t, &y.t) : kiln_cpu_add(&a.t, &b.t, &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) tt_check(what, &y, want, 1.0);
  free(want);
  tt_free(&a), tt_free(&b), tt_free(&y);
}

static void test_binary(check_rng *r) {
  static const int64_t shapes[][3] = {{2, 3, 5}, {1, 1, 1}, {4, 1, 7}, {3, 0, 2}, {5, 6, 0}};
  for (int dt = 0; dt < 3; dt++)
    for (int si = 0; si < 5; si++)
      for (int32_t br = 0; br <= 3; br++)
        for (int is_mul = 0; is_mul <= 1; is_mul++) {
          kiln_dtype t = tt_float_dtypes[dt];
          binary_case(r, t, t, t, 3, shapes[si], br, is_mul);
        }
  binary_case(r, KILN_DTYPE_FP16, KILN_DTYPE_FP32, KILN_DTYPE_BF16, 3, shapes[0], 1, 0);
  binary_case(r, KILN_DTYPE_BF16, KILN_DTYPE_FP16, KILN_DTYPE_FP32, 3, shapes[0], 2, 1);
}

static void test_binary_inplace(check_rng *r) {
  int64_t d[] = {3, 4};
  ttensor a = tt_rand(r, KILN_DTYPE_FP16, 2, d, -1, 1), b = tt_rand(r, KILN_DTYPE_FP16, 1, d + 1, -1, 1);
  double want[12];
  for (int i = 0; i < 12; i++) want[i] = (double)a.val[i] + b.val[i % 4];
  CHECK_OK(kiln_cpu_add(&a.t, &b.t, &a.t)); /* y aliases a */
  tt_check("add in place", &a, want, 1.0);
  tt_free(&a), tt_free(&b);
}

static void test_binary_errors(check_rng *r) {
  int64_t d[] = {3, 4}, d_bad[] = {3}, d_y[] = {4, 3};
  ttensor a = tt_rand(r, KILN_DTYPE_FP32, 2, d, -1, 1), b = tt_rand(r, KILN_DTYPE_FP32, 1, d_bad, -1, 1);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 2, d), y_bad = tt_alloc(KILN_DTYPE_FP32, 2, d_y);
  ttensor ai = tt_alloc(KILN_DTYPE_INT32, 2, d);
  CHECK_STATUS(kiln_cpu_add(&a.t, &b.t, &y.t), KILN_ERR_SHAPE);
  CHECK(strstr(kiln_last_error(), "suffix") != NULL);
  CHECK_STATUS(kiln_cpu_mul(&a.t, &b.t, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_add(&a.t, &a.t, &y_bad.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_add(&b.t, &a.t, &y.t), KILN_ERR_SHAPE); /* only b broadcasts */
  CHECK_STATUS(kiln_cpu_add(&ai.t, &a.t, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK(tt_untouched(&y));
  CHECK(tt_untouched(&y_bad));
  tt_free(&a), tt_free(&b), tt_free(&y), tt_free(&y_bad), tt_free(&ai);
}

/* ---- activations ---------------------------------------------------------------------------- */

static void test_activation(check_rng *r) {
  int64_t shapes[][2] = {{7, 13}, {1, 1}, {0, 5}};
  for (int dt = 0; dt < 3; dt++)
    for (int si = 0; si < 3; si++)
      for (int a = 0; a < 4; a++) {
        kiln_dtype t = tt_float_dtypes[dt];
        ttensor x = tt_rand(r, t, 2, shapes[si], -6, 6), y = tt_alloc(t, 2, shapes[si]);
        double *want = (double *)tt_xmalloc((size_t)x.n * sizeof(double));
        for (int64_t i = 0; i < x.n; i++) want[i] = tt_ref_act(x.val[i], (kiln_activation)a);
        char what[96];
        snprintf(what, sizeof what, "activation %d %s shape %d", a, kiln_dtype_name(t), si);
        CHECK_OK(kiln_cpu_activation(&x.t, (kiln_activation)a, &y.t));
        tt_check(what, &y, want, 1e-2); /* GELU/SiLU of large negatives: tiny absolute values */
        free(want);
        tt_free(&x), tt_free(&y);
      }
  /* GELU is the erf form, not the tanh approximation: they differ by ~1e-4 near x = 2. */
  int64_t one[] = {1};
  ttensor x = tt_alloc(KILN_DTYPE_FP32, 1, one), y = tt_alloc(KILN_DTYPE_FP32, 1, one);
  tt_set(&x, 0, 2.0f);
  CHECK_OK(kiln_cpu_activation(&x.t, KILN_ACTIVATION_GELU, &y.t));
  tt_read(&y);
  CHECK_NEAR(y.val[0], 1.9544997361036416, 1e-6);
  int64_t d2[] = {2, 3}, d3[] = {3, 2};
  ttensor a = tt_rand(r, KILN_DTYPE_FP32, 2, d2, -1, 1), b = tt_alloc(KILN_DTYPE_FP32, 2, d3);
  CHECK_STATUS(kiln_cpu_activation(&a.t, KILN_ACTIVATION_RELU, &b.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_activation(&a.t, (kiln_activation)-1, &a.t), KILN_ERR_UNSUPPORTED);
  CHECK(tt_untouched(&b));
  tt_free(&x), tt_free(&y), tt_free(&a), tt_free(&b);
}

/* ---- layernorm / add_layernorm -------------------------------------------------------------- */

static void ref_layernorm(const float *x, int64_t rows, int64_t n, const ttensor *g,
                          const ttensor *b, double eps, double *y) {
  for (int64_t r = 0; r < rows; r++) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[r * n + i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
    var /= (double)n;
    for (int64_t i = 0; i < n; i++)
      y[r * n + i] = (x[r * n + i] - mean) / sqrt(var + eps) * g->val[i] + b->val[i];
  }
}

static void layernorm_case(check_rng *r, kiln_dtype dt, int64_t rows, int64_t n, float eps) {
  int64_t xd[] = {rows, n}, gd[] = {n};
  /* an offset mean makes the statistics non-trivial */
  ttensor x = tt_rand(r, dt, 2, xd, 2, 5), g = tt_rand(r, dt, 1, gd, 0.5f, 1.5f);
  ttensor b = tt_rand(r, dt, 1, gd, -1, 1), y = tt_alloc(dt, 2, xd);
  double *want = (double *)tt_xmalloc((size_t)x.n * sizeof(double));
  ref_layernorm(x.val, rows, n, &g, &b, eps, want);
  char what[96];
  snprintf(what, sizeof what, "layernorm rows %lld n %lld %s", (long long)rows, (long long)n,
           kiln_dtype_name(dt));
  kiln_status s = kiln_cpu_layernorm(&x.t, &g.t, &b.t, eps, &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) tt_check(what, &y, want, 4.0);
  free(want);
  tt_free(&x), tt_free(&g), tt_free(&b), tt_free(&y);
}

static void add_layernorm_case(check_rng *r, kiln_dtype dt, int64_t rows, int64_t n, int b_rank,
                               int with_sum) {
  int64_t xd[] = {rows, n}, gd[] = {n};
  ttensor a = tt_rand(r, dt, 2, xd, 1, 3), bb = tt_rand(r, dt, b_rank, xd + (2 - b_rank), -1, 1);
  ttensor g = tt_rand(r, dt, 1, gd, 0.5f, 1.5f), be = tt_rand(r, dt, 1, gd, -1, 1);
  ttensor sum = tt_alloc(dt, 2, xd), y = tt_alloc(dt, 2, xd);
  ttensor sum2 = tt_alloc(dt, 2, xd), y2 = tt_alloc(dt, 2, xd);
  double *want_sum = (double *)tt_xmalloc((size_t)a.n * sizeof(double));
  double *want_y = (double *)tt_xmalloc((size_t)a.n * sizeof(double));
  for (int64_t i = 0; i < a.n; i++) want_sum[i] = (double)a.val[i] + bb.val[i % (bb.n ? bb.n : 1)];
  /* the statistics are taken on the sum as stored in dt */
  ttensor rounded = tt_alloc(dt, 2, xd);
  for (int64_t i = 0; i < a.n; i++) tt_set(&rounded, i, (float)want_sum[i]);
  ref_layernorm(rounded.val, rows, n, &g, &be, 1e-5, want_y);
  char what[128];
  snprintf(what, sizeof what, "add_layernorm rows %lld n %lld b rank %d sum %d %s",
           (long long)rows, (long long)n, b_rank, with_sum, kiln_dtype_name(dt));
  kiln_status s = kiln_cpu_add_layernorm(&a.t, &bb.t, &g.t, &be.t, 1e-5f, with_sum ? &sum.t : NULL,
                                         &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) {
    tt_check(what, &y, want_y, 4.0);
    if (with_sum) tt_check(what, &sum, want_sum, 1.0);
    if (!with_sum) CHECK(tt_untouched(&sum));
    /* fused == add then layernorm, bit for bit */
    CHECK_OK(kiln_cpu_add(&a.t, &bb.t, &sum2.t));
    CHECK_OK(kiln_cpu_layernorm(&sum2.t, &g.t, &be.t, 1e-5f, &y2.t));
    CHECK(memcmp(y.t.data, y2.t.data, y.bytes) == 0);
    if (with_sum) CHECK(memcmp(sum.t.data, sum2.t.data, sum.bytes) == 0);
  }
  free(want_sum), free(want_y);
  tt_free(&a), tt_free(&bb), tt_free(&g), tt_free(&be), tt_free(&sum), tt_free(&y);
  tt_free(&sum2), tt_free(&y2), tt_free(&rounded);
}

static void test_layernorm(check_rng *r) {
  static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 64}, {2, 383}, {0, 8}, {4, 0}};
  for (int dt = 0; dt < 3; dt++)
    for (int si = 0; si < 6; si++) {
      layernorm_case(r, tt_float_dtypes[dt], shapes[si][0], shapes[si][1], 1e-5f);
      for (int br = 1; br <= 2; br++)
        add_layernorm_case(r, tt_float_dtypes[dt], shapes[si][0], shapes[si][1], br, (si + br) % 2);
    }
  layernorm_case(r, KILN_DTYPE_FP32, 3, 16, 0.0f);
  layernorm_case(r, KILN_DTYPE_FP32, 3, 16, 0.5f);
}

static void test_layernorm_errors(check_rng *r) {
  int64_t xd[] = {3, 8}, gd[] = {8}, gd_bad[] = {7};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 2, xd, -1, 1), g = tt_rand(r, KILN_DTYPE_FP32, 1, gd, -1, 1);
  ttensor gb = tt_rand(r, KILN_DTYPE_FP32, 1, gd_bad, -1, 1);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 2, xd), sum = tt_alloc(KILN_DTYPE_FP32, 2, xd);
  CHECK_STATUS(kiln_cpu_layernorm(&x.t, &gb.t, &g.t, 1e-5f, &y.t), KILN_ERR_SHAPE);
  CHECK(strstr(kiln_last_error(), "gamma") != NULL);
  CHECK_STATUS(kiln_cpu_layernorm(&x.t, &g.t, &gb.t, 1e-5f, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_layernorm(&x.t, &g.t, &g.t, -1.0f, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_layernorm(&x.t, &g.t, &g.t, NAN, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_add_layernorm(&x.t, &gb.t, &g.t, &g.t, 1e-5f, &sum.t, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_add_layernorm(&x.t, &x.t, &g.t, &g.t, 1e-5f, &g.t, &y.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&y));
  CHECK(tt_untouched(&sum));
  tt_free(&x), tt_free(&g), tt_free(&gb), tt_free(&y), tt_free(&sum);
}

/* ---- softmax -------------------------------------------------------------------------------- */

static void softmax_case(check_rng *r, kiln_dtype dt, int64_t rows, int64_t n, float lo, float hi) {
  int64_t d[] = {rows, n};
  ttensor x = tt_rand(r, dt, 2, d, lo, hi), y = tt_alloc(dt, 2, d);
  double *want = (double *)tt_xmalloc((size_t)x.n * sizeof(double));
  for (int64_t i = 0; i < rows; i++) {
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++) max = fmax(max, x.val[i * n + j]);
    for (int64_t j = 0; j < n; j++) sum += exp(x.val[i * n + j] - max);
    for (int64_t j = 0; j < n; j++) want[i * n + j] = exp(x.val[i * n + j] - max) / sum;
  }
  char what[96];
  snprintf(what, sizeof what, "softmax rows %lld n %lld range %g %s", (long long)rows,
           (long long)n, (double)hi, kiln_dtype_name(dt));
  CHECK_OK(kiln_cpu_softmax(&x.t, &y.t));
  tt_check(what, &y, want, 1e-3);
  free(want);
  tt_free(&x), tt_free(&y);
}

static void test_softmax(check_rng *r) {
  static const int64_t shapes[][2] = {{1, 1}, {4, 7}, {3, 100}, {0, 3}, {3, 0}};
  for (int dt = 0; dt < 3; dt++)
    for (int si = 0; si < 5; si++) softmax_case(r, tt_float_dtypes[dt], shapes[si][0], shapes[si][1], -4, 4);
  /* large logits: exp would overflow without the max subtraction */
  softmax_case(r, KILN_DTYPE_FP32, 3, 9, 500, 600);
  /* a row of all -inf gives zeros; -inf entries give exact zeros */
  int64_t d[] = {2, 3};
  ttensor x = tt_alloc(KILN_DTYPE_FP32, 2, d), y = tt_alloc(KILN_DTYPE_FP32, 2, d);
  float v[] = {-INFINITY, -INFINITY, -INFINITY, 1.0f, -INFINITY, 1.0f};
  for (int i = 0; i < 6; i++) tt_set(&x, i, v[i]);
  CHECK_OK(kiln_cpu_softmax(&x.t, &y.t));
  tt_read(&y);
  float want[] = {0, 0, 0, 0.5f, 0, 0.5f};
  check_close("softmax -inf rows", y.val, want, 6, 0, 0);
  int64_t d_bad[] = {3, 2};
  ttensor yb = tt_alloc(KILN_DTYPE_FP32, 2, d_bad);
  CHECK_STATUS(kiln_cpu_softmax(&x.t, &yb.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&yb));
  tt_free(&x), tt_free(&y), tt_free(&yb);
}

int main(void) {
  check_rng r = {0x1234567887654321ull};
  test_binary(&r);
  test_binary_inplace(&r);
  test_binary_errors(&r);
  test_activation(&r);
  test_layernorm(&r);
  test_layernorm_errors(&r);
  test_softmax(&r);
  return check_report();
}
