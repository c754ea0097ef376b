/* tests/gpu/test_cuda_ops.c - every CUDA op launcher (except matmul: test_cuda_matmul.c) against
 * the CPU backend on random data: a grid of shapes (odd sizes, 1, 0, larger than one block) and
 * fp32/fp16/bf16 storage, outputs poisoned with NaN bytes before each run so unwritten elements
 * fail; zero-size shapes; argument errors that must leave the output untouched.
 * Exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>

#include "backends/cpu/cpu_ops.h"
#include "gpu_test_util.h"

static kiln_cuda_ctx *ctx;

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct shape {
  int32_t rank;
  int64_t d[KILN_MAX_DIMS];
} shape;

static void label(char *buf, size_t size, const char *op, kiln_dtype dt, const shape *s) {
  kiln_dims d;
  char ds[128];
  d.rank = s->rank;
  for (int32_t i = 0; i < s->rank; i++) d.d[i] = s->d[i];
  snprintf(buf, size, "%s %s %s", op, kiln_dtype_name(dt), kiln_dims_str(&d, ds, sizeof ds));
}

/* ---- add / mul ---------------------------------------------------------------------------- */

static void test_binary(void) {
  check_rng r = {11};
  const struct {
    shape a;
    int32_t b_rank; /* b = the last b_rank dims of a */
  } cases[] = {{{3, {2, 3, 5}}, 1}, {{3, {2, 3, 5}}, 2}, {{3, {2, 3, 5}}, 3}, {{1, {1}}, 1},
               {{2, {0, 4}}, 1},    {{3, {3, 1000, 37}}, 1}, {{2, {7, 1}}, 1}, {{1, {70001}}, 1}};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t c = 0; c < NELEM(cases); c++)
      for (int op = 0; op < 2; op++) {
        kiln_dtype dt = gt_dtypes[d];
        const shape *sa = &cases[c].a;
        int32_t br = cases[c].b_rank;
        gt_buf a = gt_new(dt, sa->rank, sa->d), b = gt_new(dt, br, sa->d + (sa->rank - br));
        gt_buf y = gt_new(dt, sa->rank, sa->d);
        gt_random(&a, &r, -2, 2), gt_random(&b, &r, -2, 2);
        gt_poison(&y);
        if (op == 0) {
          CHECK_OK(kiln_cpu_add(&a.h, &b.h, &y.h));
          CHECK_OK(kiln_cuda_add(&a.d, &b.d, &y.d, gt_stream_));
        } else {
          CHECK_OK(kiln_cpu_mul(&a.h, &b.h, &y.h));
          CHECK_OK(kiln_cuda_mul(&a.d, &b.d, &y.d, gt_stream_));
        }
        label(what, sizeof what, op ? "mul" : "add", dt, sa);
        gt_compare(what, &y, gt_atol(dt), gt_rtol(dt));
        gt_free(&a), gt_free(&b), gt_free(&y);
      }
  /* mixed dtypes: a fp16, b fp32, y bf16 */
  {
    int64_t d[2] = {5, 9};
    gt_buf a = gt_new(KILN_DTYPE_FP16, 2, d), b = gt_new(KILN_DTYPE_FP32, 1, d + 1);
    gt_buf y = gt_new(KILN_DTYPE_BF16, 2, d);
    gt_random(&a, &r, -2, 2), gt_random(&b, &r, -2, 2);
    gt_poison(&y);
    CHECK_OK(kiln_cpu_add(&a.h, &b.h, &y.h));
    CHECK_OK(kiln_cuda_add(&a.d, &b.d, &y.d, gt_stream_));
    gt_compare("add fp16 + fp32 -> bf16", &y, gt_atol(KILN_DTYPE_BF16), gt_rtol(KILN_DTYPE_BF16));
    /* b not a suffix of a: error, output untouched */
    gt_buf bad = gt_new(KILN_DTYPE_FP32, 1, d);
    gt_poison(&y);
    CHECK_STATUS(kiln_cuda_add(&a.d, &bad.d, &y.d, gt_stream_), KILN_ERR_SHAPE);
    CHECK(gt_dev_still_poisoned(&y));
    gt_free(&a), gt_free(&b), gt_free(&y), gt_free(&bad);
  }
}

/* ---- activations -------------------------------------------------------------------------- */

static void test_activation(void) {
  check_rng r = {12};
  const shape shapes[] = {{1, {1}}, {2, {7, 13}}, {1, {0}}, {1, {100003}}, {3, {2, 0, 3}}};
  const kiln_activation acts[] = {KILN_ACTIVATION_NONE, KILN_ACTIVATION_GELU, KILN_ACTIVATION_RELU,
                                  KILN_ACTIVATION_SILU};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t s = 0; s < NELEM(shapes); s++)
      for (size_t a = 0; a < NELEM(acts); a++) {
        kiln_dtype dt = gt_dtypes[d];
        gt_buf x = gt_new(dt, shapes[s].rank, shapes[s].d), y = gt_new(dt, shapes[s].rank, shapes[s].d);
        gt_random(&x, &r, -6, 6);
        gt_poison(&y);
        CHECK_OK(kiln_cpu_activation(&x.h, acts[a], &y.h));
        CHECK_OK(kiln_cuda_activation(&x.d, acts[a], &y.d, gt_stream_));
        label(what, sizeof what, acts[a] == 1 ? "gelu" : acts[a] == 2 ? "relu" : acts[a] == 3 ? "silu" : "identity",
              dt, &shapes[s]);
        gt_compare(what, &y, gt_atol(dt) + 1e-6, gt_rtol(dt));
        gt_free(&x), gt_free(&y);
      }
  /* in place */
  {
    int64_t d[1] = {1000};
    gt_buf x = gt_new(KILN_DTYPE_FP32, 1, d), y = gt_new(KILN_DTYPE_FP32, 1, d);
    gt_random(&x, &r, -4, 4);
    memcpy(y.host, x.host, x.bytes);
    CHECK_OK(kiln_cpu_activation(&x.h, KILN_ACTIVATION_GELU, &y.h));
    CHECK_OK(kiln_cuda_activation(&x.d, KILN_ACTIVATION_GELU, &x.d, gt_stream_));
    memcpy(x.host, y.host, x.bytes); /* compare x's device copy with the CPU result */
    gt_compare("gelu in place", &x, 1e-6, 1e-5);
    CHECK_STATUS(kiln_cuda_activation(&x.d, (kiln_activation)42, &y.d, gt_stream_),
                 KILN_ERR_INVALID_ARG);
    gt_free(&x), gt_free(&y);
  }
}

/* ---- layernorm ---------------------------------------------------------------------------- */

static void test_layernorm(void) {
  check_rng r = {13};
  const shape shapes[] = {{2, {1, 1}}, {2, {3, 7}},     {2, {5, 1000}}, {3, {2, 3, 4096}},
                          {2, {0, 16}}, {2, {4, 257}},  {1, {384}},     {2, {300, 1280}},
                          /* rows of a multiple of 8 (register and block paths at each width) */
                          {2, {7, 8}},  {2, {3, 520}},  {2, {2, 2048}}, {3, {2, 5, 64}}};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t s = 0; s < NELEM(shapes); s++)
      for (int fused = 0; fused < 3; fused++) { /* 0 plain, 1 fused with sum, 2 fused no sum */
        kiln_dtype dt = gt_dtypes[d];
        const shape *sh = &shapes[s];
        int64_t n = sh->d[sh->rank - 1];
        gt_buf a = gt_new(dt, sh->rank, sh->d), b = gt_new(dt, sh->rank, sh->d);
        gt_buf g = gt_new(dt, 1, &n), be = gt_new(dt, 1, &n);
        gt_buf sum = gt_new(dt, sh->rank, sh->d), y = gt_new(dt, sh->rank, sh->d);
        gt_random(&a, &r, -3, 5), gt_random(&b, &r, -1, 1);
        gt_random(&g, &r, 0.5f, 1.5f), gt_random(&be, &r, -0.5f, 0.5f);
        gt_poison(&sum), gt_poison(&y);
        if (fused == 0) {
          CHECK_OK(kiln_cpu_layernorm(&a.h, &g.h, &be.h, 1e-5f, &y.h));
          CHECK_OK(kiln_cuda_layernorm(&a.d, &g.d, &be.d, 1e-5f, &y.d, gt_stream_));
        } else {
          CHECK_OK(kiln_cpu_add_layernorm(&a.h, &b.h, &g.h, &be.h, 1e-5f,
                                          fused == 1 ? &sum.h : NULL, &y.h));
          CHECK_OK(kiln_cuda_add_layernorm(&a.d, &b.d, &g.d, &be.d, 1e-5f,
                                           fused == 1 ? &sum.d : NULL, &y.d, gt_stream_));
        }
        label(what, sizeof what, fused ? "add_layernorm" : "layernorm", dt, sh);
        /* normalized values reach ~4; fp16/bf16 inputs round before the statistics */
        gt_compare(what, &y, 4 * gt_atol(dt) + 1e-5, 2 * gt_rtol(dt));
        if (fused == 1) gt_compare("add_layernorm sum", &sum, gt_atol(dt), gt_rtol(dt));
        if (fused == 2) CHECK(gt_dev_still_poisoned(&sum));
        gt_free(&a), gt_free(&b), gt_free(&g), gt_free(&be), gt_free(&sum), gt_free(&y);
      }
  /* gamma of the wrong length: error, output untouched */
  {
    int64_t d[2] = {2, 8}, n = 7;
    gt_buf x = gt_new(KILN_DTYPE_FP32, 2, d), g = gt_new(KILN_DTYPE_FP32, 1, &n);
    gt_buf y = gt_new(KILN_DTYPE_FP32, 2, d);
    gt_random(&x, &r, -1, 1), gt_random(&g, &r, -1, 1);
    gt_poison(&y);
    CHECK_STATUS(kiln_cuda_layernorm(&x.d, &g.d, &g.d, 1e-5f, &y.d, gt_stream_), KILN_ERR_SHAPE);
    CHECK(gt_dev_still_poisoned(&y));
    gt_free(&x), gt_free(&g), gt_free(&y);
  }
}

/* ---- softmax ------------------------------------------------------------------------------ */

static void test_softmax(void) {
  check_rng r = {14};
  const shape shapes[] = {{2, {1, 1}}, {2, {3, 7}}, {2, {4, 1000}}, {2, {2, 5000}},
                          {2, {0, 3}}, {4, {2, 3, 5, 33}}, {1, {1500}}};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t s = 0; s < NELEM(shapes); s++) {
      kiln_dtype dt = gt_dtypes[d];
      gt_buf x = gt_new(dt, shapes[s].rank, shapes[s].d), y = gt_new(dt, shapes[s].rank, shapes[s].d);
      gt_random(&x, &r, -8, 8);
      gt_poison(&y);
      CHECK_OK(kiln_cpu_softmax(&x.h, &y.h));
      CHECK_OK(kiln_cuda_softmax(&x.d, &y.d, gt_stream_));
      label(what, sizeof what, "softmax", dt, &shapes[s]);
      gt_compare(what, &y, gt_atol(dt) * 0.1 + 1e-7, gt_rtol(dt) + 1e-5);
      gt_free(&x), gt_free(&y);
    }
}

/* ---- embedding ---------------------------------------------------------------------------- */

static void test_embedding(void) {
  check_rng r = {15};
  const struct {
    int64_t v, n;
    shape ids;
  } cases[] = {{10, 7, {2, {3, 4}}}, {1000, 384, {2, {2, 17}}}, {5, 1, {1, {9}}},
               {3, 4, {1, {0}}},     {51865, 64, {1, {33}}},    {8, 300, {3, {2, 2, 2}}}};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t c = 0; c < NELEM(cases); c++) {
      kiln_dtype dt = gt_dtypes[d];
      int64_t td[2] = {cases[c].v, cases[c].n}, yd[KILN_MAX_DIMS];
      const shape *is = &cases[c].ids;
      for (int32_t i = 0; i < is->rank; i++) yd[i] = is->d[i];
      yd[is->rank] = cases[c].n;
      gt_buf t = gt_new(dt, 2, td), ids = gt_new(KILN_DTYPE_INT32, is->rank, is->d);
      gt_buf y = gt_new(dt, is->rank + 1, yd);
      gt_random(&t, &r, -1, 1);
      gt_random(&ids, &r, 0, (float)cases[c].v - 0.01f); /* truncates into [0, V) */
      gt_poison(&y);
      CHECK_OK(kiln_cpu_embedding(&t.h, &ids.h, &y.h));
      CHECK_OK(kiln_cuda_embedding(&t.d, &ids.d, &y.d, gt_stream_));
      label(what, sizeof what, "embedding", dt, is);
      gt_compare(what, &y, 0, 0);
      gt_free(&t), gt_free(&ids), gt_free(&y);
    }
  /* out-of-range ids give zero rows on the GPU */
  {
    int64_t td[2] = {4, 5}, idd[1] = {4}, yd[2] = {4, 5};
    gt_buf t = gt_new(KILN_DTYPE_FP32, 2, td), ids = gt_new(KILN_DTYPE_INT32, 1, idd);
    gt_buf y = gt_new(KILN_DTYPE_FP32, 2, yd);
    gt_random(&t, &r, 1, 2); /* never zero */
    int32_t vals[4] = {-1, 2, 4, 1000000};
    memcpy(ids.host, vals, sizeof vals);
    gt_upload(&ids);
    gt_poison(&y);
    CHECK_OK(kiln_cuda_embedding(&t.d, &ids.d, &y.d, gt_stream_));
    float *got = gt_dev_floats(&y), *tab = gt_host_floats(&t);
    for (int j = 0; j < 5; j++) {
      CHECK_NEAR(got[0 * 5 + j], 0.0, 0);
      CHECK_NEAR(got[1 * 5 + j], tab[2 * 5 + j], 0);
      CHECK_NEAR(got[2 * 5 + j], 0.0, 0);
      CHECK_NEAR(got[3 * 5 + j], 0.0, 0);
    }
    free(got), free(tab);
    gt_free(&t), gt_free(&ids), gt_free(&y);
  }
}

/* ---- conv1d ------------------------------------------------------------------------------- */

/* Both paths of kiln_cuda_conv1d against the CPU: path 0 the direct kernel (no workspace),
 * path 1 cuBLASLt over im2col columns (workspace of kiln_cuda_conv1d_workspace bytes), path 2 a
 * workspace one byte short (must fall back to the direct kernel and stay right). The cuBLASLt
 * path rounds the product to the output dtype before the bias (one extra rounding of a value as
 * large as max |x * w|, computed here on the CPU), so its tolerance adds half an ulp of that. */
static void test_conv1d(void) {
  check_rng r = {16};
  const struct {
    int64_t b, cin, t, cout;
    int32_t stride;
  } cases[] = {{1, 1, 1, 1, 1},     {2, 3, 10, 5, 1},    {2, 3, 10, 5, 2},    {1, 80, 301, 64, 1},
               {1, 64, 300, 64, 2}, {2, 17, 33, 19, 2},  {0, 3, 5, 4, 1},     {1, 2, 2, 3, 2},
               {3, 5, 7, 0, 1},     {2, 80, 3000, 48, 1}, {3, 72, 301, 40, 2}, {1, 33, 65, 70, 2}};
  char what[200];
  void *ws = NULL;
  size_t ws_cap = 0;
  for (size_t c = 0; c < NELEM(cases); c++) {
    int64_t xd[3] = {cases[c].b, cases[c].cin, cases[c].t}, wd[3] = {cases[c].cout, cases[c].cin, 3};
    kiln_dims xdims = {3, {xd[0], xd[1], xd[2]}}, wdims = {3, {wd[0], wd[1], wd[2]}};
    size_t need = kiln_cuda_conv1d_workspace(&xdims, &wdims, cases[c].stride, KILN_DTYPE_FP32);
    if (need > ws_cap) ws_cap = need;
  }
  GT_REQUIRE(kiln_cuda_malloc(&ws, ws_cap));
  for (int d = 0; d < 3; d++)
    for (size_t c = 0; c < NELEM(cases); c++)
      for (int variant = 0; variant < 2; variant++) /* 0: bias + gelu, 1: no bias, none */
        for (int path = 0; path < 3; path++) {
          kiln_dtype dt = gt_dtypes[d];
          int64_t tout = (cases[c].t + 2 - 3) / cases[c].stride + 1;
          int64_t xd[3] = {cases[c].b, cases[c].cin, cases[c].t};
          int64_t wd[3] = {cases[c].cout, cases[c].cin, 3}, bd[1] = {cases[c].cout};
          int64_t yd[3] = {cases[c].b, cases[c].cout, tout};
          gt_buf x = gt_new(dt, 3, xd), w = gt_new(dt, 3, wd), b = gt_new(dt, 1, bd);
          gt_buf y = gt_new(dt, 3, yd), pre = gt_new(KILN_DTYPE_FP32, 3, yd);
          kiln_activation act = variant ? KILN_ACTIVATION_NONE : KILN_ACTIVATION_GELU;
          gt_random(&x, &r, -1, 1), gt_random(&w, &r, -0.5f, 0.5f), gt_random(&b, &r, -1, 1);
          gt_poison(&y);
          CHECK_OK(kiln_cpu_conv1d(&x.h, &w.h, variant ? NULL : &b.h, cases[c].stride, act, &y.h));
          CHECK_OK(kiln_cpu_conv1d(&x.h, &w.h, NULL, cases[c].stride, KILN_ACTIVATION_NONE, &pre.h));
          double pre_max = 0;
          for (int64_t i = 0; i < pre.n; i++) {
            double v = fabs((double)((const float *)pre.host)[i]);
            if (v > pre_max) pre_max = v;
          }
          size_t need = kiln_cuda_conv1d_workspace(&x.d.shape, &w.d.shape, cases[c].stride, dt);
          CHECK(need > 0 && need <= ws_cap);
          CHECK_OK(kiln_cuda_conv1d(ctx, &x.d, &w.d, variant ? NULL : &b.d, cases[c].stride, act, &y.d,
                                    path ? ws : NULL, path == 1 ? need : path == 2 ? need - 1 : 0, gt_stream_));
          snprintf(what, sizeof what, "conv1d %s B=%lld Cin=%lld T=%lld Cout=%lld stride %d %s, %s",
                   kiln_dtype_name(dt), (long long)cases[c].b, (long long)cases[c].cin,
                   (long long)cases[c].t, (long long)cases[c].cout, (int)cases[c].stride,
                   variant ? "plain" : "bias+gelu",
                   path == 1 ? "cuBLASLt" : path == 2 ? "workspace short: direct" : "direct");
          double half_ulp = dt == KILN_DTYPE_FP16 ? 0x1p-11 : dt == KILN_DTYPE_BF16 ? 0x1p-8 : 0x1p-24;
          double atol = gt_atol(dt) + 4e-6 * (double)(cases[c].cin * 3) + (path == 1 ? half_ulp * pre_max : 0);
          gt_compare(what, &y, atol, gt_rtol(dt));
          gt_free(&x), gt_free(&w), gt_free(&b), gt_free(&y), gt_free(&pre);
        }
  kiln_cuda_free(ws);
  {
    int64_t xd[3] = {1, 2, 5}, wd[3] = {3, 2, 3}, yd[3] = {1, 3, 5};
    gt_buf x = gt_new(KILN_DTYPE_FP32, 3, xd), w = gt_new(KILN_DTYPE_FP32, 3, wd);
    gt_buf y = gt_new(KILN_DTYPE_FP32, 3, yd);
    gt_poison(&y);
    CHECK_STATUS(kiln_cuda_conv1d(ctx, &x.d, &w.d, NULL, 3, KILN_ACTIVATION_NONE, &y.d, NULL, 0, gt_stream_),
                 KILN_ERR_INVALID_ARG);
    CHECK_STATUS(kiln_cuda_conv1d(ctx, &x.d, &w.d, NULL, 2, KILN_ACTIVATION_NONE, &y.d, NULL, 0, gt_stream_),
                 KILN_ERR_SHAPE); /* stride 2 gives T = 3, not 5 */
    CHECK(gt_dev_still_poisoned(&y));
    gt_free(&x), gt_free(&w), gt_free(&y);
  }
}

/* ---- copy / transpose / concat / slice ---------------------------------------------------- */

static void test_copy_transpose(void) {
  check_rng r = {17};
  /* copy with a new shape and a new dtype */
  for (int d = 0; d < 3; d++)
    for (int e = 0; e < 3; e++) {
      int64_t xd[3] = {2, 3, 4}, yd[2] = {6, 4};
      gt_buf x = gt_new(gt_dtypes[d], 3, xd), y = gt_new(gt_dtypes[e], 2, yd);
      gt_random(&x, &r, -3, 3);
      gt_poison(&y);
      CHECK_OK(kiln_cpu_copy(&x.h, &y.h));
      CHECK_OK(kiln_cuda_copy(&x.d, &y.d, gt_stream_));
      gt_compare("copy", &y, 0, 0);
      gt_free(&x), gt_free(&y);
    }
  const struct {
    shape x;
    int64_t perm[KILN_MAX_DIMS];
  } cases[] = {{{3, {2, 3, 4}}, {2, 0, 1}},
               {{3, {2, 3, 4}}, {0, 2, 1}},
               {{2, {37, 65}}, {1, 0}},
               {{5, {1, 2, 3, 4, 5}}, {4, 2, 0, 3, 1}},
               {{8, {2, 1, 3, 1, 2, 2, 1, 3}}, {7, 0, 6, 1, 5, 2, 4, 3}},
               {{3, {5, 0, 3}}, {2, 1, 0}},
               {{4, {2, 1500, 6, 64}}, {0, 2, 1, 3}},
               {{1, {9}}, {0}},
               /* the last dim kept: 16-byte rows (the vector path) or not, per dtype */
               {{4, {3, 7, 5, 8}}, {2, 0, 1, 3}},
               {{5, {2, 1, 3, 4, 12}}, {3, 1, 0, 2, 4}},
               {{3, {4, 5, 4}}, {1, 0, 2}},
               {{4, {2, 20, 33, 64}}, {0, 2, 1, 3}}};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t c = 0; c < NELEM(cases); c++) {
      const shape *sx = &cases[c].x;
      int64_t yd[KILN_MAX_DIMS];
      for (int32_t i = 0; i < sx->rank; i++) yd[i] = sx->d[cases[c].perm[i]];
      gt_buf x = gt_new(gt_dtypes[d], sx->rank, sx->d), y = gt_new(gt_dtypes[d], sx->rank, yd);
      gt_random(&x, &r, -3, 3);
      gt_poison(&y);
      CHECK_OK(kiln_cpu_transpose(&x.h, cases[c].perm, &y.h));
      CHECK_OK(kiln_cuda_transpose(&x.d, cases[c].perm, &y.d, gt_stream_));
      label(what, sizeof what, "transpose", gt_dtypes[d], sx);
      gt_compare(what, &y, 0, 0);
      gt_free(&x), gt_free(&y);
    }
  {
    int64_t xd[2] = {2, 3}, yd[2] = {3, 2}, bad_perm[2] = {0, 0};
    gt_buf x = gt_new(KILN_DTYPE_FP32, 2, xd), y = gt_new(KILN_DTYPE_FP32, 2, yd);
    gt_poison(&y);
    CHECK_STATUS(kiln_cuda_transpose(&x.d, bad_perm, &y.d, gt_stream_), KILN_ERR_INVALID_ARG);
    CHECK(gt_dev_still_poisoned(&y));
    gt_free(&x), gt_free(&y);
  }
}

static void test_concat_slice(void) {
  check_rng r = {18};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (int32_t axis = 0; axis < 3; axis++) {
      kiln_dtype dt = gt_dtypes[d];
      int64_t base[3] = {2, 3, 4}, lens[4] = {3, 5, 0, 1}, total = 9;
      gt_buf xs[4];
      kiln_tensor hx[4], dx[4];
      for (int i = 0; i < 4; i++) {
        int64_t dd[3] = {base[0], base[1], base[2]};
        dd[axis] = lens[i];
        xs[i] = gt_new(dt, 3, dd);
        gt_random(&xs[i], &r, -3, 3);
        hx[i] = xs[i].h, dx[i] = xs[i].d;
      }
      int64_t yd[3] = {base[0], base[1], base[2]};
      yd[axis] = total;
      gt_buf y = gt_new(dt, 3, yd);
      gt_poison(&y);
      CHECK_OK(kiln_cpu_concat(4, hx, axis, &y.h));
      CHECK_OK(kiln_cuda_concat(4, dx, axis, &y.d, gt_stream_));
      snprintf(what, sizeof what, "concat %s axis %d", kiln_dtype_name(dt), (int)axis);
      gt_compare(what, &y, 0, 0);
      /* slices of the result, including an empty one and the whole axis */
      const int64_t ranges[4][2] = {{2, 7}, {0, 1}, {5, 5}, {0, 9}};
      for (int s = 0; s < 4; s++) {
        int64_t sd[3] = {yd[0], yd[1], yd[2]};
        sd[axis] = ranges[s][1] - ranges[s][0];
        gt_buf z = gt_new(dt, 3, sd);
        gt_poison(&z);
        CHECK_OK(kiln_cpu_slice(&y.h, axis, ranges[s][0], ranges[s][1], &z.h));
        CHECK_OK(kiln_cuda_slice(&y.d, axis, ranges[s][0], ranges[s][1], &z.d, gt_stream_));
        snprintf(what, sizeof what, "slice %s axis %d [%lld, %lld)", kiln_dtype_name(dt), (int)axis,
                 (long long)ranges[s][0], (long long)ranges[s][1]);
        gt_compare(what, &z, 0, 0);
        gt_free(&z);
      }
      for (int i = 0; i < 4; i++) gt_free(&xs[i]);
      gt_free(&y);
    }
  {
    int64_t xd[2] = {2, 3}, yd[2] = {2, 5};
    gt_buf x = gt_new(KILN_DTYPE_FP32, 2, xd), y = gt_new(KILN_DTYPE_FP32, 2, yd);
    gt_poison(&y);
    CHECK_STATUS(kiln_cuda_concat(1, &x.d, 1, &y.d, gt_stream_), KILN_ERR_SHAPE);
    CHECK_STATUS(kiln_cuda_slice(&x.d, 1, 2, 7, &y.d, gt_stream_), KILN_ERR_INVALID_ARG);
    CHECK(gt_dev_still_poisoned(&y));
    gt_free(&x), gt_free(&y);
  }
}

/* ---- attention ---------------------------------------------------------------------------- */

static void test_attention(void) {
  check_rng r = {19};
  const struct {
    int64_t b, h, sq, skv, d;
    int32_t causal;
  } cases[] = {{1, 1, 1, 1, 1, 0},    {2, 3, 5, 7, 16, 0},   {2, 3, 5, 7, 16, 1},
               {1, 4, 64, 64, 64, 1}, {1, 2, 33, 100, 80, 0}, {1, 1, 1, 448, 64, 1},
               {1, 2, 9, 9, 130, 1},  {0, 2, 4, 4, 8, 0},     {1, 2, 0, 5, 8, 1},
               {2, 1, 3, 3, 2048, 0}, {1, 6, 150, 150, 64, 0}, {1, 1, 40, 40, 31, 1}};
  char what[200];
  for (int d = 0; d < 3; d++)
    for (size_t c = 0; c < NELEM(cases); c++) {
      kiln_dtype dt = gt_dtypes[d];
      int64_t qd[4] = {cases[c].b, cases[c].h, cases[c].sq, cases[c].d};
      int64_t kd[4] = {cases[c].b, cases[c].h, cases[c].skv, cases[c].d};
      gt_buf q = gt_new(dt, 4, qd), k = gt_new(dt, 4, kd), v = gt_new(dt, 4, kd);
      gt_buf y = gt_new(dt, 4, qd);
      float scale = 1.0f / sqrtf((float)cases[c].d);
      gt_random(&q, &r, -2, 2), gt_random(&k, &r, -2, 2), gt_random(&v, &r, -1, 1);
      gt_poison(&y);
      CHECK_OK(kiln_cpu_attention(&q.h, &k.h, &v.h, scale, cases[c].causal, &y.h));
      CHECK_OK(kiln_cuda_attention(&q.d, &k.d, &v.d, scale, cases[c].causal, &y.d, gt_stream_));
      snprintf(what, sizeof what, "attention %s B=%lld H=%lld Sq=%lld Skv=%lld D=%lld causal=%d",
               kiln_dtype_name(dt), (long long)cases[c].b, (long long)cases[c].h,
               (long long)cases[c].sq, (long long)cases[c].skv, (long long)cases[c].d,
               (int)cases[c].causal);
      gt_compare(what, &y, gt_atol(dt) + 2e-5, gt_rtol(dt) + 1e-4);
      gt_free(&q), gt_free(&k), gt_free(&v), gt_free(&y);
    }
}

int main(void) {
  cudaStream_t stream;
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  GT_REQUIRE(kiln_cuda_ctx_create(0, &ctx));
  if (cudaStreamCreate(&stream) != cudaSuccess) GT_DIE("cudaStreamCreate failed");
  gt_stream_ = stream;
  test_binary();
  test_activation();
  test_layernorm();
  test_softmax();
  test_embedding();
  test_conv1d();
  test_copy_transpose();
  test_concat_slice();
  test_attention();
  cudaStreamDestroy(stream);
  kiln_cuda_ctx_destroy(ctx);
  return check_report();
}
