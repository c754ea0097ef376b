/* tests/cpu/test_cpu_kv_int8.c - the CPU backend's int8 KV cache: kiln_cpu_quantize_int8
 * (KILN_OP_QUANTIZE_INT8) and kiln_cpu_kv_attention with int8 caches and scales against naive
 * references written here: the quantization rule of network.h re-implemented element by
 * element (codes and scales must match exactly), and a double-precision attention over the
 * dequantized caches. Random data over a grid of dtypes (q, scales), B, H, T, D, with lengths
 * that are not multiples of any block size, empty caches (one key), full caches, and
 * cross-attention rows shared by beams. Also: the int8 output stays within a quantization
 * bound of the float-cache output, cache positions that are not appended stay untouched, the
 * errors, and the ops in a network built into CPU engines (fp32 and fp16).
 */
#include <math.h>
#include <stdio.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "cpu/cpu_test_util.h"
#include "cpu/kv_ref.h"
#include "kiln/kiln.h"

/* The rule, naively: s = max|x| / 127 rounded to sdt; codes round(x / s) clamped; 0 if s = 0. */
static float naive_quantize(const float *x, int64_t d, kiln_dtype sdt, int8_t *codes) {
  float m = 0.0f;
  for (int64_t i = 0; i < d; i++)
    if (fabsf(x[i]) > m) m = fabsf(x[i]);
  float s = m / 127.0f;
  if (sdt == KILN_DTYPE_FP16) s = kiln_fp16_to_fp32(kiln_fp32_to_fp16(s));
  if (sdt == KILN_DTYPE_BF16) s = kiln_bf16_to_fp32(kiln_fp32_to_bf16(s));
  for (int64_t i = 0; i < d; i++) {
    float r = s > 0.0f ? roundf(x[i] / s) : 0.0f;
    codes[i] = (int8_t)(r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r);
  }
  return s;
}

/* An int8 cache [rows, H, cap, D] with scales [rows, H, cap]: random codes and scales (what
 * earlier steps left there); deq receives code * scale. */
typedef struct qcache {
  int8_t *codes;
  ttensor scales;
  float *deq;
  int64_t n;
} qcache;

static qcache qc_rand(check_rng *r, kiln_dtype sdt, int64_t rows, int64_t H, int64_t cap, int64_t D) {
  qcache c;
  int64_t sd[3] = {rows, H, cap};
  c.n = rows * H * cap * D;
  c.codes = tt_xmalloc((size_t)c.n);
  c.deq = tt_xmalloc(sizeof(float) * (size_t)c.n);
  c.scales = tt_rand(r, sdt, 3, sd, 0.001f, 0.02f);
  for (int64_t i = 0; i < c.n; i++) c.codes[i] = (int8_t)((int32_t)(check_uniform(r, 0.0f, 255.0f)) - 127);
  for (int64_t i = 0; i < c.n; i++) c.deq[i] = (float)c.codes[i] * c.scales.val[i / D];
  return c;
}

static void qc_free(qcache *c) {
  free(c->codes), free(c->deq);
  tt_free(&c->scales);
}

static kiln_tensor qc_view(qcache *c, int64_t rows, int64_t H, int64_t cap, int64_t D) {
  kiln_dims d = {4, {rows, H, cap, D}};
  return kiln_tensor_contiguous(c->codes, KILN_DTYPE_INT8, &d);
}

/* Self-attention over int8 caches: new keys/values quantized into the caches at L[b], the
 * rest untouched, the output as the reference over the dequantized caches; and close to the
 * output over float caches holding the unquantized values. */
static void self_case(check_rng *r, kiln_dtype dt, int64_t B, int64_t Bc, int64_t S, int64_t H, int64_t D, int64_t cap,
                      int full) {
  char what[160];
  snprintf(what, sizeof what, "int8 self %s B%lld Bc%lld S%lld H%lld D%lld T%lld", kiln_dtype_name(dt), (long long)B,
           (long long)Bc, (long long)S, (long long)H, (long long)D, (long long)cap);
  int64_t qd[3] = {B, S, 3 * H * D}, ld[1] = {B}, yd[3] = {B, S, H * D};
  ttensor qkv = tt_rand(r, dt, 3, qd, -2.0f, 2.0f), len = tt_alloc(KILN_DTYPE_INT32, 1, ld), y = tt_alloc(dt, 3, yd);
  qcache ck = qc_rand(r, dt, Bc, H, cap, D), cv = qc_rand(r, dt, Bc, H, cap, D);
  int32_t *L = len.t.data;
  for (int64_t b = 0; b < B; b++) L[b] = (int32_t)((b * 5 + 2) % (cap - S + 1));
  L[0] = 0;                                   /* an empty cache: the first token sees itself */
  if (full) L[B - 1] = (int32_t)(cap - S);    /* a row that fills its cache */
  /* expected caches: the old codes, with the new vectors quantized at L[b] + s */
  int8_t *ek = tt_xmalloc((size_t)ck.n), *ev = tt_xmalloc((size_t)cv.n);
  float *eks = tt_xmalloc(sizeof(float) * (size_t)ck.scales.n), *evs = tt_xmalloc(sizeof(float) * (size_t)cv.scales.n);
  memcpy(ek, ck.codes, (size_t)ck.n), memcpy(ev, cv.codes, (size_t)cv.n);
  memcpy(eks, ck.scales.val, sizeof(float) * (size_t)ck.scales.n), memcpy(evs, cv.scales.val, sizeof(float) * (size_t)cv.scales.n);
  float *fk = tt_xmalloc(sizeof(float) * (size_t)ck.n), *fv = tt_xmalloc(sizeof(float) * (size_t)cv.n); /* float caches */
  memcpy(fk, ck.deq, sizeof(float) * (size_t)ck.n), memcpy(fv, cv.deq, sizeof(float) * (size_t)cv.n);
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++) {
        const float *src = qkv.val + (b * S + s) * 3 * H * D + h * D;
        int64_t pos = (b * H + h) * cap + L[b] + s;
        eks[pos] = naive_quantize(src + H * D, D, dt, ek + pos * D);
        evs[pos] = naive_quantize(src + 2 * H * D, D, dt, ev + pos * D);
        for (int64_t d = 0; d < D; d++) {
          ck.deq[pos * D + d] = (float)ek[pos * D + d] * eks[pos], fk[pos * D + d] = src[H * D + d];
          cv.deq[pos * D + d] = (float)ev[pos * D + d] * evs[pos], fv[pos * D + d] = src[2 * H * D + d];
        }
      }
  double *want = tt_xmalloc(sizeof(double) * (size_t)y.n), *wantf = tt_xmalloc(sizeof(double) * (size_t)y.n);
  float scale = 1.0f / sqrtf((float)D);
  kv_reference(qkv.val, 3 * H * D, ck.deq, cv.deq, L, B, S, H, D, cap, 1, scale, 1, want);
  kv_reference(qkv.val, 3 * H * D, fk, fv, L, B, S, H, D, cap, 1, scale, 1, wantf);
  kiln_tensor in[6] = {qkv.t, qc_view(&ck, Bc, H, cap, D), qc_view(&cv, Bc, H, cap, D), len.t, ck.scales.t, cv.scales.t};
  CHECK_OK(kiln_cpu_kv_attention(6, in, (int32_t)H, scale, 1, &y.t));
  tt_read(&ck.scales), tt_read(&cv.scales);
  CHECK(memcmp(ck.codes, ek, (size_t)ck.n) == 0); /* exact: the same rule */
  CHECK(memcmp(cv.codes, ev, (size_t)cv.n) == 0);
  CHECK(check_close(what, ck.scales.val, eks, ck.scales.n, 0.0, 0.0));
  CHECK(check_close(what, cv.scales.val, evs, cv.scales.n, 0.0, 0.0));
  CHECK(tt_check(what, &y, want, 1.0));
  /* against float caches: the int8 error only (values in [-2, 2]: steps of 2 / 127) */
  float *wf = tt_xmalloc(sizeof(float) * (size_t)y.n);
  for (int64_t i = 0; i < y.n; i++) wf[i] = (float)wantf[i];
  CHECK(check_close(what, y.val, wf, y.n, 0.05, 0.02));
  free(wf), free(want), free(wantf), free(ek), free(ev), free(eks), free(evs), free(fk), free(fv);
  qc_free(&ck), qc_free(&cv);
  tt_free(&qkv), tt_free(&len), tt_free(&y);
}

static void cross_case(check_rng *r, kiln_dtype dt, int64_t B, int64_t Bk, int64_t S, int64_t H, int64_t D, int64_t A) {
  char what[160];
  snprintf(what, sizeof what, "int8 cross %s B%lld Bk%lld S%lld H%lld D%lld A%lld", kiln_dtype_name(dt), (long long)B,
           (long long)Bk, (long long)S, (long long)H, (long long)D, (long long)A);
  int64_t qd[3] = {B, S, H * D};
  ttensor q = tt_rand(r, dt, 3, qd, -2.0f, 2.0f), y = tt_alloc(dt, 3, qd);
  qcache k = qc_rand(r, dt, Bk, H, A, D), v = qc_rand(r, dt, Bk, H, A, D);
  double *want = tt_xmalloc(sizeof(double) * (size_t)y.n);
  float scale = 0.3f;
  kv_reference(q.val, H * D, k.deq, v.deq, NULL, B, S, H, D, A, B / Bk, scale, 0, want);
  kiln_tensor in[5] = {q.t, qc_view(&k, Bk, H, A, D), qc_view(&v, Bk, H, A, D), k.scales.t, v.scales.t};
  CHECK_OK(kiln_cpu_kv_attention(5, in, (int32_t)H, scale, 0, &y.t));
  CHECK(tt_check(what, &y, want, 1.0));
  free(want);
  qc_free(&k), qc_free(&v);
  tt_free(&q), tt_free(&y);
}

/* quantize_int8 against the naive rule; an all-zero row gets scale 0 and codes 0; every value
 * is within half a step of code * scale. */
static void quantize_case(check_rng *r, kiln_dtype dt, int64_t rows, int64_t D) {
  char what[96];
  snprintf(what, sizeof what, "quantize %s %lldx%lld", kiln_dtype_name(dt), (long long)rows, (long long)D);
  int64_t xd[3] = {1, rows, D}, sd[2] = {1, rows};
  ttensor x = tt_rand(r, dt, 3, xd, -3.0f, 3.0f), s = tt_alloc(dt, 2, sd);
  for (int64_t i = 0; i < D; i++) tt_set(&x, i, 0.0f);                         /* row 0: zeros */
  if (rows > 2)
    for (int64_t i = 0; i < D; i++) tt_set(&x, 2 * D + i, x.val[2 * D + i] * 1e-3f); /* a small row */
  int8_t *codes = tt_xmalloc((size_t)x.n), *want = tt_xmalloc((size_t)x.n);
  float *ws = tt_xmalloc(sizeof(float) * (size_t)rows);
  memset(codes, 0x55, (size_t)x.n);
  kiln_dims cd = {3, {1, rows, D}};
  kiln_tensor ct = kiln_tensor_contiguous(codes, KILN_DTYPE_INT8, &cd);
  CHECK_OK(kiln_cpu_quantize_int8(&x.t, &ct, &s.t));
  tt_read(&s);
  int bad = 0;
  for (int64_t row = 0; row < rows; row++) {
    ws[row] = naive_quantize(x.val + row * D, D, dt, want + row * D);
    for (int64_t i = 0; i < D; i++) {
      float e = fabsf(x.val[row * D + i] - (float)codes[row * D + i] * s.val[row]);
      if (e > 0.5f * s.val[row] * 1.0001f + 1e-30f && x.val[row * D + i] != 0.0f && !bad++)
        fprintf(stderr, "%s: row %lld elem %lld: |x - q s| = %g > s / 2 = %g\n", what, (long long)row, (long long)i, e,
                0.5 * s.val[row]);
    }
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(memcmp(codes, want, (size_t)x.n) == 0);
  CHECK(check_close(what, s.val, ws, rows, 0.0, 0.0));
  CHECK(s.val[0] == 0.0f && codes[0] == 0 && codes[D - 1] == 0);
  int hits = 0; /* the largest |x| of a non-zero row maps to +-127 */
  for (int64_t i = D; i < 2 * D && rows > 1; i++) hits += codes[i] == 127 || codes[i] == -127;
  CHECK(rows < 2 || hits >= 1);
  free(codes), free(want), free(ws);
  tt_free(&x), tt_free(&s);
}

static void test_errors(check_rng *r) {
  int64_t qd[3] = {1, 1, 12}, sd[3] = {1, 2, 4}, bad_sd[3] = {1, 2, 5}, ld[1] = {1}, yd[3] = {1, 1, 4};
  ttensor qkv = tt_rand(r, KILN_DTYPE_FP32, 3, qd, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 3, yd);
  ttensor ks = tt_rand(r, KILN_DTYPE_FP32, 3, sd, 0.01f, 0.02f), bad = tt_rand(r, KILN_DTYPE_FP32, 3, bad_sd, 0.01f, 0.02f);
  ttensor len = tt_alloc(KILN_DTYPE_INT32, 1, ld), fc = tt_rand(r, KILN_DTYPE_FP32, 4, (int64_t[]){1, 2, 4, 2}, -1, 1);
  int8_t codes[16] = {0};
  kiln_dims cd = {4, {1, 2, 4, 2}};
  kiln_tensor c = kiln_tensor_contiguous(codes, KILN_DTYPE_INT8, &cd);
  ((int32_t *)len.t.data)[0] = 3; /* 3 cached + 1 new = 4: fits */
  kiln_tensor ok[6] = {qkv.t, c, c, len.t, ks.t, ks.t}, wrong[6] = {qkv.t, c, c, len.t, ks.t, bad.t};
  kiln_tensor floaty[6] = {qkv.t, fc.t, fc.t, len.t, ks.t, ks.t};
  CHECK_STATUS(kiln_cpu_kv_attention(6, wrong, 2, 1.0f, 1, &y.t), KILN_ERR_SHAPE);
  CHECK_MSG("scales");
  CHECK_STATUS(kiln_cpu_kv_attention(6, floaty, 2, 1.0f, 1, &y.t), KILN_ERR_UNSUPPORTED); /* float caches, 6 inputs */
  CHECK_MSG("must be int8");
  CHECK_STATUS(kiln_cpu_kv_attention(5, ok, 2, 1.0f, 1, &y.t), KILN_ERR_INVALID_ARG);
  CHECK(tt_untouched(&y));
  ((int32_t *)len.t.data)[0] = 4; /* full */
  CHECK_STATUS(kiln_cpu_kv_attention(6, ok, 2, 1.0f, 1, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_MSG("do not fit");
  CHECK(tt_untouched(&y));
  /* quantize: scales of the wrong shape, codes of the wrong dtype */
  kiln_dims xd = {2, {4, 2}};
  kiln_tensor x8 = kiln_tensor_contiguous(codes, KILN_DTYPE_INT8, &xd);
  CHECK_STATUS(kiln_cpu_quantize_int8(&fc.t, &c, &bad.t), KILN_ERR_SHAPE);
  CHECK_STATUS(kiln_cpu_quantize_int8(&fc.t, &fc.t, &ks.t), KILN_ERR_UNSUPPORTED);
  CHECK_STATUS(kiln_cpu_quantize_int8(&x8, &x8, &ks.t), KILN_ERR_UNSUPPORTED);
  tt_free(&qkv), tt_free(&y), tt_free(&ks), tt_free(&bad), tt_free(&len), tt_free(&fc);
}

/* The network of test_network: an int8 self-attention, k/v from input kx quantized by a
 * quantize_int8 layer and read by an int8 cross-attention. With `bad`, one more cross-attention
 * whose scales do not fit its caches (shape inference must refuse it). */
static kiln_network *int8_network(int bad) {
  kiln_network *net = NULL;
  CHECK_OK(kiln_network_create(&net));
  if (!net) return NULL;
  int64_t qd[3] = {-1, -1, 3 * 2 * 8}, cd[4] = {-1, 2, 6, 8}, sd[3] = {-1, 2, 6}, ld[1] = {-1}, xd[4] = {-1, 2, 5, 8};
  int32_t qkv = kiln_network_add_input(net, "qkv", KILN_DTYPE_FP32, 3, qd);
  int32_t ck = kiln_network_add_input(net, "ck", KILN_DTYPE_INT8, 4, cd);
  int32_t cv = kiln_network_add_input(net, "cv", KILN_DTYPE_INT8, 4, cd);
  int32_t ks = kiln_network_add_input(net, "ks", KILN_DTYPE_FP32, 3, sd);
  int32_t vs = kiln_network_add_input(net, "vs", KILN_DTYPE_FP32, 3, sd);
  int32_t len = kiln_network_add_input(net, "len", KILN_DTYPE_INT32, 1, ld);
  int32_t kx = kiln_network_add_input(net, "kx", KILN_DTYPE_FP32, 4, xd);
  int32_t a = kiln_network_add_cached_self_attention_int8(net, "self", qkv, ck, cv, ks, vs, len, 2, 0.5f);
  int32_t kq = kiln_network_add_quantize_int8(net, "quant_k", kx);
  CHECK(a >= 0 && kq >= 0);
  /* the API refuses float caches, int8 scales and quantizing int8 */
  CHECK_STATUS(kiln_network_add_cross_attention_int8(net, "bad1", a, kx, kx, kq + 1, kq + 1, 2, 0.5f), KILN_ERR_INVALID_ARG);
  CHECK_MSG("must be int8");
  CHECK_STATUS(kiln_network_add_cross_attention_int8(net, "bad2", a, kq, kq, kq, kq, 2, 0.5f), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_network_add_quantize_int8(net, "bad3", kq), KILN_ERR_INVALID_ARG);
  int32_t x = kiln_network_add_cross_attention_int8(net, "cross", a, kq, kq, kq + 1, kq + 1, 2, 0.5f);
  CHECK(x >= 0);
  CHECK_OK(kiln_network_mark_output(net, x, "y"));
  CHECK_OK(kiln_network_mark_output(net, kq, "kq"));
  CHECK_OK(kiln_network_mark_output(net, kq + 1, "kq_scale"));
  if (bad) {
    int32_t b4 = kiln_network_add_cross_attention_int8(net, "bad4", a, kq, kq, ks, ks, 2, 0.5f); /* scales [B, 2, 6] */
    CHECK(b4 >= 0);
    CHECK_OK(kiln_network_mark_output(net, b4, "y_bad"));
  }
  int32_t p = kiln_network_add_profile(net);
  int64_t q1[3] = {1, 1, 48}, q2[3] = {2, 2, 48}, c1[4] = {1, 2, 6, 8}, c2[4] = {2, 2, 6, 8}, s1[3] = {1, 2, 6},
          s2[3] = {2, 2, 6}, l1[1] = {1}, l2[1] = {2}, k1[4] = {1, 2, 5, 8}, k2[4] = {2, 2, 5, 8};
  CHECK_OK(kiln_network_set_profile_dims(net, p, "qkv", q1, q2, q2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "ck", c1, c2, c2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "cv", c1, c2, c2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "ks", s1, s2, s2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "vs", s1, s2, s2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "len", l1, l2, l2));
  CHECK_OK(kiln_network_set_profile_dims(net, p, "kx", k1, k2, k2));
  return net;
}

/* The int8 network built into a CPU engine (prec: fp32, or fp16 with the scales in fp16) gives
 * exactly what the ops called one after the other give, caches and scales included. */
static void test_network(check_rng *r, kiln_dtype prec) {
  kiln_build_params bp = kiln_build_default_params();
  bp.target = KILN_TARGET_CPU;
  bp.precision = prec;
  void *img = NULL;
  size_t size = 0;
  kiln_network *net = int8_network(1);
  CHECK_STATUS(kiln_build(net, &bp, &img, &size, NULL), KILN_ERR_SHAPE);
  CHECK_MSG("scales");
  kiln_network_destroy(net);
  net = int8_network(0);
  CHECK_OK(kiln_build(net, &bp, &img, &size, NULL));
  kiln_network_destroy(net);
  kiln_engine *e = NULL;
  kiln_context *c = NULL;
  if (img) CHECK_OK(kiln_engine_load_memory(img, size, NULL, &e));
  if (e) CHECK_OK(kiln_context_create(e, 0, &c));
  if (!c) {
    kiln_engine_destroy(e);
    kiln_free(img);
    return;
  }
  /* [0]: the engine's buffers, [1]: the ops' */
  int64_t dq[3] = {2, 2, 48}, dk[4] = {2, 2, 5, 8}, ds[3] = {2, 2, 6}, dks[3] = {2, 2, 5}, dy[3] = {2, 2, 16};
  ttensor tq = tt_rand(r, prec, 3, dq, -1.0f, 1.0f), tk = tt_rand(r, prec, 4, dk, -1.0f, 1.0f);
  ttensor ks[2], vs[2], kqs[2], y[2];
  int8_t ckb[2][2 * 2 * 6 * 8], cvb[2][2 * 2 * 6 * 8], kqb[2][2 * 2 * 5 * 8];
  ks[0] = tt_rand(r, prec, 3, ds, 0.001f, 0.01f), vs[0] = tt_rand(r, prec, 3, ds, 0.001f, 0.01f);
  for (int i = 0; i < 2; i++) {
    if (i) ks[1] = tt_alloc(prec, 3, ds), vs[1] = tt_alloc(prec, 3, ds);
    kqs[i] = tt_alloc(prec, 3, dks), y[i] = tt_alloc(prec, 3, dy);
  }
  memcpy(ks[1].t.data, ks[0].t.data, ks[0].bytes), memcpy(vs[1].t.data, vs[0].t.data, vs[0].bytes);
  for (int i = 0; i < 2 * 2 * 6 * 8; i++) {
    ckb[0][i] = ckb[1][i] = (int8_t)(i * 37 % 255 - 127);
    cvb[0][i] = cvb[1][i] = (int8_t)(i * 11 % 255 - 127);
  }
  int32_t lens[2] = {4, 1};
  kiln_dims Dq = {3, {2, 2, 48}}, Dc = {4, {2, 2, 6, 8}}, Ds = {3, {2, 2, 6}}, Dl = {1, {2}}, Dk = {4, {2, 2, 5, 8}};
  CHECK_OK(kiln_context_set_input_shape(c, "qkv", &Dq));
  CHECK_OK(kiln_context_set_input_shape(c, "ck", &Dc));
  CHECK_OK(kiln_context_set_input_shape(c, "cv", &Dc));
  CHECK_OK(kiln_context_set_input_shape(c, "ks", &Ds));
  CHECK_OK(kiln_context_set_input_shape(c, "vs", &Ds));
  CHECK_OK(kiln_context_set_input_shape(c, "len", &Dl));
  CHECK_OK(kiln_context_set_input_shape(c, "kx", &Dk));
  CHECK_OK(kiln_context_set_tensor(c, "qkv", tq.t.data));
  CHECK_OK(kiln_context_set_tensor(c, "ck", ckb[0]));
  CHECK_OK(kiln_context_set_tensor(c, "cv", cvb[0]));
  CHECK_OK(kiln_context_set_tensor(c, "ks", ks[0].t.data));
  CHECK_OK(kiln_context_set_tensor(c, "vs", vs[0].t.data));
  CHECK_OK(kiln_context_set_tensor(c, "len", lens));
  CHECK_OK(kiln_context_set_tensor(c, "kx", tk.t.data));
  CHECK_OK(kiln_context_set_tensor(c, "y", y[0].t.data));
  CHECK_OK(kiln_context_set_tensor(c, "kq", kqb[0]));
  CHECK_OK(kiln_context_set_tensor(c, "kq_scale", kqs[0].t.data));
  CHECK_OK(kiln_context_enqueue(c, NULL));
  /* the same through the ops */
  ttensor mid = tt_alloc(prec, 3, dy);
  kiln_tensor kq = kiln_tensor_contiguous(kqb[1], KILN_DTYPE_INT8, &Dk);
  kiln_tensor self_in[6] = {tq.t, kiln_tensor_contiguous(ckb[1], KILN_DTYPE_INT8, &Dc),
                            kiln_tensor_contiguous(cvb[1], KILN_DTYPE_INT8, &Dc),
                            kiln_tensor_contiguous(lens, KILN_DTYPE_INT32, &Dl), ks[1].t, vs[1].t};
  CHECK_OK(kiln_cpu_kv_attention(6, self_in, 2, 0.5f, 1, &mid.t));
  CHECK_OK(kiln_cpu_quantize_int8(&tk.t, &kq, &kqs[1].t));
  kiln_tensor cross_in[5] = {mid.t, kq, kq, kqs[1].t, kqs[1].t};
  CHECK_OK(kiln_cpu_kv_attention(5, cross_in, 2, 0.5f, 0, &y[1].t));
  tt_read(&y[0]), tt_read(&y[1]);
  CHECK(check_close("network int8 kv", y[0].val, y[1].val, y[0].n, 0.0, 0.0));
  CHECK(isfinite(y[0].val[0]) && fabsf(y[0].val[0]) > 0.0f);
  CHECK(memcmp(ckb[0], ckb[1], sizeof ckb[0]) == 0 && memcmp(cvb[0], cvb[1], sizeof cvb[0]) == 0);
  CHECK(memcmp(kqb[0], kqb[1], sizeof kqb[0]) == 0);
  CHECK(memcmp(ks[0].t.data, ks[1].t.data, ks[0].bytes) == 0 && memcmp(vs[0].t.data, vs[1].t.data, vs[0].bytes) == 0);
  CHECK(memcmp(kqs[0].t.data, kqs[1].t.data, kqs[0].bytes) == 0);
  /* row 1 (1 cached token) appended two at positions 1 and 2: its codes changed there, not at 3 */
  int at1 = ((1 * 2 + 0) * 6 + 1) * 8, changed = 0;
  for (int i = 0; i < 8; i++) changed += ckb[0][at1 + i] != (int8_t)((at1 + i) * 37 % 255 - 127);
  CHECK(changed > 0);
  for (int i = 0; i < 8; i++) CHECK(ckb[0][at1 + 16 + i] == (int8_t)((at1 + 16 + i) * 37 % 255 - 127));
  for (int i = 0; i < 2; i++) tt_free(&ks[i]), tt_free(&vs[i]), tt_free(&kqs[i]), tt_free(&y[i]);
  tt_free(&tq), tt_free(&tk), tt_free(&mid);
  kiln_context_destroy(c);
  kiln_engine_destroy(e);
  kiln_free(img);
}

int main(void) {
  check_rng r = {0x1e8ULL};
  for (int di = 0; di < 3; di++) {
    kiln_dtype dt = tt_float_dtypes[di];
    self_case(&r, dt, 1, 1, 1, 1, 8, 1, 1);      /* a cache of one position */
    self_case(&r, dt, 2, 3, 1, 3, 16, 13, 1);
    self_case(&r, dt, 3, 3, 4, 2, 64, 37, 0);    /* a prompt chunk */
    self_case(&r, dt, 2, 2, 5, 2, 6, 5, 1);      /* S = cap: a row starting at 0 fills the cache */
    self_case(&r, dt, 4, 4, 1, 6, 64, 67, 1);    /* Whisper base's heads */
    cross_case(&r, dt, 1, 1, 1, 1, 8, 1);        /* one key */
    cross_case(&r, dt, 4, 2, 1, 3, 16, 33);
    cross_case(&r, dt, 6, 3, 3, 2, 64, 17);
    cross_case(&r, dt, 2, 2, 2, 2, 5, 7);
    cross_case(&r, dt, 10, 2, 1, 4, 64, 150);    /* 2 windows x 5 beams */
    quantize_case(&r, dt, 1, 1);
    quantize_case(&r, dt, 7, 64);
    quantize_case(&r, dt, 33, 5);
  }
  test_errors(&r);
  test_network(&r, KILN_DTYPE_FP32);
  test_network(&r, KILN_DTYPE_FP16);
  return check_report();
}
