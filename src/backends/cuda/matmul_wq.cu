/* src/backends/cuda/matmul_wq.cu - the dequantization kernel of the weight-only quantized
 * matmul's large-M path: Wq -> W in the float type (into the layer's workspace), one element per
 * thread; cuBLASLt then runs the matmul (matmul_wq.c). Format: src/core/quant.h. The small-M
 * path, which dequantizes in registers, is the skinny kernel (skinny.cu).
 */
#include <stdint.h>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_internal.h"

namespace {

/* W[n, k] = code * scale in the float type wdt; grid-stride over rows (y) and columns (x). */
__global__ void wq_dequant_kernel(const uint8_t *__restrict__ wq, int qbits, const float *__restrict__ scales,
                                  int group, void *w, int wdt, int64_t n_rows, int k_len) {
  const int64_t per_row = group > 0 ? k_len / group : 1;
  for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y)
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < k_len; c += gridDim.x * blockDim.x) {
      const int64_t i = r * k_len + c;
      int code;
      if (qbits == 8) {
        code = (int8_t)wq[i];
      } else {
        int nib = (wq[i >> 1] >> ((i & 1) * 4)) & 0xf;
        code = nib >= 8 ? nib - 16 : nib;
      }
      float s = scales[group > 0 ? r * per_row + c / group : r];
      kiln_st(w, wdt, i, (float)code * s);
    }
}

} /* namespace */

extern "C" kiln_status kiln_cuda_wq_dequantize(const kiln_tensor *wq, const kiln_tensor *scales, int32_t group,
                                               void *w, kiln_dtype dtype, int64_t n, int64_t k, void *stream) {
  if (n == 0 || k == 0) return KILN_OK;
  if (k > 2147483647LL)
    return kiln_error(KILN_ERR_UNSUPPORTED, "matmul_wq: K = %lld is too large to dequantize", (long long)k);
  int64_t bx = (k + KILN_CUDA_THREADS - 1) / KILN_CUDA_THREADS;
  dim3 grid((unsigned int)(bx < 64 ? bx : 64), (unsigned int)(n < 65535 ? n : 65535)), block(KILN_CUDA_THREADS);
  wq_dequant_kernel<<<grid, block, 0, kiln_stream(stream)>>>((const uint8_t *)wq->data,
                                                           wq->dtype == KILN_DTYPE_INT8 ? 8 : 4,
                                                           (const float *)scales->data, group, w, (int)dtype, n,
                                                           (int)k);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
