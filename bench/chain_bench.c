/* bench/chain_bench.c - what one skinny matmul costs inside a decoding step: a CUDA graph of
 * CALLS dependent launches of kiln's small-M kernel (skinny.cu, with programmatic dependent
 * launch as the decoder runs it), replayed, timed per launch. Shapes are Whisper large-v3's
 * decoder matrices and a tiny one (16 x 32: no bytes to speak of, so its time is the chain's
 * own cost per launch: launch, griddepcontrol.wait, reduction, store). Weights are read cold
 * (each launch of the graph reads its own copy; the copies together exceed the L2 cache) or hot
 * (every launch the same copy). Prints microseconds per launch for every variant and the best
 * one's share of the time the bytes take at the measured copy bandwidth (cudaMemcpy
 * device-to-device over 512 MB).
 *
 * fp16+ln: the same with the layernorm prologue fused (the decoder's qkv, cross-q and fc1).
 * Then the decoder's attention (kiln_cuda_kv_attention) the same way: cross-attention over 1500
 * keys read cold, self-attention at 54 cached tokens in caches of 448 and 128 positions.
 *
 * usage: chain_bench [--iterations N] [--warmup N] [--device N]   (a GPU is needed; not a test)
 * Run with KILN_NO_PDL=1 in the environment for plain launches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "chain_bench"
#include "bench_util.h"
#include "kiln/kiln.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_internal.h"
#include "backends/cuda/cuda_ops.h"
#include "bench_cuda.h"
#include "core/quant.h"

#define CALLS 64
#define COLD_BYTES ((size_t)256 << 20)

static cudaStream_t stream;
static int iterations = 20, warmup = 3;

static double elapsed_us(cudaEvent_t a, cudaEvent_t b) {
  if (cudaEventSynchronize(b) != cudaSuccess) DIE("timing failed: %s", cudaGetErrorString(cudaGetLastError()));
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return 1e3 * (double)ms;
}

/* Microseconds per launch of a captured graph of CALLS launches (warm-up, then `iterations`
 * replays); destroys the graph. */
static double replay_us(cudaGraph_t g, cudaGraphExec_t ge) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  for (int i = 0; i < warmup; i++) cudaGraphLaunch(ge, stream);
  cudaEventRecord(e0, stream);
  for (int i = 0; i < iterations; i++) cudaGraphLaunch(ge, stream);
  cudaEventRecord(e1, stream);
  double us = elapsed_us(e0, e1) / ((double)iterations * CALLS);
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
  return us;
}

/* Device-to-device copy bandwidth in GB/s (bytes read + written), 512 MB. */
static double copy_bandwidth(void) {
  size_t bytes = (size_t)512 << 20;
  void *a = NULL, *b = NULL;
  REQUIRE(kiln_cuda_malloc(&a, bytes));
  REQUIRE(kiln_cuda_malloc(&b, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream);
  cudaEventRecord(e0, stream);
  for (int i = 0; i < 10; i++) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream);
  cudaEventRecord(e1, stream);
  double us = elapsed_us(e0, e1) / 10;
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  kiln_cuda_free(a), kiln_cuda_free(b);
  return 2.0 * (double)bytes / (us * 1e3);
}

typedef struct chain {
  kiln_dtype wdt;
  int32_t group;
  int64_t m, n, k;
  int copies;
  void *w[CALLS], *s[CALLS];
  size_t bytes; /* one copy: codes or values, and scales */
  void *x, *y;
  void *gamma, *beta; /* fp16 [k]: the layernorm prologue (fused when ln is set) */
  int ln;
} chain;

static void chain_make(chain *c, kiln_dtype wdt, int32_t group, int64_t m, int64_t n, int64_t k) {
  memset(c, 0, sizeof *c);
  c->wdt = wdt, c->group = group, c->m = m, c->n = n, c->k = k;
  float *w = malloc((size_t)(n * k) * 4), *xf = malloc((size_t)(m * k) * 4);
  uint16_t *xh = malloc((size_t)(m * k) * 2);
  for (int64_t i = 0; i < n * k; i++) w[i] = 0.05f * uniform();
  for (int64_t i = 0; i < m * k; i++) xf[i] = uniform();
  kiln_convert_floats(xh, KILN_DTYPE_FP16, xf, KILN_DTYPE_FP32, m * k);
  size_t wb = kiln_dtype_bytes(wdt, n * k), sb = wdt == KILN_DTYPE_FP16 ? 0 : (size_t)kiln_quant_scale_count(n, k, group) * 4;
  void *hw = malloc(wb), *hs = sb ? malloc(sb) : NULL;
  if (wdt == KILN_DTYPE_FP16) kiln_convert_floats(hw, KILN_DTYPE_FP16, w, KILN_DTYPE_FP32, n * k);
  else REQUIRE(kiln_quantize(w, n, k, wdt, group, hw, hs));
  c->bytes = wb + sb;
  c->copies = (int)(COLD_BYTES / c->bytes + 1);
  if (c->copies > CALLS) c->copies = CALLS;
  for (int i = 0; i < c->copies; i++) {
    c->w[i] = bench_upload(hw, wb);
    if (hs) c->s[i] = bench_upload(hs, sb);
  }
  c->x = bench_upload(xh, (size_t)(m * k) * 2);
  c->gamma = bench_upload(xh, (size_t)k * 2); /* x's first row: any values do */
  c->beta = bench_upload(xh, (size_t)k * 2);
  REQUIRE(kiln_cuda_malloc(&c->y, (size_t)(m * n) * 2));
  free(w), free(xf), free(xh), free(hw), free(hs);
}

static void chain_free(chain *c) {
  for (int i = 0; i < c->copies; i++) kiln_cuda_free(c->w[i]), kiln_cuda_free(c->s[i]);
  kiln_cuda_free(c->x), kiln_cuda_free(c->y), kiln_cuda_free(c->gamma), kiln_cuda_free(c->beta);
}

/* Microseconds per launch of a graph of CALLS launches of variant v (launch i on copy i, or
 * copy 0 when hot); < 0 when the variant refuses the shape. */
static double chain_time(const chain *c, int32_t v, int hot) {
  kiln_dims xd = {2, {c->m, c->k}}, yd = {2, {c->m, c->n}}, wd = {2, {c->n, c->k}};
  kiln_dims sd = c->group ? (kiln_dims){2, {c->n, c->k / c->group}} : (kiln_dims){1, {c->n}};
  kiln_tensor x = kiln_tensor_contiguous(c->x, KILN_DTYPE_FP16, &xd), y = kiln_tensor_contiguous(c->y, KILN_DTYPE_FP16, &yd);
  kiln_dims kd = {1, {c->k}};
  kiln_tensor gamma = kiln_tensor_contiguous(c->gamma, KILN_DTYPE_FP16, &kd), beta = kiln_tensor_contiguous(c->beta, KILN_DTYPE_FP16, &kd);
  kiln_cuda_mm_fuse fuse = {&gamma, &beta, 1e-5f, NULL};
  cudaGraph_t g = NULL;
  cudaGraphExec_t ge = NULL;
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) DIE("capture failed");
  kiln_status st = KILN_OK;
  for (int i = 0; i < CALLS && st == KILN_OK; i++) {
    int cp = hot ? 0 : i % c->copies;
    kiln_tensor w = kiln_tensor_contiguous(c->w[cp], c->wdt, &wd);
    kiln_tensor s = kiln_tensor_contiguous(c->s[cp], KILN_DTYPE_FP32, &sd);
    st = kiln_cuda_skinny(v, &x, &w, c->s[cp] ? &s : NULL, c->group, NULL, KILN_ACTIVATION_NONE, c->ln ? &fuse : NULL, &y,
                          c->m, c->n, c->k, stream);
  }
  if (cudaStreamEndCapture(stream, &g) != cudaSuccess) DIE("capture failed: %s", cudaGetErrorString(cudaGetLastError()));
  if (st != KILN_OK) {
    cudaGraphDestroy(g);
    return -1;
  }
  if (cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) DIE("instantiate failed");
  double us = replay_us(g, ge);
  return us;
}

static void bench(kiln_dtype wdt, int32_t group, const char *name, int64_t m, int64_t n, int64_t k, double gbs, int ln) {
  chain c;
  chain_make(&c, wdt, group, m, n, k);
  c.ln = ln;
  for (int hot = 0; hot < 2; hot++) {
    double best = -1;
    int bv = -1;
    printf("%-9s M %-2lld %4lld x %-4lld %4.1f MB %s:", name, (long long)m, (long long)n, (long long)k, c.bytes / 1e6,
           hot ? "hot " : "cold");
    for (int32_t v = 0; v < KILN_CUDA_SKINNY_VARIANTS; v++) {
      double us = chain_time(&c, v, hot);
      printf(" %6.2f", us);
      if (us > 0 && (best < 0 || us < best)) best = us, bv = v;
    }
    printf("  | best v%d %6.2f us, bytes at copy rate %5.2f us (%3.0f%%)\n", bv, best, c.bytes / (gbs * 1e3),
           100.0 * c.bytes / (gbs * 1e3) / best);
  }
  chain_free(&c);
}

/* Microseconds per launch of a graph of CALLS decoder attentions (fp16, 20 heads of 64): self
 * (qkv [B, 1, 3840], caches [B, 20, cap, 64] holding `len` tokens) or cross (q [B, 1, 1280], keys
 * and values [B, 20, 1500, 64], each launch its own copy: read cold). */
static double attention_time(int self, int64_t B, int64_t cap, int32_t len) {
  const int64_t H = 20, D = 64, T = self ? cap : 1500, qn = self ? 3 * H * D : H * D;
  size_t kv_bytes = (size_t)(B * H * T * D) * 2;
  int copies = self ? 1 : (int)((COLD_BYTES / (2 * kv_bytes)) + 1);
  if (copies > CALLS) copies = CALLS;
  uint16_t *h = malloc(kv_bytes > (size_t)(B * qn) * 2 ? kv_bytes : (size_t)(B * qn) * 2);
  float *f = calloc(kv_bytes / 2, 4);
  if (!h || !f) DIE("out of memory");
  for (size_t i = 0; i < kv_bytes / 2; i++) f[i] = uniform();
  kiln_convert_floats(h, KILN_DTYPE_FP16, f, KILN_DTYPE_FP32, (int64_t)(kv_bytes / 2));
  void *k[CALLS], *v[CALLS];
  for (int i = 0; i < copies; i++) k[i] = bench_upload(h, kv_bytes), v[i] = bench_upload(h, kv_bytes);
  void *q = bench_upload(h, (size_t)(B * qn) * 2), *y = NULL, *lens = NULL, *ws = NULL;
  int32_t hl[64];
  for (int i = 0; i < 64; i++) hl[i] = len;
  lens = bench_upload(hl, sizeof(int32_t) * (size_t)B);
  REQUIRE(kiln_cuda_malloc(&y, (size_t)(B * H * D) * 2));
  kiln_dims qd = {3, {B, 1, qn}}, kd = {4, {B, H, T, D}}, ld = {1, {B}}, yd = {3, {B, 1, H * D}};
  size_t ws_bytes = kiln_cuda_kv_attention_workspace(&qd, &kd, (int32_t)H);
  REQUIRE(kiln_cuda_malloc(&ws, ws_bytes ? ws_bytes : 1));
  kiln_tensor in[4], out = kiln_tensor_contiguous(y, KILN_DTYPE_FP16, &yd);
  cudaGraph_t g = NULL;
  cudaGraphExec_t ge = NULL;
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) DIE("capture failed");
  for (int i = 0; i < CALLS; i++) {
    in[0] = kiln_tensor_contiguous(q, KILN_DTYPE_FP16, &qd);
    in[1] = kiln_tensor_contiguous(k[i % copies], KILN_DTYPE_FP16, &kd);
    in[2] = kiln_tensor_contiguous(v[i % copies], KILN_DTYPE_FP16, &kd);
    in[3] = kiln_tensor_contiguous(lens, KILN_DTYPE_INT32, &ld);
    REQUIRE(kiln_cuda_kv_attention(self ? 4 : 3, in, (int32_t)H, 0.125f, self, &out, ws, ws_bytes, stream));
  }
  if (cudaStreamEndCapture(stream, &g) != cudaSuccess || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess)
    DIE("capture failed: %s", cudaGetErrorString(cudaGetLastError()));
  double us = replay_us(g, ge);
  for (int i = 0; i < copies; i++) kiln_cuda_free(k[i]), kiln_cuda_free(v[i]);
  kiln_cuda_free(q), kiln_cuda_free(y), kiln_cuda_free(lens), kiln_cuda_free(ws);
  free(h), free(f);
  return us;
}

static void bench_attention(double gbs) {
  static const int64_t bs[] = {1, 4, 16};
  for (int fused = 1; fused >= 0; fused--) {
    kiln_cuda_kv_attention_allow_fused(fused);
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) {
      int64_t B = bs[i];
      double cross = attention_time(0, B, 1500, 0), s448 = attention_time(1, B, 448, 54), s128 = attention_time(1, B, 128, 54);
      double cross_bytes = 2.0 * (double)(B * 20 * 1500 * 64) * 2;
      printf("attention %s B %-2lld: cross (1500 keys, cold) %6.2f us (bytes at copy rate %5.2f us), self (54 of 448) %6.2f us, "
             "self (54 of 128) %6.2f us\n", fused ? "fused " : "split ", (long long)B, cross, cross_bytes / (gbs * 1e3), s448,
             s128);
    }
  }
  kiln_cuda_kv_attention_allow_fused(1);
}

int main(int argc, char **argv) {
  int device = 0;
  bench_options(argc, argv, &iterations, &warmup, &device);
  if (!kiln_cuda_available()) DIE("no CUDA device");
  kiln_cuda_ctx *cu = NULL;
  REQUIRE(kiln_cuda_ctx_create(device, &cu));
  if (cudaStreamCreate(&stream) != cudaSuccess) DIE("cudaStreamCreate failed");
  const kiln_cuda_device_info *info = kiln_cuda_ctx_info(cu);
  double gbs = copy_bandwidth();
  printf("chain_bench: %s (sm_%d%d), graphs of %d dependent skinny launches, PDL %s, copy bandwidth %.0f GB/s\n",
         info->name, info->cc_major, info->cc_minor, CALLS, getenv("KILN_NO_PDL") ? "off" : "on", gbs);
  printf("us per launch for variants 0..%d (4..7: split-K over a cluster)\n", KILN_CUDA_SKINNY_VARIANTS - 1);
  bench_attention(gbs);
  if (getenv("CHAIN_ATTENTION_ONLY")) return 0;
  static const int64_t nk[][2] = {{16, 32}, {1280, 1280}, {3840, 1280}, {5120, 1280}, {1280, 5120}};
  static const int64_t ms[] = {1, 4};
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
    for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++) {
      bench(KILN_DTYPE_FP16, 0, "fp16", ms[i], nk[a][0], nk[a][1], gbs, 0);
      if (nk[a][1] == 1280) bench(KILN_DTYPE_FP16, 0, "fp16+ln", ms[i], nk[a][0], nk[a][1], gbs, 1);
      if (nk[a][1] % 64 == 0) bench(KILN_DTYPE_INT4, 64, "int4 g64", ms[i], nk[a][0], nk[a][1], gbs, 0);
    }
  cudaStreamDestroy(stream);
  kiln_cuda_ctx_destroy(cu);
  return 0;
}

#else

int main(void) {
  fprintf(stderr, "chain_bench: kiln was built without CUDA; build it with the CUDA toolkit on a GPU machine\n");
  return 1;
}

#endif
