/* src/backends/cuda/softmax.cu - softmax over the last dim, row-wise, rows of any length.
 *
 * One block per row, three passes over global memory (max, sum of exp, write); fp32 math.
 * Simple and exact rather than fast: attention does its own online softmax (attention.cu).
 */
#include "backends/cuda/cuda_common.cuh"

/* x, y: [rows, n] */
static __global__ void softmax_kernel(const void *x, int xdt, void *y, int ydt, int64_t n) {
  __shared__ float sh[32];
  int64_t base = (int64_t)blockIdx.x * n;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, kiln_ld(x, xdt, base + i));
  m = kiln_block_reduce(m, sh, 1);
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += expf(kiln_ld(x, xdt, base + i) - m);
  s = kiln_block_reduce(s, sh, 0);
  float inv = 1.0f / s;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    kiln_st(y, ydt, base + i, expf(kiln_ld(x, xdt, base + i) - m) * inv);
}

extern "C" kiln_status kiln_cuda_softmax(const kiln_tensor *x, kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_softmax";
  KILN_TRY(kiln_check_float(x, op, "x"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (x->shape.rank < 1) return kiln_error(KILN_ERR_SHAPE, "%s: x must have rank >= 1", op);
  if (!kiln_dims_equal(&x->shape, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: y must have x's shape", op);
  int64_t count = kiln_dims_count(&x->shape), n = x->shape.d[x->shape.rank - 1];
  if (count == 0) return KILN_OK;
  int64_t rows = count / n;
  if (rows > 2147483647LL)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %lld rows is more than one launch takes; split "
                      "the input", op, (long long)rows);
  softmax_kernel<<<(unsigned int)rows, kiln_row_threads(n), 0, kiln_stream(stream)>>>(
      x->data, x->dtype, y->data, y->dtype, n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
