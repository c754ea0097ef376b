/* src/backends/cpu/layernorm.c - layernorm over the last dim, and the fused add + layernorm.
 *
 *   layernorm:     x [..., N], gamma [N], beta [N] -> y [..., N]
 *                  y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance)
 *   add_layernorm: a [..., N] + b (a's shape or a suffix of it) -> sum [..., N] (optional),
 *                  y = layernorm(sum)
 * Statistics are two-pass in double. In add_layernorm the statistics are taken on the sum as
 * it is stored (rounded to sum's dtype, or to y's dtype when sum is NULL), so the fused op equals
 * add followed by layernorm exactly. Rows are processed one at a time, so y or sum may alias a.
 */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static kiln_status check_params(const kiln_tensor *x, const char *x_name, const kiln_tensor *gamma,
                                const kiln_tensor *beta, float eps, const kiln_tensor *y,
                                const char *op) {
  char sx[128], sg[128];
  KILN_TRY(kiln_cpu_check_float(gamma, op, "gamma"));
  KILN_TRY(kiln_cpu_check_float(beta, op, "beta"));
  KILN_TRY(kiln_cpu_check_float(y, op, "y"));
  if (!(eps >= 0.0f) || isinf(eps))
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: eps is %g; it must be finite and >= 0", op,
                      (double)eps);
  if (x->shape.rank < 1)
    return kiln_error(KILN_ERR_SHAPE, "%s: %s must have rank >= 1 (normalized over its last dim)",
                      op, x_name);
  int64_t n = x->shape.d[x->shape.rank - 1];
  if (gamma->shape.rank != 1 || gamma->shape.d[0] != n)
    return kiln_error(KILN_ERR_SHAPE, "%s: gamma %s must be [%lld] to match %s %s", op,
                      kiln_dims_str(&gamma->shape, sg, sizeof sg), (long long)n, x_name,
                      kiln_dims_str(&x->shape, sx, sizeof sx));
  if (beta->shape.rank != 1 || beta->shape.d[0] != n)
    return kiln_error(KILN_ERR_SHAPE, "%s: beta %s must be [%lld] to match %s %s", op,
                      kiln_dims_str(&beta->shape, sg, sizeof sg), (long long)n, x_name,
                      kiln_dims_str(&x->shape, sx, sizeof sx));
  return kiln_cpu_check_same_shape(&y->shape, "y", &x->shape, x_name, op);
}

/* row[n] (fp32) -> y[first .. first + n) */
static void normalize_row(const float *row, int64_t n, const kiln_tensor *gamma,
                          const kiln_tensor *beta, float eps, kiln_tensor *y, int64_t first) {
  double mean = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; i++) mean += row[i];
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++) var += ((double)row[i] - mean) * ((double)row[i] - mean);
  var /= (double)n;
  float rstd = (float)(1.0 / sqrt(var + (double)eps));
  for (int64_t i = 0; i < n; i++) {
    float g = kiln_cpu_load(gamma->data, gamma->dtype, i);
    float b = kiln_cpu_load(beta->data, beta->dtype, i);
    kiln_cpu_store(y->data, y->dtype, first + i, ((float)(row[i] - mean)) * rstd * g + b);
  }
}

static kiln_status alloc_row(int64_t n, float **row, const char *op) {
  *row = malloc((size_t)n * sizeof(float));
  if (!*row)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: cannot allocate a row of %lld floats", op,
                      (long long)n);
  return KILN_OK;
}

kiln_status kiln_cpu_layernorm(const kiln_tensor *x, const kiln_tensor *gamma,
                               const kiln_tensor *beta, float eps, kiln_tensor *y) {
  KILN_TRY(kiln_cpu_check_float(x, "layernorm", "x"));
  KILN_TRY(check_params(x, "x", gamma, beta, eps, y, "layernorm"));
  int64_t count = kiln_dims_count(&x->shape), n = x->shape.d[x->shape.rank - 1];
  if (count == 0) return KILN_OK;
  float *row;
  KILN_TRY(alloc_row(n, &row, "layernorm"));
  for (int64_t r = 0; r < count / n; r++) {
    for (int64_t i = 0; i < n; i++) row[i] = kiln_cpu_load(x->data, x->dtype, r * n + i);
    normalize_row(row, n, gamma, beta, eps, y, r * n);
  }
  free(row);
  return KILN_OK;
}

kiln_status kiln_cpu_add_layernorm(const kiln_tensor *a, const kiln_tensor *b,
                                   const kiln_tensor *gamma, const kiln_tensor *beta, float eps,
                                   kiln_tensor *sum, kiln_tensor *y) {
  const char *op = "add_layernorm";
  char sa[128], sb[128];
  KILN_TRY(kiln_cpu_check_float(a, op, "a"));
  KILN_TRY(kiln_cpu_check_float(b, op, "b"));
  KILN_TRY(check_params(a, "a", gamma, beta, eps, y, op));
  if (sum) {
    KILN_TRY(kiln_cpu_check_float(sum, op, "sum"));
    KILN_TRY(kiln_cpu_check_same_shape(&sum->shape, "sum", &a->shape, "a", op));
  }
  int suffix = b->shape.rank <= a->shape.rank;
  for (int32_t i = 0; suffix && i < b->shape.rank; i++)
    if (b->shape.d[b->shape.rank - 1 - i] != a->shape.d[a->shape.rank - 1 - i]) suffix = 0;
  if (!suffix)
    return kiln_error(KILN_ERR_SHAPE, "%s: b %s must equal a %s or a suffix of it", op,
                      kiln_dims_str(&b->shape, sb, sizeof sb), kiln_dims_str(&a->shape, sa, sizeof sa));

  int64_t count = kiln_dims_count(&a->shape), n = a->shape.d[a->shape.rank - 1];
  int64_t nb = kiln_dims_count(&b->shape);
  if (count == 0) return KILN_OK;
  kiln_dtype sum_dtype = sum ? sum->dtype : y->dtype;
  float *row;
  KILN_TRY(alloc_row(n, &row, op));
  for (int64_t r = 0; r < count / n; r++) {
    for (int64_t i = 0; i < n; i++) {
      int64_t e = r * n + i;
      float v = kiln_cpu_load(a->data, a->dtype, e) + kiln_cpu_load(b->data, b->dtype, e % nb);
      if (sum) kiln_cpu_store(sum->data, sum->dtype, e, v);
      /* round as stored, so fused == add + layernorm */
      row[i] = v;
      if (sum_dtype == KILN_DTYPE_FP16) row[i] = kiln_fp16_to_fp32(kiln_fp32_to_fp16(v));
      if (sum_dtype == KILN_DTYPE_BF16) row[i] = kiln_bf16_to_fp32(kiln_fp32_to_bf16(v));
    }
    normalize_row(row, n, gamma, beta, eps, y, r * n);
  }
  free(row);
  return KILN_OK;
}
