/* tests/gpu/gpu_test_util.h - helpers shared by the GPU tests: tensors that live on the host
 * and the device at once (random fill, NaN poison, download as floats), per-dtype tolerances.
 * Test code: failures to set up (allocation, copies) abort; the checks themselves use check.h.
 * Not a test itself (no test_ prefix, so CMake does not build it alone).
 */
#ifndef KILN_GPU_TEST_UTIL_H
#define KILN_GPU_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_ops.h"
#include "check.h"
#include "kiln/dtype.h"

#define GT_DIE(...)                   \
  do {                                \
    fprintf(stderr, "fatal: ");       \
    fprintf(stderr, __VA_ARGS__);     \
    fprintf(stderr, "\n");            \
    abort();                          \
  } while (0)

#define GT_REQUIRE(expr)                                                            \
  do {                                                                              \
    kiln_status gt_s_ = (expr);                                                     \
    if (gt_s_ != KILN_OK) GT_DIE("%s:%d: %s: %s", __FILE__, __LINE__, #expr, kiln_last_error()); \
  } while (0)

/* A tensor with a host copy (h) and a device copy (d) of the same shape and dtype. */
typedef struct gt_buf {
  kiln_dtype dtype;
  kiln_dims dims;
  int64_t n;
  size_t bytes;
  void *host;
  void *dev;
  kiln_tensor h, d;
} gt_buf;

static void *gt_stream_ = NULL; /* the stream every test launches on (set by the test) */

static inline gt_buf gt_new(kiln_dtype dtype, int32_t rank, const int64_t *d) {
  gt_buf b;
  memset(&b, 0, sizeof b);
  b.dtype = dtype;
  b.dims.rank = rank;
  for (int32_t i = 0; i < rank; i++) b.dims.d[i] = d[i];
  b.n = kiln_dims_count(&b.dims);
  b.bytes = kiln_dtype_bytes(dtype, b.n);
  b.host = malloc(b.bytes ? b.bytes : 16);
  if (!b.host) GT_DIE("out of host memory");
  GT_REQUIRE(kiln_cuda_malloc(&b.dev, b.bytes ? b.bytes : 16));
  b.h = kiln_tensor_contiguous(b.host, dtype, &b.dims);
  b.d = kiln_tensor_contiguous(b.dev, dtype, &b.dims);
  return b;
}

static inline void gt_upload(gt_buf *b) {
  GT_REQUIRE(kiln_cuda_memcpy_h2d(b->dev, b->host, b->bytes, gt_stream_));
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
}

/* Uniform random values in [lo, hi), rounded to the dtype, on host and device. */
static inline void gt_random(gt_buf *b, check_rng *r, float lo, float hi) {
  float *f = malloc(sizeof(float) * (size_t)(b->n ? b->n : 1));
  if (!f) GT_DIE("out of host memory");
  check_fill(r, f, b->n, lo, hi);
  if (b->dtype == KILN_DTYPE_INT32) {
    for (int64_t i = 0; i < b->n; i++) ((int32_t *)b->host)[i] = (int32_t)f[i];
  } else if (kiln_convert_floats(b->host, b->dtype, f, KILN_DTYPE_FP32, b->n) != 0) {
    GT_DIE("cannot convert to %s", kiln_dtype_name(b->dtype));
  }
  free(f);
  gt_upload(b);
}

/* All bytes 0xFF on host and device: NaN in fp32, fp16 and bf16, so unwritten outputs show. */
/* NaN bytes on the device only: the host copy may hold the CPU reference. */
static inline void gt_poison_device(gt_buf *b) {
  GT_REQUIRE(kiln_cuda_memset(b->dev, 0xFF, b->bytes ? b->bytes : 16, gt_stream_));
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
}

static inline void gt_poison(gt_buf *b) {
  memset(b->host, 0xFF, b->bytes ? b->bytes : 16);
  GT_REQUIRE(kiln_cuda_memset(b->dev, 0xFF, b->bytes ? b->bytes : 16, gt_stream_));
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
}

static inline float *gt_floats_from(const void *data, kiln_dtype dtype, int64_t n) {
  float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (!f) GT_DIE("out of host memory");
  if (kiln_convert_floats(f, KILN_DTYPE_FP32, data, dtype, n) != 0) GT_DIE("bad dtype");
  return f;
}

/* The device copy, synchronized and converted to fp32 (caller frees). */
static inline float *gt_dev_floats(const gt_buf *b) {
  void *tmp = malloc(b->bytes ? b->bytes : 16);
  if (!tmp) GT_DIE("out of host memory");
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
  GT_REQUIRE(kiln_cuda_memcpy_d2h(tmp, b->dev, b->bytes, gt_stream_));
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
  float *f = gt_floats_from(tmp, b->dtype, b->n);
  free(tmp);
  return f;
}

static inline float *gt_host_floats(const gt_buf *b) { return gt_floats_from(b->host, b->dtype, b->n); }

/* 1 when every device byte still has the poison value (an op that failed left it untouched). */
static inline int gt_dev_still_poisoned(const gt_buf *b) {
  unsigned char *tmp = malloc(b->bytes ? b->bytes : 16);
  int ok = 1;
  if (!tmp) GT_DIE("out of host memory");
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
  GT_REQUIRE(kiln_cuda_memcpy_d2h(tmp, b->dev, b->bytes, gt_stream_));
  GT_REQUIRE(kiln_cuda_stream_sync(gt_stream_));
  for (size_t i = 0; i < b->bytes; i++) ok &= tmp[i] == 0xFF;
  free(tmp);
  return ok;
}

static inline void gt_free(gt_buf *b) {
  free(b->host);
  kiln_cuda_free(b->dev);
  memset(b, 0, sizeof *b);
}

/* Device result against the host (CPU oracle) result of the same buffer. */
static inline int gt_compare(const char *what, const gt_buf *out, double atol, double rtol) {
  float *got = gt_dev_floats(out), *want = gt_host_floats(out);
  int ok = check_close(what, got, want, out->n, atol, rtol);
  free(got);
  free(want);
  return ok;
}

/* Tolerances for results rounded to `dtype` (one rounding step apart at most). */
static inline double gt_atol(kiln_dtype dtype) {
  return dtype == KILN_DTYPE_FP32 ? 1e-5 : dtype == KILN_DTYPE_FP16 ? 1e-3 : 8e-3;
}
static inline double gt_rtol(kiln_dtype dtype) {
  return dtype == KILN_DTYPE_FP32 ? 1e-4 : dtype == KILN_DTYPE_FP16 ? 2.5e-3 : 1.6e-2;
}

static inline double gt_rms(const float *v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
  return n ? sqrt(s / (double)n) : 0;
}

/* A matmul-like result (a long fp32 sum of rounded operands) against the CPU one: beyond the
 * output's rounding, a few ulps of rounded operands (group-scaled weights, a normalized x) over
 * a K-long sum, relative to the output's rms; and a bound on the nmse. Updates *worst_nmse. */
static inline int gt_compare_sum(const char *what, const gt_buf *y, double *worst_nmse) {
  kiln_dtype dt = y->dtype;
  float *got = gt_dev_floats(y), *want = gt_host_floats(y);
  double c = dt == KILN_DTYPE_BF16 ? 5e-2 : dt == KILN_DTYPE_FP16 ? 6e-3 : 1e-4;
  double max_nmse = dt == KILN_DTYPE_BF16 ? 3e-4 : dt == KILN_DTYPE_FP16 ? 8e-6 : 1e-9;
  double r = gt_rms(want, y->n), e = check_nmse_value(got, want, y->n);
  int ok = check_close(what, got, want, y->n, gt_atol(dt) + c * r, gt_rtol(dt));
  CHECK_NMSE(what, got, want, y->n, max_nmse);
  if (e > *worst_nmse) *worst_nmse = e;
  free(got), free(want);
  return ok && e <= max_nmse;
}

static const kiln_dtype gt_dtypes[3] = {KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_BF16};

#endif /* KILN_GPU_TEST_UTIL_H */
