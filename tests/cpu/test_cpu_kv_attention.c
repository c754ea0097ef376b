/* tests/cpu/test_cpu_kv_attention.c - the CPU backend's attention over an in-place KV cache
 * (KILN_OP_KV_ATTENTION) against a naive double-precision reference: self-attention appends the
 * new keys/values at each row's length and attends to everything up to the query's position;
 * cross-attention maps query row b to key row b / (B / Bk). Checks the output, the cache
 * positions written, the positions left alone, and the errors. Also the op through shape
 * inference and a CPU engine (kiln_network_add_cached_self_attention).
 */
#include <math.h>
#include <stdio.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "cpu/cpu_test_util.h"
#include "cpu/kv_ref.h"
#include "kiln/kiln.h"

static void self_case(check_rng *r, kiln_dtype dt, int64_t B, int64_t Bc, int64_t S, int64_t H, int64_t D, int64_t cap) {
  char what[128];
  snprintf(what, sizeof what, "self %s B%lld Bc%lld S%lld H%lld D%lld T%lld", kiln_dtype_name(dt), (long long)B,
           (long long)Bc, (long long)S, (long long)H, (long long)D, (long long)cap);
  int64_t qd[3] = {B, S, 3 * H * D}, cd[4] = {Bc, H, cap, D}, ld[1] = {B}, yd[3] = {B, S, H * D};
  ttensor qkv = tt_rand(r, dt, 3, qd, -1.0f, 1.0f), ck = tt_rand(r, dt, 4, cd, -1.0f, 1.0f);
  ttensor cv = tt_rand(r, dt, 4, cd, -1.0f, 1.0f), len = tt_alloc(KILN_DTYPE_INT32, 1, ld), y = tt_alloc(dt, 3, yd);
  int32_t *L = len.t.data;
  for (int64_t b = 0; b < B; b++) L[b] = (int32_t)((b * 7 + 3) % (cap - S + 1)); /* 0 .. cap - S */
  /* expected caches: the old ones with the new keys/values written at L[b] + s */
  float *ek = malloc(sizeof(float) * (size_t)ck.n), *ev = malloc(sizeof(float) * (size_t)cv.n);
  memcpy(ek, ck.val, sizeof(float) * (size_t)ck.n);
  memcpy(ev, cv.val, sizeof(float) * (size_t)cv.n);
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t d = 0; d < D; d++) {
          int64_t src = (b * S + s) * 3 * H * D + h * D + d, dst = ((b * H + h) * cap + L[b] + s) * D + d;
          ek[dst] = qkv.val[src + H * D];
          ev[dst] = qkv.val[src + 2 * H * D];
        }
  double *want = malloc(sizeof(double) * (size_t)y.n);
  float scale = 1.0f / sqrtf((float)D);
  kv_reference(qkv.val, 3 * H * D, ek, ev, L, B, S, H, D, cap, 1, scale, 1, want);
  kiln_tensor in[4] = {qkv.t, ck.t, cv.t, len.t};
  CHECK_OK(kiln_cpu_kv_attention(4, in, (int32_t)H, scale, 1, &y.t));
  tt_read(&ck);
  tt_read(&cv);
  CHECK(check_close(what, ck.val, ek, ck.n, 0.0, 0.0)); /* exact: same dtype copies */
  CHECK(check_close(what, cv.val, ev, cv.n, 0.0, 0.0));
  CHECK(tt_check(what, &y, want, 1.0));
  free(ek), free(ev), free(want);
  tt_free(&qkv), tt_free(&ck), tt_free(&cv), tt_free(&len), tt_free(&y);
}

static void cross_case(check_rng *r, kiln_dtype dt, int64_t B, int64_t Bk, int64_t S, int64_t H, int64_t D, int64_t A) {
  char what[128];
  snprintf(what, sizeof what, "cross %s B%lld Bk%lld S%lld H%lld D%lld A%lld", kiln_dtype_name(dt), (long long)B,
           (long long)Bk, (long long)S, (long long)H, (long long)D, (long long)A);
  int64_t qd[3] = {B, S, H * D}, kd[4] = {Bk, H, A, D};
  ttensor q = tt_rand(r, dt, 3, qd, -1.0f, 1.0f), k = tt_rand(r, dt, 4, kd, -1.0f, 1.0f);
  ttensor v = tt_rand(r, dt, 4, kd, -1.0f, 1.0f), y = tt_alloc(dt, 3, qd);
  double *want = malloc(sizeof(double) * (size_t)y.n);
  float scale = 0.3f;
  kv_reference(q.val, H * D, k.val, v.val, NULL, B, S, H, D, A, B / Bk, scale, 0, want);
  kiln_tensor in[3] = {q.t, k.t, v.t};
  CHECK_OK(kiln_cpu_kv_attention(3, in, (int32_t)H, scale, 0, &y.t));
  CHECK(tt_check(what, &y, want, 1.0));
  free(want);
  tt_free(&q), tt_free(&k), tt_free(&v), tt_free(&y);
}

static void test_errors(check_rng *r) {
  int64_t qd[3] = {1, 3, 12}, cd[4] = {1, 2, 4, 2}, ld[1] = {1}, yd[3] = {1, 3, 4};
  ttensor qkv = tt_rand(r, KILN_DTYPE_FP32, 3, qd, -1, 1), ck = tt_rand(r, KILN_DTYPE_FP32, 4, cd, -1, 1);
  ttensor cv = tt_rand(r, KILN_DTYPE_FP32, 4, cd, -1, 1), len = tt_alloc(KILN_DTYPE_INT32, 1, ld);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 3, yd);
  ((int32_t *)len.t.data)[0] = 2; /* 2 cached + 3 new > 4 */
  kiln_tensor in[4] = {qkv.t, ck.t, cv.t, len.t};
  CHECK_STATUS(kiln_cpu_kv_attention(4, in, 2, 1.0f, 1, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_MSG("do not fit");
  CHECK(tt_untouched(&y));
  CHECK_STATUS(kiln_cpu_kv_attention(3, in, 2, 1.0f, 1, &y.t), KILN_ERR_INVALID_ARG);
  tt_free(&qkv), tt_free(&ck), tt_free(&cv), tt_free(&len), tt_free(&y);
}

/* The op in a network: shape inference rejects what does not fit, a CPU engine runs it and
 * writes the bound cache. */
static void test_network(void) {
  kiln_network *net = NULL;
  CHECK_OK(kiln_network_create(&net));
  int64_t qd[3] = {-1, -1, 3 * 2 * 4}, cd[4] = {-1, 2, 8, 4}, ld[1] = {-1}, kd[4] = {-1, 2, 5, 4};
  int32_t qkv = kiln_network_add_input(net, "qkv", KILN_DTYPE_FP32, 3, qd);
  int32_t ck = kiln_network_add_input(net, "ck", KILN_DTYPE_FP32, 4, cd);
  int32_t cv = kiln_network_add_input(net, "cv", KILN_DTYPE_FP32, 4, cd);
  int32_t len = kiln_network_add_input(net, "len", KILN_DTYPE_INT32, 1, ld);
  int32_t xk = kiln_network_add_input(net, "xk", KILN_DTYPE_FP32, 4, kd);
  int32_t a = kiln_network_add_cached_self_attention(net, "self", qkv, ck, cv, len, 2, 0.5f);
  int32_t x = kiln_network_add_cross_attention(net, "cross", a, xk, xk, 2, 0.5f);
  CHECK(a >= 0 && x >= 0);
  CHECK_STATUS(kiln_network_add_cross_attention(net, "bad", a, xk, xk, 0, 0.5f), KILN_ERR_INVALID_ARG);
  CHECK_OK(kiln_network_mark_output(net, x, "y"));
  int32_t p = kiln_network_add_profile(net);
  int64_t q1[3] = {1, 1, 24}, q2[3] = {2, 3, 24}, c1[4] = {1, 2, 8, 4}, c2[4] = {2, 2, 8, 4}, l1[1] = {1}, l2[1] = {2};
  int64_t k1[4] = {1, 2, 5, 4}, k2[4] = {2, 2, 5, 4};
  CHECK_OK(kiln_network_set_profile_dims(net, p, "qkv", q1, q2, q2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "ck", c1, c2, c2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "cv", c1, c2, c2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "len", l1, l2, l2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "xk", k1, k2, k2));
  kiln_build_params bp = kiln_build_default_params();
  bp.target = KILN_TARGET_CPU;
  void *img = NULL;
  size_t size = 0;
  CHECK_OK(kiln_build(net, &bp, &img, &size, NULL));
  kiln_engine *e = NULL;
  kiln_context *c = NULL;
  CHECK_OK(kiln_engine_load_memory(img, size, NULL, &e));
  CHECK_OK(kiln_context_create(e, 0, &c));
  float qv[2 * 3 * 24], cache_k[2 * 2 * 8 * 4], cache_v[2 * 2 * 8 * 4], kv[2 * 2 * 5 * 4], y[2 * 3 * 8];
  int32_t lens[2] = {0, 5};
  for (size_t i = 0; i < sizeof qv / sizeof qv[0]; i++) qv[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) kv[i] = (float)((i * 13) % 7) / 7.0f - 0.5f;
  memset(cache_k, 0, sizeof cache_k), memset(cache_v, 0, sizeof cache_v);
  kiln_dims dq = {3, {2, 3, 24}}, dc = {4, {2, 2, 8, 4}}, dl = {1, {2}}, dk = {4, {2, 2, 5, 4}};
  CHECK_OK(kiln_context_set_input_shape(c, "qkv", &dq));
  CHECK_OK(kiln_context_set_input_shape(c, "ck", &dc));
  CHECK_OK(kiln_context_set_input_shape(c, "cv", &dc));
  CHECK_OK(kiln_context_set_input_shape(c, "len", &dl));
  CHECK_OK(kiln_context_set_input_shape(c, "xk", &dk));
  CHECK_OK(kiln_context_set_tensor(c, "qkv", qv));
  CHECK_OK(kiln_context_set_tensor(c, "ck", cache_k));
  CHECK_OK(kiln_context_set_tensor(c, "cv", cache_v));
  CHECK_OK(kiln_context_set_tensor(c, "len", lens));
  CHECK_OK(kiln_context_set_tensor(c, "xk", kv));
  CHECK_OK(kiln_context_set_tensor(c, "y", y));
  CHECK_OK(kiln_context_enqueue(c, NULL));
  /* row 1, head 0, position 5 + 2 holds the key of token 2 of row 1 */
  CHECK(cache_k[((1 * 2 + 0) * 8 + 7) * 4 + 1] == qv[(1 * 3 + 2) * 24 + 8 + 1]);
  CHECK(cache_v[((0 * 2 + 1) * 8 + 0) * 4 + 3] == qv[(0 * 3 + 0) * 24 + 16 + 4 + 3]);
  CHECK(isfinite(y[0]) && isfinite(y[2 * 3 * 8 - 1]));
  /* a fourth token in row 1 (5 + 4 > 8) is refused */
  kiln_dims dq4 = {3, {2, 4, 24}};
  CHECK_STATUS(kiln_context_set_input_shape(c, "qkv", &dq4), KILN_ERR_SHAPE);
  kiln_context_destroy(c);
  kiln_engine_destroy(e);
  kiln_free(img);
  kiln_network_destroy(net);
}

int main(void) {
  check_rng r = {0x5eedULL};
  for (int di = 0; di < 3; di++) {
    kiln_dtype dt = tt_float_dtypes[di];
    self_case(&r, dt, 1, 1, 1, 1, 8, 4);
    self_case(&r, dt, 2, 3, 1, 3, 16, 12);
    self_case(&r, dt, 3, 3, 4, 2, 64, 9);
    self_case(&r, dt, 2, 2, 5, 2, 6, 5); /* S = cap - 0: a row starting at 0 fills the cache */
    cross_case(&r, dt, 1, 1, 1, 1, 8, 1);
    cross_case(&r, dt, 4, 2, 1, 3, 16, 33);
    cross_case(&r, dt, 6, 3, 3, 2, 64, 17);
    cross_case(&r, dt, 2, 2, 2, 2, 5, 7);
  }
  test_errors(&r);
  test_network();
  return check_report();
}
