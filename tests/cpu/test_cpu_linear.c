/* tests/cpu/test_cpu_linear.c - the CPU backend's matmul, conv1d and attention against naive
 * double-precision references written here, over grids of shapes (odd, size-1 and zero-size
 * dims) and fp32/fp16/bf16, plus their error paths (status, and outputs left untouched).
 */
#include <math.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "cpu_test_util.h"

/* ---- matmul --------------------------------------------------------------------------------- */

static void ref_matmul(const ttensor *x, const ttensor *w, const ttensor *b, kiln_activation act,
                       int64_t m, int64_t n, int64_t k, double *y) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = b ? b->val[j] : 0.0;
      for (int64_t p = 0; p < k; p++) acc += (double)x->val[i * k + p] * w->val[j * k + p];
      y[i * n + j] = tt_ref_act(acc, act);
    }
}

static void matmul_case(check_rng *r, kiln_dtype xt, kiln_dtype wt, kiln_dtype yt, int32_t rank,
                        const int64_t *lead, int64_t k, int64_t n, int has_bias,
                        kiln_activation act) {
  int64_t xd[4], yd[4], wd[2] = {n, k}, bd[1] = {n}, m = 1;
  for (int32_t i = 0; i < rank - 1; i++) {
    xd[i] = yd[i] = lead[i];
    m *= lead[i];
  }
  xd[rank - 1] = k;
  yd[rank - 1] = n;
  ttensor x = tt_rand(r, xt, rank, xd, -1, 1), w = tt_rand(r, wt, 2, wd, -1, 1);
  ttensor b = tt_rand(r, wt, 1, bd, -1, 1), y = tt_alloc(yt, rank, yd);
  double *want = (double *)tt_xmalloc((size_t)(m * n) * sizeof(double));
  ref_matmul(&x, &w, has_bias ? &b : NULL, act, m, n, k, want);
  char what[160];
  snprintf(what, sizeof what, "matmul rank %d m %lld k %lld n %lld bias %d act %d %s/%s->%s",
           (int)rank, (long long)m, (long long)k, (long long)n, has_bias, (int)act,
           kiln_dtype_name(xt), kiln_dtype_name(wt), kiln_dtype_name(yt));
  kiln_status s = kiln_cpu_matmul(&x.t, &w.t, has_bias ? &b.t : NULL, act, &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) tt_check(what, &y, want, 1.0 + sqrt((double)k));
  if (m * n == 0) CHECK(tt_untouched(&y));
  free(want);
  tt_free(&x), tt_free(&w), tt_free(&b), tt_free(&y);
}

static void test_matmul(check_rng *r) {
  static const int64_t leads[][3] = {{1, 1, 0}, {3, 5, 0}, {2, 3, 7}, {0, 4, 0}, {1, 0, 0}};
  static const int32_t ranks[] = {2, 2, 3, 2, 3};
  static const int64_t ks[] = {1, 17, 64, 0};
  static const int64_t ns[] = {1, 5, 33, 0};
  for (int d = 0; d < 3; d++) {
    kiln_dtype dt = tt_float_dtypes[d];
    for (int li = 0; li < 5; li++)
      for (int ki = 0; ki < 4; ki++)
        for (int ni = 0; ni < 4; ni++)
          matmul_case(r, dt, dt, dt, ranks[li], leads[li], ks[ki], ns[ni], (ki + ni) % 2,
                      (kiln_activation)((li + ki + ni) % 4));
    /* rank 1 x [K] */
    matmul_case(r, dt, dt, dt, 1, NULL, 9, 4, 1, KILN_ACTIVATION_GELU);
  }
  static const int64_t lead[] = {4, 3};
  matmul_case(r, KILN_DTYPE_FP16, KILN_DTYPE_BF16, KILN_DTYPE_FP32, 3, lead, 24, 7, 1,
              KILN_ACTIVATION_SILU);
  matmul_case(r, KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_BF16, 3, lead, 24, 7, 0,
              KILN_ACTIVATION_RELU);
  /* every activation on a larger case, bias on */
  static const int64_t lead2[] = {37};
  for (int a = 0; a < 4; a++)
    matmul_case(r, KILN_DTYPE_FP32, KILN_DTYPE_FP32, KILN_DTYPE_FP32, 2, lead2, 129, 65, 1,
                (kiln_activation)a);
}

static void test_matmul_errors(check_rng *r) {
  int64_t xd[] = {3, 8}, wd[] = {5, 7}, wd_ok[] = {5, 8}, yd[] = {3, 5}, yd_bad[] = {3, 4};
  int64_t bd_bad[] = {4};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 2, xd, -1, 1);
  ttensor w_bad = tt_rand(r, KILN_DTYPE_FP32, 2, wd, -1, 1);
  ttensor w = tt_rand(r, KILN_DTYPE_FP32, 2, wd_ok, -1, 1);
  ttensor b_bad = tt_rand(r, KILN_DTYPE_FP32, 1, bd_bad, -1, 1);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 2, yd), y_bad = tt_alloc(KILN_DTYPE_FP32, 2, yd_bad);
  ttensor x_int = tt_alloc(KILN_DTYPE_INT32, 2, xd);
  CHECK_STATUS(kiln_cpu_matmul(&x.t, &w_bad.t, NULL, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_matmul(&x.t, &w.t, &b_bad.t, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_matmul(&x.t, &w.t, NULL, KILN_ACTIVATION_NONE, &y_bad.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_matmul(&x_int.t, &w.t, NULL, KILN_ACTIVATION_NONE, &y.t),
               KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cpu_matmul(&x.t, &w.t, NULL, (kiln_activation)9, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK(strstr(kiln_last_error(), "activation") != NULL);
  kiln_tensor strided = x.t;
  strided.strides[0] = 16; /* a view with a row pitch: not contiguous */
  CHECK_STATUS(kiln_cpu_matmul(&strided, &w.t, NULL, KILN_ACTIVATION_NONE, &y.t),
               KILN_ERR_UNSUPPORTED);
  CHECK(tt_untouched(&y));
  CHECK(tt_untouched(&y_bad));
  tt_free(&x), tt_free(&w_bad), tt_free(&w), tt_free(&b_bad), tt_free(&y), tt_free(&y_bad);
  tt_free(&x_int);
}

/* ---- conv1d --------------------------------------------------------------------------------- */

static void conv_case(check_rng *r, kiln_dtype dt, int64_t batch, int64_t cin, int64_t cout,
                      int64_t t, int32_t stride, int has_bias, kiln_activation act) {
  int64_t tout = t == 0 ? 0 : (t + 2 - 3) / stride + 1;
  int64_t xd[] = {batch, cin, t}, wd[] = {cout, cin, 3}, bd[] = {cout}, yd[] = {batch, cout, tout};
  ttensor x = tt_rand(r, dt, 3, xd, -1, 1), w = tt_rand(r, dt, 3, wd, -1, 1);
  ttensor b = tt_rand(r, dt, 1, bd, -1, 1), y = tt_alloc(dt, 3, yd);
  double *want = (double *)tt_xmalloc((size_t)(y.n) * sizeof(double));
  for (int64_t n = 0; n < batch; n++)
    for (int64_t co = 0; co < cout; co++)
      for (int64_t o = 0; o < tout; o++) {
        double acc = has_bias ? b.val[co] : 0.0;
        for (int64_t ci = 0; ci < cin; ci++)
          for (int64_t kk = 0; kk < 3; kk++) {
            int64_t src = o * stride + kk - 1;
            if (src < 0 || src >= t) continue;
            acc += (double)w.val[(co * cin + ci) * 3 + kk] * x.val[(n * cin + ci) * t + src];
          }
        want[(n * cout + co) * tout + o] = tt_ref_act(acc, act);
      }
  char what[160];
  snprintf(what, sizeof what, "conv1d B %lld Cin %lld Cout %lld T %lld stride %d bias %d act %d %s",
           (long long)batch, (long long)cin, (long long)cout, (long long)t, (int)stride, has_bias,
           (int)act, kiln_dtype_name(dt));
  kiln_status s = kiln_cpu_conv1d(&x.t, &w.t, has_bias ? &b.t : NULL, stride, act, &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) tt_check(what, &y, want, 1.0 + sqrt(3.0 * (double)cin));
  free(want);
  tt_free(&x), tt_free(&w), tt_free(&b), tt_free(&y);
}

static void test_conv1d(check_rng *r) {
  static const int64_t ts[] = {0, 1, 2, 7, 16};
  static const int64_t cins[] = {1, 3, 8};
  for (int d = 0; d < 3; d++)
    for (int ti = 0; ti < 5; ti++)
      for (int ci = 0; ci < 3; ci++)
        for (int32_t stride = 1; stride <= 2; stride++)
          conv_case(r, tt_float_dtypes[d], 1 + (ti + ci) % 2, cins[ci], 1 + 4 * (ci % 2), ts[ti],
                    stride, (ti + stride) % 2, (kiln_activation)((ti + ci) % 4));
  conv_case(r, KILN_DTYPE_FP32, 2, 16, 12, 33, 2, 1, KILN_ACTIVATION_GELU);
  conv_case(r, KILN_DTYPE_FP32, 0, 4, 4, 8, 1, 1, KILN_ACTIVATION_GELU);
}

static void test_conv1d_errors(check_rng *r) {
  int64_t xd[] = {1, 4, 8}, wd[] = {3, 4, 3}, wd_k5[] = {3, 4, 5}, wd_cin[] = {3, 5, 3};
  int64_t yd[] = {1, 3, 8}, yd2[] = {1, 3, 4};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 3, xd, -1, 1), w = tt_rand(r, KILN_DTYPE_FP32, 3, wd, -1, 1);
  ttensor wk = tt_rand(r, KILN_DTYPE_FP32, 3, wd_k5, -1, 1);
  ttensor wc = tt_rand(r, KILN_DTYPE_FP32, 3, wd_cin, -1, 1);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 3, yd);
  CHECK_STATUS(kiln_cpu_conv1d(&x.t, &w.t, NULL, 3, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cpu_conv1d(&x.t, &wk.t, NULL, 1, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_conv1d(&x.t, &wc.t, NULL, 1, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_SHAPE);
  /* y sized for stride 1, called with stride 2 */
  CHECK_STATUS(kiln_cpu_conv1d(&x.t, &w.t, NULL, 2, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&y));
  ttensor y2 = tt_alloc(KILN_DTYPE_FP32, 3, yd2);
  CHECK_OK(kiln_cpu_conv1d(&x.t, &w.t, NULL, 2, KILN_ACTIVATION_NONE, &y2.t));
  tt_free(&x), tt_free(&w), tt_free(&wk), tt_free(&wc), tt_free(&y), tt_free(&y2);
}

/* ---- attention ------------------------------------------------------------------------------ */

static void ref_attention(const ttensor *q, const ttensor *k, const ttensor *v, int64_t bh,
                          int64_t sq, int64_t skv, int64_t d, double scale, int causal, double *y) {
  double *p = (double *)tt_xmalloc((size_t)(skv + 1) * sizeof(double));
  for (int64_t h = 0; h < bh; h++)
    for (int64_t i = 0; i < sq; i++) {
      const float *qi = q->val + (h * sq + i) * d;
      double max = -INFINITY, sum = 0;
      int any = 0;
      for (int64_t j = 0; j < skv; j++) {
        int masked = causal && j > i + (skv - sq);
        double s = 0;
        for (int64_t e = 0; e < d; e++) s += (double)qi[e] * k->val[(h * skv + j) * d + e];
        p[j] = masked ? -INFINITY : s * scale;
        if (!masked) {
          any = 1;
          if (p[j] > max) max = p[j];
        }
      }
      for (int64_t j = 0; j < skv; j++) {
        p[j] = any && p[j] != -INFINITY ? exp(p[j] - max) : 0.0;
        sum += p[j];
      }
      for (int64_t e = 0; e < d; e++) {
        double acc = 0;
        for (int64_t j = 0; j < skv; j++) acc += p[j] * v->val[(h * skv + j) * d + e];
        y[(h * sq + i) * d + e] = any ? acc / sum : 0.0;
      }
    }
  free(p);
}

static void attention_case(check_rng *r, kiln_dtype dt, int64_t b, int64_t h, int64_t sq,
                           int64_t skv, int64_t d, int causal) {
  int64_t qd[] = {b, h, sq, d}, kd[] = {b, h, skv, d};
  float scale = d > 0 ? (float)(1.0 / sqrt((double)d)) : 1.0f;
  ttensor q = tt_rand(r, dt, 4, qd, -2, 2), k = tt_rand(r, dt, 4, kd, -2, 2);
  ttensor v = tt_rand(r, dt, 4, kd, -1, 1), y = tt_alloc(dt, 4, qd);
  double *want = (double *)tt_xmalloc((size_t)y.n * sizeof(double));
  ref_attention(&q, &k, &v, b * h, sq, skv, d, scale, causal, want);
  char what[160];
  snprintf(what, sizeof what, "attention B %lld H %lld Sq %lld Skv %lld D %lld causal %d %s",
           (long long)b, (long long)h, (long long)sq, (long long)skv, (long long)d, causal,
           kiln_dtype_name(dt));
  kiln_status s = kiln_cpu_attention(&q.t, &k.t, &v.t, scale, causal, &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) tt_check(what, &y, want, 1.0);
  free(want);
  tt_free(&q), tt_free(&k), tt_free(&v), tt_free(&y);
}

static void test_attention(check_rng *r) {
  /* {B, H, Sq, Skv, D} */
  static const int64_t shapes[][5] = {{1, 1, 1, 1, 1},  {2, 3, 5, 5, 8},   {1, 2, 1, 9, 16},
                                      {1, 1, 7, 3, 4},  {2, 1, 4, 11, 32}, {1, 2, 0, 4, 8},
                                      {1, 1, 3, 0, 8},  {0, 2, 3, 3, 8},   {1, 4, 16, 16, 64}};
  for (int d = 0; d < 3; d++)
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      for (int causal = 0; causal <= 1; causal++)
        attention_case(r, tt_float_dtypes[d], shapes[i][0], shapes[i][1], shapes[i][2],
                       shapes[i][3], shapes[i][4], causal);
}

static void test_attention_mask(check_rng *r) {
  /* Sq 4 > Skv 2, causal: query i sees keys j <= i - 2, so rows 0 and 1 see nothing (zeros),
   * row 2 sees key 0 only (its output is v[0]), row 3 sees both. */
  int64_t qd[] = {1, 1, 4, 3}, kd[] = {1, 1, 2, 3};
  ttensor q = tt_rand(r, KILN_DTYPE_FP32, 4, qd, -1, 1), k = tt_rand(r, KILN_DTYPE_FP32, 4, kd, -1, 1);
  ttensor v = tt_rand(r, KILN_DTYPE_FP32, 4, kd, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 4, qd);
  CHECK_OK(kiln_cpu_attention(&q.t, &k.t, &v.t, 0.5f, 1, &y.t));
  tt_read(&y);
  for (int e = 0; e < 3; e++) {
    CHECK(y.val[0 * 3 + e] == 0.0f);
    CHECK(y.val[1 * 3 + e] == 0.0f);
    CHECK_NEAR(y.val[2 * 3 + e], v.val[e], 1e-6);
  }
  tt_free(&q), tt_free(&k), tt_free(&v), tt_free(&y);
}

static void test_attention_errors(check_rng *r) {
  int64_t qd[] = {1, 2, 3, 8}, kd[] = {1, 2, 5, 8}, kd_bad[] = {1, 2, 5, 4}, vd_bad[] = {1, 2, 6, 8};
  ttensor q = tt_rand(r, KILN_DTYPE_FP32, 4, qd, -1, 1), k = tt_rand(r, KILN_DTYPE_FP32, 4, kd, -1, 1);
  ttensor kb = tt_rand(r, KILN_DTYPE_FP32, 4, kd_bad, -1, 1);
  ttensor vb = tt_rand(r, KILN_DTYPE_FP32, 4, vd_bad, -1, 1);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 4, qd), y_bad = tt_alloc(KILN_DTYPE_FP32, 4, kd);
  CHECK_STATUS(kiln_cpu_attention(&q.t, &kb.t, &kb.t, 1.0f, 0, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_attention(&q.t, &k.t, &vb.t, 1.0f, 0, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_attention(&q.t, &k.t, &k.t, 1.0f, 0, &y_bad.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&y));
  CHECK(tt_untouched(&y_bad));
  tt_free(&q), tt_free(&k), tt_free(&kb), tt_free(&vb), tt_free(&y), tt_free(&y_bad);
}

int main(void) {
  check_rng r = {0x9e3779b97f4a7c15ull};
  test_matmul(&r);
  test_matmul_errors(&r);
  test_conv1d(&r);
  test_conv1d_errors(&r);
  test_attention(&r);
  test_attention_mask(&r);
  test_attention_errors(&r);
  return check_report();
}
