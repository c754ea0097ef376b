/* src/backends/cuda/cuda_internal.h - what the CUDA backend's files share and nobody else sees:
 * the context struct, kiln's own matmul kernel launcher (used by matmul.c) and the weight-only
 * matmul's kernel launchers (used by matmul_wq.c).
 * Not part of the backend's interface (that is cuda_ops.h).
 */
#ifndef KILN_CUDA_INTERNAL_H
#define KILN_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <pthread.h>

#include "backends/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The heuristic's answer for one matmul problem, remembered so that a shape whose stored tactic
 * does not apply (a decoder step at M = 1 with an algorithm timed at the opt shape) does not
 * ask cuBLASLt's heuristic on every call: that query costs far more than the matmul itself. */
typedef struct kiln_cuda_algo_entry {
  int64_t m, n, k;
  int32_t dtype, has_bias, act, used, found; /* found 0: no cuBLASLt algorithm (kiln's kernel runs) */
  uint32_t align;
  size_t workspace;
  cublasLtMatmulAlgo_t algo;
} kiln_cuda_algo_entry;

#define KILN_CUDA_ALGO_CACHE 256

struct kiln_cuda_ctx {
  cublasLtHandle_t lt;
  kiln_cuda_device_info info;
  pthread_mutex_t algo_lock;
  kiln_cuda_algo_entry algo_cache[KILN_CUDA_ALGO_CACHE];
  int32_t algo_next; /* the slot the next new entry takes (round robin once full) */
};

/* kiln's tiled matmul kernel (tactic KILN_TACTIC_KERNEL index 0):
 * y[M, N] = act(x[M, K] @ w[N, K]^T + b[N]), any mix of fp32/fp16/bf16; b may be NULL.
 * Arguments are checked by the caller (kiln_cuda_matmul). */
kiln_status kiln_cuda_matmul_tiled(const kiln_tensor *x, const kiln_tensor *w,
                                   const kiln_tensor *b, kiln_activation act, kiln_tensor *y,
                                   int64_t m, int64_t n, int64_t k, void *stream);

/* Number of kiln's own matmul kernels (tactics KILN_TACTIC_KERNEL 0 .. count-1): the tiled
 * kernel, then the skinny kernel's variants. */
#define KILN_CUDA_MATMUL_KERNELS (1 + KILN_CUDA_SKINNY_VARIANTS)

/* Workspace a DEFAULT-tactic matmul gets for cuBLASLt's run-time heuristic choice. */
#define KILN_CUDA_DEFAULT_MATMUL_WORKSPACE ((size_t)4 << 20)

/* skinny.cu: y[M, N] = act(norm(x) @ W^T + b) (+ residual) for small M; W fp16/bf16 in x's dtype,
 * or int8 / int4 codes with fp32 scales (group as in quant.h); x, y (and gamma, beta, residual)
 * one dtype, fp16 or bf16; sm_80+ (the caller checks). Shape arguments are checked by the
 * caller; dtypes and alignment here (KILN_ERR_UNSUPPORTED). */
int kiln_cuda_skinny_fits(kiln_dtype dtype, kiln_dtype wdtype, int64_t k, int32_t group);
kiln_status kiln_cuda_skinny(int32_t variant, const kiln_tensor *x, const kiln_tensor *w,
                             const kiln_tensor *scales, int32_t group, const kiln_tensor *b,
                             kiln_activation act, const kiln_cuda_mm_fuse *fuse, kiln_tensor *y,
                             int64_t m, int64_t n, int64_t k, void *stream);
/* matmul.c, for matmul_wq.c: checks of the fusions' tensors (k = x's last dim); the layernorm
 * prologue of the paths other than the skinny kernel: x normalized into the front of the
 * workspace (xn; workspace and its size move past it), or xn = x without a layernorm. */
kiln_status kiln_cuda_mm_fuse_check(const kiln_cuda_mm_fuse *f, const kiln_tensor *x, const kiln_tensor *y,
                                    int64_t k, const char *op);
kiln_status kiln_cuda_mm_ln_prologue(const kiln_tensor *x, const kiln_cuda_mm_fuse *f, void **workspace,
                                     size_t *workspace_bytes, kiln_tensor *xn, void *stream);
/* matmul_wq.cu: the dequantization of wq [n, k] into w (dtype fp32, fp16 or bf16, n * k elements). */
kiln_status kiln_cuda_wq_dequantize(const kiln_tensor *wq, const kiln_tensor *scales,
                                    int32_t group, void *w, kiln_dtype dtype, int64_t n, int64_t k,
                                    void *stream);

#ifdef __cplusplus
}
#endif
#endif /* KILN_CUDA_INTERNAL_H */
