/* src/backends/cpu/activation.c - y = act(x) elementwise: GELU (erf form), ReLU, SiLU, none.
 *
 * x and y have the same shape, any fp32/fp16/bf16 mix; computed in fp32; y may alias x.
 * Not the fused epilogues of matmul/conv1d (they share kiln_cpu_activate from common.c).
 */
#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

kiln_status kiln_cpu_activation(const kiln_tensor *x, kiln_activation act, kiln_tensor *y) {
  KILN_TRY(kiln_cpu_check_float(x, "activation", "x"));
  KILN_TRY(kiln_cpu_check_float(y, "activation", "y"));
  KILN_TRY(kiln_cpu_check_activation(act, "activation"));
  KILN_TRY(kiln_cpu_check_same_shape(&y->shape, "y", &x->shape, "x", "activation"));
  int64_t n = kiln_dims_count(&x->shape);
  for (int64_t i = 0; i < n; i++)
    kiln_cpu_store(y->data, y->dtype, i, kiln_cpu_activate(kiln_cpu_load(x->data, x->dtype, i), act));
  return KILN_OK;
}
