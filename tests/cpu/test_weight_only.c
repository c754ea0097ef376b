/* tests/cpu/test_weight_only.c - kiln_build with weight_only on the CPU target
 * (tests/common/test_wq_net.h): which matmuls become quantized (a tied weight and an int4 K that
 * the group does not divide stay float), the report's counts and weight bytes (exactly what the
 * quantized tensors take: the float weights are gone), the scales staying fp32 in an fp16 build,
 * outputs close to the fp32 network within the quantization error (and not equal to it), the
 * engine file round trip, `inspect` text, keep_float patterns, and bad parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_wq_net.h"
#include "core/quant.h"
#include "kiln/kiln.h"
#include "runtime/engine_format.h"

/* Run a CPU engine on x [b, s, D], ids [b, s]; outputs in fp32. */
static kiln_status run(kiln_engine *e, int64_t b, int64_t s, uint64_t seed, wn_outs *o) {
  kiln_dtype dt = kiln_engine_precision(e);
  kiln_dims xd = {3, {b, s, WN_D}}, idd = {2, {b, s}};
  void *x = NULL, *raw[WN_OUTPUTS] = {0};
  int32_t *ids = NULL;
  kiln_context *c = NULL;
  memset(o, 0, sizeof *o);
  wn_inputs(b, s, seed, dt, &x, &ids);
  kiln_status st = kiln_context_create(e, 0, &c);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "x", &xd);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "ids", &idd);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "x", x);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "ids", ids);
  for (int i = 0; i < WN_OUTPUTS && st == KILN_OK; i++) {
    kiln_dims d;
    st = kiln_context_get_shape(c, wn_output_names[i], &d);
    o->n[i] = kiln_dims_count(&d);
    raw[i] = malloc((size_t)o->n[i] * 4 + 4);
    o->v[i] = malloc((size_t)o->n[i] * 4 + 4);
    if (st == KILN_OK) st = kiln_context_set_tensor(c, wn_output_names[i], raw[i]);
  }
  if (st == KILN_OK) st = kiln_context_enqueue(c, NULL);
  for (int i = 0; i < WN_OUTPUTS && st == KILN_OK; i++) kiln_convert_floats(o->v[i], KILN_DTYPE_FP32, raw[i], dt, o->n[i]);
  for (int i = 0; i < WN_OUTPUTS; i++) free(raw[i]);
  kiln_context_destroy(c);
  free(x), free(ids);
  return st;
}

typedef struct built {
  void *img;
  size_t size;
  kiln_build_report rep;
  kiln_engine *e;
} built;

static built build(kiln_network *net, kiln_dtype precision, kiln_weight_only wo, int32_t group) {
  built b;
  memset(&b, 0, sizeof b);
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  p.precision = precision;
  p.weight_only = wo;
  p.group_size = group;
  CHECK_OK(kiln_build(net, &p, &b.img, &b.size, &b.rep));
  if (b.img) CHECK_OK(kiln_engine_load_memory(b.img, b.size, NULL, &b.e));
  return b;
}

static void built_free(built *b) {
  kiln_engine_destroy(b->e);
  kiln_free(b->img);
  memset(b, 0, sizeof *b);
}

/* Weight bytes of the fp32 network with wn_linear's weights quantized where the build can. */
static size_t expected_weight_bytes(size_t fp32_bytes, kiln_dtype qdt, int32_t group) {
  size_t bytes = fp32_bytes;
  for (size_t i = 0; i < sizeof wn_linear / sizeof wn_linear[0]; i++) {
    const wn_weight *w = &wn_linear[i];
    if (w->tied || (group && w->k % group)) continue;
    bytes -= (size_t)(w->n * w->k) * 4;
    bytes += kiln_dtype_bytes(qdt, w->n * w->k) + (size_t)kiln_quant_scale_count(w->n, w->k, group) * 4;
  }
  return bytes;
}

/* What the engine image holds: tensor `name`'s dtype, or INVALID when it is not there. */
static kiln_dtype tensor_dtype(const built *b, const char *name) {
  kiln_graph g;
  kiln_engine_meta meta;
  kiln_dtype dt = KILN_DTYPE_INVALID;
  if (kiln_engine_parse(b->img, b->size, 0, &g, &meta) != KILN_OK) return KILN_DTYPE_INVALID;
  int32_t t = kiln_graph_find_tensor(&g, name);
  if (t >= 0) dt = g.tensors[t].dtype;
  kiln_graph_free(&g);
  kiln_engine_meta_free(&meta);
  return dt;
}

static void test_modes(kiln_network *net) {
  built ref = build(net, KILN_DTYPE_FP32, KILN_WEIGHT_ONLY_NONE, 128);
  CHECK_EQ_INT(ref.rep.num_quantized, 0);
  CHECK_EQ_INT(ref.rep.num_quantize_skipped, 0);
  static const struct {
    kiln_weight_only wo;
    int32_t group;
    int quantized;
    double max_nmse; /* per output, against the fp32 network */
  } modes[] = {{KILN_WEIGHT_ONLY_INT8, 128, 5, 2e-4},
               {KILN_WEIGHT_ONLY_INT4, 128, 4, 5e-2},
               {KILN_WEIGHT_ONLY_INT4, 64, 4, 5e-2},
               {KILN_WEIGHT_ONLY_INT4, 32, 5, 5e-2}};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    kiln_dtype qdt = modes[m].wo == KILN_WEIGHT_ONLY_INT8 ? KILN_DTYPE_INT8 : KILN_DTYPE_INT4;
    int32_t group = qdt == KILN_DTYPE_INT8 ? 0 : modes[m].group;
    built q = build(net, KILN_DTYPE_FP32, modes[m].wo, modes[m].group);
    char what[128];
    CHECK_EQ_INT(q.rep.num_quantized, modes[m].quantized);
    CHECK_EQ_INT(q.rep.num_quantize_skipped, WN_MATMULS - modes[m].quantized);
    CHECK_EQ_INT(q.rep.weight_bytes, expected_weight_bytes(ref.rep.weight_bytes, qdt, group));
    CHECK(q.rep.weight_bytes < ref.rep.weight_bytes);
    /* the float weights are gone, the codes and fp32 scales are there, the tied table stays */
    CHECK_EQ_INT(tensor_dtype(&q, "fc1.w"), KILN_DTYPE_INVALID);
    CHECK_EQ_INT(tensor_dtype(&q, "proj.w"), KILN_DTYPE_INVALID);
    CHECK_EQ_INT(tensor_dtype(&q, "fc1.w.q"), qdt);
    CHECK_EQ_INT(tensor_dtype(&q, "proj.w.q"), qdt);
    CHECK_EQ_INT(tensor_dtype(&q, "proj.w.q.1"), KILN_DTYPE_INVALID); /* quantized once for both users */
    CHECK_EQ_INT(tensor_dtype(&q, "fc2.w.scale"), KILN_DTYPE_FP32);
    CHECK_EQ_INT(tensor_dtype(&q, "table"), KILN_DTYPE_FP32);
    CHECK_EQ_INT(tensor_dtype(&q, "side.w"), modes[m].quantized == 5 ? KILN_DTYPE_INVALID : KILN_DTYPE_FP32);
    static const int64_t shapes[][2] = {{1, 1}, {2, 7}, {3, 16}};
    double worst = 0;
    for (size_t i = 0; q.e && ref.e && i < sizeof shapes / sizeof shapes[0]; i++) {
      wn_outs a, b;
      CHECK_OK(run(ref.e, shapes[i][0], shapes[i][1], 11 + i, &a));
      CHECK_OK(run(q.e, shapes[i][0], shapes[i][1], 11 + i, &b));
      for (int o = 0; o < WN_OUTPUTS && a.v[o] && b.v[o]; o++) {
        snprintf(what, sizeof what, "%s group %d %s [%lld, %lld] vs fp32", kiln_dtype_name(qdt), (int)group,
                 wn_output_names[o], (long long)shapes[i][0], (long long)shapes[i][1]);
        double e = check_nmse_value(b.v[o], a.v[o], a.n[o]);
        if (e > worst) worst = e;
        CHECK_NMSE(what, b.v[o], a.v[o], a.n[o], modes[m].max_nmse);
        /* the quantized path really ran: outputs differ (logits only through h) */
        if (!(e > 1e-10)) CHECK_FAIL_("%s: nmse %.3g: no quantization error at all", what, e);
      }
      wn_outs_free(&a), wn_outs_free(&b);
    }
    fprintf(stderr, "weight_only %s group %d: %d of %d matmuls quantized, weights %zu B (fp32 %zu B), worst nmse vs fp32 %.3g\n",
            kiln_dtype_name(qdt), (int)group, (int)q.rep.num_quantized, WN_MATMULS, q.rep.weight_bytes,
            ref.rep.weight_bytes, worst);
    built_free(&q);
  }
  built_free(&ref);
}

/* fp16 build: activations fp16, scales fp32, the result close to the fp32 int8 engine. */
static void test_fp16(kiln_network *net) {
  built h = build(net, KILN_DTYPE_FP16, KILN_WEIGHT_ONLY_INT8, 128);
  built f = build(net, KILN_DTYPE_FP32, KILN_WEIGHT_ONLY_INT8, 128);
  CHECK_EQ_INT(tensor_dtype(&h, "fc1.w.scale"), KILN_DTYPE_FP32);
  CHECK_EQ_INT(tensor_dtype(&h, "fc1.w.q"), KILN_DTYPE_INT8);
  CHECK_EQ_INT(tensor_dtype(&h, "fc1.b"), KILN_DTYPE_FP16);
  CHECK_EQ_INT(tensor_dtype(&h, "table"), KILN_DTYPE_FP16);
  if (h.e && f.e) {
    wn_outs a, b;
    CHECK_OK(run(f.e, 2, 5, 3, &a));
    CHECK_OK(run(h.e, 2, 5, 3, &b));
    for (int o = 0; o < WN_OUTPUTS && a.v[o] && b.v[o]; o++) CHECK_NMSE(wn_output_names[o], b.v[o], a.v[o], a.n[o], 1e-5);
    wn_outs_free(&a), wn_outs_free(&b);
  }
  built_free(&h), built_free(&f);
}

static void test_file_round_trip(kiln_network *net) {
  const char *path = "test_weight_only.engine";
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  p.weight_only = KILN_WEIGHT_ONLY_INT4;
  p.group_size = 64;
  kiln_build_report r;
  CHECK_OK(kiln_build_to_file(net, &p, path, &r));
  kiln_engine *a = NULL;
  built b = build(net, KILN_DTYPE_FP32, KILN_WEIGHT_ONLY_INT4, 64);
  CHECK_OK(kiln_engine_load(path, NULL, &a));
  if (a && b.e) {
    CHECK_EQ_INT(kiln_engine_weight_bytes(a), kiln_engine_weight_bytes(b.e));
    wn_outs x, y;
    CHECK_OK(run(a, 2, 9, 5, &x));
    CHECK_OK(run(b.e, 2, 9, 5, &y));
    for (int o = 0; o < WN_OUTPUTS && x.v[o] && y.v[o]; o++) CHECK(memcmp(x.v[o], y.v[o], (size_t)x.n[o] * 4) == 0);
    wn_outs_free(&x), wn_outs_free(&y);
    char *text = NULL;
    CHECK_OK(kiln_engine_describe(a, &text));
    CHECK(text && strstr(text, "matmul_wq+gelu [int4, group 64]") && strstr(text, "fc1.w.q fc1.w.scale fc1.b"));
    CHECK(text && strstr(text, "logits                       matmul  "));
    kiln_free(text);
  }
  kiln_engine_destroy(a);
  built_free(&b);
  remove(path);
}

/* keep_float: matmuls whose weight matches a pattern stay float (both users of proj.w), the
 * others are quantized; empty patterns are skipped; a pattern too long is an error. */
static void test_keep_float(kiln_network *net) {
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  p.weight_only = KILN_WEIGHT_ONLY_INT8;
  static const struct {
    const char *patterns;
    int quantized;
  } cases[] = {{"fc1.w", 4},          {"proj.*,,fc2.?", 2}, {"*.w", 0}, {",", 5}, {"", 5},
               {"fc1.w.q,FC1.W", 5} /* exact names only, case-sensitive */};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    void *img = NULL;
    size_t n = 0;
    kiln_build_report r;
    p.keep_float = cases[c].patterns;
    CHECK_OK(kiln_build(net, &p, &img, &n, &r));
    if (r.num_quantized != cases[c].quantized)
      fprintf(stderr, "keep_float \"%s\": %d matmuls quantized, want %d\n", cases[c].patterns, (int)r.num_quantized,
              cases[c].quantized);
    CHECK_EQ_INT(r.num_quantized, cases[c].quantized);
    CHECK_EQ_INT(r.num_quantize_skipped, WN_MATMULS - cases[c].quantized);
    kiln_free(img);
  }
  /* what stays float is really float: fc2 and proj keep their fp32 weights, fc1 is int8 */
  p.keep_float = "proj.w,fc2.w";
  built b;
  memset(&b, 0, sizeof b);
  CHECK_OK(kiln_build(net, &p, &b.img, &b.size, &b.rep));
  CHECK_EQ_INT(tensor_dtype(&b, "proj.w"), KILN_DTYPE_FP32);
  CHECK_EQ_INT(tensor_dtype(&b, "fc2.w"), KILN_DTYPE_FP32);
  CHECK_EQ_INT(tensor_dtype(&b, "fc1.w.q"), KILN_DTYPE_INT8);
  CHECK_EQ_INT(tensor_dtype(&b, "proj.w.q"), KILN_DTYPE_INVALID);
  built_free(&b);
  char longp[300];
  memset(longp, '*', sizeof longp - 1);
  longp[sizeof longp - 1] = '\0';
  p.keep_float = longp;
  void *img = NULL;
  size_t n = 0;
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_INVALID_ARG);
  CHECK_MSG("longer than");
  CHECK(img == NULL);
}

static void test_bad_params(kiln_network *net) {
  kiln_build_params p = kiln_build_default_params();
  void *img = NULL;
  size_t n = 0;
  p.target = KILN_TARGET_CPU;
  p.weight_only = KILN_WEIGHT_ONLY_INT4;
  p.group_size = 48;
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_INVALID_ARG);
  CHECK_MSG("group size 48");
  p.group_size = 0;
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_INVALID_ARG);
  p.weight_only = (kiln_weight_only)7;
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_INVALID_ARG);
  CHECK(img == NULL);
  /* int8 ignores the group size */
  p.weight_only = KILN_WEIGHT_ONLY_INT8;
  kiln_build_report r;
  CHECK_OK(kiln_build(net, &p, &img, &n, &r));
  CHECK_EQ_INT(r.num_quantized, 5);
  kiln_free(img);
}

int main(void) {
  kiln_network *net = wn_build(77, 3, 16, 3, 16);
  CHECK(net != NULL);
  if (net) {
    test_modes(net);
    test_fp16(net);
    test_file_round_trip(net);
    test_keep_float(net);
    test_bad_params(net);
  }
  kiln_network_destroy(net);
  return check_report();
}
