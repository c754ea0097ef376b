/* tests/gpu/test_cuda_kv_attention.c - the CUDA attention over an in-place KV cache
 * (KILN_OP_KV_ATTENTION) against the CPU backend on random data: self-attention (new keys and
 * values appended at each row's length, read from the device) and cross-attention (query rows
 * sharing key rows), fp32/fp16/bf16, head sizes that do and do not allow vector loads, lengths
 * from 0 to full and not multiples of the kernels' chunks, Whisper's shapes (20 heads of 64, 448
 * cached positions, 1500 audio positions, up to 16 rows). The outputs start as NaN bytes; the
 * caches must match the CPU's exactly. Also replays the op from a captured CUDA graph with
 * lengths changed between replays, as a decoding loop does.
 * Every case runs with float caches and with int8 caches (one scale per cached vector, in the
 * queries' dtype): the new keys/values are quantized by the append kernel and must equal the
 * CPU's codes and scales byte for byte; the attention kernels dequantize in registers. And
 * quantize_int8 (what makes int8 cross-attention caches) against the CPU's. Every case runs on the
 * one-kernel path (sm_90+) and again on the append + split + combine path. Prints a summary
 * line; exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>

#include "backends/cpu/cpu_ops.h"
#include "gpu_test_util.h"

static int n_runs[2], code_mismatches;
static double worst_diff[2];

/* The split-keys path needs the layer's workspace; without one the general kernel runs. Both
 * are checked: ws = 1 with the workspace the builder would plan, 0 without. */
static void *workspace(const kiln_tensor *q, const kiln_tensor *k, int32_t heads, size_t *bytes) {
  void *p = NULL;
  *bytes = kiln_cuda_kv_attention_workspace(&q->shape, &k->shape, heads);
  GT_REQUIRE(kiln_cuda_malloc(&p, *bytes ? *bytes : 16));
  return p;
}

/* A cache [rows, H, cap, D] and, for int8 (q8), its scales [rows, H, cap] in dt: random values,
 * or random codes and scales (what earlier steps left there). */
typedef struct cache {
  gt_buf c, s;
} cache;

static cache cache_new(check_rng *r, kiln_dtype dt, int q8, int64_t rows, int64_t H, int64_t cap, int64_t D) {
  cache x;
  int64_t cd[4] = {rows, H, cap, D};
  memset(&x, 0, sizeof x);
  x.c = gt_new(q8 ? KILN_DTYPE_INT8 : dt, 4, cd);
  if (!q8) {
    gt_random(&x.c, r, -1.0f, 1.0f);
    return x;
  }
  x.s = gt_new(dt, 3, cd);
  for (int64_t i = 0; i < x.c.n; i++) ((int8_t *)x.c.host)[i] = (int8_t)((int32_t)check_uniform(r, 0.0f, 255.0f) - 127);
  gt_upload(&x.c);
  gt_random(&x.s, r, 0.002f, 0.02f);
  return x;
}

static void cache_free(cache *x) {
  gt_free(&x->c);
  if (x->s.dev) gt_free(&x->s);
}

/* Device bytes equal the host's (the CPU's result), counting the int8 codes that differ. */
static int same_bytes(const char *what, const gt_buf *b) {
  unsigned char *got = malloc(b->bytes ? b->bytes : 16);
  if (!got) GT_DIE("out of host memory");
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
  GT_REQUIRE(kiln_cuda_memcpy_d2h(got, b->dev, b->bytes, gt_stream_));
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < b->bytes; i++)
    if (got[i] != ((const unsigned char *)b->host)[i] && !bad++) first = (int64_t)i;
  if (bad)
    fprintf(stderr, "%s: %lld of %zu int8 codes differ from the CPU's, the first at %lld: %d vs %d\n", what, (long long)bad,
            b->bytes, (long long)first, (int8_t)got[first], ((const int8_t *)b->host)[first]);
  code_mismatches += (int)bad;
  free(got);
  return bad == 0;
}

/* The caches after an append: the same as the CPU's, exactly. */
static void check_cache(const char *what, const cache *x) {
  if (!x->s.dev) {
    CHECK(gt_compare(what, &x->c, 0.0, 0.0));
    return;
  }
  CHECK(same_bytes(what, &x->c));
  CHECK(gt_compare(what, &x->s, 0.0, 0.0));
}

/* The output against the CPU's, keeping the largest difference for the summary. */
static void check_out(const char *what, const gt_buf *y, int q8) {
  float *got = gt_dev_floats(y), *want = gt_host_floats(y);
  for (int64_t i = 0; i < y->n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (!(e <= worst_diff[q8])) worst_diff[q8] = e; /* NaN sticks */
  }
  CHECK(check_close(what, got, want, y->n, gt_atol(y->dtype), gt_rtol(y->dtype)));
  n_runs[q8]++;
  free(got), free(want);
}

static void self_case(check_rng *r, kiln_dtype dt, int q8, int64_t B, int64_t Bc, int64_t S, int64_t H, int64_t D,
                      int64_t cap, int graph) {
  char what[160];
  snprintf(what, sizeof what, "self %s%s B%lld Bc%lld S%lld H%lld D%lld T%lld%s", kiln_dtype_name(dt), q8 ? " int8" : "",
           (long long)B, (long long)Bc, (long long)S, (long long)H, (long long)D, (long long)cap, graph ? " graph" : "");
  int64_t qd[3] = {B, S, 3 * H * D}, ld[1] = {B}, yd[3] = {B, S, H * D};
  gt_buf qkv = gt_new(dt, 3, qd), len = gt_new(KILN_DTYPE_INT32, 1, ld), y = gt_new(dt, 3, yd);
  gt_random(&qkv, r, -2.0f, 2.0f);
  cache ck = cache_new(r, dt, q8, Bc, H, cap, D), cv = cache_new(r, dt, q8, Bc, H, cap, D);
  float scale = 1.0f / sqrtf((float)D);
  size_t ws_bytes = 0;
  void *ws = workspace(&qkv.d, &ck.c.d, (int32_t)H, &ws_bytes);
  int32_t n_in = q8 ? 6 : 4;
  cudaGraphExec_t exec = NULL;
  for (int round = 0; round < (graph ? 3 : 2); round++) {
    int use_ws = graph || round == 0; /* the second plain round: the general kernel */
    int32_t *L = len.host;
    for (int64_t b = 0; b < B; b++) L[b] = (int32_t)((b * 131 + 7 + (int64_t)round * 5) % (cap - S + 1));
    if (round == 0) L[0] = 0;                  /* an empty cache: the first token sees itself only */
    if (B > 1) L[B - 1] = (int32_t)(cap - S); /* one row fills the cache */
    gt_upload(&len);
    gt_poison(&y);
    kiln_tensor hin[6] = {qkv.h, ck.c.h, cv.c.h, len.h, ck.s.h, cv.s.h}, din[6] = {qkv.d, ck.c.d, cv.c.d, len.d, ck.s.d, cv.s.d};
    CHECK_OK(kiln_cpu_kv_attention(n_in, hin, (int32_t)H, scale, 1, &y.h));
    if (!graph) {
      CHECK_OK(kiln_cuda_kv_attention(n_in, din, (int32_t)H, scale, 1, &y.d, use_ws ? ws : NULL, ws_bytes, gt_stream_));
    } else {
      if (!exec) { /* captured once; later rounds only change the lengths on the device */
        cudaGraph_t g;
        CHECK(cudaStreamBeginCapture((cudaStream_t)gt_stream_, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
        CHECK_OK(kiln_cuda_kv_attention(n_in, din, (int32_t)H, scale, 1, &y.d, ws, ws_bytes, gt_stream_));
        CHECK(cudaStreamEndCapture((cudaStream_t)gt_stream_, &g) == cudaSuccess);
        CHECK(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
        cudaGraphDestroy(g);
      }
      CHECK(cudaGraphLaunch(exec, (cudaStream_t)gt_stream_) == cudaSuccess);
    }
    GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
    check_cache(what, &ck);
    check_cache(what, &cv);
    check_out(what, &y, q8);
  }
  if (exec) cudaGraphExecDestroy(exec);
  kiln_cuda_free(ws);
  cache_free(&ck), cache_free(&cv);
  gt_free(&qkv), gt_free(&len), gt_free(&y);
}

static void cross_case(check_rng *r, kiln_dtype dt, int q8, int64_t B, int64_t Bk, int64_t S, int64_t H, int64_t D,
                       int64_t A) {
  char what[160];
  snprintf(what, sizeof what, "cross %s%s B%lld Bk%lld S%lld H%lld D%lld A%lld", kiln_dtype_name(dt), q8 ? " int8" : "",
           (long long)B, (long long)Bk, (long long)S, (long long)H, (long long)D, (long long)A);
  int64_t qd[3] = {B, S, H * D};
  gt_buf q = gt_new(dt, 3, qd), y = gt_new(dt, 3, qd);
  gt_random(&q, r, -2.0f, 2.0f);
  cache k = cache_new(r, dt, q8, Bk, H, A, D), v = cache_new(r, dt, q8, Bk, H, A, D);
  float scale = 1.0f / sqrtf((float)D);
  int32_t n_in = q8 ? 5 : 3;
  kiln_tensor hin[5] = {q.h, k.c.h, v.c.h, k.s.h, v.s.h}, din[5] = {q.d, k.c.d, v.c.d, k.s.d, v.s.d};
  size_t ws_bytes = 0;
  void *ws = workspace(&q.d, &k.c.d, (int32_t)H, &ws_bytes);
  gt_poison(&y);
  CHECK_OK(kiln_cpu_kv_attention(n_in, hin, (int32_t)H, scale, 0, &y.h));
  for (int use_ws = 1; use_ws >= 0; use_ws--) {
    gt_poison_device(&y);
    CHECK_OK(kiln_cuda_kv_attention(n_in, din, (int32_t)H, scale, 0, &y.d, use_ws ? ws : NULL, ws_bytes, gt_stream_));
    check_out(what, &y, q8);
  }
  kiln_cuda_free(ws);
  cache_free(&k), cache_free(&v);
  gt_free(&q), gt_free(&y);
}

/* quantize_int8 on x [..., D]: codes and scales equal the CPU's; row 0 is zeros (scale 0). */
static void quantize_case(check_rng *r, kiln_dtype dt, int32_t rank, const int64_t *xd) {
  char what[160];
  snprintf(what, sizeof what, "quantize_int8 %s rank %d D%lld", kiln_dtype_name(dt), rank, (long long)xd[rank - 1]);
  gt_buf x = gt_new(dt, rank, xd), c = gt_new(KILN_DTYPE_INT8, rank, xd), s = gt_new(dt, rank - 1, xd);
  gt_random(&x, r, -4.0f, 4.0f);
  memset(x.host, 0, kiln_dtype_bytes(dt, xd[rank - 1]));
  gt_upload(&x);
  gt_poison(&c), gt_poison(&s);
  CHECK_OK(kiln_cpu_quantize_int8(&x.h, &c.h, &s.h));
  CHECK_OK(kiln_cuda_quantize_int8(&x.d, &c.d, &s.d, gt_stream_));
  CHECK(same_bytes(what, &c));
  CHECK(gt_compare(what, &s, 0.0, 0.0));
  n_runs[1]++;
  gt_free(&x), gt_free(&c), gt_free(&s);
}

static void test_errors(check_rng *r) {
  int64_t qd[3] = {3, 1, 8}, kd[4] = {2, 2, 5, 4}, sd[3] = {2, 2, 5}, bad_sd[3] = {2, 2, 4};
  gt_buf q = gt_new(KILN_DTYPE_FP16, 3, qd), k = gt_new(KILN_DTYPE_FP16, 4, kd), y = gt_new(KILN_DTYPE_FP16, 3, qd);
  gt_buf kf = gt_new(KILN_DTYPE_FP32, 4, kd), k8 = gt_new(KILN_DTYPE_INT8, 4, kd);
  gt_buf s16 = gt_new(KILN_DTYPE_FP16, 3, sd), s32 = gt_new(KILN_DTYPE_FP32, 3, sd), sbad = gt_new(KILN_DTYPE_FP16, 3, bad_sd);
  gt_random(&q, r, -1, 1);
  gt_poison(&y);
  kiln_tensor in[3] = {q.d, k.d, k.d}, mixed[3] = {q.d, kf.d, kf.d};
  CHECK_STATUS(kiln_cuda_kv_attention(3, in, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_SHAPE); /* 3 rows over 2 */
  CHECK_STATUS(kiln_cuda_kv_attention(3, mixed, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cuda_kv_attention(4, in, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_INVALID_ARG);
  /* int8: scales in another dtype, of another shape, float caches with scales */
  kiln_tensor s_dtype[5] = {q.d, k8.d, k8.d, s32.d, s32.d}, s_shape[5] = {q.d, k8.d, k8.d, s16.d, sbad.d};
  kiln_tensor f_caches[5] = {q.d, k.d, k.d, s16.d, s16.d};
  CHECK_STATUS(kiln_cuda_kv_attention(5, s_dtype, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cuda_kv_attention(5, s_shape, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cuda_kv_attention(5, f_caches, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_UNSUPPORTED);
  CHECK(gt_dev_still_poisoned(&y));
  CHECK_STATUS(kiln_cuda_quantize_int8(&q.d, &k8.d, &s16.d, gt_stream_), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cuda_quantize_int8(&q.d, &y.d, &s16.d, gt_stream_), KILN_ERR_UNSUPPORTED);
  gt_free(&q), gt_free(&k), gt_free(&y), gt_free(&kf), gt_free(&k8), gt_free(&s16), gt_free(&s32), gt_free(&sbad);
}

int main(void) {
  cudaStream_t stream;
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  if (cudaStreamCreate(&stream) != cudaSuccess) GT_DIE("cudaStreamCreate failed");
  gt_stream_ = stream;
  check_rng r = {0xCAC4EULL};
  /* the one-kernel path (sm_90+), then the append + split + combine path of older GPUs */
  for (int fused = 1; fused >= 0; fused--)
  for (int q8 = 0; q8 < 2; q8++)
    for (int di = 0; di < 3; di++) {
      kiln_cuda_kv_attention_allow_fused(fused);
      kiln_dtype dt = gt_dtypes[di];
      self_case(&r, dt, q8, 1, 1, 1, 1, 8, 4, 0);
      self_case(&r, dt, q8, 1, 1, 1, 1, 8, 1, 0);     /* a cache of one position */
      self_case(&r, dt, q8, 3, 4, 1, 3, 20, 37, 0);   /* head 20: no 16-byte (8-code) loads */
      self_case(&r, dt, q8, 2, 2, 5, 2, 33, 40, 0);   /* odd head size */
      self_case(&r, dt, q8, 2, 2, 1, 2, 32, 50, 0);
      self_case(&r, dt, q8, 4, 4, 1, 20, 64, 448, 0); /* Whisper large decode step */
      self_case(&r, dt, q8, 1, 2, 64, 20, 64, 448, 0); /* a prompt chunk */
      self_case(&r, dt, q8, 16, 16, 1, 6, 64, 448, 1); /* base, 16 rows, graph replays */
      self_case(&r, dt, q8, 2, 2, 3, 2, 128, 30, 0);
      cross_case(&r, dt, q8, 1, 1, 1, 1, 8, 1);
      cross_case(&r, dt, q8, 4, 2, 1, 3, 20, 33);
      cross_case(&r, dt, q8, 5, 5, 1, 20, 64, 1500);  /* Whisper large, 5 windows */
      cross_case(&r, dt, q8, 10, 2, 1, 20, 64, 1500); /* 2 windows x 5 beams */
      cross_case(&r, dt, q8, 1, 1, 25, 8, 64, 1500);  /* a prompt chunk */
      cross_case(&r, dt, q8, 2, 1, 3, 2, 33, 257);
      cross_case(&r, dt, q8, 2, 2, 2, 4, 96, 100);
      cross_case(&r, dt, q8, 2, 2, 1, 2, 128, 70);
      if (q8) {
        quantize_case(&r, dt, 1, (int64_t[]){1});
        quantize_case(&r, dt, 2, (int64_t[]){37, 33});
        quantize_case(&r, dt, 4, (int64_t[]){2, 20, 1500, 64}); /* Whisper large cross keys, 2 windows */
      }
    }
  test_errors(&r);
  cudaStreamDestroy(stream);
  printf("kv_attention: float caches %d runs (largest output difference %.3g), int8 caches %d runs (%.3g), "
         "%d int8 codes differ from the CPU's\n",
         n_runs[0], worst_diff[0], n_runs[1], worst_diff[1], code_mismatches);
  return check_report();
}
