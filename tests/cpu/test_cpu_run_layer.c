/* tests/cpu/test_cpu_run_layer.c - kiln_cpu_run_layer: each op's dispatch gives the same bytes
 * as calling the op directly with the layer's parameters (the ops themselves are checked against
 * references in the other CPU tests); slice normalization of negative/clamped bounds; plugin
 * enqueue with the CPU target, tactic and workspace; and dispatch errors. Layers and graphs are
 * built by hand (no graph.c functions needed).
 */
#include <math.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "cpu_test_util.h"

static kiln_layer_def make_layer(kiln_op op, int32_t n_in, int32_t n_out) {
  kiln_layer_def l;
  memset(&l, 0, sizeof l);
  l.name = (char *)"test_layer";
  l.op = op;
  l.n_in = n_in;
  l.n_out = n_out;
  return l;
}

/* Runs `l` on `in` into a fresh output shaped like `want` and checks it matches want's bytes. */
static void expect_same(const char *what, const kiln_layer_def *l, const kiln_graph *g,
                        const kiln_tensor *in, const ttensor *want) {
  ttensor out = tt_alloc(want->t.dtype, want->t.shape.rank, want->t.shape.d);
  kiln_status s = kiln_cpu_run_layer(g, l, in, &out.t, NULL, 0);
  CHECK_OK(s);
  if (memcmp(out.t.data, want->t.data, want->bytes) != 0) {
    check_failures_++;
    fprintf(stderr, "%s: run_layer output differs from the direct call\n", what);
  }
  tt_free(&out);
}

static void test_dispatch(check_rng *r) {
  kiln_dtype dt = KILN_DTYPE_FP16;
  int64_t xd[] = {2, 3, 8}, wd[] = {5, 8}, bd[] = {5}, yd[] = {2, 3, 5}, nd[] = {8};
  ttensor x = tt_rand(r, dt, 3, xd, -1, 1), x2 = tt_rand(r, dt, 3, xd, -1, 1);
  ttensor w = tt_rand(r, dt, 2, wd, -1, 1), b = tt_rand(r, dt, 1, bd, -1, 1);
  ttensor g = tt_rand(r, dt, 1, nd, 0.5f, 1.5f), be = tt_rand(r, dt, 1, nd, -1, 1);
  ttensor want = tt_alloc(dt, 3, yd), want_x = tt_alloc(dt, 3, xd), want_x2 = tt_alloc(dt, 3, xd);

  kiln_layer_def l = make_layer(KILN_OP_MATMUL, 3, 1);
  l.p.activation = KILN_ACTIVATION_GELU;
  CHECK_OK(kiln_cpu_matmul(&x.t, &w.t, &b.t, KILN_ACTIVATION_GELU, &want.t));
  kiln_tensor mm_in[] = {x.t, w.t, b.t};
  expect_same("matmul", &l, NULL, mm_in, &want);
  l.n_in = 2;
  CHECK_OK(kiln_cpu_matmul(&x.t, &w.t, NULL, KILN_ACTIVATION_GELU, &want.t));
  expect_same("matmul no bias", &l, NULL, mm_in, &want);

  kiln_tensor ab[] = {x.t, x2.t};
  l = make_layer(KILN_OP_ADD, 2, 1);
  CHECK_OK(kiln_cpu_add(&x.t, &x2.t, &want_x.t));
  expect_same("add", &l, NULL, ab, &want_x);
  l = make_layer(KILN_OP_MUL, 2, 1);
  CHECK_OK(kiln_cpu_mul(&x.t, &x2.t, &want_x.t));
  expect_same("mul", &l, NULL, ab, &want_x);
  l = make_layer(KILN_OP_ACTIVATION, 1, 1);
  l.p.activation = KILN_ACTIVATION_SILU;
  CHECK_OK(kiln_cpu_activation(&x.t, KILN_ACTIVATION_SILU, &want_x.t));
  expect_same("activation", &l, NULL, ab, &want_x);
  l = make_layer(KILN_OP_SOFTMAX, 1, 1);
  CHECK_OK(kiln_cpu_softmax(&x.t, &want_x.t));
  expect_same("softmax", &l, NULL, ab, &want_x);

  l = make_layer(KILN_OP_LAYERNORM, 3, 1);
  l.p.eps = 1e-3f;
  kiln_tensor ln_in[] = {x.t, g.t, be.t};
  CHECK_OK(kiln_cpu_layernorm(&x.t, &g.t, &be.t, 1e-3f, &want_x.t));
  expect_same("layernorm", &l, NULL, ln_in, &want_x);

  l = make_layer(KILN_OP_ADD_LAYERNORM, 4, 2);
  l.p.eps = 1e-3f;
  kiln_tensor aln_in[] = {x.t, x2.t, g.t, be.t};
  CHECK_OK(kiln_cpu_add_layernorm(&x.t, &x2.t, &g.t, &be.t, 1e-3f, &want_x2.t, &want_x.t));
  ttensor outs[2] = {tt_alloc(dt, 3, xd), tt_alloc(dt, 3, xd)};
  kiln_tensor out_views[2] = {outs[0].t, outs[1].t};
  CHECK_OK(kiln_cpu_run_layer(NULL, &l, aln_in, out_views, NULL, 0));
  CHECK(memcmp(outs[0].t.data, want_x2.t.data, want_x2.bytes) == 0); /* out[0] = sum */
  CHECK(memcmp(outs[1].t.data, want_x.t.data, want_x.bytes) == 0);   /* out[1] = norm */
  tt_free(&outs[0]), tt_free(&outs[1]);

  /* reshape [2, 3, 8] -> [6, 8], transpose [2, 3, 8] -> [8, 2, 3], concat on axis -1 */
  int64_t rd[] = {6, 8}, td[] = {8, 2, 3}, cd[] = {2, 3, 16};
  ttensor wr = tt_alloc(dt, 2, rd), wt = tt_alloc(dt, 3, td), wc = tt_alloc(dt, 3, cd);
  l = make_layer(KILN_OP_RESHAPE, 1, 1);
  CHECK_OK(kiln_cpu_copy(&x.t, &wr.t));
  expect_same("reshape", &l, NULL, ab, &wr);
  l = make_layer(KILN_OP_TRANSPOSE, 1, 1);
  l.p.dims.rank = 3;
  l.p.dims.d[0] = 2, l.p.dims.d[1] = 0, l.p.dims.d[2] = 1;
  CHECK_OK(kiln_cpu_transpose(&x.t, l.p.dims.d, &wt.t));
  expect_same("transpose", &l, NULL, ab, &wt);
  l.p.dims.rank = 2;
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, ab, &wt.t, NULL, 0), KILN_ERR_SHAPE);
  l = make_layer(KILN_OP_CONCAT, 2, 1);
  l.p.axis = -1;
  CHECK_OK(kiln_cpu_concat(2, ab, 2, &wc.t));
  expect_same("concat", &l, NULL, ab, &wc);
  tt_free(&wr), tt_free(&wt), tt_free(&wc);

  /* conv1d: x [2, 3, 8] as [B, Cin, T], w [4, 3, 3], stride 2 -> [2, 4, 4] */
  int64_t cwd[] = {4, 3, 3}, cbd[] = {4}, cyd[] = {2, 4, 4};
  ttensor cw = tt_rand(r, dt, 3, cwd, -1, 1), cb = tt_rand(r, dt, 1, cbd, -1, 1);
  ttensor cy = tt_alloc(dt, 3, cyd);
  l = make_layer(KILN_OP_CONV1D, 3, 1);
  l.p.stride = 2;
  l.p.activation = KILN_ACTIVATION_GELU;
  kiln_tensor conv_in[] = {x.t, cw.t, cb.t};
  CHECK_OK(kiln_cpu_conv1d(&x.t, &cw.t, &cb.t, 2, KILN_ACTIVATION_GELU, &cy.t));
  expect_same("conv1d", &l, NULL, conv_in, &cy);
  tt_free(&cw), tt_free(&cb), tt_free(&cy);

  /* attention on [1, 2, 3, 8]-shaped views of x (q) and x2 (k, v) */
  kiln_dims ad = {4, {1, 2, 3, 8}};
  kiln_tensor q = kiln_tensor_contiguous(x.t.data, dt, &ad), k = kiln_tensor_contiguous(x2.t.data, dt, &ad);
  int64_t aod[] = {1, 2, 3, 8};
  ttensor ay = tt_alloc(dt, 4, aod);
  l = make_layer(KILN_OP_ATTENTION, 3, 1);
  l.p.scale = 0.3f;
  l.p.causal = 1;
  kiln_tensor att_in[] = {q, k, k};
  CHECK_OK(kiln_cpu_attention(&q, &k, &k, 0.3f, 1, &ay.t));
  expect_same("attention", &l, NULL, att_in, &ay);
  tt_free(&ay);

  /* embedding */
  int64_t idd[] = {4}, ed[] = {4, 8};
  ttensor ids = tt_alloc(KILN_DTYPE_INT32, 1, idd), ey = tt_alloc(dt, 2, ed);
  for (int i = 0; i < 4; i++) tt_set(&ids, i, (float)(5 - i));
  kiln_dims table_dims = {2, {6, 8}};
  kiln_tensor table = kiln_tensor_contiguous(x.t.data, dt, &table_dims);
  kiln_tensor emb_in[] = {table, ids.t};
  l = make_layer(KILN_OP_EMBEDDING, 2, 1);
  CHECK_OK(kiln_cpu_embedding(&table, &ids.t, &ey.t));
  expect_same("embedding", &l, NULL, emb_in, &ey);
  tt_free(&ids), tt_free(&ey);

  tt_free(&x), tt_free(&x2), tt_free(&w), tt_free(&b), tt_free(&g), tt_free(&be);
  tt_free(&want), tt_free(&want_x), tt_free(&want_x2);
}

static void slice_case(check_rng *r, int32_t axis, int64_t start, int64_t end, int64_t want_start,
                       int64_t want_end) {
  int64_t xd[] = {4, 6}, yd[] = {4, 6};
  int32_t ax = axis < 0 ? axis + 2 : axis;
  yd[ax] = want_end - want_start;
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 2, xd, -1, 1), want = tt_alloc(KILN_DTYPE_FP32, 2, yd);
  CHECK_OK(kiln_cpu_slice(&x.t, ax, want_start, want_end, &want.t));
  kiln_layer_def l = make_layer(KILN_OP_SLICE, 1, 1);
  l.p.axis = axis;
  l.p.start = start;
  l.p.end = end;
  char what[80];
  snprintf(what, sizeof what, "slice layer axis %d [%lld, %lld)", (int)axis, (long long)start,
           (long long)end);
  expect_same(what, &l, NULL, &x.t, &want);
  tt_free(&x), tt_free(&want);
}

static void test_slice_normalization(check_rng *r) {
  slice_case(r, 1, 1, 4, 1, 4);
  slice_case(r, 1, -2, 6, 4, 6);          /* negative start counts from the end */
  slice_case(r, -1, 0, -1, 0, 5);         /* negative end and axis */
  slice_case(r, 0, 1, 1000, 1, 4);        /* end clamped to the dim */
  slice_case(r, 0, -100, 2, 0, 2);        /* start clamped to 0 */
  slice_case(r, 1, 5, 2, 5, 5);           /* end before start: empty */
  slice_case(r, 1, 0, INT64_MAX, 0, 6);
}

/* A plugin that computes y = 2 x + tactic on the CPU and records what it was given. */
typedef struct fake_state {
  int calls;
  kiln_target target;
  int32_t tactic;
  void *workspace;
  void *stream;
} fake_state;

static kiln_status fake_enqueue(void *state, kiln_target target, int32_t tactic, int32_t n_in,
                                const kiln_tensor *in, int32_t n_out, kiln_tensor *out,
                                void *workspace, void *stream) {
  fake_state *s = (fake_state *)state;
  s->calls++;
  s->target = target;
  s->tactic = tactic;
  s->workspace = workspace;
  s->stream = stream;
  if (n_in != 1 || n_out != 1) return KILN_ERR_INVALID_ARG;
  int64_t n = kiln_dims_count(&in[0].shape);
  for (int64_t i = 0; i < n; i++)
    ((float *)out[0].data)[i] = 2.0f * ((const float *)in[0].data)[i] + (float)tactic;
  return tactic == 99 ? KILN_ERR_PLUGIN : KILN_OK;
}

static void test_plugin(check_rng *r) {
  kiln_plugin_creator creator;
  memset(&creator, 0, sizeof creator);
  creator.abi_version = KILN_PLUGIN_ABI_VERSION;
  creator.name = "fake";
  creator.version = 1;
  creator.num_outputs = 1;
  creator.enqueue = fake_enqueue;
  fake_state state = {0};
  kiln_plugin_def pd[2];
  memset(pd, 0, sizeof pd);
  pd[0].name = (char *)"unloaded";
  pd[1].name = (char *)"fake";
  pd[1].version = 1;
  pd[1].creator = &creator;
  pd[1].state = &state;
  kiln_graph g;
  memset(&g, 0, sizeof g);
  g.plugins = pd;
  g.n_plugins = 2;

  int64_t d[] = {3, 5};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 2, d, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 2, d);
  kiln_layer_def l = make_layer(KILN_OP_PLUGIN, 1, 1);
  l.p.plugin = 1;
  l.tactic.kind = KILN_TACTIC_PLUGIN;
  l.tactic.index = 3;
  char ws[16];
  CHECK_OK(kiln_cpu_run_layer(&g, &l, &x.t, &y.t, ws, sizeof ws));
  CHECK_EQ_INT(state.calls, 1);
  CHECK_EQ_INT(state.target, KILN_TARGET_CPU);
  CHECK_EQ_INT(state.tactic, 3);
  CHECK(state.workspace == ws);
  CHECK(state.stream == NULL);
  tt_read(&y);
  for (int64_t i = 0; i < y.n; i++) CHECK_NEAR(y.val[i], 2.0f * x.val[i] + 3.0f, 0);

  l.tactic.index = 99; /* the plugin fails: status passes through, message names the plugin */
  CHECK_STATUS(kiln_cpu_run_layer(&g, &l, &x.t, &y.t, NULL, 0), KILN_ERR_PLUGIN);
  CHECK(strstr(kiln_last_error(), "fake") != NULL);
  l.p.plugin = 0; /* not loaded */
  CHECK_STATUS(kiln_cpu_run_layer(&g, &l, &x.t, &y.t, NULL, 0), KILN_ERR_PLUGIN);
  CHECK(strstr(kiln_last_error(), "unloaded") != NULL);
  l.p.plugin = 2; /* out of range */
  CHECK_STATUS(kiln_cpu_run_layer(&g, &l, &x.t, &y.t, NULL, 0), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, &x.t, &y.t, NULL, 0), KILN_ERR_INVALID_ARG);
  CHECK_EQ_INT(state.calls, 2);
  tt_free(&x), tt_free(&y);
}

static void test_dispatch_errors(check_rng *r) {
  int64_t d[] = {3, 5};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 2, d, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 2, d);
  kiln_tensor two[] = {x.t, x.t};
  kiln_layer_def l = make_layer(KILN_OP_ADD, 1, 1); /* add needs 2 inputs */
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, two, &y.t, NULL, 0), KILN_ERR_INVALID_ARG);
  CHECK(strstr(kiln_last_error(), "test_layer") != NULL);
  l = make_layer(KILN_OP_MATMUL, 4, 1);
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, two, &y.t, NULL, 0), KILN_ERR_INVALID_ARG);
  l = make_layer(KILN_OP_SOFTMAX, 1, 2);
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, two, &y.t, NULL, 0), KILN_ERR_INVALID_ARG);
  l = make_layer((kiln_op)KILN_OP_COUNT_, 1, 1);
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, two, &y.t, NULL, 0), KILN_ERR_UNSUPPORTED);
  l = make_layer(KILN_OP_SLICE, 1, 1);
  l.p.axis = 2;
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, two, &y.t, NULL, 0), KILN_ERR_INVALID_ARG);
  /* an op's own error comes back with the layer's name in front */
  int64_t bad[] = {5, 3};
  ttensor yb = tt_alloc(KILN_DTYPE_FP32, 2, bad);
  l = make_layer(KILN_OP_ADD, 2, 1);
  CHECK_STATUS(kiln_cpu_run_layer(NULL, &l, two, &yb.t, NULL, 0), KILN_ERR_SHAPE);
  CHECK(strncmp(kiln_last_error(), "layer test_layer: add:", 22) == 0);
  CHECK(tt_untouched(&y));
  CHECK(tt_untouched(&yb));
  tt_free(&x), tt_free(&y), tt_free(&yb);
}

int main(void) {
  check_rng r = {0xfeedfacecafebeefull};
  test_dispatch(&r);
  test_slice_normalization(&r);
  test_plugin(&r);
  test_dispatch_errors(&r);
  return check_report();
}
