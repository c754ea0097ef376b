/* src/backends/cpu/load_store.c - element access for fp32/fp16/bf16/int8/int32 storage, and the
 * fp32 staging of whole tensors used by matmul, conv1d and attention.
 *
 * Not a converter between arbitrary dtypes (int4, int64 are not handled here: loads give NaN,
 * stores do nothing); callers check dtypes before they get here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

float kiln_cpu_load(const void *data, kiln_dtype dtype, int64_t i) {
  switch (dtype) {
    case KILN_DTYPE_FP32: return ((const float *)data)[i];
    case KILN_DTYPE_FP16: return kiln_fp16_to_fp32(((const uint16_t *)data)[i]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_fp32(((const uint16_t *)data)[i]);
    case KILN_DTYPE_INT8: return (float)((const int8_t *)data)[i];
    case KILN_DTYPE_INT32: return (float)((const int32_t *)data)[i];
    default: return NAN;
  }
}

/* Integer stores round to nearest and saturate (NaN stores 0). */
static int64_t saturate(float v, int64_t lo, int64_t hi) {
  if (isnan(v)) return 0;
  double r = nearbyint((double)v);
  if (r < (double)lo) return lo;
  if (r > (double)hi) return hi;
  return (int64_t)r;
}

void kiln_cpu_store(void *data, kiln_dtype dtype, int64_t i, float v) {
  switch (dtype) {
    case KILN_DTYPE_FP32: ((float *)data)[i] = v; break;
    case KILN_DTYPE_FP16: ((uint16_t *)data)[i] = kiln_fp32_to_fp16(v); break;
    case KILN_DTYPE_BF16: ((uint16_t *)data)[i] = kiln_fp32_to_bf16(v); break;
    case KILN_DTYPE_INT8: ((int8_t *)data)[i] = (int8_t)saturate(v, INT8_MIN, INT8_MAX); break;
    case KILN_DTYPE_INT32: ((int32_t *)data)[i] = (int32_t)saturate(v, INT32_MIN, INT32_MAX); break;
    default: break;
  }
}

kiln_status kiln_cpu_f32_acquire(const kiln_tensor *t, kiln_cpu_f32 *v) {
  int64_t n = kiln_dims_count(&t->shape);
  v->owned = NULL;
  if (t->dtype == KILN_DTYPE_FP32 || n == 0) {
    v->data = (const float *)t->data;
    return KILN_OK;
  }
  v->owned = malloc((size_t)n * sizeof(float));
  if (!v->owned)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY,
                      "cpu backend: cannot allocate %lld floats to stage a %s tensor; free memory "
                      "or use smaller shapes",
                      (long long)n, kiln_dtype_name(t->dtype));
  kiln_convert_floats(v->owned, KILN_DTYPE_FP32, t->data, t->dtype, n);
  v->data = v->owned;
  return KILN_OK;
}

void kiln_cpu_f32_release(kiln_cpu_f32 *v) {
  free(v->owned);
  v->owned = NULL;
  v->data = NULL;
}

void kiln_cpu_store_f32(kiln_tensor *t, int64_t first, const float *src, int64_t n) {
  if (n <= 0) return;
  size_t elem = kiln_dtype_bytes(t->dtype, 1);
  kiln_convert_floats((char *)t->data + (size_t)first * elem, t->dtype, src, KILN_DTYPE_FP32, n);
}
