/* src/backends/cpu/softmax.c - softmax over the last dim.
 *
 * x [..., N] -> y [..., N]; y = exp(x - max) / sum(exp(x - max)), the sum in double. A row whose
 * entries are all -inf yields zeros (no valid entry), matching masked attention rows.
 * y may alias x (rows are staged in fp32 first).
 */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

void kiln_cpu_softmax_row(float *row, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (row[i] > max) max = row[i]; /* a NaN entry is skipped here and spreads below */
  if (max == -INFINITY) {
    for (int64_t i = 0; i < n; i++) row[i] = 0.0f;
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    row[i] = expf(row[i] - max);
    sum += row[i];
  }
  for (int64_t i = 0; i < n; i++) row[i] = (float)(row[i] / sum);
}

kiln_status kiln_cpu_softmax(const kiln_tensor *x, kiln_tensor *y) {
  KILN_TRY(kiln_cpu_check_float(x, "softmax", "x"));
  KILN_TRY(kiln_cpu_check_float(y, "softmax", "y"));
  KILN_TRY(kiln_cpu_check_same_shape(&y->shape, "y", &x->shape, "x", "softmax"));
  if (x->shape.rank < 1)
    return kiln_error(KILN_ERR_SHAPE, "softmax: x must have rank >= 1 (softmax runs over its last dim)");
  int64_t count = kiln_dims_count(&x->shape), n = x->shape.d[x->shape.rank - 1];
  if (count == 0) return KILN_OK;
  float *row = malloc((size_t)n * sizeof(float));
  if (!row)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "softmax: cannot allocate a row of %lld floats",
                      (long long)n);
  for (int64_t r = 0; r < count / n; r++) {
    for (int64_t i = 0; i < n; i++) row[i] = kiln_cpu_load(x->data, x->dtype, r * n + i);
    kiln_cpu_softmax_row(row, n);
    kiln_cpu_store_f32(y, r * n, row, n);
  }
  free(row);
  return KILN_OK;
}
