/* src/backends/cuda/cuda_internal.h - what the CUDA backend's files share and nobody else sees:
 * the context struct and kiln's own matmul kernel launcher (used by matmul.c).
 * Not part of the backend's interface (that is cuda_ops.h).
 */
#ifndef KILN_CUDA_INTERNAL_H
#define KILN_CUDA_INTERNAL_H

#include <cublasLt.h>

#include "backends/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kiln_cuda_ctx {
  cublasLtHandle_t lt;
  kiln_cuda_device_info info;
};

/* kiln's tiled matmul kernel (tactic KILN_TACTIC_KERNEL index 0):
 * y[M, N] = act(x[M, K] @ w[N, K]^T + b[N]), any mix of fp32/fp16/bf16; b may be NULL.
 * Arguments are checked by the caller (kiln_cuda_matmul). */
kiln_status kiln_cuda_matmul_tiled(const kiln_tensor *x, const kiln_tensor *w,
                                   const kiln_tensor *b, kiln_activation act, kiln_tensor *y,
                                   int64_t m, int64_t n, int64_t k, void *stream);

/* Number of kiln's own matmul kernels (tactics KILN_TACTIC_KERNEL 0 .. count-1). */
#define KILN_CUDA_MATMUL_KERNELS 1

#ifdef __cplusplus
}
#endif
#endif /* KILN_CUDA_INTERNAL_H */
