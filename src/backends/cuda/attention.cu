/* src/backends/cuda/attention.cu - plain scaled-dot-product attention, the reference GPU path:
 * y = softmax(q k^T * scale) v, q [B, H, Sq, D], k/v [B, H, Skv, D], y [B, H, Sq, D].
 *
 * One warp per query row (4 rows per block when D allows), online softmax over the keys in fp32,
 * the row's accumulator in shared memory (each lane owns the elements d = lane mod 32, so no
 * synchronization is needed). Causal masking is bottom-right aligned: key j is masked for query
 * i when j > i + (Skv - Sq). A row that sees no key (Skv = 0, or fully masked) is written as
 * zeros. Correct for any Sq/Skv/D; not fast (no tiling of K/V, no tensor cores): the fused
 * attention plugins are the fast path.
 */
#include "backends/cuda/cuda_common.cuh"

static __global__ void attention_kernel(const void *q, int qdt, const void *k, int kdt,
                                        const void *v, int vdt, void *y, int ydt, int64_t rows,
                                        int64_t sq, int64_t skv, int64_t dim, float scale,
                                        int causal) {
  extern __shared__ float acc_all[];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + warp; /* over B*H*Sq */
  if (row >= rows) return; /* whole warp leaves together; no block-wide sync below */
  float *acc = acc_all + (int64_t)warp * dim;
  int64_t bh = row / sq, i = row % sq;
  const int64_t q_off = row * dim, kv_off = bh * skv * dim;
  int64_t j_end = skv;
  if (causal) {
    j_end = i + (skv - sq) + 1;
    if (j_end > skv) j_end = skv;
    if (j_end < 0) j_end = 0;
  }
  for (int64_t d = lane; d < dim; d += 32) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = 0; j < j_end; j++) {
    float s = 0.0f;
    for (int64_t d = lane; d < dim; d += 32)
      s += kiln_ld(q, qdt, q_off + d) * kiln_ld(k, kdt, kv_off + j * dim + d);
    s = kiln_warp_sum(s) * scale;
    float m_new = fmaxf(m, s);
    float corr = expf(m - m_new); /* 0 on the first key (m = -inf) */
    float p = expf(s - m_new);
    l = l * corr + p;
    for (int64_t d = lane; d < dim; d += 32)
      acc[d] = acc[d] * corr + p * kiln_ld(v, vdt, kv_off + j * dim + d);
    m = m_new;
  }
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t d = lane; d < dim; d += 32) kiln_st(y, ydt, q_off + d, acc[d] * inv);
}

/* Few query rows against many keys (a decoder step: Sq = 1, Skv up to 1500): one block per query
 * row. Phase 1: the threads split the keys, each scores its keys (q in shared memory) into
 * shared memory; phase 2: block max and sum; phase 3: thread t accumulates output dim t % dim
 * over keys j = t / dim (mod the number of groups); the groups are summed in shared memory.
 * Shared memory: dim (q) + skv (scores) + blockDim (partial sums) floats. */
#define DECODE_THREADS 256
static __global__ void attention_decode_kernel(const void *q, int qdt, const void *k, int kdt, const void *v,
                                               int vdt, void *y, int ydt, int64_t sq, int64_t skv, int dim,
                                               float scale, int causal) {
  extern __shared__ float sh[];
  float *qs = sh, *sc = sh + dim, *part = sc + skv;
  __shared__ float red[32];
  int64_t row = blockIdx.x, bh = row / sq, i = row % sq;
  const int64_t q_off = row * dim, kv_off = bh * skv * dim;
  int64_t j_end = skv;
  if (causal) {
    j_end = i + (skv - sq) + 1;
    if (j_end > skv) j_end = skv;
    if (j_end < 0) j_end = 0;
  }
  for (int d = threadIdx.x; d < dim; d += blockDim.x) qs[d] = kiln_ld(q, qdt, q_off + d) * scale;
  __syncthreads();
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < j_end; j += blockDim.x) {
    float s = 0.0f;
    for (int d = 0; d < dim; d++) s += qs[d] * kiln_ld(k, kdt, kv_off + j * dim + d);
    sc[j] = s;
    m = fmaxf(m, s);
  }
  m = kiln_block_reduce(m, red, 1);
  float l = 0.0f;
  for (int64_t j = threadIdx.x; j < j_end; j += blockDim.x) {
    float p = expf(sc[j] - m);
    sc[j] = p;
    l += p;
  }
  l = kiln_block_reduce(l, red, 0); /* its barriers also publish sc[] */
  int groups = blockDim.x / dim, g = threadIdx.x / dim, d = threadIdx.x % dim; /* dim <= blockDim */
  float acc = 0.0f;
  if (g < groups)
    for (int64_t j = g; j < j_end; j += groups) acc += sc[j] * kiln_ld(v, vdt, kv_off + j * dim + d);
  part[threadIdx.x] = acc;
  __syncthreads();
  if (g == 0) {
    float sum = 0.0f;
    for (int h = 0; h < groups; h++) sum += part[h * dim + d];
    kiln_st(y, ydt, q_off + d, l > 0.0f ? sum / l : 0.0f);
  }
}

extern "C" kiln_status kiln_cuda_attention(const kiln_tensor *q, const kiln_tensor *k,
                                           const kiln_tensor *v, float scale, int32_t causal,
                                           kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_attention";
  KILN_TRY(kiln_check_float(q, op, "q"));
  KILN_TRY(kiln_check_float(k, op, "k"));
  KILN_TRY(kiln_check_float(v, op, "v"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (q->shape.rank != 4 || k->shape.rank != 4 || v->shape.rank != 4 || y->shape.rank != 4)
    return kiln_error(KILN_ERR_SHAPE, "%s: q, k, v and y must be [B, H, S, D]", op);
  int64_t bsz = q->shape.d[0], heads = q->shape.d[1], sq = q->shape.d[2], dim = q->shape.d[3];
  int64_t skv = k->shape.d[2];
  if (k->shape.d[0] != bsz || k->shape.d[1] != heads || k->shape.d[3] != dim ||
      !kiln_dims_equal(&k->shape, &v->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: k and v must be [B, H, Skv, D] with q's B, H and D", op);
  if (!kiln_dims_equal(&q->shape, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: y must have q's shape", op);
  int64_t rows = bsz * heads * sq;
  if (rows == 0 || dim == 0) return KILN_OK;
  size_t decode_smem = ((size_t)dim + (size_t)skv + DECODE_THREADS) * sizeof(float);
  if (sq <= 8 && dim <= DECODE_THREADS && decode_smem <= 48 * 1024 && rows <= 2147483647LL) {
    attention_decode_kernel<<<(unsigned int)rows, DECODE_THREADS, decode_smem, kiln_stream(stream)>>>(
        q->data, q->dtype, k->data, k->dtype, v->data, v->dtype, y->data, y->dtype, sq, skv, (int)dim, scale,
        causal);
    KILN_CUDA_CHECK_LAUNCH();
    return KILN_OK;
  }
  size_t row_bytes = (size_t)dim * sizeof(float);
  int warps = 4;
  if (row_bytes * 4 > 48 * 1024) warps = 1;
  if (row_bytes * (size_t)warps > 48 * 1024)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: head dim %lld is too large (max 12288)", op,
                      (long long)dim);
  int64_t blocks = (rows + warps - 1) / warps;
  if (blocks > 2147483647LL)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: too many rows for one launch", op);
  attention_kernel<<<(unsigned int)blocks, warps * 32, row_bytes * warps, kiln_stream(stream)>>>(
      q->data, q->dtype, k->data, k->dtype, v->data, v->dtype, y->data, y->dtype, rows, sq, skv,
      dim, scale, causal);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
