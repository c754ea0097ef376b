/* src/backends/cuda/matmul_kernel.cu - kiln's own matmul kernel (tactic KILN_TACTIC_KERNEL 0):
 * y[M, N] = act(x[M, K] @ w[N, K]^T + b[N]) with 16x16 shared-memory tiles, fp32 accumulation,
 * any fp32/fp16/bf16 mix, K = 0 allowed (y = act(b)).
 *
 * A plain tiled kernel: the baseline the cuBLASLt tactics are timed against, and the path for
 * shapes or dtype mixes cuBLASLt does not take. Not tuned (no tensor cores, no double buffering).
 */
#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_internal.h"

#define TILE 16

/* grid.x: M tiles (may be large), grid.y: N tiles; block TILE x TILE. */
static __global__ void matmul_tiled_kernel(const void *x, int xdt, const void *w, int wdt,
                                           const void *b, int bdt, int act, void *y, int ydt,
                                           int64_t m_rows, int64_t n_cols, int64_t k_len) {
  __shared__ float xs[TILE][TILE + 1]; /* [m][k] */
  __shared__ float ws[TILE][TILE + 1]; /* [n][k] */
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t m = (int64_t)blockIdx.x * TILE + ty;      /* output row of this thread */
  int64_t n = (int64_t)blockIdx.y * TILE + tx;      /* output column of this thread */
  int64_t n_load = (int64_t)blockIdx.y * TILE + ty; /* w row this thread loads */
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k_len; k0 += TILE) {
    int64_t k = k0 + tx;
    xs[ty][tx] = (m < m_rows && k < k_len) ? kiln_ld(x, xdt, m * k_len + k) : 0.0f;
    ws[ty][tx] = (n_load < n_cols && k < k_len) ? kiln_ld(w, wdt, n_load * k_len + k) : 0.0f;
    __syncthreads();
    for (int kk = 0; kk < TILE; kk++) acc += xs[ty][kk] * ws[tx][kk];
    __syncthreads();
  }
  if (m < m_rows && n < n_cols) {
    if (b) acc += kiln_ld(b, bdt, n);
    kiln_st(y, ydt, m * n_cols + n, kiln_act(acc, act));
  }
}

extern "C" kiln_status kiln_cuda_matmul_tiled(const kiln_tensor *x, const kiln_tensor *w,
                                              const kiln_tensor *b, kiln_activation act,
                                              kiln_tensor *y, int64_t m, int64_t n, int64_t k,
                                              void *stream) {
  if (m == 0 || n == 0) return KILN_OK;
  int64_t m_tiles = (m + TILE - 1) / TILE, n_tiles = (n + TILE - 1) / TILE;
  if (m_tiles > 2147483647LL || n_tiles > 65535)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "kiln matmul kernel: shape [%lld, %lld] is too large for one launch; use a "
                      "cuBLASLt tactic",
                      (long long)m, (long long)n);
  dim3 grid((unsigned int)m_tiles, (unsigned int)n_tiles), block(TILE, TILE);
  matmul_tiled_kernel<<<grid, block, 0, kiln_stream(stream)>>>(
      x->data, x->dtype, w->data, w->dtype, b ? b->data : NULL, b ? b->dtype : KILN_DTYPE_FP32,
      (int)act, y->data, y->dtype, m, n, k);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
