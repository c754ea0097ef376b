/* src/backends/cuda/elementwise.cu - add and mul with suffix broadcast, and the activations
 * (GELU erf form, ReLU, SiLU), for fp32/fp16/bf16 storage computed in fp32.
 *
 * Grid-stride loops, one element per thread per step; no vectorized loads. y may alias a or x
 * (each element is read before it is written by the same thread). Not for reductions.
 */
#include "backends/cuda/cuda_common.cuh"

enum { BINARY_ADD = 0, BINARY_MUL = 1 };

/* y[i] = a[i] op b[i % nb] for i < n. */
static __global__ void binary_kernel(const void *a, int adt, const void *b, int bdt, int64_t nb,
                                     void *y, int ydt, int64_t n, int op) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    float va = kiln_ld(a, adt, i), vb = kiln_ld(b, bdt, i % nb);
    kiln_st(y, ydt, i, op == BINARY_ADD ? va + vb : va * vb);
  }
}

static __global__ void activation_kernel(const void *x, int xdt, int act, void *y, int ydt,
                                         int64_t n) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    kiln_st(y, ydt, i, kiln_act(kiln_ld(x, xdt, i), act));
}

/* The same for fp16/bf16 x and y of one dtype, 8 elements (16 bytes) per step; n8 = n / 8. */
static __global__ void activation8_kernel(const void *x, int act, void *y, int dt, int64_t n8) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += step) {
    float v[8];
    kiln_ld8((const uint4 *)x + i, dt, v);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = kiln_act(v[j], act);
    kiln_st8((uint4 *)y + i, dt, v);
  }
}

/* b's shape must equal a's or a suffix of it; y's shape equals a's. */
static kiln_status check_binary(const kiln_tensor *a, const kiln_tensor *b, const kiln_tensor *y,
                                const char *op) {
  char sa[128], sb[128];
  KILN_TRY(kiln_check_float(a, op, "a"));
  KILN_TRY(kiln_check_float(b, op, "b"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (!kiln_dims_equal(&a->shape, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: y %s must have a's shape %s", op,
                      kiln_dims_str(&y->shape, sb, sizeof sb),
                      kiln_dims_str(&a->shape, sa, sizeof sa));
  int32_t off = a->shape.rank - b->shape.rank;
  int ok = off >= 0;
  for (int32_t i = 0; ok && i < b->shape.rank; i++) ok = a->shape.d[off + i] == b->shape.d[i];
  if (!ok)
    return kiln_error(KILN_ERR_SHAPE, "%s: b %s must equal a %s or a suffix of its shape", op,
                      kiln_dims_str(&b->shape, sb, sizeof sb),
                      kiln_dims_str(&a->shape, sa, sizeof sa));
  return KILN_OK;
}

static kiln_status binary(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y, int op,
                          void *stream, const char *name) {
  KILN_TRY(check_binary(a, b, y, name));
  int64_t n = kiln_dims_count(&y->shape), nb = kiln_dims_count(&b->shape);
  if (n == 0) return KILN_OK;
  binary_kernel<<<kiln_grid_1d(n), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
      a->data, a->dtype, b->data, b->dtype, nb, y->data, y->dtype, n, op);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_add(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y,
                                     void *stream) {
  return binary(a, b, y, BINARY_ADD, stream, "kiln_cuda_add");
}

extern "C" kiln_status kiln_cuda_mul(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y,
                                     void *stream) {
  return binary(a, b, y, BINARY_MUL, stream, "kiln_cuda_mul");
}

extern "C" kiln_status kiln_cuda_activation(const kiln_tensor *x, kiln_activation act,
                                            kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_activation";
  KILN_TRY(kiln_check_float(x, op, "x"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (act < KILN_ACTIVATION_NONE || act > KILN_ACTIVATION_SILU)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown activation %d; use none, gelu, relu or silu",
                      op, (int)act);
  if (!kiln_dims_equal(&x->shape, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: x and y shapes differ", op);
  int64_t n = kiln_dims_count(&y->shape);
  if (n == 0) return KILN_OK;
  if (x->dtype == y->dtype && kiln_vec8_ok(x) && kiln_vec8_ok(y)) {
    activation8_kernel<<<kiln_grid_1d(n / 8), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(x->data, (int)act, y->data,
                                                                                         y->dtype, n / 8);
    KILN_CUDA_CHECK_LAUNCH();
    return KILN_OK;
  }
  activation_kernel<<<kiln_grid_1d(n), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
      x->data, x->dtype, (int)act, y->data, y->dtype, n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
