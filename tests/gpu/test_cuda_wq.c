/* tests/gpu/test_cuda_wq.c - the weight-only quantized matmul on the GPU against the CPU backend:
 * every candidate tactic (kiln's small-M kernel variants, cuBLASLt on the dequantized weights)
 * and the default, over a grid of shapes (M 1 .. 1500, N and K 64 .. 5120 with Whisper large's
 * 1280 / 5120, odd N, K odd multiples of the group), fp16 and bf16 (fp32 on the dequantize
 * path), int8 per row and int4 in groups of 64 / 128, with bias and activations, outputs
 * NaN-poisoned before each run; tactics chosen for one M run at others; the error paths; the
 * layer dispatch; and a small network built for CUDA with weight_only, run on the GPU and on
 * the CPU backend. Exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>

#include "backends/cpu/cpu_ops.h"
#include "common/test_wq_net.h"
#include "core/quant.h"
#include "gpu_test_util.h"

#define WORKSPACE_BYTES ((size_t)32 << 20)
#define MAX_TACTICS 16

static kiln_cuda_ctx *ctx;
static void *workspace;
static int cases_run, tactic_runs;
static double worst_nmse[4]; /* by dtype */

/* Quantized weights on host and device. */
typedef struct gt_wq {
  gt_buf q, s;
  int32_t group;
} gt_wq;

static gt_wq wq_new(check_rng *r, kiln_dtype qdt, int64_t n, int64_t k, int32_t group) {
  gt_wq w;
  int64_t qd[2] = {n, k}, sd[2] = {n, group ? k / group : 1};
  float *f = malloc((size_t)(n * k) * sizeof *f + 4);
  if (!f) GT_DIE("out of host memory");
  check_fill(r, f, n * k, -1, 1);
  w.q = gt_new(qdt, 2, qd);
  w.s = gt_new(KILN_DTYPE_FP32, group ? 2 : 1, sd);
  GT_REQUIRE(kiln_quantize(f, n, k, qdt, group, w.q.host, (float *)w.s.host));
  gt_upload(&w.q);
  gt_upload(&w.s);
  w.group = group;
  free(f);
  return w;
}

static void wq_free(gt_wq *w) {
  gt_free(&w->q);
  gt_free(&w->s);
}

static int compare(const char *what, const gt_buf *y, kiln_dtype dt) {
  tactic_runs++;
  return gt_compare_sum(what, y, &worst_nmse[dt]);
}

static const char *tactic_name(const kiln_tactic *t) {
  if (!t) return "default";
  return t->kind == KILN_TACTIC_KERNEL ? "kernel" : t->kind == KILN_TACTIC_CUBLASLT ? "cublaslt" : "default";
}

/* y = act(x [m, k] @ dequant(W [n, k])^T + b) with every candidate for M = m and the default;
 * then the candidates again at the other Ms in `more` (as the builder runs a tactic chosen at
 * the opt shape at min and max). */
static void wq_case(check_rng *r, kiln_dtype dt, kiln_dtype qdt, int32_t group, int64_t m, int64_t n, int64_t k,
                    int has_bias, kiln_activation act, const int64_t *more, int n_more) {
  int64_t bd[1] = {n};
  gt_wq w = wq_new(r, qdt, n, k, group);
  gt_buf b = gt_new(dt, 1, bd);
  gt_random(&b, r, -1, 1);
  kiln_tactic t[MAX_TACTICS];
  int32_t count = kiln_cuda_matmul_wq_candidates(ctx, m, n, k, dt, qdt, group, has_bias, act, WORKSPACE_BYTES, t,
                                                 MAX_TACTICS);
  int kernels = 0, lts = 0;
  for (int32_t i = 0; i < count; i++) {
    kernels += t[i].kind == KILN_TACTIC_KERNEL;
    lts += t[i].kind == KILN_TACTIC_CUBLASLT;
    CHECK(t[i].workspace <= WORKSPACE_BYTES);
    CHECK_EQ_INT(kiln_cuda_matmul_wq_workspace(&t[i], n, k, dt, qdt, group), t[i].workspace);
  }
  CHECK(count >= 1);
  CHECK_EQ_INT(kernels, kiln_cuda_wq_kernel_fits(dt, qdt, k, group) ? KILN_CUDA_WQ_KERNELS : 0);
  if (dt != KILN_DTYPE_FP32 && n % 8 == 0 && k % 8 == 0) CHECK(lts >= 1);
  for (int pass = 0; pass <= n_more; pass++) {
    int64_t mm = pass == 0 ? m : more[pass - 1];
    int64_t xd[2] = {mm, k}, yd[2] = {mm, n};
    gt_buf x = gt_new(dt, 2, xd), y = gt_new(dt, 2, yd);
    gt_random(&x, r, -1, 1);
    gt_poison(&y);
    CHECK_OK(kiln_cpu_matmul_wq(&x.h, &w.q.h, &w.s.h, has_bias ? &b.h : NULL, group, act, &y.h));
    for (int32_t i = 0; i <= count; i++) {
      const kiln_tactic *tt = i < count ? &t[i] : NULL;
      char what[200];
      gt_poison_device(&y);
      CHECK_OK(kiln_cuda_matmul_wq(ctx, tt, &x.d, &w.q.d, &w.s.d, has_bias ? &b.d : NULL, group, act, &y.d, workspace,
                                   WORKSPACE_BYTES, gt_stream_));
      snprintf(what, sizeof what, "matmul_wq %s %s group %d M=%lld N=%lld K=%lld bias=%d act=%d tactic %s/%d%s",
               kiln_dtype_name(dt), kiln_dtype_name(qdt), (int)group, (long long)mm, (long long)n, (long long)k,
               has_bias, (int)act, tactic_name(tt), tt ? (int)tt->index : 0, pass ? " (chosen at another M)" : "");
      if (!compare(what, &y, dt)) break; /* one report per case */
    }
    gt_free(&x), gt_free(&y);
  }
  cases_run++;
  wq_free(&w);
  gt_free(&b);
}

static void test_grid(void) {
  check_rng r = {0x77};
  static const int64_t ms[] = {1, 2, 3, 8, 16, 33, 64, 65, 256, 1500};
  static const int64_t nk[][2] = {{64, 64},   {1280, 1280}, {5120, 1280}, {1280, 5120},
                                  {72, 192},  {200, 640},   {65, 320}};
  static const struct {
    kiln_dtype q;
    int32_t group;
  } modes[] = {{KILN_DTYPE_INT8, 0}, {KILN_DTYPE_INT4, 64}, {KILN_DTYPE_INT4, 128}};
  static const kiln_dtype dts[2] = {KILN_DTYPE_FP16, KILN_DTYPE_BF16};
  int i = 0;
  for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++) {
    int big = nk[a][0] * nk[a][1] > 2000000;
    for (size_t q = 0; q < sizeof modes / sizeof modes[0]; q++) {
      if (modes[q].group && nk[a][1] % modes[q].group) continue;
      for (int d = 0; d < 2; d++)
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++, i++) {
          /* keep the CPU reference affordable: M = 1500 on the large weights once per shape */
          if (big && ms[mi] == 1500 && !(q == (size_t)(a % 3) && d == (int)(a % 2))) continue;
          wq_case(&r, dts[d], modes[q].q, modes[q].group, ms[mi], nk[a][0], nk[a][1], i % 3 != 0,
                  (kiln_activation)(i % 4), NULL, 0);
        }
    }
  }
  /* the combinations the builder does not make, but the op takes */
  wq_case(&r, KILN_DTYPE_FP16, KILN_DTYPE_INT8, 32, 5, 96, 256, 1, KILN_ACTIVATION_GELU, NULL, 0);
  wq_case(&r, KILN_DTYPE_BF16, KILN_DTYPE_INT4, 0, 7, 128, 384, 0, KILN_ACTIVATION_NONE, NULL, 0);
  /* shapes the small-M kernel does not take: K not a multiple of 16 / 32 (dequantize path) */
  wq_case(&r, KILN_DTYPE_FP16, KILN_DTYPE_INT8, 0, 9, 40, 24, 1, KILN_ACTIVATION_RELU, NULL, 0);
  wq_case(&r, KILN_DTYPE_BF16, KILN_DTYPE_INT4, 16, 4, 33, 48, 1, KILN_ACTIVATION_SILU, NULL, 0);
  /* fp32 activations: dequantize path only */
  wq_case(&r, KILN_DTYPE_FP32, KILN_DTYPE_INT4, 64, 3, 256, 128, 1, KILN_ACTIVATION_GELU, NULL, 0);
  wq_case(&r, KILN_DTYPE_FP32, KILN_DTYPE_INT8, 0, 100, 64, 192, 0, KILN_ACTIVATION_NONE, NULL, 0);
  /* tactics chosen at one M, run at the profile's others */
  static const int64_t more[3] = {1, 300, 17};
  wq_case(&r, KILN_DTYPE_FP16, KILN_DTYPE_INT8, 0, 64, 1280, 1280, 1, KILN_ACTIVATION_NONE, more, 3);
  wq_case(&r, KILN_DTYPE_BF16, KILN_DTYPE_INT4, 128, 1, 1280, 1280, 0, KILN_ACTIVATION_GELU, more, 3);
}

/* Misaligned x, missing workspace, a kernel tactic that does not exist, bad scales: errors (or
 * the dequantize path for the default), output untouched on error. */
static void test_errors(void) {
  check_rng r = {5};
  gt_wq w = wq_new(&r, KILN_DTYPE_INT4, 64, 128, 64);
  int64_t xd[2] = {3, 128 + 8}, yd[2] = {3, 64};
  gt_buf xbig = gt_new(KILN_DTYPE_FP16, 2, xd), y = gt_new(KILN_DTYPE_FP16, 2, yd);
  gt_random(&xbig, &r, -1, 1);
  kiln_dims d = {2, {3, 128}};
  /* x at +2 bytes: rows of 128 halves starting off a 16-byte boundary (its values differ from
   * the host view's, so only statuses and poison are checked here) */
  kiln_tensor xmis = kiln_tensor_contiguous((char *)xbig.dev + 2, KILN_DTYPE_FP16, &d);
  kiln_tactic kern;
  memset(&kern, 0, sizeof kern);
  kern.kind = KILN_TACTIC_KERNEL;
  gt_poison(&y);
  CHECK_STATUS(kiln_cuda_matmul_wq(ctx, &kern, &xmis, &w.q.d, &w.s.d, NULL, 64, KILN_ACTIVATION_NONE, &y.d, workspace,
                                   WORKSPACE_BYTES, gt_stream_),
               KILN_ERR_UNSUPPORTED);
  CHECK_MSG("aligned");
  CHECK(gt_dev_still_poisoned(&y));
  CHECK_OK(kiln_cuda_matmul_wq(ctx, NULL, &xmis, &w.q.d, &w.s.d, NULL, 64, KILN_ACTIVATION_NONE, &y.d, workspace,
                               WORKSPACE_BYTES, gt_stream_)); /* the default dequantizes instead */
  CHECK(!gt_dev_still_poisoned(&y));
  gt_poison(&y);
  CHECK_STATUS(kiln_cuda_matmul_wq(ctx, NULL, &xmis, &w.q.d, &w.s.d, NULL, 64, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                                   gt_stream_),
               KILN_ERR_UNSUPPORTED);
  CHECK_MSG("workspace");
  kern.index = KILN_CUDA_WQ_KERNELS;
  kiln_tensor x = kiln_tensor_contiguous(xbig.dev, KILN_DTYPE_FP16, &d);
  CHECK_STATUS(kiln_cuda_matmul_wq(ctx, &kern, &x, &w.q.d, &w.s.d, NULL, 64, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                                   gt_stream_),
               KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cuda_matmul_wq(ctx, NULL, &x, &w.q.d, &w.s.d, NULL, 128, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                                   gt_stream_),
               KILN_ERR_SHAPE); /* scales [64, 2] do not fit group 128 */
  CHECK_STATUS(kiln_cuda_matmul_wq(ctx, NULL, &x, &w.s.d, &w.s.d, NULL, 0, KILN_ACTIVATION_NONE, &y.d, NULL, 0,
                                   gt_stream_),
               KILN_ERR_SHAPE);
  CHECK(gt_dev_still_poisoned(&y));
  gt_free(&xbig), gt_free(&y);
  wq_free(&w);
}

/* kiln_cuda_run_layer on a matmul_wq layer with each tactic, against kiln_cpu_run_layer. */
static void test_run_layer(void) {
  check_rng r = {6};
  gt_wq w = wq_new(&r, KILN_DTYPE_INT8, 96, 256, 0);
  int64_t xd[3] = {2, 5, 256}, yd[3] = {2, 5, 96}, bd[1] = {96};
  gt_buf x = gt_new(KILN_DTYPE_BF16, 3, xd), b = gt_new(KILN_DTYPE_BF16, 1, bd), y = gt_new(KILN_DTYPE_BF16, 3, yd);
  gt_random(&x, &r, -1, 1), gt_random(&b, &r, -1, 1);
  gt_poison(&y);
  kiln_graph g;
  kiln_graph_init(&g);
  kiln_dims wd = {2, {96, 256}};
  int32_t xt = kiln_graph_add_tensor(&g, "x", KILN_TENSOR_INPUT, KILN_DTYPE_BF16, &x.dims);
  int32_t qt = kiln_graph_add_tensor(&g, "w.q", KILN_TENSOR_CONSTANT, KILN_DTYPE_INT8, &wd);
  kiln_layer_def l;
  memset(&l, 0, sizeof l);
  l.name = "wq";
  l.op = KILN_OP_MATMUL_WQ;
  l.n_in = 4, l.n_out = 1;
  l.in[0] = xt, l.in[1] = qt; /* what kiln_cuda_layer_workspace looks at */
  l.p.activation = KILN_ACTIVATION_GELU;
  kiln_tensor hin[4] = {x.h, w.q.h, w.s.h, b.h}, din[4] = {x.d, w.q.d, w.s.d, b.d};
  CHECK_OK(kiln_cpu_run_layer(&g, &l, hin, &y.h, NULL, 0));
  kiln_tactic t[MAX_TACTICS];
  int32_t count = kiln_cuda_matmul_wq_candidates(ctx, 10, 96, 256, KILN_DTYPE_BF16, KILN_DTYPE_INT8, 0, 1,
                                                 KILN_ACTIVATION_GELU, WORKSPACE_BYTES, t, MAX_TACTICS);
  CHECK(count >= KILN_CUDA_WQ_KERNELS);
  for (int32_t i = 0; i < count; i++) {
    l.tactic = t[i];
    CHECK(kiln_cuda_layer_workspace(&g, &l, NULL) <= WORKSPACE_BYTES);
    CHECK_EQ_INT(kiln_cuda_layer_workspace(&g, &l, NULL), t[i].workspace);
    gt_poison_device(&y);
    CHECK_OK(kiln_cuda_run_layer(ctx, &g, &l, din, &y.d, workspace, WORKSPACE_BYTES, gt_stream_));
    compare("run_layer matmul_wq", &y, KILN_DTYPE_BF16);
  }
  memset(&l.tactic, 0, sizeof l.tactic);
  CHECK_EQ_INT(kiln_cuda_layer_workspace(&g, &l, NULL), 0); /* the default is the kernel here */
  kiln_graph_free(&g);
  gt_free(&x), gt_free(&b), gt_free(&y);
  wq_free(&w);
}

/* ---- a network built for CUDA with weight_only ------------------------------------------- */

/* Run on x [b, s, D], ids [b, s]; device buffers for a GPU engine (outputs NaN-poisoned). */
static kiln_status run_net(kiln_engine *e, int gpu, int64_t b, int64_t s, uint64_t seed, wn_outs *o) {
  kiln_dtype dt = kiln_engine_precision(e);
  kiln_dims xd = {3, {b, s, WN_D}}, idd = {2, {b, s}};
  void *x = NULL, *dx = NULL, *di = NULL, *raw[WN_OUTPUTS] = {0}, *dev[WN_OUTPUTS] = {0};
  int32_t *ids = NULL;
  size_t xb = kiln_dtype_bytes(dt, b * s * WN_D), ib = (size_t)(b * s) * 4;
  kiln_context *c = NULL;
  memset(o, 0, sizeof *o);
  wn_inputs(b, s, seed, dt, &x, &ids);
  kiln_status st = kiln_context_create(e, 0, &c);
  if (st == KILN_OK && gpu) {
    GT_REQUIRE(kiln_cuda_malloc(&dx, xb + 16));
    GT_REQUIRE(kiln_cuda_malloc(&di, ib + 16));
    GT_REQUIRE(kiln_cuda_memcpy_h2d(dx, x, xb, NULL));
    GT_REQUIRE(kiln_cuda_memcpy_h2d(di, ids, ib, NULL));
  }
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "x", &xd);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "ids", &idd);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "x", gpu ? dx : x);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "ids", gpu ? di : (void *)ids);
  for (int i = 0; i < WN_OUTPUTS && st == KILN_OK; i++) {
    kiln_dims d;
    st = kiln_context_get_shape(c, wn_output_names[i], &d);
    o->n[i] = kiln_dims_count(&d);
    raw[i] = malloc(kiln_dtype_bytes(dt, o->n[i]) + 4);
    o->v[i] = malloc((size_t)o->n[i] * 4 + 4);
    if (gpu) {
      GT_REQUIRE(kiln_cuda_malloc(&dev[i], kiln_dtype_bytes(dt, o->n[i]) + 4));
      GT_REQUIRE(kiln_cuda_memset(dev[i], 0xFF, kiln_dtype_bytes(dt, o->n[i]) + 4, NULL));
    }
    if (st == KILN_OK) st = kiln_context_set_tensor(c, wn_output_names[i], gpu ? dev[i] : raw[i]);
  }
  if (st == KILN_OK) st = kiln_context_enqueue(c, gt_stream_);
  if (st == KILN_OK && gpu) st = kiln_cuda_stream_sync(gt_stream_);
  for (int i = 0; i < WN_OUTPUTS && st == KILN_OK; i++) {
    if (gpu) GT_REQUIRE(kiln_cuda_memcpy_d2h(raw[i], dev[i], kiln_dtype_bytes(dt, o->n[i]), NULL));
    kiln_convert_floats(o->v[i], KILN_DTYPE_FP32, raw[i], dt, o->n[i]);
  }
  for (int i = 0; i < WN_OUTPUTS; i++) free(raw[i]), kiln_cuda_free(dev[i]);
  kiln_context_destroy(c);
  kiln_cuda_free(dx), kiln_cuda_free(di);
  free(x), free(ids);
  return st;
}

static void test_network(kiln_dtype dt, kiln_weight_only wo, int64_t opt_b, int64_t opt_s) {
  kiln_network *net = wn_build(91, 4, 64, opt_b, opt_s);
  CHECK(net != NULL);
  if (!net) return;
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CUDA;
  p.precision = dt;
  p.weight_only = wo;
  p.group_size = 64;
  void *img = NULL;
  size_t size = 0;
  kiln_build_report rep;
  CHECK_OK(kiln_build(net, &p, &img, &size, &rep));
  kiln_network_destroy(net);
  if (!img) return;
  CHECK_EQ_INT(rep.num_quantized, wo == KILN_WEIGHT_ONLY_INT8 ? 5 : 4);
  CHECK(rep.tactics_timed > 0);
  kiln_engine *gpu = NULL, *cpu = NULL;
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  CHECK_OK(kiln_engine_load_memory(img, size, &lp, &gpu));
  lp.run_on_cpu = 1;
  CHECK_OK(kiln_engine_load_memory(img, size, &lp, &cpu));
  char *text = NULL;
  if (gpu && kiln_engine_describe(gpu, &text) == KILN_OK) {
    CHECK(strstr(text, "matmul_wq") != NULL);
    fprintf(stderr, "%s", text); /* which tactics the build chose, for the log */
  }
  kiln_free(text);
  static const int64_t shapes[][2] = {{1, 1}, {4, 64}, {2, 9}};
  for (size_t i = 0; gpu && cpu && i < sizeof shapes / sizeof shapes[0]; i++) {
    wn_outs g, c;
    CHECK_OK(run_net(gpu, 1, shapes[i][0], shapes[i][1], 3 + i, &g));
    CHECK_OK(run_net(cpu, 0, shapes[i][0], shapes[i][1], 3 + i, &c));
    for (int o = 0; o < WN_OUTPUTS && g.v[o] && c.v[o]; o++) {
      char what[128];
      snprintf(what, sizeof what, "network %s %s opt [%lld, %lld] %s [%lld, %lld]", kiln_dtype_name(dt),
               wo == KILN_WEIGHT_ONLY_INT8 ? "int8" : "int4", (long long)opt_b, (long long)opt_s, wn_output_names[o],
               (long long)shapes[i][0], (long long)shapes[i][1]);
      CHECK_NMSE(what, g.v[o], c.v[o], g.n[o], dt == KILN_DTYPE_BF16 ? 1e-3 : 1e-4);
    }
    wn_outs_free(&g), wn_outs_free(&c);
  }
  kiln_engine_destroy(gpu), kiln_engine_destroy(cpu);
  kiln_free(img);
}

int main(void) {
  cudaStream_t stream;
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  kiln_log_set_level(KILN_LOG_ERROR);
  GT_REQUIRE(kiln_cuda_ctx_create(0, &ctx));
  if (cudaStreamCreate(&stream) != cudaSuccess) GT_DIE("cudaStreamCreate failed");
  gt_stream_ = stream;
  GT_REQUIRE(kiln_cuda_malloc(&workspace, WORKSPACE_BYTES));
  test_grid();
  test_errors();
  test_run_layer();
  test_network(KILN_DTYPE_FP16, KILN_WEIGHT_ONLY_INT8, 1, 1);
  test_network(KILN_DTYPE_BF16, KILN_WEIGHT_ONLY_INT4, 1, 1);
  test_network(KILN_DTYPE_FP16, KILN_WEIGHT_ONLY_INT4, 4, 64);
  fprintf(stderr, "test_cuda_wq: %d matmul_wq cases, %d tactic runs compared with the CPU backend; worst nmse fp16 %.3g, "
                  "bf16 %.3g, fp32 %.3g\n",
          cases_run, tactic_runs, worst_nmse[KILN_DTYPE_FP16], worst_nmse[KILN_DTYPE_BF16], worst_nmse[KILN_DTYPE_FP32]);
  kiln_cuda_free(workspace);
  cudaStreamDestroy(stream);
  kiln_cuda_ctx_destroy(ctx);
  return check_report();
}
