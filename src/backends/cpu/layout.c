/* src/backends/cpu/layout.c - data movement: copy (reshape), transpose, concat, slice.
 *
 * Elements move unchanged when source and destination dtypes are equal (any dtype, int32
 * included); between different float dtypes they are converted. Nothing is computed.
 *   copy       x and y hold the same number of elements (y's shape is the reshape target)
 *   transpose  y.shape[i] = x.shape[perm[i]]
 *   concat     xs[i] equal except along `axis`; y's axis dim is their sum (negative axis counts
 *              from the end)
 *   slice      y = x[..., start:end, ...] along `axis`, 0 <= start <= end <= dim
 * Only copy may run in place (y->data == x->data); the others need separate buffers.
 */
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static kiln_status check_any(const kiln_tensor *t, const char *op, const char *name) {
  if (t && kiln_dtype_is_float(t->dtype)) return kiln_cpu_check_float(t, op, name);
  return kiln_cpu_check_dtype(t, KILN_DTYPE_INT32, op, name);
}

static kiln_status check_movable(const kiln_tensor *x, const char *x_name, const kiln_tensor *y,
                                 const char *op) {
  KILN_TRY(check_any(x, op, x_name));
  KILN_TRY(check_any(y, op, "y"));
  if (x->dtype != y->dtype && !(kiln_dtype_is_float(x->dtype) && kiln_dtype_is_float(y->dtype)))
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: cannot move %s %s into y %s; dtypes must match",
                      op, kiln_dtype_name(x->dtype), x_name, kiln_dtype_name(y->dtype));
  return KILN_OK;
}

/* y[yi .. yi + n) = x[xi .. xi + n) */
static void move(kiln_tensor *y, int64_t yi, const kiln_tensor *x, int64_t xi, int64_t n) {
  if (n <= 0) return;
  if (x->dtype == y->dtype) {
    size_t elem = kiln_dtype_bytes(x->dtype, 1);
    memmove((char *)y->data + (size_t)yi * elem, (const char *)x->data + (size_t)xi * elem,
            (size_t)n * elem);
    return;
  }
  for (int64_t i = 0; i < n; i++)
    kiln_cpu_store(y->data, y->dtype, yi + i, kiln_cpu_load(x->data, x->dtype, xi + i));
}

kiln_status kiln_cpu_copy(const kiln_tensor *x, kiln_tensor *y) {
  char sx[128], sy[128];
  KILN_TRY(check_movable(x, "x", y, "copy"));
  int64_t n = kiln_dims_count(&x->shape);
  if (n != kiln_dims_count(&y->shape))
    return kiln_error(KILN_ERR_SHAPE,
                      "copy/reshape: x %s and y %s hold different numbers of elements",
                      kiln_dims_str(&x->shape, sx, sizeof sx), kiln_dims_str(&y->shape, sy, sizeof sy));
  if (x->data != y->data || x->dtype != y->dtype) move(y, 0, x, 0, n);
  return KILN_OK;
}

kiln_status kiln_cpu_transpose(const kiln_tensor *x, const int64_t *perm, kiln_tensor *y) {
  char sx[128], sy[128], sw[128];
  KILN_TRY(check_movable(x, "x", y, "transpose"));
  int32_t r = x->shape.rank;
  int seen[KILN_MAX_DIMS] = {0};
  if (!perm && r > 0) return kiln_error(KILN_ERR_INVALID_ARG, "transpose: perm is NULL");
  for (int32_t i = 0; i < r; i++) {
    if (perm[i] < 0 || perm[i] >= r || seen[perm[i]])
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "transpose: perm[%d] = %lld; perm must be a permutation of 0..%d", (int)i,
                        (long long)perm[i], (int)r - 1);
    seen[perm[i]] = 1;
  }
  kiln_dims want = {r, {0}};
  for (int32_t i = 0; i < r; i++) want.d[i] = x->shape.d[perm[i]];
  if (!kiln_dims_equal(&want, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "transpose: y is %s but permuting x %s gives %s",
                      kiln_dims_str(&y->shape, sy, sizeof sy), kiln_dims_str(&x->shape, sx, sizeof sx),
                      kiln_dims_str(&want, sw, sizeof sw));
  int64_t n = kiln_dims_count(&y->shape);
  if (n == 0) return KILN_OK;
  int64_t idx[KILN_MAX_DIMS] = {0}; /* y's multi-index, row-major order */
  for (int64_t e = 0; e < n; e++) {
    int64_t src = 0;
    for (int32_t i = 0; i < r; i++) src += idx[i] * x->strides[perm[i]];
    move(y, e, x, src, 1);
    for (int32_t i = r - 1; i >= 0; i--) {
      if (++idx[i] < y->shape.d[i]) break;
      idx[i] = 0;
    }
  }
  return KILN_OK;
}

/* Product of dims [from, to). */
static int64_t dims_product(const kiln_dims *d, int32_t from, int32_t to) {
  int64_t p = 1;
  for (int32_t i = from; i < to; i++) p *= d->d[i];
  return p;
}

static kiln_status check_concat(int32_t n, const kiln_tensor *xs, int32_t axis,
                                const kiln_tensor *y) {
  char sx[128], s0[128], sy[128];
  if (n < 1 || !xs)
    return kiln_error(KILN_ERR_INVALID_ARG, "concat: needs at least one input (got %d)", (int)n);
  kiln_dims want = xs[0].shape;
  want.d[axis] = 0;
  for (int32_t i = 0; i < n; i++) {
    KILN_TRY(check_movable(&xs[i], "input", y, "concat"));
    int same = xs[i].shape.rank == want.rank;
    for (int32_t j = 0; same && j < want.rank; j++)
      if (j != axis && xs[i].shape.d[j] != want.d[j]) same = 0;
    if (!same)
      return kiln_error(KILN_ERR_SHAPE,
                        "concat: input %d %s does not match input 0 %s outside axis %d", (int)i,
                        kiln_dims_str(&xs[i].shape, sx, sizeof sx),
                        kiln_dims_str(&xs[0].shape, s0, sizeof s0), (int)axis);
    want.d[axis] += xs[i].shape.d[axis];
  }
  if (!kiln_dims_equal(&want, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "concat: y is %s but the inputs give %s",
                      kiln_dims_str(&y->shape, sy, sizeof sy), kiln_dims_str(&want, s0, sizeof s0));
  return KILN_OK;
}

kiln_status kiln_cpu_concat(int32_t n, const kiln_tensor *xs, int32_t axis, kiln_tensor *y) {
  if (n >= 1 && xs) {
    int32_t r = xs[0].shape.rank;
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r)
      return kiln_error(KILN_ERR_INVALID_ARG, "concat: axis %d is out of range for rank %d",
                        (int)axis, (int)r);
  }
  KILN_TRY(check_concat(n, xs, axis, y));
  int64_t outer = dims_product(&y->shape, 0, axis);
  int64_t inner = dims_product(&y->shape, axis + 1, y->shape.rank);
  int64_t y_row = y->shape.d[axis] * inner;
  if (kiln_dims_count(&y->shape) == 0) return KILN_OK;
  int64_t offset = 0; /* start of input i inside one y row */
  for (int32_t i = 0; i < n; i++) {
    int64_t x_row = xs[i].shape.d[axis] * inner;
    for (int64_t o = 0; o < outer; o++) move(y, o * y_row + offset, &xs[i], o * x_row, x_row);
    offset += x_row;
  }
  return KILN_OK;
}

kiln_status kiln_cpu_slice(const kiln_tensor *x, int32_t axis, int64_t start, int64_t end,
                           kiln_tensor *y) {
  char sx[128], sy[128], sw[128];
  KILN_TRY(check_movable(x, "x", y, "slice"));
  int32_t r = x->shape.rank;
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r)
    return kiln_error(KILN_ERR_INVALID_ARG, "slice: axis %d is out of range for x of rank %d",
                      (int)axis, (int)r);
  if (start < 0 || start > end || end > x->shape.d[axis])
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "slice: [%lld, %lld) is not a valid range of dim %d (size %lld); normalize "
                      "start/end to 0 <= start <= end <= dim",
                      (long long)start, (long long)end, (int)axis, (long long)x->shape.d[axis]);
  kiln_dims want = x->shape;
  want.d[axis] = end - start;
  if (!kiln_dims_equal(&want, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "slice: y is %s but slicing x %s gives %s",
                      kiln_dims_str(&y->shape, sy, sizeof sy), kiln_dims_str(&x->shape, sx, sizeof sx),
                      kiln_dims_str(&want, sw, sizeof sw));
  int64_t outer = dims_product(&x->shape, 0, axis);
  int64_t inner = dims_product(&x->shape, axis + 1, r);
  int64_t x_row = x->shape.d[axis] * inner, y_row = (end - start) * inner;
  if (kiln_dims_count(&y->shape) == 0) return KILN_OK;
  for (int64_t o = 0; o < outer; o++) move(y, o * y_row, x, o * x_row + start * inner, y_row);
  return KILN_OK;
}
