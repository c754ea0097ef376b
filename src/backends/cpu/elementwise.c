/* src/backends/cpu/elementwise.c - y = a + b and y = a * b with suffix broadcasting.
 *
 * a [..., S...], b [S...] (b's shape equals a's or a suffix of it), y like a. Any mix of
 * fp32/fp16/bf16; the arithmetic is fp32. Works element by element, so y may alias a.
 * Not general NumPy broadcasting: only b broadcasts, and only over leading dims.
 */
#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

typedef enum binary_op { BINARY_ADD, BINARY_MUL } binary_op;

static kiln_status check_binary(const kiln_tensor *a, const kiln_tensor *b, const kiln_tensor *y,
                                const char *op) {
  char sa[128], sb[128];
  KILN_TRY(kiln_cpu_check_float(a, op, "a"));
  KILN_TRY(kiln_cpu_check_float(b, op, "b"));
  KILN_TRY(kiln_cpu_check_float(y, op, "y"));
  int suffix = b->shape.rank <= a->shape.rank;
  for (int32_t i = 0; suffix && i < b->shape.rank; i++)
    if (b->shape.d[b->shape.rank - 1 - i] != a->shape.d[a->shape.rank - 1 - i]) suffix = 0;
  if (!suffix)
    return kiln_error(KILN_ERR_SHAPE,
                      "%s: b %s must equal a %s or a suffix of it (broadcast over leading dims)",
                      op, kiln_dims_str(&b->shape, sb, sizeof sb),
                      kiln_dims_str(&a->shape, sa, sizeof sa));
  return kiln_cpu_check_same_shape(&y->shape, "y", &a->shape, "a", op);
}

static kiln_status binary(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y,
                          binary_op op) {
  KILN_TRY(check_binary(a, b, y, op == BINARY_ADD ? "add" : "mul"));
  int64_t n = kiln_dims_count(&a->shape), nb = kiln_dims_count(&b->shape);
  if (n == 0) return KILN_OK;
  for (int64_t i = 0; i < n; i++) {
    float va = kiln_cpu_load(a->data, a->dtype, i);
    float vb = kiln_cpu_load(b->data, b->dtype, i % nb);
    kiln_cpu_store(y->data, y->dtype, i, op == BINARY_ADD ? va + vb : va * vb);
  }
  return KILN_OK;
}

kiln_status kiln_cpu_add(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y) {
  return binary(a, b, y, BINARY_ADD);
}

kiln_status kiln_cpu_mul(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y) {
  return binary(a, b, y, BINARY_MUL);
}
