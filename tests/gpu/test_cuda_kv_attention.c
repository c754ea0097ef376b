/* tests/gpu/test_cuda_kv_attention.c - the CUDA attention over an in-place KV cache
 * (KILN_OP_KV_ATTENTION) against the CPU backend on random data: self-attention (new keys and
 * values appended at each row's length, read from the device) and cross-attention (query rows
 * sharing key rows), fp32/fp16/bf16, head sizes that do and do not allow 16-byte loads, lengths
 * from 0 to full, Whisper's shapes (20 heads of 64, 448 cached positions, 1500 audio positions,
 * up to 16 rows). The outputs start as NaN bytes; the caches must match the CPU's exactly.
 * Also replays the op from a captured CUDA graph with lengths changed between replays, as a
 * decoding loop does. Exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>

#include "backends/cpu/cpu_ops.h"
#include "gpu_test_util.h"

/* The split-keys path needs the layer's workspace; without one the general kernel runs. Both
 * are checked: ws = 1 with the workspace the builder would plan, 0 without. */
static void *workspace(const kiln_tensor *q, const kiln_tensor *k, int32_t heads, size_t *bytes) {
  void *p = NULL;
  *bytes = kiln_cuda_kv_attention_workspace(&q->shape, &k->shape, heads);
  GT_REQUIRE(kiln_cuda_malloc(&p, *bytes ? *bytes : 16));
  return p;
}

static void self_case(check_rng *r, kiln_dtype dt, int64_t B, int64_t Bc, int64_t S, int64_t H, int64_t D, int64_t cap,
                      int graph) {
  char what[160];
  snprintf(what, sizeof what, "self %s B%lld Bc%lld S%lld H%lld D%lld T%lld%s", kiln_dtype_name(dt), (long long)B,
           (long long)Bc, (long long)S, (long long)H, (long long)D, (long long)cap, graph ? " graph" : "");
  int64_t qd[3] = {B, S, 3 * H * D}, cd[4] = {Bc, H, cap, D}, ld[1] = {B}, yd[3] = {B, S, H * D};
  gt_buf qkv = gt_new(dt, 3, qd), ck = gt_new(dt, 4, cd), cv = gt_new(dt, 4, cd), len = gt_new(KILN_DTYPE_INT32, 1, ld);
  gt_buf y = gt_new(dt, 3, yd);
  gt_random(&qkv, r, -2.0f, 2.0f);
  gt_random(&ck, r, -1.0f, 1.0f);
  gt_random(&cv, r, -1.0f, 1.0f);
  float scale = 1.0f / sqrtf((float)D);
  size_t ws_bytes = 0;
  void *ws = workspace(&qkv.d, &ck.d, (int32_t)H, &ws_bytes);
  cudaGraphExec_t exec = NULL;
  for (int round = 0; round < (graph ? 3 : 2); round++) {
    int use_ws = graph || round == 0; /* the second plain round: the general kernel */
    int32_t *L = len.host;
    for (int64_t b = 0; b < B; b++) L[b] = (int32_t)((b * 131 + 7 + (int64_t)round * 5) % (cap - S + 1));
    if (B > 1) L[B - 1] = (int32_t)(cap - S); /* one row fills the cache */
    gt_upload(&len);
    gt_poison(&y);
    kiln_tensor hin[4] = {qkv.h, ck.h, cv.h, len.h}, din[4] = {qkv.d, ck.d, cv.d, len.d};
    CHECK_OK(kiln_cpu_kv_attention(4, hin, (int32_t)H, scale, 1, &y.h));
    if (!graph) {
      CHECK_OK(kiln_cuda_kv_attention(4, din, (int32_t)H, scale, 1, &y.d, use_ws ? ws : NULL, ws_bytes, gt_stream_));
    } else {
      if (!exec) { /* captured once; later rounds only change the lengths on the device */
        cudaGraph_t g;
        CHECK(cudaStreamBeginCapture((cudaStream_t)gt_stream_, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
        CHECK_OK(kiln_cuda_kv_attention(4, din, (int32_t)H, scale, 1, &y.d, ws, ws_bytes, gt_stream_));
        CHECK(cudaStreamEndCapture((cudaStream_t)gt_stream_, &g) == cudaSuccess);
        CHECK(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
        cudaGraphDestroy(g);
      }
      CHECK(cudaGraphLaunch(exec, (cudaStream_t)gt_stream_) == cudaSuccess);
    }
    GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
    CHECK(gt_compare(what, &ck, 0.0, 0.0));
    CHECK(gt_compare(what, &cv, 0.0, 0.0));
    CHECK(gt_compare(what, &y, gt_atol(dt), gt_rtol(dt)));
  }
  if (exec) cudaGraphExecDestroy(exec);
  kiln_cuda_free(ws);
  gt_free(&qkv), gt_free(&ck), gt_free(&cv), gt_free(&len), gt_free(&y);
}

static void cross_case(check_rng *r, kiln_dtype dt, int64_t B, int64_t Bk, int64_t S, int64_t H, int64_t D, int64_t A) {
  char what[160];
  snprintf(what, sizeof what, "cross %s B%lld Bk%lld S%lld H%lld D%lld A%lld", kiln_dtype_name(dt), (long long)B,
           (long long)Bk, (long long)S, (long long)H, (long long)D, (long long)A);
  int64_t qd[3] = {B, S, H * D}, kd[4] = {Bk, H, A, D};
  gt_buf q = gt_new(dt, 3, qd), k = gt_new(dt, 4, kd), v = gt_new(dt, 4, kd), y = gt_new(dt, 3, qd);
  gt_random(&q, r, -2.0f, 2.0f);
  gt_random(&k, r, -1.0f, 1.0f);
  gt_random(&v, r, -1.0f, 1.0f);
  float scale = 1.0f / sqrtf((float)D);
  kiln_tensor hin[3] = {q.h, k.h, v.h}, din[3] = {q.d, k.d, v.d};
  size_t ws_bytes = 0;
  void *ws = workspace(&q.d, &k.d, (int32_t)H, &ws_bytes);
  gt_poison(&y);
  CHECK_OK(kiln_cpu_kv_attention(3, hin, (int32_t)H, scale, 0, &y.h));
  for (int use_ws = 1; use_ws >= 0; use_ws--) {
    gt_poison_device(&y);
    CHECK_OK(kiln_cuda_kv_attention(3, din, (int32_t)H, scale, 0, &y.d, use_ws ? ws : NULL, ws_bytes, gt_stream_));
    CHECK(gt_compare(what, &y, gt_atol(dt), gt_rtol(dt)));
  }
  kiln_cuda_free(ws);
  gt_free(&q), gt_free(&k), gt_free(&v), gt_free(&y);
}

static void test_errors(check_rng *r) {
  int64_t qd[3] = {3, 1, 8}, kd[4] = {2, 2, 5, 4};
  gt_buf q = gt_new(KILN_DTYPE_FP16, 3, qd), k = gt_new(KILN_DTYPE_FP16, 4, kd), y = gt_new(KILN_DTYPE_FP16, 3, qd);
  gt_buf kf = gt_new(KILN_DTYPE_FP32, 4, kd);
  gt_random(&q, r, -1, 1);
  gt_poison(&y);
  kiln_tensor in[3] = {q.d, k.d, k.d}, mixed[3] = {q.d, kf.d, kf.d};
  CHECK_STATUS(kiln_cuda_kv_attention(3, in, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_SHAPE); /* 3 rows over 2 */
  CHECK_STATUS(kiln_cuda_kv_attention(3, mixed, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cuda_kv_attention(4, in, 2, 1.0f, 0, &y.d, NULL, 0, gt_stream_), KILN_ERR_INVALID_ARG);
  CHECK(gt_dev_still_poisoned(&y));
  gt_free(&q), gt_free(&k), gt_free(&y), gt_free(&kf);
}

int main(void) {
  cudaStream_t stream;
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  if (cudaStreamCreate(&stream) != cudaSuccess) GT_DIE("cudaStreamCreate failed");
  gt_stream_ = stream;
  check_rng r = {0xCAC4EULL};
  for (int di = 0; di < 3; di++) {
    kiln_dtype dt = gt_dtypes[di];
    self_case(&r, dt, 1, 1, 1, 1, 8, 4, 0);
    self_case(&r, dt, 3, 4, 1, 3, 20, 37, 0);  /* head 20: no 16-byte loads for fp16 */
    self_case(&r, dt, 2, 2, 5, 2, 33, 40, 0);  /* odd head size */
    self_case(&r, dt, 4, 4, 1, 20, 64, 448, 0); /* Whisper large decode step */
    self_case(&r, dt, 1, 2, 64, 20, 64, 448, 0); /* a prompt chunk */
    self_case(&r, dt, 16, 16, 1, 6, 64, 448, 1); /* base, 16 rows, graph replays */
    self_case(&r, dt, 2, 2, 3, 2, 128, 30, 0);
    cross_case(&r, dt, 1, 1, 1, 1, 8, 1);
    cross_case(&r, dt, 4, 2, 1, 3, 20, 33);
    cross_case(&r, dt, 5, 5, 1, 20, 64, 1500);   /* Whisper large, 5 windows */
    cross_case(&r, dt, 10, 2, 1, 20, 64, 1500);  /* 2 windows x 5 beams */
    cross_case(&r, dt, 1, 1, 25, 8, 64, 1500);   /* a prompt chunk */
    cross_case(&r, dt, 2, 1, 3, 2, 33, 257);
    cross_case(&r, dt, 2, 2, 2, 4, 96, 100);
  }
  test_errors(&r);
  cudaStreamDestroy(stream);
  return check_report();
}
