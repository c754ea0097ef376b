/* tests/gpu/test_cuda_matmul.c - the CUDA matmul against the CPU backend: every candidate tactic
 * (cuBLASLt heuristics and kiln's own kernel) and the default, over a grid of shapes (odd, 1, 0,
 * larger than a tile), fp32/fp16/bf16, with and without bias, each fused activation; a stored
 * algorithm reused for another shape (must fall back); bad tactics and shapes; and
 * kiln_cuda_run_layer for matmul, slice, add+layernorm and a plugin.
 * Exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>

#include "backends/cpu/cpu_ops.h"
#include "gpu_test_util.h"

#define WORKSPACE_BYTES ((size_t)4 << 20)

static kiln_cuda_ctx *ctx;
static void *workspace;

typedef struct mm_case {
  int64_t m, n, k;
} mm_case;

/* Tolerance for a K-long fp32 dot product compared across summation orders. */
static double mm_atol(kiln_dtype dt, int64_t k) { return gt_atol(dt) + 4e-6 * (double)k; }

/* x [batch.., M, K] @ W[N, K]^T + b -> y; runs every candidate and the default. */
static void check_matmul_case(check_rng *r, kiln_dtype dt, int32_t x_rank, mm_case c,
                              int has_bias, kiln_activation act) {
  int64_t xd[3], yd[3], wd[2] = {c.n, c.k}, bd[1] = {c.n};
  char what[160];
  if (x_rank == 3) { /* [2, M/2, K]: only for even M */
    xd[0] = 2, xd[1] = c.m / 2, xd[2] = c.k;
    yd[0] = 2, yd[1] = c.m / 2, yd[2] = c.n;
  } else {
    xd[0] = c.m, xd[1] = c.k;
    yd[0] = c.m, yd[1] = c.n;
  }
  gt_buf x = gt_new(dt, x_rank, xd), w = gt_new(dt, 2, wd), b = gt_new(dt, 1, bd);
  gt_buf y = gt_new(dt, x_rank, yd);
  gt_random(&x, r, -1.0f, 1.0f);
  gt_random(&w, r, -1.0f, 1.0f);
  gt_random(&b, r, -1.0f, 1.0f);
  gt_poison(&y);
  CHECK_OK(kiln_cpu_matmul(&x.h, &w.h, has_bias ? &b.h : NULL, act, &y.h));

  kiln_tactic tactics[16];
  int32_t count = kiln_cuda_matmul_candidates(ctx, c.m, c.n, c.k, dt, has_bias, act,
                                              WORKSPACE_BYTES, tactics, 16);
  int kernels = 0, lts = 0;
  for (int32_t i = 0; i < count; i++) {
    kernels += tactics[i].kind == KILN_TACTIC_KERNEL;
    lts += tactics[i].kind == KILN_TACTIC_CUBLASLT;
  }
  CHECK(count >= 1 && count <= 16);
  CHECK(kernels >= 1);
  /* cuBLASLt has algorithms for fp32, and for 16-bit types when rows are 16-byte aligned */
  if (c.m > 0 && c.n > 0 && c.k > 0 && (dt == KILN_DTYPE_FP32 || (c.k % 8 == 0 && c.n % 8 == 0)))
    CHECK(lts >= 1);
  for (int32_t i = 0; i <= count; i++) {
    const kiln_tactic *t = i < count ? &tactics[i] : NULL; /* NULL: the default */
    gt_poison_device(&y);
    if (t) CHECK(t->workspace <= WORKSPACE_BYTES);
    CHECK_OK(kiln_cuda_matmul(ctx, t, &x.d, &w.d, has_bias ? &b.d : NULL, act, &y.d, workspace,
                              WORKSPACE_BYTES, gt_stream_));
    snprintf(what, sizeof what, "matmul %s rank %d M=%lld N=%lld K=%lld bias=%d act=%d tactic %s/%d",
             kiln_dtype_name(dt), (int)x_rank, (long long)c.m, (long long)c.n, (long long)c.k,
             has_bias, (int)act, t ? (t->kind == KILN_TACTIC_KERNEL ? "kernel" : "cublaslt") : "default",
             t ? (int)t->index : 0);
    if (!gt_compare(what, &y, mm_atol(dt, c.k), gt_rtol(dt))) break; /* one report per case */
  }
  gt_free(&x), gt_free(&w), gt_free(&b), gt_free(&y);
}

static void test_matmul_grid(void) {
  check_rng r = {0x1234567ull};
  const mm_case cases[] = {{1, 1, 1},    {3, 5, 7},     {17, 33, 65},  {64, 64, 64},
                           {128, 96, 257}, {1, 384, 384}, {30, 1, 9},    {0, 8, 8},
                           {8, 0, 8},    {5, 7, 0},     {200, 130, 72}};
  const struct {
    int bias;
    kiln_activation act;
  } epi[] = {{0, KILN_ACTIVATION_NONE}, {1, KILN_ACTIVATION_NONE}, {1, KILN_ACTIVATION_GELU},
             {1, KILN_ACTIVATION_RELU}, {0, KILN_ACTIVATION_RELU}, {0, KILN_ACTIVATION_SILU}};
  for (int d = 0; d < 3; d++)
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
      for (size_t e = 0; e < sizeof epi / sizeof epi[0]; e++)
        check_matmul_case(&r, gt_dtypes[d], 2, cases[c], epi[e].bias, epi[e].act);
  /* batched leading dims */
  for (int d = 0; d < 3; d++) {
    mm_case c = {6, 19, 23};
    check_matmul_case(&r, gt_dtypes[d], 3, c, 1, KILN_ACTIVATION_GELU);
  }
}

/* A cuBLASLt algorithm chosen for one shape, run on another: must still be right. */
static void test_matmul_stale_tactic(void) {
  check_rng r = {99};
  kiln_tactic tactics[9];
  int32_t count = kiln_cuda_matmul_candidates(ctx, 256, 256, 256, KILN_DTYPE_FP16, 1,
                                              KILN_ACTIVATION_NONE, WORKSPACE_BYTES, tactics, 9);
  int64_t xd[2] = {3, 5}, wd[2] = {7, 5}, bd[1] = {7}, yd[2] = {3, 7};
  gt_buf x = gt_new(KILN_DTYPE_FP16, 2, xd), w = gt_new(KILN_DTYPE_FP16, 2, wd);
  gt_buf b = gt_new(KILN_DTYPE_FP16, 1, bd), y = gt_new(KILN_DTYPE_FP16, 2, yd);
  gt_random(&x, &r, -1, 1), gt_random(&w, &r, -1, 1), gt_random(&b, &r, -1, 1);
  gt_poison(&y);
  CHECK_OK(kiln_cpu_matmul(&x.h, &w.h, &b.h, KILN_ACTIVATION_NONE, &y.h));
  for (int32_t i = 0; i < count; i++) {
    if (tactics[i].kind != KILN_TACTIC_CUBLASLT) continue;
    gt_poison_device(&y);
    CHECK_OK(kiln_cuda_matmul(ctx, &tactics[i], &x.d, &w.d, &b.d, KILN_ACTIVATION_NONE, &y.d,
                              workspace, WORKSPACE_BYTES, gt_stream_));
    gt_compare("matmul with a tactic chosen for 256^3", &y, 1e-3, 2.5e-3);
  }
  /* a corrupt algorithm blob must not crash: it is checked and replaced */
  kiln_tactic junk;
  memset(&junk, 0, sizeof junk);
  junk.kind = KILN_TACTIC_CUBLASLT;
  memset(junk.data, 0x5A, sizeof junk.data);
  gt_poison_device(&y);
  CHECK_OK(kiln_cuda_matmul(ctx, &junk, &x.d, &w.d, &b.d, KILN_ACTIVATION_NONE, &y.d, workspace,
                            WORKSPACE_BYTES, gt_stream_));
  gt_compare("matmul with a corrupt cuBLASLt tactic", &y, 1e-3, 2.5e-3);
  /* a kernel tactic that does not exist, a bad shape: errors, output untouched */
  kiln_tactic bad;
  memset(&bad, 0, sizeof bad);
  bad.kind = KILN_TACTIC_KERNEL;
  bad.index = 1000;
  gt_poison_device(&y);
  CHECK_STATUS(kiln_cuda_matmul(ctx, &bad, &x.d, &w.d, &b.d, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                                gt_stream_), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cuda_matmul(ctx, NULL, &x.d, &x.d, &b.d, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                                gt_stream_), KILN_ERR_SHAPE);
  CHECK(strlen(kiln_last_error()) > 0);
  CHECK(gt_dev_still_poisoned(&y));
  /* no workspace at all: the default still runs */
  gt_poison_device(&y);
  CHECK_OK(kiln_cuda_matmul(ctx, NULL, &x.d, &w.d, &b.d, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                            gt_stream_));
  gt_compare("matmul default without workspace", &y, 1e-3, 2.5e-3);
  gt_free(&x), gt_free(&w), gt_free(&b), gt_free(&y);
}

/* ---- run_layer --------------------------------------------------------------------------- */

static int plugin_calls, plugin_target, plugin_tactic, plugin_n_in, plugin_n_out;
static kiln_status fake_enqueue(void *state, kiln_target target, int32_t tactic, int32_t n_in,
                                const kiln_tensor *in, int32_t n_out, kiln_tensor *out,
                                void *ws, void *stream) {
  (void)state, (void)in, (void)out, (void)ws, (void)stream;
  plugin_calls++;
  plugin_target = target;
  plugin_tactic = tactic;
  plugin_n_in = n_in;
  plugin_n_out = n_out;
  return KILN_OK;
}

static void test_run_layer(void) {
  check_rng r = {7};
  kiln_graph g;
  kiln_layer_def l;
  memset(&g, 0, sizeof g);
  memset(&l, 0, sizeof l);
  l.name = "layer";

  /* matmul with a chosen tactic, checked against the CPU's run_layer */
  {
    int64_t xd[2] = {9, 24}, wd[2] = {40, 24}, bd[1] = {40}, yd[2] = {9, 40};
    gt_buf x = gt_new(KILN_DTYPE_BF16, 2, xd), w = gt_new(KILN_DTYPE_BF16, 2, wd);
    gt_buf b = gt_new(KILN_DTYPE_BF16, 1, bd), y = gt_new(KILN_DTYPE_BF16, 2, yd);
    gt_random(&x, &r, -1, 1), gt_random(&w, &r, -1, 1), gt_random(&b, &r, -1, 1);
    gt_poison(&y);
    kiln_tactic t[4];
    int32_t count = kiln_cuda_matmul_candidates(ctx, 9, 40, 24, KILN_DTYPE_BF16, 1,
                                                KILN_ACTIVATION_GELU, WORKSPACE_BYTES, t, 4);
    CHECK(count >= 1);
    l.op = KILN_OP_MATMUL;
    l.n_in = 3, l.n_out = 1;
    l.p.activation = KILN_ACTIVATION_GELU;
    l.tactic = t[0];
    kiln_tensor hin[3] = {x.h, w.h, b.h}, din[3] = {x.d, w.d, b.d};
    CHECK_OK(kiln_cpu_run_layer(&g, &l, hin, &y.h, NULL, 0));
    CHECK(kiln_cuda_layer_workspace(&g, &l, NULL) <= WORKSPACE_BYTES);
    CHECK_OK(kiln_cuda_run_layer(ctx, &g, &l, din, &y.d, workspace, WORKSPACE_BYTES, gt_stream_));
    gt_compare("run_layer matmul", &y, mm_atol(KILN_DTYPE_BF16, 24), gt_rtol(KILN_DTYPE_BF16));
    gt_free(&x), gt_free(&w), gt_free(&b), gt_free(&y);
    memset(&l.tactic, 0, sizeof l.tactic);
  }
  /* slice with a negative start and an end past the dim */
  {
    int64_t xd[3] = {3, 10, 4}, yd[3] = {3, 3, 4};
    gt_buf x = gt_new(KILN_DTYPE_FP32, 3, xd), y = gt_new(KILN_DTYPE_FP32, 3, yd);
    gt_random(&x, &r, -1, 1);
    gt_poison(&y);
    l.op = KILN_OP_SLICE;
    l.n_in = 1, l.n_out = 1;
    l.p.axis = 1, l.p.start = -3, l.p.end = 100;
    CHECK_OK(kiln_cpu_run_layer(&g, &l, &x.h, &y.h, NULL, 0));
    CHECK_OK(kiln_cuda_run_layer(ctx, &g, &l, &x.d, &y.d, NULL, 0, gt_stream_));
    gt_compare("run_layer slice", &y, 0, 0);
    gt_free(&x), gt_free(&y);
  }
  /* add + layernorm with both outputs */
  {
    int64_t d2[2] = {5, 33}, d1[1] = {33};
    gt_buf a = gt_new(KILN_DTYPE_FP16, 2, d2), b = gt_new(KILN_DTYPE_FP16, 2, d2);
    gt_buf gm = gt_new(KILN_DTYPE_FP16, 1, d1), bt = gt_new(KILN_DTYPE_FP16, 1, d1);
    gt_buf sum = gt_new(KILN_DTYPE_FP16, 2, d2), y = gt_new(KILN_DTYPE_FP16, 2, d2);
    gt_random(&a, &r, -2, 2), gt_random(&b, &r, -2, 2), gt_random(&gm, &r, 0.5f, 1.5f);
    gt_random(&bt, &r, -0.5f, 0.5f);
    gt_poison(&sum), gt_poison(&y);
    l.op = KILN_OP_ADD_LAYERNORM;
    l.n_in = 4, l.n_out = 2;
    l.p.eps = 1e-5f;
    kiln_tensor hin[4] = {a.h, b.h, gm.h, bt.h}, din[4] = {a.d, b.d, gm.d, bt.d};
    kiln_tensor hout[2] = {sum.h, y.h}, dout[2] = {sum.d, y.d};
    CHECK_OK(kiln_cpu_run_layer(&g, &l, hin, hout, NULL, 0));
    CHECK_OK(kiln_cuda_run_layer(ctx, &g, &l, din, dout, NULL, 0, gt_stream_));
    gt_compare("run_layer add_layernorm sum", &sum, gt_atol(KILN_DTYPE_FP16), gt_rtol(KILN_DTYPE_FP16));
    gt_compare("run_layer add_layernorm y", &y, 4e-3, 4e-3);
    gt_free(&a), gt_free(&b), gt_free(&gm), gt_free(&bt), gt_free(&sum), gt_free(&y);
  }
  /* a plugin layer reaches the plugin's enqueue with the CUDA target and the layer's tactic */
  {
    kiln_plugin_creator creator;
    kiln_plugin_def pd;
    int64_t d1[1] = {4};
    gt_buf x = gt_new(KILN_DTYPE_FP32, 1, d1), y = gt_new(KILN_DTYPE_FP32, 1, d1);
    memset(&creator, 0, sizeof creator);
    memset(&pd, 0, sizeof pd);
    creator.abi_version = KILN_PLUGIN_ABI_VERSION;
    creator.name = "fake";
    creator.version = 1;
    creator.num_outputs = 1;
    creator.enqueue = fake_enqueue;
    pd.name = "fake";
    pd.version = 1;
    pd.creator = &creator;
    g.plugins = &pd;
    g.n_plugins = 1;
    l.op = KILN_OP_PLUGIN;
    l.n_in = 1, l.n_out = 1;
    l.p.plugin = 0;
    l.tactic.kind = KILN_TACTIC_PLUGIN;
    l.tactic.index = 3;
    CHECK_OK(kiln_cuda_run_layer(ctx, &g, &l, &x.d, &y.d, NULL, 0, gt_stream_));
    CHECK_EQ_INT(plugin_calls, 1);
    CHECK_EQ_INT(plugin_target, KILN_TARGET_CUDA);
    CHECK_EQ_INT(plugin_tactic, 3);
    CHECK_EQ_INT(plugin_n_in, 1);
    CHECK_EQ_INT(plugin_n_out, 1);
    l.p.plugin = 5; /* out of range */
    CHECK_STATUS(kiln_cuda_run_layer(ctx, &g, &l, &x.d, &y.d, NULL, 0, gt_stream_),
                 KILN_ERR_INTERNAL);
    g.plugins = NULL;
    g.n_plugins = 0;
    gt_free(&x), gt_free(&y);
  }
}

int main(void) {
  cudaStream_t stream;
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  GT_REQUIRE(kiln_cuda_ctx_create(0, &ctx));
  if (cudaStreamCreate(&stream) != cudaSuccess) GT_DIE("cudaStreamCreate failed");
  gt_stream_ = stream;
  GT_REQUIRE(kiln_cuda_malloc(&workspace, WORKSPACE_BYTES));
  test_matmul_grid();
  test_matmul_stale_tactic();
  test_run_layer();
  kiln_cuda_free(workspace);
  cudaStreamDestroy(stream);
  kiln_cuda_ctx_destroy(ctx);
  return check_report();
}
