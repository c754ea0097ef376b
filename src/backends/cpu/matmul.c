/* src/backends/cpu/matmul.c - y[..., N] = act(x[..., K] @ w[N, K]^T + b[N]) on the CPU, and the
 * fp32 GEMM that conv1d and attention share.
 *
 * fp16/bf16 operands are staged as fp32 copies; the product is accumulated in fp32 by OpenBLAS
 * (cblas_sgemm) when kiln was built with it, or in double by a plain triple loop otherwise
 * (slow, but it is the readable reference). Not a tuned kernel.
 */
#include <limits.h>
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

#ifdef KILN_HAVE_OPENBLAS
#include <cblas.h>
#endif

static void gemm_loop(int b_trans, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; p++) {
        float bv = b_trans ? b[j * ldb + p] : b[p * ldb + j];
        acc += (double)a[i * lda + p] * (double)bv;
      }
      c[i * ldc + j] = (float)acc;
    }
}

void kiln_cpu_gemm(int b_trans, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef KILN_HAVE_OPENBLAS
  /* cblas takes int sizes and needs leading dimensions >= 1. */
  if (k > 0 && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
      ldc <= INT_MAX) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, 1.0f, a, (int)lda, b, (int)ldb, 0.0f, c, (int)ldc);
    return;
  }
#endif
  gemm_loop(b_trans, m, n, k, a, lda, b, ldb, c, ldc);
}

kiln_status kiln_cpu_check_linear(const char *op, const kiln_tensor *x, const kiln_tensor *w,
                                  const kiln_tensor *b, kiln_activation act, const kiln_tensor *y) {
  char sx[128], sw[128], sy[128];
  KILN_TRY(kiln_cpu_check_float(x, op, "x"));
  if (w && (w->dtype == KILN_DTYPE_INT8 || w->dtype == KILN_DTYPE_INT4))
    KILN_TRY(kiln_cpu_check_dtype(w, w->dtype, op, "w")); /* codes of a quantized matmul */
  else
    KILN_TRY(kiln_cpu_check_float(w, op, "w"));
  if (b) KILN_TRY(kiln_cpu_check_float(b, op, "b"));
  KILN_TRY(kiln_cpu_check_float(y, op, "y"));
  KILN_TRY(kiln_cpu_check_activation(act, op));
  kiln_dims_str(&x->shape, sx, sizeof sx);
  kiln_dims_str(&w->shape, sw, sizeof sw);
  kiln_dims_str(&y->shape, sy, sizeof sy);
  if (x->shape.rank < 1 || w->shape.rank != 2 || x->shape.d[x->shape.rank - 1] != w->shape.d[1])
    return kiln_error(KILN_ERR_SHAPE,
                      "%s: x %s and w %s do not fit x[..., K] @ w[N, K]^T; w must be [N, K] "
                      "(PyTorch Linear layout) with K the last dim of x",
                      op, sx, sw);
  int64_t n = w->shape.d[0];
  if (b && (b->shape.rank != 1 || b->shape.d[0] != n)) {
    char sb[128];
    return kiln_error(KILN_ERR_SHAPE, "%s: bias %s must be [%lld] to match w %s", op,
                      kiln_dims_str(&b->shape, sb, sizeof sb), (long long)n, sw);
  }
  kiln_dims want = x->shape;
  want.d[want.rank - 1] = n;
  if (!kiln_dims_equal(&want, &y->shape)) {
    char sd[128];
    return kiln_error(KILN_ERR_SHAPE, "%s: y is %s but x %s @ w %s^T gives %s", op, sy, sx, sw,
                      kiln_dims_str(&want, sd, sizeof sd));
  }
  return KILN_OK;
}

kiln_status kiln_cpu_matmul(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                            kiln_activation act, kiln_tensor *y) {
  if (w && !kiln_dtype_is_float(w->dtype)) KILN_TRY(kiln_cpu_check_float(w, "matmul", "w"));
  KILN_TRY(kiln_cpu_check_linear("matmul", x, w, b, act, y));
  int64_t k = w->shape.d[1], n = w->shape.d[0];
  int64_t m = kiln_dims_count(&x->shape) / (k > 0 ? k : 1);
  if (k == 0) m = kiln_dims_count(&y->shape) / (n > 0 ? n : 1);
  if (m == 0 || n == 0) return KILN_OK;

  kiln_cpu_f32 xv = {0}, wv = {0};
  float *acc = kiln_cpu_matmul_acc(m, n); /* acc [M, N] */
  kiln_status s = acc ? KILN_OK : KILN_ERR_OUT_OF_MEMORY; /* the message is set */
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(x, &xv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(w, &wv);
  if (s == KILN_OK) {
    if (k > 0)
      kiln_cpu_gemm(1, m, n, k, xv.data, k, wv.data, k, acc, n);
    else
      for (int64_t i = 0; i < m * n; i++) acc[i] = 0.0f;
    s = kiln_cpu_matmul_epilogue(acc, m, n, b, act, y);
  }
  kiln_cpu_f32_release(&xv);
  kiln_cpu_f32_release(&wv);
  free(acc);
  return s;
}

float *kiln_cpu_matmul_acc(int64_t m, int64_t n) {
  float *acc = malloc((size_t)(m * n) * sizeof(float));
  if (!acc)
    kiln_error(KILN_ERR_OUT_OF_MEMORY, "matmul: cannot allocate a %lldx%lld fp32 result; use smaller shapes",
               (long long)m, (long long)n);
  return acc;
}

kiln_status kiln_cpu_matmul_epilogue(float *acc, int64_t m, int64_t n, const kiln_tensor *b,
                                     kiln_activation act, kiln_tensor *y) {
  kiln_cpu_f32 bv = {0};
  if (b) KILN_TRY(kiln_cpu_f32_acquire(b, &bv));
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      float v = acc[i * n + j] + (b ? bv.data[j] : 0.0f);
      acc[i * n + j] = kiln_cpu_activate(v, act);
    }
  kiln_cpu_store_f32(y, 0, acc, m * n);
  kiln_cpu_f32_release(&bv);
  return KILN_OK;
}
