/* bench/kv_bench.c - the decoder's attention over an int8 KV cache against the fp16 cache, at
 * Whisper large-v3 decode shapes: 20 heads of 64, one new token per row, rows 1, 4, 16;
 * cross-attention over 1500 audio positions, self-attention appending at position 224 of a
 * 448-position cache. fp16 queries; int8 caches hold the fp16 values quantized by
 * kiln_cuda_quantize_int8 (one scale per vector), so the outputs can be compared (nmse printed).
 * Both run kiln_cuda_kv_attention with its workspace (the split-keys kernel). Caches are read
 * cold: each timed call uses the next of enough copies to fill 256 MB.
 * Prints microseconds per call, GB/s (cache bytes read, codes + scales, over the time) and the
 * fp16 time over the int8 time (> 1: int8 is faster).
 *
 * usage: kv_bench [--iterations N] [--warmup N] [--device N]     (a GPU is needed)
 * Not a test: the checks are in tests/gpu/test_cuda_kv_attention.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "kv_bench"
#include "bench_util.h"
#include "kiln/kiln.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"

#define COLD_BYTES ((size_t)256 << 20)
#define MAX_COPIES 256
#define H 20
#define D 64

static cudaStream_t stream;
static int iterations = 200, warmup = 20;

static void *dev_alloc(size_t bytes) {
  void *d = NULL;
  REQUIRE(kiln_cuda_malloc(&d, bytes ? bytes : 1));
  return d;
}

static void *upload_fp16(int64_t n, float lo, float hi) {
  uint16_t *h = malloc((size_t)n * 2);
  if (!h) DIE("out of memory");
  for (int64_t i = 0; i < n; i++) h[i] = kiln_fp32_to_fp16(lo + (hi - lo) * 0.5f * (uniform() + 1.0f));
  void *d = dev_alloc((size_t)n * 2);
  REQUIRE(kiln_cuda_memcpy_h2d(d, h, (size_t)n * 2, stream));
  REQUIRE(kiln_cuda_stream_sync(stream));
  free(h);
  return d;
}

/* One cache copy: k, v (fp16 values, or int8 codes with fp16 scales [rows, H, T]). */
typedef struct kv_copy {
  void *k, *v, *ks, *vs;
} kv_copy;

static float *download_fp16(const void *d, int64_t n) {
  uint16_t *h = malloc((size_t)n * 2);
  float *f = malloc((size_t)n * 4);
  if (!h || !f) DIE("out of memory");
  REQUIRE(kiln_cuda_stream_sync(stream));
  REQUIRE(kiln_cuda_memcpy_d2h(h, d, (size_t)n * 2, stream));
  REQUIRE(kiln_cuda_stream_sync(stream));
  for (int64_t i = 0; i < n; i++) f[i] = kiln_fp16_to_fp32(h[i]);
  free(h);
  return f;
}

/* self: rows B with caches [B, H, T, D], new token at `len`; cross: keys [B, H, T, D]. Runs
 * copy c of the caches (fp16 or int8) into y. */
static void run(int self, int q8, const kv_copy *c, void *q, void *len, void *y, void *ws, size_t ws_bytes, int64_t B,
                int64_t T) {
  kiln_dims qd = {3, {B, 1, (self ? 3 : 1) * H * D}}, cd = {4, {B, H, T, D}}, sd = {3, {B, H, T}}, ld = {1, {B}};
  kiln_dims yd = {3, {B, 1, H * D}};
  kiln_tensor in[6];
  int32_t n = 0;
  kiln_dtype ct = q8 ? KILN_DTYPE_INT8 : KILN_DTYPE_FP16;
  in[n++] = kiln_tensor_contiguous(q, KILN_DTYPE_FP16, &qd);
  in[n++] = kiln_tensor_contiguous(c->k, ct, &cd);
  in[n++] = kiln_tensor_contiguous(c->v, ct, &cd);
  if (self) in[n++] = kiln_tensor_contiguous(len, KILN_DTYPE_INT32, &ld);
  if (q8) {
    in[n++] = kiln_tensor_contiguous(c->ks, KILN_DTYPE_FP16, &sd);
    in[n++] = kiln_tensor_contiguous(c->vs, KILN_DTYPE_FP16, &sd);
  }
  kiln_tensor out = kiln_tensor_contiguous(y, KILN_DTYPE_FP16, &yd);
  REQUIRE(kiln_cuda_kv_attention(n, in, H, 0.125f, self, &out, ws, ws_bytes, stream));
}

static void bench(int self, int64_t B) {
  int64_t T = self ? 448 : 1500, len_at = 224, keys = self ? len_at + 1 : T, n = B * H * T * D;
  size_t b16 = (size_t)n * 2 * 2;
  int copies = (int)(COLD_BYTES / b16) + 1;
  if (copies > MAX_COPIES) copies = MAX_COPIES;
  static kv_copy f16[MAX_COPIES], i8[MAX_COPIES];
  kiln_dims cd = {4, {B, H, T, D}}, sd = {3, {B, H, T}};
  for (int i = 0; i < copies; i++) {
    f16[i].k = upload_fp16(n, -2.0f, 2.0f), f16[i].v = upload_fp16(n, -2.0f, 2.0f);
    i8[i].k = dev_alloc((size_t)n), i8[i].v = dev_alloc((size_t)n);
    i8[i].ks = dev_alloc((size_t)(B * H * T) * 2), i8[i].vs = dev_alloc((size_t)(B * H * T) * 2);
    for (int kv = 0; kv < 2; kv++) {
      kiln_tensor x = kiln_tensor_contiguous(kv ? f16[i].v : f16[i].k, KILN_DTYPE_FP16, &cd);
      kiln_tensor c = kiln_tensor_contiguous(kv ? i8[i].v : i8[i].k, KILN_DTYPE_INT8, &cd);
      kiln_tensor s = kiln_tensor_contiguous(kv ? i8[i].vs : i8[i].ks, KILN_DTYPE_FP16, &sd);
      REQUIRE(kiln_cuda_quantize_int8(&x, &c, &s, stream));
    }
  }
  void *q = upload_fp16(B * (self ? 3 : 1) * H * D, -2.0f, 2.0f), *y16 = dev_alloc((size_t)(B * H * D) * 2);
  void *y8 = dev_alloc((size_t)(B * H * D) * 2), *len = dev_alloc((size_t)B * 4);
  int32_t *lh = malloc((size_t)B * 4);
  for (int64_t b = 0; b < B; b++) lh[b] = (int32_t)len_at;
  REQUIRE(kiln_cuda_memcpy_h2d(len, lh, (size_t)B * 4, stream));
  free(lh);
  kiln_dims qd = {3, {B, 1, H * D}}, kd = {4, {B, H, T, D}};
  size_t ws_bytes = kiln_cuda_kv_attention_workspace(&qd, &kd, H);
  void *ws = dev_alloc(ws_bytes);
  /* the same values through both caches (self-attention: the first call appends the same
   * new token to both) */
  run(self, 0, &f16[0], q, len, y16, ws, ws_bytes, B, T);
  run(self, 1, &i8[0], q, len, y8, ws, ws_bytes, B, T);
  float *a = download_fp16(y16, B * H * D), *b = download_fp16(y8, B * H * D);
  double num = 0, den = 0;
  for (int64_t i = 0; i < B * H * D; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)a[i] * a[i];
  free(a), free(b);
  double us[2];
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  for (int q8 = 0; q8 < 2; q8++) {
    for (int i = 0; i < warmup; i++)
      run(self, q8, q8 ? &i8[i % copies] : &f16[i % copies], q, len, q8 ? y8 : y16, ws, ws_bytes, B, T);
    cudaEventRecord(e0, stream);
    for (int i = 0; i < iterations; i++)
      run(self, q8, q8 ? &i8[i % copies] : &f16[i % copies], q, len, q8 ? y8 : y16, ws, ws_bytes, B, T);
    cudaEventRecord(e1, stream);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    us[q8] = 1e3 * ms / iterations;
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  double read16 = (double)B * H * keys * D * 2 * 2, read8 = (double)B * H * keys * (D + 2) * 2;
  printf("%-5s rows %2lld keys %4lld   fp16 %8.2f us %6.0f GB/s   int8 %8.2f us %6.0f GB/s   %5.2fx   (nmse %.1e)\n",
         self ? "self" : "cross", (long long)B, (long long)keys, us[0], read16 / (us[0] * 1e3), us[1], read8 / (us[1] * 1e3),
         us[0] / us[1], den > 0 ? num / den : 0.0);
  for (int i = 0; i < copies; i++) {
    kiln_cuda_free(f16[i].k), kiln_cuda_free(f16[i].v);
    kiln_cuda_free(i8[i].k), kiln_cuda_free(i8[i].v), kiln_cuda_free(i8[i].ks), kiln_cuda_free(i8[i].vs);
  }
  kiln_cuda_free(q), kiln_cuda_free(y16), kiln_cuda_free(y8), kiln_cuda_free(len), kiln_cuda_free(ws);
}

int main(int argc, char **argv) {
  int device = 0;
  bench_options(argc, argv, &iterations, &warmup, &device);
  if (!kiln_cuda_available()) DIE("no CUDA device");
  if (cudaSetDevice(device) != cudaSuccess) DIE("cannot use CUDA device %d", device);
  if (cudaStreamCreate(&stream) != cudaSuccess) DIE("cudaStreamCreate failed");
  printf("kv_bench: %d heads of %d, fp16 queries, fp16 vs int8 caches, %d timed calls after %d warm-up, caches read cold\n",
         H, D, iterations, warmup);
  static const int64_t rows[] = {1, 4, 16};
  for (int self = 0; self < 2; self++)
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) bench(self, rows[i]);
  cudaStreamDestroy(stream);
  return 0;
}

#else

int main(void) {
  fprintf(stderr, "kv_bench: kiln was built without CUDA; build it with the CUDA toolkit on a GPU machine\n");
  return 1;
}

#endif
