/* tests/cpu/test_cpu_layout.c - the CPU backend's copy (reshape), transpose, concat, slice,
 * embedding and element load/store, against index arithmetic written here; int32 and float
 * dtypes, zero-size dims, and error paths (status, outputs left untouched).
 */
#include <math.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "cpu_test_util.h"

/* Row-major offset of a multi-index. */
static int64_t offset_of(const int64_t *idx, const kiln_dims *d) {
  int64_t off = 0;
  for (int32_t i = 0; i < d->rank; i++) off = off * d->d[i] + idx[i];
  return off;
}

/* Advance a row-major multi-index; returns 0 after the last one. */
static int next_index(int64_t *idx, const kiln_dims *d) {
  for (int32_t i = d->rank - 1; i >= 0; i--) {
    if (++idx[i] < d->d[i]) return 1;
    idx[i] = 0;
  }
  return 0;
}

static void test_copy(check_rng *r) {
  int64_t xd[] = {2, 3, 4}, yd[] = {6, 4}, yd_bad[] = {5, 4}, zd[] = {0, 7}, zd2[] = {7, 0};
  for (int dt = 0; dt < 3; dt++)
    for (int dt2 = 0; dt2 < 3; dt2++) {
      ttensor x = tt_rand(r, tt_float_dtypes[dt], 3, xd, -3, 3), y = tt_alloc(tt_float_dtypes[dt2], 2, yd);
      double want[24];
      for (int i = 0; i < 24; i++) want[i] = x.val[i];
      CHECK_OK(kiln_cpu_copy(&x.t, &y.t));
      tt_check("copy", &y, want, 0.0);
      if (dt == dt2) CHECK(memcmp(x.t.data, y.t.data, x.bytes) == 0);
      tt_free(&x), tt_free(&y);
    }
  ttensor xi = tt_rand(r, KILN_DTYPE_INT32, 3, xd, -1000, 1000), yi = tt_alloc(KILN_DTYPE_INT32, 2, yd);
  CHECK_OK(kiln_cpu_copy(&xi.t, &yi.t));
  CHECK(memcmp(xi.t.data, yi.t.data, xi.bytes) == 0);
  ttensor yf = tt_alloc(KILN_DTYPE_FP32, 2, yd), yb = tt_alloc(KILN_DTYPE_INT32, 2, yd_bad);
  CHECK_STATUS(kiln_cpu_copy(&xi.t, &yf.t), KILN_ERR_UNSUPPORTED); /* int32 -> fp32: no */
  CHECK_STATUS(kiln_cpu_copy(&xi.t, &yb.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&yf));
  CHECK(tt_untouched(&yb));
  /* in place (reshape of a buffer onto itself) */
  kiln_dims flat = {1, {24}};
  kiln_tensor alias = kiln_tensor_contiguous(xi.t.data, KILN_DTYPE_INT32, &flat);
  CHECK_OK(kiln_cpu_copy(&xi.t, &alias));
  CHECK(memcmp(xi.t.data, yi.t.data, xi.bytes) == 0);
  ttensor z = tt_alloc(KILN_DTYPE_FP32, 2, zd), z2 = tt_alloc(KILN_DTYPE_FP16, 2, zd2);
  kiln_tensor z_null = z.t;
  z_null.data = NULL; /* zero-size: the data pointer is never touched */
  CHECK_OK(kiln_cpu_copy(&z_null, &z2.t));
  tt_free(&xi), tt_free(&yi), tt_free(&yf), tt_free(&yb), tt_free(&z), tt_free(&z2);
}

static void transpose_case(check_rng *r, kiln_dtype dt, int32_t rank, const int64_t *xd,
                           const int64_t *perm) {
  int64_t yd[KILN_MAX_DIMS];
  for (int32_t i = 0; i < rank; i++) yd[i] = xd[perm[i]];
  ttensor x = tt_rand(r, dt, rank, xd, -100, 100), y = tt_alloc(dt, rank, yd);
  double *want = (double *)tt_xmalloc((size_t)(y.n + 1) * sizeof(double));
  int64_t idx[KILN_MAX_DIMS] = {0}, xidx[KILN_MAX_DIMS];
  if (y.n > 0) do {
      for (int32_t i = 0; i < rank; i++) xidx[perm[i]] = idx[i];
      want[offset_of(idx, &y.t.shape)] = x.val[offset_of(xidx, &x.t.shape)];
    } while (next_index(idx, &y.t.shape));
  char what[64];
  snprintf(what, sizeof what, "transpose rank %d %s", (int)rank, kiln_dtype_name(dt));
  CHECK_OK(kiln_cpu_transpose(&x.t, perm, &y.t));
  tt_check(what, &y, want, 0.0);
  free(want);
  tt_free(&x), tt_free(&y);
}

static void test_transpose(check_rng *r) {
  int64_t d2[] = {3, 5}, p2[] = {1, 0};
  int64_t d3[] = {2, 3, 4}, p3[][3] = {{0, 2, 1}, {2, 0, 1}, {1, 2, 0}, {0, 1, 2}};
  int64_t d4[] = {2, 5, 3, 4}, p4[] = {0, 2, 1, 3}; /* [B, S, H, D] -> [B, H, S, D] */
  int64_t dz[] = {2, 0, 3}, d1[] = {1, 7, 1};
  kiln_dtype all[] = {KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_BF16, KILN_DTYPE_INT32};
  for (int dt = 0; dt < 4; dt++) {
    transpose_case(r, all[dt], 2, d2, p2);
    for (int p = 0; p < 4; p++) transpose_case(r, all[dt], 3, d3, p3[p]);
    transpose_case(r, all[dt], 4, d4, p4);
    transpose_case(r, all[dt], 3, dz, p3[1]);
    transpose_case(r, all[dt], 3, d1, p3[2]);
  }
  int64_t bad_perm[] = {0, 0, 1}, out_of_range[] = {0, 1, 3}, yd_bad[] = {2, 3, 4};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 3, d3, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 3, yd_bad);
  CHECK_STATUS(kiln_cpu_transpose(&x.t, bad_perm, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_transpose(&x.t, out_of_range, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_transpose(&x.t, p3[1], &y.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&y));
  tt_free(&x), tt_free(&y);
}

static void concat_case(check_rng *r, kiln_dtype dt, int32_t n, const int64_t *sizes, int32_t axis) {
  int64_t base[] = {2, 3, 4};
  int32_t ax = axis < 0 ? axis + 3 : axis;
  ttensor xs[4];
  kiln_tensor views[4];
  int64_t yd[] = {2, 3, 4};
  yd[ax] = 0;
  for (int32_t i = 0; i < n; i++) {
    int64_t d[] = {2, 3, 4};
    d[ax] = sizes[i];
    yd[ax] += sizes[i];
    xs[i] = tt_rand(r, dt, 3, d, -9, 9);
    views[i] = xs[i].t;
  }
  (void)base;
  ttensor y = tt_alloc(dt, 3, yd);
  double *want = (double *)tt_xmalloc((size_t)(y.n + 1) * sizeof(double));
  int64_t idx[3] = {0, 0, 0};
  if (y.n > 0) do {
      int64_t j = idx[ax], i = 0;
      while (j >= sizes[i]) j -= sizes[i++];
      int64_t xi[3] = {idx[0], idx[1], idx[2]};
      xi[ax] = j;
      want[offset_of(idx, &y.t.shape)] = xs[i].val[offset_of(xi, &xs[i].t.shape)];
    } while (next_index(idx, &y.t.shape));
  char what[64];
  snprintf(what, sizeof what, "concat n %d axis %d %s", (int)n, (int)axis, kiln_dtype_name(dt));
  CHECK_OK(kiln_cpu_concat(n, views, axis, &y.t));
  tt_check(what, &y, want, 0.0);
  free(want);
  for (int32_t i = 0; i < n; i++) tt_free(&xs[i]);
  tt_free(&y);
}

static void test_concat(check_rng *r) {
  int64_t sizes[][3] = {{1, 2, 3}, {5, 0, 1}, {0, 0, 0}};
  kiln_dtype all[] = {KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_BF16, KILN_DTYPE_INT32};
  for (int dt = 0; dt < 4; dt++)
    for (int32_t axis = -1; axis < 3; axis++)
      for (int s = 0; s < 3; s++)
        for (int32_t n = 1; n <= 3; n++) concat_case(r, all[dt], n, sizes[s], axis);
  int64_t a[] = {2, 3}, b[] = {2, 4}, yd[] = {2, 7};
  ttensor x0 = tt_rand(r, KILN_DTYPE_FP32, 2, a, -1, 1), x1 = tt_rand(r, KILN_DTYPE_FP32, 2, b, -1, 1);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 2, yd);
  kiln_tensor v[] = {x0.t, x1.t};
  CHECK_STATUS(kiln_cpu_concat(2, v, 0, &y.t), KILN_ERR_SHAPE); /* dim 1 differs */
  CHECK_STATUS(kiln_cpu_concat(2, v, 2, &y.t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cpu_concat(0, v, 1, &y.t), KILN_ERR_INVALID_ARG);
  v[1] = x0.t;
  CHECK_STATUS(kiln_cpu_concat(2, v, 1, &y.t), KILN_ERR_SHAPE); /* y [2, 7] vs [2, 6] */
  CHECK(tt_untouched(&y));
  v[1] = x1.t;
  CHECK_OK(kiln_cpu_concat(2, v, 1, &y.t));
  tt_free(&x0), tt_free(&x1), tt_free(&y);
}

static void slice_case(check_rng *r, kiln_dtype dt, int32_t axis, int64_t start, int64_t end) {
  int64_t xd[] = {3, 5, 4}, yd[] = {3, 5, 4};
  int32_t ax = axis < 0 ? axis + 3 : axis;
  yd[ax] = end - start;
  ttensor x = tt_rand(r, dt, 3, xd, -9, 9), y = tt_alloc(dt, 3, yd);
  double *want = (double *)tt_xmalloc((size_t)(y.n + 1) * sizeof(double));
  int64_t idx[3] = {0, 0, 0};
  if (y.n > 0) do {
      int64_t xi[3] = {idx[0], idx[1], idx[2]};
      xi[ax] += start;
      want[offset_of(idx, &y.t.shape)] = x.val[offset_of(xi, &x.t.shape)];
    } while (next_index(idx, &y.t.shape));
  char what[80];
  snprintf(what, sizeof what, "slice axis %d [%lld, %lld) %s", (int)axis, (long long)start,
           (long long)end, kiln_dtype_name(dt));
  CHECK_OK(kiln_cpu_slice(&x.t, axis, start, end, &y.t));
  tt_check(what, &y, want, 0.0);
  free(want);
  tt_free(&x), tt_free(&y);
}

static void test_slice(check_rng *r) {
  kiln_dtype all[] = {KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_BF16, KILN_DTYPE_INT32};
  for (int dt = 0; dt < 4; dt++)
    for (int32_t axis = -1; axis < 3; axis++) {
      slice_case(r, all[dt], axis, 0, 3);
      slice_case(r, all[dt], axis, 1, 2);
      slice_case(r, all[dt], axis, 2, 2);
      slice_case(r, all[dt], axis, 0, 1);
    }
  slice_case(r, KILN_DTYPE_FP32, 1, 1, 5);
  int64_t xd[] = {3, 5}, yd[] = {3, 2};
  ttensor x = tt_rand(r, KILN_DTYPE_FP32, 2, xd, -1, 1), y = tt_alloc(KILN_DTYPE_FP32, 2, yd);
  CHECK_STATUS(kiln_cpu_slice(&x.t, 1, 4, 6, &y.t), KILN_ERR_INVALID_ARG); /* end > dim */
  CHECK_STATUS(kiln_cpu_slice(&x.t, 1, 3, 1, &y.t), KILN_ERR_INVALID_ARG); /* start > end */
  CHECK_STATUS(kiln_cpu_slice(&x.t, 2, 0, 2, &y.t), KILN_ERR_INVALID_ARG); /* axis */
  CHECK_STATUS(kiln_cpu_slice(&x.t, 1, 0, 3, &y.t), KILN_ERR_SHAPE);
  CHECK(tt_untouched(&y));
  tt_free(&x), tt_free(&y);
}

static void embedding_case(check_rng *r, kiln_dtype dt, int64_t v, int64_t n, int32_t id_rank,
                           const int64_t *id_dims) {
  int64_t td[] = {v, n}, yd[KILN_MAX_DIMS];
  for (int32_t i = 0; i < id_rank; i++) yd[i] = id_dims[i];
  yd[id_rank] = n;
  ttensor t = tt_rand(r, dt, 2, td, -1, 1), ids = tt_alloc(KILN_DTYPE_INT32, id_rank, id_dims);
  for (int64_t i = 0; i < ids.n; i++) tt_set(&ids, i, (float)(int64_t)check_uniform(r, 0, (float)v));
  ttensor y = tt_alloc(dt, id_rank + 1, yd);
  double *want = (double *)tt_xmalloc((size_t)(y.n + 1) * sizeof(double));
  for (int64_t i = 0; i < ids.n; i++)
    for (int64_t j = 0; j < n; j++) want[i * n + j] = t.val[(int64_t)ids.val[i] * n + j];
  char what[64];
  snprintf(what, sizeof what, "embedding V %lld N %lld %s", (long long)v, (long long)n,
           kiln_dtype_name(dt));
  CHECK_OK(kiln_cpu_embedding(&t.t, &ids.t, &y.t));
  tt_check(what, &y, want, 0.0);
  free(want);
  tt_free(&t), tt_free(&ids), tt_free(&y);
}

static void test_embedding(check_rng *r) {
  int64_t ids2[] = {2, 5}, ids1[] = {7}, ids0[] = {0}, idsz[] = {3, 0};
  for (int dt = 0; dt < 3; dt++) {
    embedding_case(r, tt_float_dtypes[dt], 11, 8, 2, ids2);
    embedding_case(r, tt_float_dtypes[dt], 1, 3, 1, ids1);
    embedding_case(r, tt_float_dtypes[dt], 5, 4, 1, ids0);
    embedding_case(r, tt_float_dtypes[dt], 5, 4, 2, idsz);
    embedding_case(r, tt_float_dtypes[dt], 5, 0, 1, ids1);
    embedding_case(r, tt_float_dtypes[dt], 6, 2, 0, NULL); /* a scalar id */
  }
  int64_t td[] = {4, 3}, idd[] = {2, 3}, yd[] = {2, 3, 3}, yd_bad[] = {2, 3, 4};
  ttensor t = tt_rand(r, KILN_DTYPE_FP32, 2, td, -1, 1), ids = tt_alloc(KILN_DTYPE_INT32, 2, idd);
  ttensor y = tt_alloc(KILN_DTYPE_FP32, 3, yd), yb = tt_alloc(KILN_DTYPE_FP32, 3, yd_bad);
  int32_t good[] = {0, 1, 2, 3, 2, 1};
  for (int i = 0; i < 6; i++) tt_set(&ids, i, (float)good[i]);
  CHECK_STATUS(kiln_cpu_embedding(&t.t, &ids.t, &yb.t), KILN_ERR_SHAPE);
  tt_set(&ids, 4, 4.0f); /* == V: out of range, after valid ids that must not be written */
  CHECK_STATUS(kiln_cpu_embedding(&t.t, &ids.t, &y.t), KILN_ERR_INVALID_ARG);
  CHECK(strstr(kiln_last_error(), "id 4") != NULL);
  CHECK(strstr(kiln_last_error(), "V = 4") != NULL);
  tt_set(&ids, 4, -1.0f);
  CHECK_STATUS(kiln_cpu_embedding(&t.t, &ids.t, &y.t), KILN_ERR_INVALID_ARG);
  CHECK(strstr(kiln_last_error(), "id -1") != NULL);
  CHECK(tt_untouched(&y));
  CHECK(tt_untouched(&yb));
  ttensor idf = tt_alloc(KILN_DTYPE_FP32, 2, idd);
  CHECK_STATUS(kiln_cpu_embedding(&t.t, &idf.t, &y.t), KILN_ERR_UNSUPPORTED);
  CHECK(tt_untouched(&y));
  tt_free(&t), tt_free(&ids), tt_free(&y), tt_free(&yb), tt_free(&idf);
}

static void test_load_store(void) {
  float f32[2];
  uint16_t h[2];
  int32_t i32[2];
  int8_t i8[2];
  kiln_cpu_store(f32, KILN_DTYPE_FP32, 1, 1.25f);
  CHECK(kiln_cpu_load(f32, KILN_DTYPE_FP32, 1) == 1.25f);
  kiln_cpu_store(h, KILN_DTYPE_FP16, 1, 1.0f / 3.0f);
  CHECK(h[1] == 0x3555); /* 1/3 in fp16 */
  CHECK_NEAR(kiln_cpu_load(h, KILN_DTYPE_FP16, 1), 0.333251953125, 0);
  kiln_cpu_store(h, KILN_DTYPE_BF16, 0, 1.0f / 3.0f);
  CHECK(h[0] == 0x3eab); /* 1/3 in bf16 */
  CHECK_NEAR(kiln_cpu_load(h, KILN_DTYPE_BF16, 0), 0.333984375, 0);
  kiln_cpu_store(i32, KILN_DTYPE_INT32, 0, -7.0f);
  CHECK_EQ_INT(i32[0], -7);
  CHECK(kiln_cpu_load(i32, KILN_DTYPE_INT32, 0) == -7.0f);
  kiln_cpu_store(i8, KILN_DTYPE_INT8, 1, 300.0f); /* saturates */
  CHECK_EQ_INT(i8[1], 127);
  CHECK(isnan(kiln_cpu_load(h, KILN_DTYPE_INT4, 0)));
}

int main(void) {
  check_rng r = {0x0ddba11cafef00dull};
  test_copy(&r);
  test_transpose(&r);
  test_concat(&r);
  test_slice(&r);
  test_embedding(&r);
  test_load_store();
  return check_report();
}
