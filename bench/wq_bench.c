/* bench/wq_bench.c - the weight-only quantized matmul against the fp16 cuBLASLt matmul at Whisper
 * large-v3 decoder shapes: M (rows of x) 1, 4, 16, 64; N x K = 1280 x 1280 (attention
 * projections), 5120 x 1280 (fc1), 1280 x 5120 (fc2); fp16 activations.
 *
 * For each shape it runs, on random data: the fp16 matmul with every cuBLASLt candidate
 * (kiln_cuda_matmul_candidates; the fastest counts), and kiln's small-M kernel variants and the
 * dequantize + cuBLASLt tactics of kiln_cuda_matmul_wq for int8 (one scale per row) and int4
 * (groups of 128). Every quantized result is first checked against cuBLASLt on the dequantized
 * weights (nmse printed). Weights are read cold, as in a decoding step whose layers together
 * exceed the L2 cache: each timed call uses the next of enough weight copies to fill 256 MB.
 * Prints microseconds per call, GB/s (weights + x + y bytes over the time) and the fp16 time
 * over the quantized time (> 1: the quantized matmul is faster).
 *
 * usage: wq_bench [--iterations N] [--warmup N] [--device N]     (a GPU is needed)
 * Not a test: the checks are in tests/gpu/test_cuda_wq.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "wq_bench"
#include "bench_util.h"
#include "kiln/kiln.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"
#include "bench_cuda.h"
#include "core/quant.h"

#define COLD_BYTES ((size_t)256 << 20)
#define MAX_COPIES 256
#define WORKSPACE_BYTES ((size_t)32 << 20)
#define MAX_TACTICS 16

static kiln_cuda_ctx *cu;
static cudaStream_t stream;
static void *workspace;
static int iterations = 200, warmup = 20;

/* Weights in one format, in `copies` device copies (cold reads). */
typedef struct weights {
  kiln_dtype dtype; /* FP16, INT8 or INT4 */
  int32_t group;
  int copies;
  void *w[MAX_COPIES], *s[MAX_COPIES];
  size_t bytes; /* codes (or fp16 values) + scales of one copy */
} weights;

static void weights_make(weights *wt, kiln_dtype dtype, int32_t group, const float *w, int64_t n, int64_t k) {
  memset(wt, 0, sizeof *wt);
  wt->dtype = dtype, wt->group = group;
  size_t wb = kiln_dtype_bytes(dtype, n * k), sb = 0;
  void *hw = malloc(wb), *hs = NULL;
  if (dtype == KILN_DTYPE_FP16) {
    kiln_convert_floats(hw, KILN_DTYPE_FP16, w, KILN_DTYPE_FP32, n * k);
  } else {
    sb = (size_t)kiln_quant_scale_count(n, k, group) * 4;
    hs = malloc(sb);
    REQUIRE(kiln_quantize(w, n, k, dtype, group, hw, hs));
  }
  wt->bytes = wb + sb;
  wt->copies = (int)(COLD_BYTES / wt->bytes + 1);
  if (wt->copies > MAX_COPIES) wt->copies = MAX_COPIES;
  for (int c = 0; c < wt->copies; c++) {
    wt->w[c] = bench_upload(hw, wb);
    if (hs) wt->s[c] = bench_upload(hs, sb);
  }
  free(hw), free(hs);
}

static void weights_free(weights *wt) {
  for (int c = 0; c < wt->copies; c++) kiln_cuda_free(wt->w[c]), kiln_cuda_free(wt->s[c]);
}

/* One call of the matmul under test on weight copy c. */
static kiln_status call(const weights *wt, const kiln_tactic *t, int c, const kiln_tensor *x, kiln_tensor *y,
                        int64_t n, int64_t k) {
  kiln_dims wd = {2, {n, k}}, sd = {1, {n}};
  if (wt->group) sd = (kiln_dims){2, {n, k / wt->group}};
  kiln_tensor w = kiln_tensor_contiguous(wt->w[c], wt->dtype, &wd);
  if (wt->dtype == KILN_DTYPE_FP16)
    return kiln_cuda_matmul(cu, t, x, &w, NULL, KILN_ACTIVATION_NONE, y, workspace, WORKSPACE_BYTES, stream);
  kiln_tensor s = kiln_tensor_contiguous(wt->s[c], KILN_DTYPE_FP32, &sd);
  return kiln_cuda_matmul_wq(cu, t, x, &w, &s, NULL, wt->group, KILN_ACTIVATION_NONE, y, workspace, WORKSPACE_BYTES,
                             stream);
}

/* Mean microseconds per call over `iterations` calls, each on the next weight copy. */
static double time_us(const weights *wt, const kiln_tactic *t, const kiln_tensor *x, kiln_tensor *y, int64_t n, int64_t k) {
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  for (int i = 0; i < warmup; i++) REQUIRE(call(wt, t, i % wt->copies, x, y, n, k));
  cudaEventRecord(a, stream);
  for (int i = 0; i < iterations; i++) REQUIRE(call(wt, t, i % wt->copies, x, y, n, k));
  cudaEventRecord(b, stream);
  if (cudaEventSynchronize(b) != cudaSuccess) DIE("timing failed: %s", cudaGetErrorString(cudaGetLastError()));
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a), cudaEventDestroy(b);
  return 1e3 * (double)ms / iterations;
}

static float *download(const kiln_tensor *y, int64_t count) {
  uint16_t *h = malloc((size_t)count * 2);
  float *f = malloc((size_t)count * 4);
  REQUIRE(kiln_cuda_stream_sync(stream));
  REQUIRE(kiln_cuda_memcpy_d2h(h, y->data, (size_t)count * 2, NULL));
  kiln_convert_floats(f, KILN_DTYPE_FP32, h, KILN_DTYPE_FP16, count);
  free(h);
  return f;
}

static double nmse(const float *got, const float *want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) num += (got[i] - want[i]) * (double)(got[i] - want[i]), den += (double)want[i] * want[i];
  return num / (den > 1e-30 ? den : 1e-30);
}

static const char *tactic_name(const kiln_tactic *t, char *buf, size_t n) {
  if (t->kind == KILN_TACTIC_KERNEL) snprintf(buf, n, "kernel %d", t->index);
  else if (t->kind == KILN_TACTIC_CUBLASLT) snprintf(buf, n, "dequant+lt %d", t->index);
  else snprintf(buf, n, "default");
  return buf;
}

/* The best fp16 time for this shape (over cuBLASLt's candidates and the default). */
static double best_fp16(const weights *f16, const kiln_tensor *x, kiln_tensor *y, int64_t m, int64_t n, int64_t k) {
  kiln_tactic t[MAX_TACTICS];
  int32_t count = kiln_cuda_matmul_candidates(cu, m, n, k, KILN_DTYPE_FP16, 0, KILN_ACTIVATION_NONE, WORKSPACE_BYTES, t,
                                              MAX_TACTICS);
  double best = time_us(f16, NULL, x, y, n, k);
  for (int32_t i = 0; i < count; i++)
    if (t[i].kind == KILN_TACTIC_CUBLASLT) {
      double us = time_us(f16, &t[i], x, y, n, k);
      if (us < best) best = us;
    }
  return best;
}

static void bench_shape(int64_t m, int64_t n, int64_t k) {
  float *w = malloc((size_t)(n * k) * 4), *xf = malloc((size_t)(m * k) * 4);
  uint16_t *xh = malloc((size_t)(m * k) * 2);
  for (int64_t i = 0; i < n * k; i++) w[i] = 0.05f * uniform();
  for (int64_t i = 0; i < m * k; i++) xf[i] = uniform();
  kiln_convert_floats(xh, KILN_DTYPE_FP16, xf, KILN_DTYPE_FP32, m * k);
  kiln_dims xd = {2, {m, k}}, yd = {2, {m, n}};
  void *dx = bench_upload(xh, (size_t)(m * k) * 2), *dy = NULL, *dref = NULL;
  REQUIRE(kiln_cuda_malloc(&dy, (size_t)(m * n) * 2));
  REQUIRE(kiln_cuda_malloc(&dref, (size_t)(m * n) * 2));
  kiln_tensor x = kiln_tensor_contiguous(dx, KILN_DTYPE_FP16, &xd), y = kiln_tensor_contiguous(dy, KILN_DTYPE_FP16, &yd);
  kiln_tensor ref = kiln_tensor_contiguous(dref, KILN_DTYPE_FP16, &yd);
  size_t io = (size_t)(m * k + m * n) * 2;

  weights f16;
  weights_make(&f16, KILN_DTYPE_FP16, 0, w, n, k);
  double t16 = best_fp16(&f16, &x, &y, m, n, k);
  printf("M %-3lld N x K %4lld x %-4lld  fp16 cuBLASLt (best)   %8.2f us %7.0f GB/s\n", (long long)m, (long long)n,
         (long long)k, t16, (double)(f16.bytes + io) / (t16 * 1e3));
  static const struct {
    kiln_dtype q;
    int32_t group;
    const char *name;
  } formats[] = {{KILN_DTYPE_INT8, 0, "int8"}, {KILN_DTYPE_INT4, 128, "int4 g128"}};
  for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
    weights q;
    weights_make(&q, formats[f].q, formats[f].group, w, n, k);
    kiln_tactic t[MAX_TACTICS];
    int32_t count = kiln_cuda_matmul_wq_candidates(cu, m, n, k, KILN_DTYPE_FP16, formats[f].q, formats[f].group, 0,
                                                   KILN_ACTIVATION_NONE, WORKSPACE_BYTES, t, MAX_TACTICS);
    /* reference: the default on copy 0 dequantizes when the kernel does not apply; use the
     * first cuBLASLt tactic when there is one */
    const kiln_tactic *lt = NULL;
    for (int32_t i = 0; i < count && !lt; i++)
      if (t[i].kind == KILN_TACTIC_CUBLASLT) lt = &t[i];
    REQUIRE(call(&q, lt, 0, &x, &ref, n, k));
    float *want = download(&ref, m * n);
    double best = 0;
    char name[32], best_name[32] = "";
    for (int32_t i = 0; i < count; i++) {
      REQUIRE(kiln_cuda_memset(dy, 0xFF, (size_t)(m * n) * 2, stream));
      REQUIRE(call(&q, &t[i], 0, &x, &y, n, k));
      float *got = download(&y, m * n);
      double e = nmse(got, want, m * n);
      free(got);
      double us = time_us(&q, &t[i], &x, &y, n, k);
      printf("                          %-9s %-13s %8.2f us %7.0f GB/s  %5.2fx fp16  (nmse %.1e)%s\n", formats[f].name,
             tactic_name(&t[i], name, sizeof name), us, (double)(q.bytes + io) / (us * 1e3), t16 / us, e,
             e > 1e-4 || isnan(e) ? "  WRONG" : "");
      if (best == 0 || us < best) best = us, snprintf(best_name, sizeof best_name, "%s", name);
    }
    if (count > 0)
      printf("                          %-9s best: %s, %.2fx the fp16 matmul\n", formats[f].name, best_name, t16 / best);
    free(want);
    weights_free(&q);
  }
  weights_free(&f16);
  kiln_cuda_free(dx), kiln_cuda_free(dy), kiln_cuda_free(dref);
  free(w), free(xf), free(xh);
}

int main(int argc, char **argv) {
  int device = 0;
  bench_options(argc, argv, &iterations, &warmup, &device);
  if (!kiln_cuda_available()) DIE("no CUDA device");
  REQUIRE(kiln_cuda_ctx_create(device, &cu));
  if (cudaStreamCreate(&stream) != cudaSuccess) DIE("cudaStreamCreate failed");
  REQUIRE(kiln_cuda_malloc(&workspace, WORKSPACE_BYTES));
  const kiln_cuda_device_info *info = kiln_cuda_ctx_info(cu);
  printf("wq_bench: %s (sm_%d%d), fp16 activations, %d timed calls after %d warm-up, weights read cold\n", info->name,
         info->cc_major, info->cc_minor, iterations, warmup);
  static const int64_t ms[] = {1, 4, 16, 64};
  static const int64_t nk[][2] = {{1280, 1280}, {5120, 1280}, {1280, 5120}};
  for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++)
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) bench_shape(ms[i], nk[a][0], nk[a][1]);
  kiln_cuda_free(workspace);
  cudaStreamDestroy(stream);
  kiln_cuda_ctx_destroy(cu);
  return 0;
}

#else

int main(void) {
  fprintf(stderr, "wq_bench: kiln was built without CUDA; build it with the CUDA toolkit on a GPU machine\n");
  return 1;
}

#endif
