/* tests/cpu/test_engine_e2e.c - network -> build -> engine file -> load -> run on the CPU
 * backend: fused and unfused builds agree, fp16/bf16 builds stay close to fp32, the file round
 * trip gives identical results, shapes change within a context, zero-size dims run, and user
 * errors (shape outside the profile, missing buffer, unknown name) give the right status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_net.h"
#include "kiln/kiln.h"

typedef struct outputs {
  float *y, *z;
  int64_t ny, nz;
} outputs;

static void free_outputs(outputs *o) {
  free(o->y);
  free(o->z);
  memset(o, 0, sizeof *o);
}

/* Run engine `e` on x [b, s, D] / ids [b, s] (random from seed) and return fp32 outputs. */
static kiln_status run(kiln_engine *e, int64_t b, int64_t s, uint64_t seed, outputs *o) {
  kiln_context *c = NULL;
  kiln_dtype dt = kiln_engine_precision(e);
  kiln_dims xd = {3, {b, s, TN_D}}, idd = {2, {b, s}}, yd, zd;
  void *xc = NULL;
  int32_t *ids = NULL;
  tn_inputs(b, s, seed, dt, &xc, &ids);
  kiln_status st = kiln_context_create(e, 0, &c);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "x", &xd);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "ids", &idd);
  if (st == KILN_OK) st = kiln_context_get_shape(c, "y", &yd);
  if (st == KILN_OK) st = kiln_context_get_shape(c, "z", &zd);
  void *y = NULL, *z = NULL;
  if (st == KILN_OK) {
    o->ny = kiln_dims_count(&yd), o->nz = kiln_dims_count(&zd);
    y = malloc((size_t)o->ny * 4 + 4), z = malloc((size_t)o->nz * 4 + 4);
    o->y = malloc((size_t)o->ny * 4 + 4), o->z = malloc((size_t)o->nz * 4 + 4);
    st = kiln_context_set_tensor(c, "x", xc);
  }
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "ids", ids);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "y", y);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "z", z);
  if (st == KILN_OK) st = kiln_context_enqueue(c, NULL);
  if (st == KILN_OK) {
    kiln_convert_floats(o->y, KILN_DTYPE_FP32, y, dt, o->ny);
    kiln_convert_floats(o->z, KILN_DTYPE_FP32, z, dt, o->nz);
  }
  kiln_context_destroy(c);
  free(xc), free(ids), free(y), free(z);
  return st;
}

static kiln_engine *build_cpu(kiln_network *net, kiln_dtype precision, int fusion) {
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  p.precision = precision;
  p.enable_fusion = fusion;
  void *img = NULL;
  size_t size = 0;
  kiln_engine *e = NULL;
  CHECK_OK(kiln_build(net, &p, &img, &size, NULL));
  if (img) CHECK_OK(kiln_engine_load_memory(img, size, NULL, &e));
  kiln_free(img);
  return e;
}

static void test_fusion_and_precision(kiln_network *net) {
  kiln_engine *plain = build_cpu(net, KILN_DTYPE_FP32, 0), *fused = build_cpu(net, KILN_DTYPE_FP32, 1);
  kiln_engine *half = build_cpu(net, KILN_DTYPE_FP16, 1), *bf = build_cpu(net, KILN_DTYPE_BF16, 1);
  if (!plain || !fused || !half || !bf) goto done;
  static const int64_t shapes[][2] = {{2, 7}, {1, 1}, {3, 16}, {1, 13}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    outputs a = {0}, b = {0}, h = {0}, f = {0};
    CHECK_OK(run(plain, shapes[i][0], shapes[i][1], 100 + i, &a));
    CHECK_OK(run(fused, shapes[i][0], shapes[i][1], 100 + i, &b));
    CHECK_OK(run(half, shapes[i][0], shapes[i][1], 100 + i, &h));
    CHECK_OK(run(bf, shapes[i][0], shapes[i][1], 100 + i, &f));
    if (a.y && b.y && h.y && f.y) {
      CHECK_EQ_INT(a.ny, shapes[i][0] * shapes[i][1] * TN_D);
      check_close("fused y vs unfused", b.y, a.y, a.ny, 1e-5, 1e-5);
      check_close("fused z vs unfused", b.z, a.z, a.nz, 1e-5, 1e-5);
      CHECK_NMSE("fp16 y vs fp32", h.y, a.y, a.ny, 1e-5);
      CHECK_NMSE("fp16 z vs fp32", h.z, a.z, a.nz, 1e-5);
      CHECK_NMSE("bf16 y vs fp32", f.y, a.y, a.ny, 1e-3);
      double s = 0;
      for (int64_t k = 0; k < a.ny; k++) s += a.y[k] * a.y[k];
      CHECK(s > 0.1 * (double)a.ny); /* layernorm output: not all zero */
    }
    free_outputs(&a), free_outputs(&b), free_outputs(&h), free_outputs(&f);
  }
done:
  kiln_engine_destroy(plain), kiln_engine_destroy(fused), kiln_engine_destroy(half), kiln_engine_destroy(bf);
}

static void test_file_round_trip(kiln_network *net) {
  const char *path = "test_engine_e2e.engine";
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  kiln_build_report r;
  CHECK_OK(kiln_build_to_file(net, &p, path, &r));
  CHECK(r.num_fused >= 2);
  CHECK(r.activation_bytes > 0 && r.activation_bytes < r.activation_naive_bytes);
  CHECK(r.weight_bytes > 0);
  kiln_engine *a = NULL, *b = build_cpu(net, KILN_DTYPE_FP32, 1);
  CHECK_OK(kiln_engine_load(path, NULL, &a));
  if (a && b) {
    outputs x = {0}, y = {0};
    CHECK_OK(run(a, 2, 9, 5, &x));
    CHECK_OK(run(b, 2, 9, 5, &y));
    if (x.y && y.y) {
      CHECK(memcmp(x.y, y.y, (size_t)x.ny * 4) == 0);
      CHECK(memcmp(x.z, y.z, (size_t)x.nz * 4) == 0);
    }
    free_outputs(&x), free_outputs(&y);
    char *text = NULL;
    CHECK_OK(kiln_engine_describe(a, &text));
    CHECK(text && strstr(text, "layernorm+matmul+gelu") && strstr(text, "matmul+residual") && strstr(text, "memory plan"));
    kiln_free(text);
  }
  kiln_engine_destroy(a), kiln_engine_destroy(b);
  remove(path);
}

static void test_context_errors(kiln_network *net) {
  kiln_engine *e = build_cpu(net, KILN_DTYPE_FP32, 1);
  kiln_context *c = NULL;
  if (!e) return;
  CHECK_OK(kiln_context_create(e, 0, &c));
  CHECK_STATUS(kiln_context_create(e, 3, &(kiln_context *){NULL}), KILN_ERR_INVALID_ARG);
  kiln_dims big = {3, {99, 4, TN_D}}, wrong = {3, {1, 4, TN_D + 1}}, ok = {3, {1, 4, TN_D}}, ids = {2, {1, 4}};
  CHECK_STATUS(kiln_context_set_input_shape(c, "x", &big), KILN_ERR_SHAPE);
  CHECK(strstr(kiln_last_error(), "outside profile") != NULL);
  CHECK_STATUS(kiln_context_set_input_shape(c, "x", &wrong), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_context_set_input_shape(c, "nope", &ok), KILN_ERR_NOT_FOUND);
  CHECK_STATUS(kiln_context_set_tensor(c, "nope", NULL), KILN_ERR_NOT_FOUND);
  CHECK_OK(kiln_context_set_input_shape(c, "x", &ok));
  CHECK_OK(kiln_context_set_input_shape(c, "ids", &ids));
  CHECK_STATUS(kiln_context_enqueue(c, NULL), KILN_ERR_STATE); /* nothing bound */
  CHECK(strstr(kiln_last_error(), "kiln_context_set_tensor") != NULL);
  kiln_context_destroy(c);
  kiln_engine_destroy(e);
}

static void test_zero_size(void) {
  kiln_network *net = tn_build(11, 2, 0, 8);
  kiln_engine *e = net ? build_cpu(net, KILN_DTYPE_FP32, 1) : NULL;
  if (e) {
    outputs o = {0};
    CHECK_OK(run(e, 2, 0, 1, &o));
    CHECK_EQ_INT(o.ny, 0);
    free_outputs(&o);
    CHECK_OK(run(e, 2, 3, 1, &o)); /* and a non-empty run in the same engine afterwards */
    CHECK_EQ_INT(o.ny, 2 * 3 * TN_D);
    free_outputs(&o);
  }
  kiln_engine_destroy(e);
  kiln_network_destroy(net);
}

/* Networks with more inputs than a fixed table would hold (a large Whisper decoder with an int8
 * KV cache has 4 caches + 4 cross tensors per layer: 259 inputs for 32 layers): 300 inputs summed
 * into one output, built and run. */
static void test_many_inputs(void) {
  enum { N = 300 };
  kiln_network *net = NULL;
  CHECK_OK(kiln_network_create(&net));
  if (!net) return;
  int64_t d[1] = {4};
  int32_t acc = -1;
  for (int32_t i = 0; i < N; i++) {
    char name[32];
    snprintf(name, sizeof name, "x%d", i);
    int32_t x = kiln_network_add_input(net, name, KILN_DTYPE_FP32, 1, d);
    acc = acc < 0 ? x : kiln_network_add_add(net, NULL, acc, x);
  }
  CHECK_OK(kiln_network_mark_output(net, acc, "y"));
  kiln_engine *e = build_cpu(net, KILN_DTYPE_FP32, 1);
  kiln_context *c = NULL;
  if (e) CHECK_OK(kiln_context_create(e, 0, &c));
  if (c) {
    static float x[N][4], y[4];
    for (int32_t i = 0; i < N; i++) {
      char name[32];
      snprintf(name, sizeof name, "x%d", i);
      for (int j = 0; j < 4; j++) x[i][j] = (float)(i % 7) + 0.25f * (float)j;
      CHECK_OK(kiln_context_set_tensor(c, name, x[i]));
    }
    CHECK_OK(kiln_context_set_tensor(c, "y", y));
    CHECK_OK(kiln_context_enqueue(c, NULL));
    float want = 0;
    for (int32_t i = 0; i < N; i++) want += (float)(i % 7);
    for (int j = 0; j < 4; j++) CHECK_NEAR(y[j], want + 0.25f * (float)j * N, 1e-3);
  }
  kiln_context_destroy(c);
  kiln_engine_destroy(e);
  kiln_network_destroy(net);
}

static void test_build_errors(void) {
  kiln_network *net = NULL;
  void *img = NULL;
  size_t n = 0;
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  CHECK_OK(kiln_network_create(&net));
  int64_t d[2] = {-1, 8}, wd[2] = {4, 9};
  float w[36] = {0.5f};
  int32_t x = kiln_network_add_input(net, "x", KILN_DTYPE_FP32, 2, d);
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_INVALID_ARG); /* no outputs */
  int32_t wt = kiln_network_add_constant(net, "w", KILN_DTYPE_FP32, 2, wd, w);
  int32_t y = kiln_network_add_matmul(net, "mm", x, wt, -1);
  CHECK_OK(kiln_network_mark_output(net, y, "y"));
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_INVALID_ARG); /* dynamic dim, no profile */
  int32_t pr = kiln_network_add_profile(net);
  int64_t mn[2] = {1, 8}, mx[2] = {4, 8};
  CHECK_OK(kiln_network_set_profile_dims(net, pr, "x", mn, mx, mx));
  CHECK_STATUS(kiln_build(net, &p, &img, &n, NULL), KILN_ERR_SHAPE); /* K 8 vs weight K 9 */
  CHECK(strstr(kiln_last_error(), "mm") != NULL);
  CHECK(img == NULL);
  int64_t bad[2] = {5, 8};
  CHECK_STATUS(kiln_network_set_profile_dims(net, pr, "x", bad, mx, mx), KILN_ERR_INVALID_ARG); /* min > opt */
  CHECK(kiln_network_add_matmul(net, "mm2", x, x, -1) < 0); /* weight must be a constant */
  kiln_network_destroy(net);
}

int main(void) {
  kiln_log_set_level(KILN_LOG_ERROR);
  kiln_network *net = tn_build(42, 4, 1, 16);
  CHECK(net != NULL);
  if (net) {
    test_fusion_and_precision(net);
    test_file_round_trip(net);
    test_context_errors(net);
  }
  kiln_network_destroy(net);
  test_zero_size();
  test_many_inputs();
  test_build_errors();
  return check_report();
}
