/* tests/gpu/test_cuda_fused_matmul.c - matmuls with the builder's fusions (a layernorm of x
 * before, a residual added after; graph.h's KILN_FUSE_*) on the GPU against the CPU backend:
 * every candidate tactic (the skinny kernel's variants in one launch; cuBLASLt with the
 * layernorm in the workspace and the residual as C; the tiled kernel; the dequantize path of the
 * weight-only matmul) and the default, for fp16/bf16 (fp32 on the paths that take it) weights,
 * int8 per row and int4 in groups, over a grid of M (1 .. 300), N and K (Whisper large's 1280 /
 * 5120 and odd sizes), with and without bias and activations. x has a large mean (3) and a small
 * spread, where a careless variance cancels. Outputs are NaN-poisoned before each run. Also the
 * layer dispatch with fused inputs, and the errors. Exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>

#include "backends/cpu/cpu_ops.h"
#include "core/quant.h"
#include "gpu_test_util.h"
#include "net/graph.h"

#define WORKSPACE_BYTES ((size_t)64 << 20)
#define MAX_TACTICS 24

static kiln_cuda_ctx *ctx;
static void *workspace;
static int cases_run, tactic_runs, skinny_runs;
static double worst_nmse[4]; /* by dtype */

static int compare(const char *what, const gt_buf *y, kiln_dtype dt) {
  tactic_runs++;
  return gt_compare_sum(what, y, &worst_nmse[dt]);
}

typedef struct fcase {
  kiln_dtype dt, wdt; /* wdt: dt (plain matmul), INT8 or INT4 */
  int32_t group;
  int64_t m, n, k;
  int bias, ln, res;
  kiln_activation act;
} fcase;

static void run_case(check_rng *r, const fcase *c) {
  int64_t xd[2] = {c->m, c->k}, yd[2] = {c->m, c->n}, wd[2] = {c->n, c->k}, bd[1] = {c->n}, gd[1] = {c->k};
  int64_t sd[2] = {c->n, c->group ? c->k / c->group : 1};
  int wq = c->wdt == KILN_DTYPE_INT8 || c->wdt == KILN_DTYPE_INT4;
  gt_buf x = gt_new(c->dt, 2, xd), xn = gt_new(c->dt, 2, xd), y = gt_new(c->dt, 2, yd), res = gt_new(c->dt, 2, yd);
  gt_buf b = gt_new(c->dt, 1, bd), gamma = gt_new(c->dt, 1, gd), beta = gt_new(c->dt, 1, gd);
  gt_buf w = gt_new(c->wdt, 2, wd), s = gt_new(KILN_DTYPE_FP32, c->group ? 2 : 1, sd);
  if (c->ln) gt_random(&x, r, 2.5f, 3.5f); /* mean ~3, spread 0.3: a one-pass variance must shift */
  else gt_random(&x, r, -1, 1);
  gt_random(&res, r, -2, 2), gt_random(&b, r, -1, 1), gt_random(&gamma, r, 0.5f, 1.5f), gt_random(&beta, r, -0.5f, 0.5f);
  if (wq) {
    float *f = malloc((size_t)(c->n * c->k) * sizeof *f + 4);
    if (!f) GT_DIE("out of host memory");
    check_fill(r, f, c->n * c->k, -1, 1);
    GT_REQUIRE(kiln_quantize(f, c->n, c->k, c->wdt, c->group, w.host, (float *)s.host));
    gt_upload(&w), gt_upload(&s);
    free(f);
  } else {
    gt_random(&w, r, -0.1f, 0.1f);
  }
  /* the CPU reference: layernorm rounded to the dtype, matmul, residual */
  const kiln_tensor *xin = &x.h;
  if (c->ln) {
    CHECK_OK(kiln_cpu_layernorm(&x.h, &gamma.h, &beta.h, 1e-5f, &xn.h));
    xin = &xn.h;
  }
  if (wq) CHECK_OK(kiln_cpu_matmul_wq(xin, &w.h, &s.h, c->bias ? &b.h : NULL, c->group, c->act, &y.h));
  else CHECK_OK(kiln_cpu_matmul(xin, &w.h, c->bias ? &b.h : NULL, c->act, &y.h));
  if (c->res) CHECK_OK(kiln_cpu_add(&y.h, &res.h, &y.h));
  kiln_tactic t[MAX_TACTICS];
  int32_t count = wq ? kiln_cuda_matmul_wq_candidates(ctx, c->m, c->n, c->k, c->dt, c->wdt, c->group, c->bias, c->act,
                                                      WORKSPACE_BYTES / 2, t, MAX_TACTICS)
                     : kiln_cuda_matmul_candidates(ctx, c->m, c->n, c->k, c->dt, c->bias, c->act, WORKSPACE_BYTES / 2, t,
                                                   MAX_TACTICS);
  CHECK(count >= 1);
  kiln_cuda_mm_fuse f = {c->ln ? &gamma.d : NULL, c->ln ? &beta.d : NULL, 1e-5f, c->res ? &res.d : NULL};
  for (int32_t i = 0; i <= count; i++) {
    const kiln_tactic *tt = i < count ? &t[i] : NULL;
    char what[256];
    gt_poison_device(&y);
    kiln_status st = wq ? kiln_cuda_matmul_wq_fused(ctx, tt, &x.d, &w.d, &s.d, c->bias ? &b.d : NULL, c->group, c->act,
                                                    &f, &y.d, workspace, WORKSPACE_BYTES, gt_stream_)
                        : kiln_cuda_matmul_fused(ctx, tt, &x.d, &w.d, c->bias ? &b.d : NULL, c->act, &f, &y.d,
                                                 workspace, WORKSPACE_BYTES, gt_stream_);
    snprintf(what, sizeof what, "fused %s W %s group %d M=%lld N=%lld K=%lld bias=%d ln=%d res=%d act=%d tactic %s/%d",
             kiln_dtype_name(c->dt), kiln_dtype_name(c->wdt), (int)c->group, (long long)c->m, (long long)c->n,
             (long long)c->k, c->bias, c->ln, c->res, (int)c->act,
             !tt ? "default" : tt->kind == KILN_TACTIC_KERNEL ? "kernel" : "cublaslt", tt ? (int)tt->index : 0);
    CHECK_OK(st);
    if (st != KILN_OK) break;
    skinny_runs += kiln_cuda_matmul_tactic_is_skinny(wq, tt);
    if (!compare(what, &y, c->dt)) break; /* one report per case */
  }
  cases_run++;
  gt_free(&x), gt_free(&xn), gt_free(&y), gt_free(&res), gt_free(&b), gt_free(&gamma), gt_free(&beta);
  gt_free(&w), gt_free(&s);
}

static void test_grid(void) {
  check_rng r = {0x5eed};
  static const int64_t ms[] = {1, 3, 8, 16, 33, 64, 300};
  static const int64_t nk[][2] = {{1280, 1280}, {5120, 1280}, {1280, 5120}, {72, 256}, {200, 640}, {40, 96}};
  static const struct {
    int q; /* 0: plain, 8: int8 per row, 4: int4 */
    int32_t group;
  } modes[] = {{0, 0}, {8, 0}, {4, 64}, {4, 128}};
  static const kiln_dtype dts[2] = {KILN_DTYPE_FP16, KILN_DTYPE_BF16};
  int i = 0;
  for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++)
    for (size_t q = 0; q < sizeof modes / sizeof modes[0]; q++) {
      if (modes[q].group && nk[a][1] % modes[q].group) continue;
      for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++, i++) {
        fcase c;
        memset(&c, 0, sizeof c);
        c.dt = dts[i % 2];
        c.wdt = modes[q].q == 8 ? KILN_DTYPE_INT8 : modes[q].q == 4 ? KILN_DTYPE_INT4 : c.dt;
        c.group = modes[q].group;
        c.m = ms[mi], c.n = nk[a][0], c.k = nk[a][1];
        c.ln = i % 3 != 1, c.res = i % 3 != 2, c.bias = i % 4 != 3;
        c.act = (i / 3) % 2 ? KILN_ACTIVATION_GELU : KILN_ACTIVATION_NONE;
        run_case(&r, &c);
      }
    }
  /* fp32 (cuBLASLt / tiled / dequantize paths only), and the residual after a relu */
  fcase c32 = {KILN_DTYPE_FP32, KILN_DTYPE_FP32, 0, 5, 96, 128, 1, 1, 1, KILN_ACTIVATION_RELU};
  run_case(&r, &c32);
  fcase c32q = {KILN_DTYPE_FP32, KILN_DTYPE_INT4, 64, 17, 64, 256, 0, 1, 1, KILN_ACTIVATION_NONE};
  run_case(&r, &c32q);
  fcase relu = {KILN_DTYPE_FP16, KILN_DTYPE_FP16, 0, 4, 256, 512, 1, 0, 1, KILN_ACTIVATION_RELU};
  run_case(&r, &relu);
}

/* kiln_cuda_run_layer on matmul layers whose inputs follow kiln_matmul_io (gamma/beta after the
 * bias, the residual last), against kiln_cpu_run_layer on the same layer; the layer's workspace
 * holds the layernorm buffer unless the tactic is the skinny kernel. */
static void test_run_layer(void) {
  check_rng r = {9};
  int64_t xd[3] = {2, 3, 256}, yd[3] = {2, 3, 96}, wd[2] = {96, 256}, bd[1] = {96}, gd[1] = {256};
  gt_buf x = gt_new(KILN_DTYPE_FP16, 3, xd), w = gt_new(KILN_DTYPE_FP16, 2, wd), b = gt_new(KILN_DTYPE_FP16, 1, bd);
  gt_buf gamma = gt_new(KILN_DTYPE_FP16, 1, gd), beta = gt_new(KILN_DTYPE_FP16, 1, gd);
  gt_buf res = gt_new(KILN_DTYPE_FP16, 3, yd), y = gt_new(KILN_DTYPE_FP16, 3, yd);
  gt_random(&x, &r, -2, 4), gt_random(&w, &r, -0.1f, 0.1f), gt_random(&b, &r, -1, 1);
  gt_random(&gamma, &r, 0.5f, 1.5f), gt_random(&beta, &r, -1, 1), gt_random(&res, &r, -1, 1);
  kiln_graph g;
  kiln_graph_init(&g);
  kiln_dims wdims = {2, {96, 256}};
  int32_t xt = kiln_graph_add_tensor(&g, "x", KILN_TENSOR_INPUT, KILN_DTYPE_FP16, &x.dims);
  int32_t wt = kiln_graph_add_tensor(&g, "w", KILN_TENSOR_CONSTANT, KILN_DTYPE_FP16, &wdims);
  kiln_layer_def l;
  memset(&l, 0, sizeof l);
  l.name = "fused";
  l.op = KILN_OP_MATMUL;
  l.n_in = 6, l.n_out = 1;
  l.in[0] = xt, l.in[1] = wt;
  l.p.activation = KILN_ACTIVATION_GELU;
  l.p.fuse = KILN_FUSE_LN | KILN_FUSE_RESIDUAL;
  l.p.eps = 1e-5f;
  kiln_tensor hin[6] = {x.h, w.h, b.h, gamma.h, beta.h, res.h}, din[6] = {x.d, w.d, b.d, gamma.d, beta.d, res.d};
  CHECK_OK(kiln_cpu_run_layer(&g, &l, hin, &y.h, NULL, 0));
  kiln_tactic t[MAX_TACTICS];
  int32_t count = kiln_cuda_matmul_candidates(ctx, 6, 96, 256, KILN_DTYPE_FP16, 1, KILN_ACTIVATION_GELU,
                                              WORKSPACE_BYTES / 2, t, MAX_TACTICS);
  CHECK(count >= 1 + KILN_CUDA_SKINNY_VARIANTS);
  kiln_dims in_dims[6] = {x.dims, wdims, b.dims, gamma.dims, beta.dims, res.dims};
  for (int32_t i = 0; i < count; i++) {
    l.tactic = t[i];
    size_t ws = kiln_cuda_layer_workspace(&g, &l, in_dims);
    int skinny = kiln_cuda_matmul_tactic_is_skinny(0, &t[i]);
    /* the skinny kernel needs none for its layernorm: what it asks for is a chain's (chain.cu) */
    size_t chain = kiln_cuda_chain_workspace(&g, &l, in_dims);
    CHECK(skinny ? ws == chain : ws >= kiln_cuda_matmul_ln_bytes(6, 256, KILN_DTYPE_FP16));
    gt_poison_device(&y);
    CHECK_OK(kiln_cuda_run_layer(ctx, &g, &l, din, &y.d, workspace, ws, gt_stream_));
    compare("run_layer fused matmul", &y, KILN_DTYPE_FP16);
  }
  /* too little workspace for the layernorm: an error, output untouched */
  memset(&l.tactic, 0, sizeof l.tactic);
  l.tactic.kind = KILN_TACTIC_KERNEL; /* the tiled kernel */
  gt_poison_device(&y);
  CHECK_STATUS(kiln_cuda_run_layer(ctx, &g, &l, din, &y.d, workspace, 16, gt_stream_), KILN_ERR_INVALID_ARG);
  CHECK_MSG("workspace");
  CHECK(gt_dev_still_poisoned(&y));
  /* inputs that do not match the fusion bits */
  l.n_in = 4; /* fusions need 5 at least */
  CHECK_STATUS(kiln_cuda_run_layer(ctx, &g, &l, din, &y.d, workspace, WORKSPACE_BYTES, gt_stream_),
               KILN_ERR_INVALID_ARG);
  CHECK_MSG("fusions");
  kiln_graph_free(&g);
  gt_free(&x), gt_free(&w), gt_free(&b), gt_free(&gamma), gt_free(&beta), gt_free(&res), gt_free(&y);
}

/* Misuse of the fusion arguments: gamma without beta, a residual of the wrong shape. */
static void test_errors(void) {
  check_rng r = {11};
  int64_t xd[2] = {4, 64}, yd[2] = {4, 32}, wd[2] = {32, 64}, gd[1] = {64}, bad[2] = {4, 33};
  gt_buf x = gt_new(KILN_DTYPE_FP16, 2, xd), w = gt_new(KILN_DTYPE_FP16, 2, wd), y = gt_new(KILN_DTYPE_FP16, 2, yd);
  gt_buf gamma = gt_new(KILN_DTYPE_FP16, 1, gd), res = gt_new(KILN_DTYPE_FP16, 2, bad);
  gt_random(&x, &r, -1, 1), gt_random(&w, &r, -1, 1), gt_random(&gamma, &r, -1, 1), gt_random(&res, &r, -1, 1);
  gt_poison(&y);
  kiln_cuda_mm_fuse half = {&gamma.d, NULL, 1e-5f, NULL}, wrong = {NULL, NULL, 0.0f, &res.d};
  CHECK_STATUS(kiln_cuda_matmul_fused(ctx, NULL, &x.d, &w.d, NULL, KILN_ACTIVATION_NONE, &half, &y.d, workspace,
                                      WORKSPACE_BYTES, gt_stream_),
               KILN_ERR_INVALID_ARG);
  CHECK_MSG("beta");
  CHECK_STATUS(kiln_cuda_matmul_fused(ctx, NULL, &x.d, &w.d, NULL, KILN_ACTIVATION_NONE, &wrong, &y.d, workspace,
                                      WORKSPACE_BYTES, gt_stream_),
               KILN_ERR_SHAPE);
  CHECK_MSG("residual");
  CHECK(gt_dev_still_poisoned(&y));
  gt_free(&x), gt_free(&w), gt_free(&y), gt_free(&gamma), gt_free(&res);
}

int main(void) {
  cudaStream_t stream;
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  kiln_log_set_level(KILN_LOG_ERROR);
  GT_REQUIRE(kiln_cuda_ctx_create(0, &ctx));
  if (kiln_cuda_ctx_info(ctx)->cc_major < 8) {
    kiln_cuda_ctx_destroy(ctx);
    SKIP_TEST("the skinny kernel needs sm_80+");
  }
  if (cudaStreamCreate(&stream) != cudaSuccess) GT_DIE("cudaStreamCreate failed");
  gt_stream_ = stream;
  GT_REQUIRE(kiln_cuda_malloc(&workspace, WORKSPACE_BYTES));
  test_grid();
  test_run_layer();
  test_errors();
  fprintf(stderr, "test_cuda_fused_matmul: %d cases, %d tactic runs (%d on the skinny kernel) compared with the CPU "
                  "backend; worst nmse fp16 %.3g, bf16 %.3g, fp32 %.3g\n",
          cases_run, tactic_runs, skinny_runs, worst_nmse[KILN_DTYPE_FP16], worst_nmse[KILN_DTYPE_BF16],
          worst_nmse[KILN_DTYPE_FP32]);
  CHECK(skinny_runs > 100);
  kiln_cuda_free(workspace);
  cudaStreamDestroy(stream);
  kiln_cuda_ctx_destroy(ctx);
  return check_report();
}
