/* src/models/whisper/greedy_cuda.cu - greedy token choice on the GPU for batched decoding: per
 * logits row, the first index of the maximum after masking the suppressed tokens (and one more
 * token, e.g. <|endoftext|> before min_new_tokens), as the host's argmax does. Only the chosen
 * ids travel back to the host, not [rows, vocab] logits. Not here: sampling, timestamp rules,
 * log-probabilities (those decodings read the logits on the host).
 */
#include "backends/cuda/cuda_common.cuh" /* kiln_ld; core/error.h with C linkage */
#include "models/whisper/greedy_cuda.h"

#define GREEDY_THREADS 512

/* A value and its index; the larger value wins, the smaller index on ties (NaN never wins). */
static __device__ __forceinline__ void better(float &v, int &i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

static __global__ void greedy_kernel(const void *logits, int dt, int vocab, const int32_t *suppress, int n_suppress,
                                     int extra, int32_t *out) {
  __shared__ float sv[GREEDY_THREADS / 32];
  __shared__ int si[GREEDY_THREADS / 32];
  int row = blockIdx.x;
  const int64_t base = (int64_t)row * vocab;
  float best = -INFINITY;
  int idx = vocab;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    float v = kiln_ld(logits, dt, base + j);
    if (v > best || (v == best && j < idx)) best = v, idx = j;
  }
  /* suppressed tokens are few: a thread whose candidate is one of them rescans without them */
  int hit = idx == extra;
  for (int k = 0; k < n_suppress && !hit; k++) hit = suppress[k] == idx;
  if (hit) {
    best = -INFINITY, idx = vocab;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
      int skip = j == extra;
      for (int k = 0; k < n_suppress && !skip; k++) skip = suppress[k] == j;
      float v = kiln_ld(logits, dt, base + j);
      if (!skip && (v > best || (v == best && j < idx))) best = v, idx = j;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    float v2 = __shfl_xor_sync(0xffffffffu, best, o);
    int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    better(best, idx, v2, i2);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sv[warp] = best, si[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) better(best, idx, sv[w], si[w]);
    out[row] = idx < vocab ? idx : 0;
  }
}

extern "C" kiln_status kiln_whisper_cuda_greedy(const void *logits, kiln_dtype dtype, int32_t rows, int32_t vocab,
                                                const int32_t *suppress, int32_t n_suppress, int32_t extra,
                                                int32_t *out, void *stream) {
  if (!logits || !out || rows < 1 || vocab < 1 || (n_suppress > 0 && !suppress))
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper greedy: bad arguments");
  greedy_kernel<<<(unsigned)rows, GREEDY_THREADS, 0, (cudaStream_t)stream>>>(logits, (int)dtype, vocab, suppress,
                                                                            n_suppress, extra, out);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return kiln_error(KILN_ERR_CUDA, "whisper greedy: launch failed: %s", cudaGetErrorString(e));
  return KILN_OK;
}
