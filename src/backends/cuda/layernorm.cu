/* src/backends/cuda/layernorm.cu - layernorm over the last dim, and the fused residual add +
 * layernorm (sum = a + b; y = layernorm(sum)), fp32 statistics.
 *
 * One block per row. Rows up to 8 elements per thread (2048 with 256 threads) stay in registers:
 * one read, the mean, the variance around the mean, one write. Longer rows take three passes
 * over memory (mean, variance around the mean, write). Either way the variance does not suffer
 * from E[x^2] - E[x]^2 cancellation. The fused op computes its statistics from the fp32 sum
 * (before rounding to sum's dtype). b broadcasts over leading dims (b[i % nb]); the modulo is
 * skipped when b has a's shape. (A warp-per-row kernel with 16-byte loads was removed: in the
 * Whisper large-v3 encoder on an H100 it was no faster at batch 4 and 16 and 0.7 ms slower at
 * batch 1; bench/RESULTS.md, session 8.)
 */
#include "backends/cuda/cuda_common.cuh"

/* a, y, sum: [rows, n]; b: nb elements broadcast as b[i % nb] (NULL: no add); gamma/beta [n]
 * (NULL: 1 and 0). */
static __global__ void layernorm_kernel(const void *a, int adt, const void *b, int bdt, int64_t nb,
                                        const void *gamma, int gdt, const void *beta, int bedt,
                                        float eps, void *sum, int sdt, void *y, int ydt,
                                        int64_t n) {
  __shared__ float sh[32];
  int64_t base = (int64_t)blockIdx.x * n;
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = kiln_ld(a, adt, base + i);
    if (b) v += kiln_ld(b, bdt, (base + i) % nb);
    acc += v;
  }
  float mean = kiln_block_reduce(acc, sh, 0) / (float)n;
  acc = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = kiln_ld(a, adt, base + i);
    if (b) v += kiln_ld(b, bdt, (base + i) % nb);
    acc += (v - mean) * (v - mean);
  }
  float var = kiln_block_reduce(acc, sh, 0) / (float)n;
  float rstd = rsqrtf(var + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = kiln_ld(a, adt, base + i);
    if (b) v += kiln_ld(b, bdt, (base + i) % nb);
    if (sum) kiln_st(sum, sdt, base + i, v);
    float g = gamma ? kiln_ld(gamma, gdt, i) : 1.0f;
    float be = beta ? kiln_ld(beta, bedt, i) : 0.0f;
    kiln_st(y, ydt, base + i, (v - mean) * rstd * g + be);
  }
}

/* The same with the row in registers: n <= PER * blockDim.x. */
template <int PER>
static __global__ void layernorm_regs_kernel(const void *a, int adt, const void *b, int bdt, int64_t nb,
                                             const void *gamma, int gdt, const void *beta, int bedt,
                                             float eps, void *sum, int sdt, void *y, int ydt, int n) {
  __shared__ float sh[32];
  const int64_t base = (int64_t)blockIdx.x * n;
  const bool full_b = b && nb == (int64_t)gridDim.x * n;
  float v[PER];
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < PER; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = 0.0f;
    if (i < n) {
      v[j] = kiln_ld(a, adt, base + i);
      if (b) v[j] += kiln_ld(b, bdt, full_b ? base + i : (base + i) % nb);
      acc += v[j];
    }
  }
  const float mean = kiln_block_reduce(acc, sh, 0) / (float)n;
  acc = 0.0f;
#pragma unroll
  for (int j = 0; j < PER; j++)
    if (threadIdx.x + j * blockDim.x < n) acc += (v[j] - mean) * (v[j] - mean);
  const float rstd = rsqrtf(kiln_block_reduce(acc, sh, 0) / (float)n + eps);
#pragma unroll
  for (int j = 0; j < PER; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i >= n) continue;
    if (sum) kiln_st(sum, sdt, base + i, v[j]);
    const float g = gamma ? kiln_ld(gamma, gdt, i) : 1.0f, be = beta ? kiln_ld(beta, bedt, i) : 0.0f;
    kiln_st(y, ydt, base + i, (v[j] - mean) * rstd * g + be);
  }
}

static kiln_status check_param(const kiln_tensor *p, int64_t n, const char *op, const char *what) {
  if (!p) return KILN_OK;
  KILN_TRY(kiln_check_float(p, op, what));
  if (kiln_dims_count(&p->shape) != n)
    return kiln_error(KILN_ERR_SHAPE, "%s: %s has %lld elements; it must have the last dim %lld",
                      op, what, (long long)kiln_dims_count(&p->shape), (long long)n);
  return KILN_OK;
}

static kiln_status launch(const kiln_tensor *a, const kiln_tensor *b, const kiln_tensor *gamma,
                          const kiln_tensor *beta, float eps, kiln_tensor *sum, kiln_tensor *y,
                          void *stream, const char *op) {
  KILN_TRY(kiln_check_float(a, op, "x"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (a->shape.rank < 1) return kiln_error(KILN_ERR_SHAPE, "%s: x must have rank >= 1", op);
  if (!kiln_dims_equal(&a->shape, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: y must have x's shape", op);
  int64_t n = a->shape.d[a->shape.rank - 1], count = kiln_dims_count(&a->shape), nb = 1;
  if (b) {
    KILN_TRY(kiln_check_float(b, op, "b"));
    nb = kiln_dims_count(&b->shape);
    int32_t off = a->shape.rank - b->shape.rank;
    int ok = off >= 0;
    for (int32_t i = 0; ok && i < b->shape.rank; i++) ok = a->shape.d[off + i] == b->shape.d[i];
    if (!ok)
      return kiln_error(KILN_ERR_SHAPE, "%s: b must have a's shape or a suffix of it", op);
  }
  if (sum) {
    KILN_TRY(kiln_check_float(sum, op, "sum"));
    if (!kiln_dims_equal(&a->shape, &sum->shape))
      return kiln_error(KILN_ERR_SHAPE, "%s: sum must have a's shape", op);
  }
  KILN_TRY(check_param(gamma, n, op, "gamma"));
  KILN_TRY(check_param(beta, n, op, "beta"));
  if (count == 0) return KILN_OK;
  int64_t rows = count / n;
  if (rows > 2147483647LL)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %lld rows is more than one launch takes; split "
                      "the input", op, (long long)rows);
  unsigned int threads = kiln_row_threads(n);
  if (n <= 8 * (int64_t)threads) {
    int per = (int)((n + threads - 1) / threads);
#define KILN_LN_REGS(P)                                                                                      \
  layernorm_regs_kernel<P><<<(unsigned int)rows, threads, 0, kiln_stream(stream)>>>(                        \
      a->data, a->dtype, b ? b->data : NULL, b ? b->dtype : KILN_DTYPE_FP32, nb, gamma ? gamma->data : NULL,  \
      gamma ? gamma->dtype : KILN_DTYPE_FP32, beta ? beta->data : NULL, beta ? beta->dtype : KILN_DTYPE_FP32, \
      eps, sum ? sum->data : NULL, sum ? sum->dtype : KILN_DTYPE_FP32, y->data, y->dtype, (int)n)
    if (per <= 2) KILN_LN_REGS(2);
    else if (per <= 4) KILN_LN_REGS(4);
    else KILN_LN_REGS(8);
#undef KILN_LN_REGS
    KILN_CUDA_CHECK_LAUNCH();
    return KILN_OK;
  }
  layernorm_kernel<<<(unsigned int)rows, threads, 0, kiln_stream(stream)>>>(
      a->data, a->dtype, b ? b->data : NULL, b ? b->dtype : KILN_DTYPE_FP32, nb,
      gamma ? gamma->data : NULL, gamma ? gamma->dtype : KILN_DTYPE_FP32,
      beta ? beta->data : NULL, beta ? beta->dtype : KILN_DTYPE_FP32, eps,
      sum ? sum->data : NULL, sum ? sum->dtype : KILN_DTYPE_FP32, y->data, y->dtype, n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_layernorm(const kiln_tensor *x, const kiln_tensor *gamma,
                                           const kiln_tensor *beta, float eps, kiln_tensor *y,
                                           void *stream) {
  return launch(x, NULL, gamma, beta, eps, NULL, y, stream, "kiln_cuda_layernorm");
}

extern "C" kiln_status kiln_cuda_add_layernorm(const kiln_tensor *a, const kiln_tensor *b,
                                               const kiln_tensor *gamma, const kiln_tensor *beta,
                                               float eps, kiln_tensor *sum, kiln_tensor *y,
                                               void *stream) {
  if (!b) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_add_layernorm: b is NULL");
  return launch(a, b, gamma, beta, eps, sum, y, stream, "kiln_cuda_add_layernorm");
}
