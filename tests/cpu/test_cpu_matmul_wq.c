/* tests/cpu/test_cpu_matmul_wq.c - the CPU backend's weight-only quantized matmul against a naive
 * double-precision reference that decodes the codes itself (int8, and int4 nibbles by the format
 * of src/core/quant.h), over a grid: M 1..70, several N and K, groups 0 / 32 / 64 / 128, fp32 /
 * fp16 / bf16 activations, with and without bias and each activation; batched x; K = 0; the layer
 * dispatch; shape inference of the op; and the error paths (status, output untouched).
 */
#include <math.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "core/quant.h"
#include "cpu_test_util.h"

/* Element i of packed codes, decoded here rather than by the library. */
static int ref_code(const void *q, kiln_dtype qdt, int64_t i) {
  if (qdt == KILN_DTYPE_INT8) return ((const int8_t *)q)[i];
  unsigned b = ((const uint8_t *)q)[i / 2];
  unsigned nib = i % 2 ? b >> 4 : b & 15u;
  return nib & 8u ? (int)nib - 16 : (int)nib;
}

/* Quantized weights for a test: random w [n, k] quantized by the library (its codes are checked
 * by test_quant). */
typedef struct qweights {
  kiln_tensor q, s;
  int64_t n, k;
  int32_t group;
} qweights;

static qweights make_weights(check_rng *r, kiln_dtype qdt, int64_t n, int64_t k, int32_t group) {
  qweights w;
  int64_t ns = kiln_quant_scale_count(n, k, group);
  kiln_dims qd = {2, {n, k}}, sd = group ? (kiln_dims){2, {n, group ? k / group : 1}} : (kiln_dims){1, {n}};
  float *f = tt_xmalloc((size_t)(n * k) * sizeof *f);
  check_fill(r, f, n * k, -1, 1);
  w.q = kiln_tensor_contiguous(tt_xmalloc(kiln_dtype_bytes(qdt, n * k)), qdt, &qd);
  w.s = kiln_tensor_contiguous(tt_xmalloc((size_t)ns * sizeof(float)), KILN_DTYPE_FP32, &sd);
  if (kiln_quantize(f, n, k, qdt, group, w.q.data, w.s.data) != KILN_OK) abort();
  free(f);
  w.n = n, w.k = k, w.group = group;
  return w;
}

static void free_weights(qweights *w) {
  free(w->q.data);
  free(w->s.data);
}

static void ref_matmul_wq(const ttensor *x, const qweights *w, const ttensor *b, kiln_activation act, int64_t m,
                          double *y) {
  const float *s = w->s.data;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < w->n; j++) {
      double acc = b ? b->val[j] : 0.0;
      for (int64_t p = 0; p < w->k; p++) {
        double sc = s[w->group ? j * (w->k / w->group) + p / w->group : j];
        acc += (double)x->val[i * w->k + p] * ref_code(w->q.data, w->q.dtype, j * w->k + p) * sc;
      }
      y[i * w->n + j] = tt_ref_act(acc, act);
    }
}

static void wq_case(check_rng *r, kiln_dtype dt, kiln_dtype qdt, int32_t rank, const int64_t *lead, int64_t n,
                    int64_t k, int32_t group, int has_bias, kiln_activation act) {
  int64_t xd[4], yd[4], bd[1] = {n}, m = 1;
  for (int32_t i = 0; i < rank - 1; i++) xd[i] = yd[i] = lead[i], m *= lead[i];
  xd[rank - 1] = k, yd[rank - 1] = n;
  qweights w = make_weights(r, qdt, n, k, group);
  ttensor x = tt_rand(r, dt, rank, xd, -1, 1), b = tt_rand(r, dt, 1, bd, -1, 1), y = tt_alloc(dt, rank, yd);
  double *want = tt_xmalloc((size_t)(m * n + 1) * sizeof(double));
  ref_matmul_wq(&x, &w, has_bias ? &b : NULL, act, m, want);
  char what[160];
  snprintf(what, sizeof what, "matmul_wq %s %s group %d M %lld N %lld K %lld bias %d act %d", kiln_dtype_name(dt),
           kiln_dtype_name(qdt), (int)group, (long long)m, (long long)n, (long long)k, has_bias, (int)act);
  kiln_status s = kiln_cpu_matmul_wq(&x.t, &w.q, &w.s, has_bias ? &b.t : NULL, group, act, &y.t);
  CHECK_OK(s);
  if (s == KILN_OK) tt_check(what, &y, want, 1.0 + sqrt((double)k));
  free(want);
  tt_free(&x), tt_free(&b), tt_free(&y);
  free_weights(&w);
}

static void test_grid(void) {
  check_rng r = {0x5EED};
  static const int64_t ms[] = {1, 2, 3, 8, 17, 33, 64, 70};
  static const int64_t nk[][2] = {{1, 32}, {5, 64}, {64, 128}, {96, 192}, {33, 256}};
  static const struct {
    kiln_dtype q;
    int32_t group;
  } modes[] = {{KILN_DTYPE_INT8, 0}, {KILN_DTYPE_INT8, 32}, {KILN_DTYPE_INT4, 0},
               {KILN_DTYPE_INT4, 32}, {KILN_DTYPE_INT4, 64}, {KILN_DTYPE_INT4, 128}};
  int i = 0;
  for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++)
    for (size_t q = 0; q < sizeof modes / sizeof modes[0]; q++) {
      if (modes[q].group && nk[a][1] % modes[q].group) continue;
      for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++, i++) {
        int64_t lead[1] = {ms[mi]};
        wq_case(&r, tt_float_dtypes[i % 3], modes[q].q, 2, lead, nk[a][0], nk[a][1], modes[q].group, i % 2,
                (kiln_activation)(i % 4));
      }
    }
  /* batched x [2, 3, K] and odd K with packed int4 rows sharing bytes */
  int64_t lead2[2] = {2, 3};
  wq_case(&r, KILN_DTYPE_BF16, KILN_DTYPE_INT4, 3, lead2, 7, 64, 64, 1, KILN_ACTIVATION_GELU);
  wq_case(&r, KILN_DTYPE_FP32, KILN_DTYPE_INT4, 3, lead2, 5, 9, 0, 1, KILN_ACTIVATION_NONE);
  wq_case(&r, KILN_DTYPE_FP16, KILN_DTYPE_INT8, 3, lead2, 300, 40, 0, 0, KILN_ACTIVATION_SILU); /* > one row block */
  /* K = 0: y = act(b) */
  int64_t lead1[1] = {3};
  wq_case(&r, KILN_DTYPE_FP32, KILN_DTYPE_INT8, 2, lead1, 4, 0, 0, 1, KILN_ACTIVATION_RELU);
}

/* The same numbers through kiln_cpu_run_layer, and the counts it checks. */
static void test_run_layer(void) {
  check_rng r = {3};
  qweights w = make_weights(&r, KILN_DTYPE_INT4, 24, 64, 32);
  int64_t xd[2] = {5, 64}, yd[2] = {5, 24}, bd[1] = {24};
  ttensor x = tt_rand(&r, KILN_DTYPE_FP32, 2, xd, -1, 1), b = tt_rand(&r, KILN_DTYPE_FP32, 1, bd, -1, 1);
  ttensor y1 = tt_alloc(KILN_DTYPE_FP32, 2, yd), y2 = tt_alloc(KILN_DTYPE_FP32, 2, yd);
  kiln_layer_def l;
  memset(&l, 0, sizeof l);
  l.name = "wq";
  l.op = KILN_OP_MATMUL_WQ;
  l.n_in = 4, l.n_out = 1;
  l.p.group = 32;
  l.p.activation = KILN_ACTIVATION_SILU;
  kiln_tensor in[4] = {x.t, w.q, w.s, b.t};
  CHECK_OK(kiln_cpu_run_layer(NULL, &l, in, &y1.t, NULL, 0));
  CHECK_OK(kiln_cpu_matmul_wq(&x.t, &w.q, &w.s, &b.t, 32, KILN_ACTIVATION_SILU, &y2.t));
  CHECK(memcmp(y1.t.data, y2.t.data, y1.bytes) == 0);
  CHECK(!tt_untouched(&y1));
  l.n_in = 2;
  memset(y1.t.data, TT_POISON, y1.bytes);
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, in, &y1.t, NULL, 0), KILN_ERR_INVALID_ARG);
  CHECK(tt_untouched(&y1));
  tt_free(&x), tt_free(&b), tt_free(&y1), tt_free(&y2);
  free_weights(&w);
}

static void test_errors(void) {
  check_rng r = {4};
  qweights w = make_weights(&r, KILN_DTYPE_INT8, 8, 32, 0);
  int64_t xd[2] = {2, 32}, yd[2] = {2, 8}, bad_yd[2] = {2, 9};
  ttensor x = tt_rand(&r, KILN_DTYPE_FP32, 2, xd, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 2, yd);
  ttensor ybad = tt_alloc(KILN_DTYPE_FP32, 2, bad_yd);
  /* scales of the wrong dtype or shape, a group that does not divide K, float "codes" */
  kiln_tensor s16 = w.s;
  s16.dtype = KILN_DTYPE_FP16;
  CHECK_STATUS(kiln_cpu_matmul_wq(&x.t, &w.q, &s16, NULL, 0, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cpu_matmul_wq(&x.t, &w.q, &w.s, NULL, 16, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_matmul_wq(&x.t, &w.q, &w.s, NULL, 5, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_matmul_wq(&x.t, &x.t, &w.s, NULL, 0, KILN_ACTIVATION_NONE, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cpu_matmul_wq(&x.t, &w.q, &w.s, NULL, 0, KILN_ACTIVATION_NONE, &ybad.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_matmul_wq(&x.t, &w.q, &w.s, NULL, 0, (kiln_activation)9, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK(tt_untouched(&y) && tt_untouched(&ybad));
  tt_free(&x), tt_free(&y), tt_free(&ybad);
  free_weights(&w);
}

/* Shape inference: scales [N] for group 0, [N, K / group] otherwise; codes must be int8/int4. */
static void test_shapes(void) {
  kiln_graph g;
  kiln_graph_init(&g);
  kiln_dims xd = {3, {2, 3, 128}}, qd = {2, {40, 128}}, s0 = {1, {40}}, s64 = {2, {40, 2}}, bd = {1, {40}};
  int32_t x = kiln_graph_add_tensor(&g, "x", KILN_TENSOR_INPUT, KILN_DTYPE_FP32, &xd);
  int32_t q8 = kiln_graph_add_tensor(&g, "q8", KILN_TENSOR_CONSTANT, KILN_DTYPE_INT8, &qd);
  int32_t q4 = kiln_graph_add_tensor(&g, "q4", KILN_TENSOR_CONSTANT, KILN_DTYPE_INT4, &qd);
  int32_t qf = kiln_graph_add_tensor(&g, "qf", KILN_TENSOR_CONSTANT, KILN_DTYPE_FP32, &qd);
  int32_t sc0 = kiln_graph_add_tensor(&g, "s0", KILN_TENSOR_CONSTANT, KILN_DTYPE_FP32, &s0);
  int32_t sc64 = kiln_graph_add_tensor(&g, "s64", KILN_TENSOR_CONSTANT, KILN_DTYPE_FP32, &s64);
  int32_t b = kiln_graph_add_tensor(&g, "b", KILN_TENSOR_CONSTANT, KILN_DTYPE_FP32, &bd);
  kiln_layer_def l;
  memset(&l, 0, sizeof l);
  l.name = "wq";
  l.op = KILN_OP_MATMUL_WQ;
  l.n_out = 1;
  kiln_dims in[4], out[1];
  in[0] = xd, in[1] = qd, in[2] = s0, in[3] = bd;
  l.n_in = 4, l.in[0] = x, l.in[1] = q8, l.in[2] = sc0, l.in[3] = b;
  CHECK_OK(kiln_layer_infer(&g, &l, in, out));
  CHECK(out[0].rank == 3 && out[0].d[0] == 2 && out[0].d[1] == 3 && out[0].d[2] == 40);
  l.n_in = 3, l.in[1] = q4, l.in[2] = sc64, l.p.group = 64, in[2] = s64;
  CHECK_OK(kiln_layer_infer(&g, &l, in, out));
  CHECK_EQ_INT(out[0].d[2], 40);
  in[2] = s0; /* group 64 with one scale per row */
  CHECK_STATUS(kiln_layer_infer(&g, &l, in, out), KILN_ERR_SHAPE);
  CHECK_MSG("scales must be [40, 2]");
  in[2] = s64, l.p.group = 48; /* does not divide K */
  CHECK_STATUS(kiln_layer_infer(&g, &l, in, out), KILN_ERR_SHAPE);
  l.p.group = 64, l.in[1] = qf; /* float weights */
  CHECK_STATUS(kiln_layer_infer(&g, &l, in, out), KILN_ERR_SHAPE);
  CHECK_MSG("int8 or int4");
  l.in[1] = q4, in[0].d[2] = 64; /* K mismatch */
  CHECK_STATUS(kiln_layer_infer(&g, &l, in, out), KILN_ERR_SHAPE);
  l.n_in = 2;
  CHECK_STATUS(kiln_layer_infer(&g, &l, in, out), KILN_ERR_SHAPE);
  kiln_graph_free(&g);
}

int main(void) {
  test_grid();
  test_run_layer();
  test_errors();
  test_shapes();
  return check_report();
}
