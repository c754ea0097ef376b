/* src/backends/cpu/common.c - argument checks and activations shared by the CPU op files.
 *
 * Every check returns a kiln error whose message names the op, the argument and what to do.
 * Not where ops live (one file per op: matmul.c, layernorm.c, ...).
 */
#include <math.h>
#include <stddef.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static kiln_status check_view(const kiln_tensor *t, const char *op, const char *name) {
  char buf[128];
  if (!t) return kiln_error(KILN_ERR_INVALID_ARG, "%s: tensor %s is NULL; pass a tensor view", op, name);
  if (t->shape.rank < 0 || t->shape.rank > KILN_MAX_DIMS)
    return kiln_error(KILN_ERR_SHAPE, "%s: %s has rank %d; ranks go from 0 to %d", op, name,
                      (int)t->shape.rank, KILN_MAX_DIMS);
  for (int32_t i = 0; i < t->shape.rank; i++)
    if (t->shape.d[i] < 0)
      return kiln_error(KILN_ERR_SHAPE, "%s: %s has a negative dimension %s; bind concrete shapes first",
                        op, name, kiln_dims_str(&t->shape, buf, sizeof buf));
  if (!kiln_tensor_is_contiguous(t))
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "%s: %s %s is not a contiguous row-major view; the CPU backend takes "
                      "contiguous tensors (make them with kiln_tensor_contiguous)",
                      op, name, kiln_dims_str(&t->shape, buf, sizeof buf));
  if (!t->data && kiln_dims_count(&t->shape) > 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s %s has no data pointer", op, name,
                      kiln_dims_str(&t->shape, buf, sizeof buf));
  return KILN_OK;
}

kiln_status kiln_cpu_check_float(const kiln_tensor *t, const char *op, const char *name) {
  KILN_TRY(check_view(t, op, name));
  if (!kiln_dtype_is_float(t->dtype))
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "%s: %s has dtype %s; the CPU backend computes on fp32, fp16 or bf16 tensors",
                      op, name, kiln_dtype_name(t->dtype));
  return KILN_OK;
}

kiln_status kiln_cpu_check_dtype(const kiln_tensor *t, kiln_dtype dtype, const char *op,
                                 const char *name) {
  KILN_TRY(check_view(t, op, name));
  if (t->dtype != dtype)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %s has dtype %s; it must be %s", op, name,
                      kiln_dtype_name(t->dtype), kiln_dtype_name(dtype));
  return KILN_OK;
}

kiln_status kiln_cpu_check_same_shape(const kiln_dims *a, const char *a_name, const kiln_dims *b,
                                      const char *b_name, const char *op) {
  char sa[128], sb[128];
  if (kiln_dims_equal(a, b)) return KILN_OK;
  return kiln_error(KILN_ERR_SHAPE, "%s: %s %s and %s %s must have the same shape", op, a_name,
                    kiln_dims_str(a, sa, sizeof sa), b_name, kiln_dims_str(b, sb, sizeof sb));
}

kiln_status kiln_cpu_check_activation(kiln_activation act, const char *op) {
  if (act >= KILN_ACTIVATION_NONE && act <= KILN_ACTIVATION_SILU) return KILN_OK;
  return kiln_error(KILN_ERR_UNSUPPORTED,
                    "%s: unknown activation %d; use none, gelu, relu or silu", op, (int)act);
}

float kiln_cpu_activate(float x, kiln_activation act) {
  switch (act) {
    case KILN_ACTIVATION_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case KILN_ACTIVATION_RELU: return x < 0.0f ? 0.0f : x; /* NaN stays NaN */
    case KILN_ACTIVATION_SILU: return x / (1.0f + expf(-x));
    default: return x;
  }
}
