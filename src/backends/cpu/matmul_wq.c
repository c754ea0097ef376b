/* src/backends/cpu/matmul_wq.c - the weight-only quantized matmul on the CPU:
 * y[..., N] = act(x[..., K] @ dequant(wq)[N, K]^T + b[N]), the reference for the CUDA kernels.
 *
 * wq holds int8 or packed int4 codes, scales fp32 [N] (group 0) or [N, K / group]; the format
 * is in src/core/quant.h. Weight rows are dequantized to fp32 a block at a time and go through
 * the same fp32 GEMM and epilogue as kiln_cpu_matmul. Not fast: a correct oracle.
 */
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"
#include "core/quant.h"

#define ROWS_PER_BLOCK 256 /* weight rows dequantized at a time (bounds the fp32 copy) */

static kiln_status check_scales(const kiln_tensor *wq, const kiln_tensor *scales, int32_t group) {
  char s[128];
  int64_t n = wq->shape.d[0], k = wq->shape.d[1];
  KILN_TRY(kiln_cpu_check_dtype(scales, KILN_DTYPE_FP32, "matmul_wq", "scales"));
  KILN_TRY(kiln_quant_check(wq->dtype, n, k, group));
  int ok = group == 0 ? scales->shape.rank == 1 && scales->shape.d[0] == n
                      : scales->shape.rank == 2 && scales->shape.d[0] == n && scales->shape.d[1] == k / group;
  if (!ok)
    return kiln_error(KILN_ERR_SHAPE, "matmul_wq: scales are %s; group %d over w [%lld, %lld] needs %lld scales per row",
                      kiln_dims_str(&scales->shape, s, sizeof s), (int)group, (long long)n, (long long)k,
                      (long long)(group ? k / group : 1));
  return KILN_OK;
}

kiln_status kiln_cpu_matmul_wq(const kiln_tensor *x, const kiln_tensor *wq, const kiln_tensor *scales,
                               const kiln_tensor *b, int32_t group, kiln_activation act, kiln_tensor *y) {
  if (wq && wq->dtype != KILN_DTYPE_INT8 && wq->dtype != KILN_DTYPE_INT4)
    return kiln_error(KILN_ERR_UNSUPPORTED, "matmul_wq: w has dtype %s; it takes int8 or int4 codes",
                      kiln_dtype_name(wq->dtype));
  KILN_TRY(kiln_cpu_check_linear("matmul_wq", x, wq, b, act, y));
  KILN_TRY(check_scales(wq, scales, group));
  int64_t n = wq->shape.d[0], k = wq->shape.d[1];
  int64_t m = kiln_dims_count(&y->shape) / (n > 0 ? n : 1);
  if (m == 0 || n == 0) return KILN_OK;

  int64_t block = n < ROWS_PER_BLOCK ? n : ROWS_PER_BLOCK;
  kiln_cpu_f32 xv = {0};
  float *acc = kiln_cpu_matmul_acc(m, n);                                  /* acc [M, N] */
  float *wf = malloc((size_t)(block * (k > 0 ? k : 1)) * sizeof(float)); /* wf [block, K] */
  kiln_status s = acc ? KILN_OK : KILN_ERR_OUT_OF_MEMORY;
  if (s == KILN_OK && !wf) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "matmul_wq: out of memory for %lld weight rows", (long long)block);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(x, &xv);
  if (s == KILN_OK) {
    if (k == 0)
      for (int64_t i = 0; i < m * n; i++) acc[i] = 0.0f;
    for (int64_t n0 = 0; k > 0 && n0 < n; n0 += block) {
      int64_t rows = n - n0 < block ? n - n0 : block;
      kiln_dequantize_rows(wq->data, wq->dtype, (const float *)scales->data, group, k, n0, rows, wf);
      kiln_cpu_gemm(1, m, rows, k, xv.data, k, wf, k, acc + n0, n); /* acc[:, n0:n0+rows] */
    }
    s = kiln_cpu_matmul_epilogue(acc, m, n, b, act, y);
  }
  kiln_cpu_f32_release(&xv);
  free(wf);
  free(acc);
  return s;
}
