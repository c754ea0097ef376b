/* tests/cpu/cpu_test_util.h - host tensors for the CPU backend tests.
 *
 * A ttensor owns a contiguous buffer in some dtype and `val`, the fp32 values it holds: for a
 * random input, exactly what the op will read (after rounding to fp16/bf16), so references see
 * the same inputs; for an output, what tt_read() last read back. Outputs start poisoned (every
 * byte TT_POISON) so error paths can check that nothing was written. Test-only; aborts on OOM.
 */
#ifndef KILN_TESTS_CPU_TEST_UTIL_H
#define KILN_TESTS_CPU_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/dtype.h"
#include "kiln/network.h"

#define TT_POISON 0xA5

typedef struct ttensor {
  kiln_tensor t;
  float *val; /* [n] */
  int64_t n;
  size_t bytes;
} ttensor;

static inline void *tt_xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
    abort();
  }
  return p;
}

static inline kiln_dims tt_dims(int32_t rank, const int64_t *d) {
  kiln_dims dims;
  memset(&dims, 0, sizeof dims);
  dims.rank = rank;
  for (int32_t i = 0; i < rank; i++) dims.d[i] = d[i];
  return dims;
}

/* A poisoned tensor of the given shape. */
static inline ttensor tt_alloc(kiln_dtype dtype, int32_t rank, const int64_t *d) {
  ttensor x;
  kiln_dims dims = tt_dims(rank, d);
  x.n = kiln_dims_count(&dims);
  x.bytes = kiln_dtype_bytes(dtype, x.n);
  x.t = kiln_tensor_contiguous(tt_xmalloc(x.bytes), dtype, &dims);
  memset(x.t.data, TT_POISON, x.bytes);
  x.val = (float *)tt_xmalloc((size_t)x.n * sizeof(float));
  for (int64_t i = 0; i < x.n; i++) x.val[i] = NAN;
  return x;
}

static inline float tt_load(const ttensor *x, int64_t i) {
  switch (x->t.dtype) {
    case KILN_DTYPE_FP32: return ((const float *)x->t.data)[i];
    case KILN_DTYPE_FP16: return kiln_fp16_to_fp32(((const uint16_t *)x->t.data)[i]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_fp32(((const uint16_t *)x->t.data)[i]);
    case KILN_DTYPE_INT32: return (float)((const int32_t *)x->t.data)[i];
    default: abort();
  }
}

static inline void tt_set(ttensor *x, int64_t i, float v) {
  switch (x->t.dtype) {
    case KILN_DTYPE_FP32: ((float *)x->t.data)[i] = v; break;
    case KILN_DTYPE_FP16: ((uint16_t *)x->t.data)[i] = kiln_fp32_to_fp16(v); break;
    case KILN_DTYPE_BF16: ((uint16_t *)x->t.data)[i] = kiln_fp32_to_bf16(v); break;
    case KILN_DTYPE_INT32: ((int32_t *)x->t.data)[i] = (int32_t)v; break;
    default: abort();
  }
  x->val[i] = tt_load(x, i);
}

/* Refresh val from the buffer (after an op wrote it). */
static inline void tt_read(ttensor *x) {
  for (int64_t i = 0; i < x->n; i++) x->val[i] = tt_load(x, i);
}

/* Uniform random values in [lo, hi), rounded to the dtype. */
static inline ttensor tt_rand(check_rng *r, kiln_dtype dtype, int32_t rank, const int64_t *d, float lo,
                       float hi) {
  ttensor x = tt_alloc(dtype, rank, d);
  float *tmp = (float *)tt_xmalloc((size_t)x.n * sizeof(float));
  check_fill(r, tmp, x.n, lo, hi);
  for (int64_t i = 0; i < x.n; i++) tt_set(&x, i, tmp[i]);
  free(tmp);
  return x;
}

/* 1 when every byte is still the poison. */
static inline int tt_untouched(const ttensor *x) {
  const unsigned char *p = (const unsigned char *)x->t.data;
  for (size_t i = 0; i < x->bytes; i++)
    if (p[i] != TT_POISON) return 0;
  return 1;
}

static inline void tt_free(ttensor *x) {
  free(x->t.data);
  free(x->val);
  x->t.data = NULL;
  x->val = NULL;
}

/* Element tolerance for an output of `dtype`: its rounding (half an ulp relative) plus slack
 * for fp32 arithmetic. */
static inline double tt_rtol(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_DTYPE_FP16: return 1e-3;
    case KILN_DTYPE_BF16: return 5e-3;
    default: return 2e-5;
  }
}

/* Compare an op's output with a double reference: |got - want| <= atol + rtol |want|, with
 * atol = rtol * scale (scale: the typical magnitude of the terms that were summed). */
static inline int tt_check(const char *what, ttensor *y, const double *want, double scale) {
  float *w = (float *)tt_xmalloc((size_t)y->n * sizeof(float));
  for (int64_t i = 0; i < y->n; i++) w[i] = (float)want[i];
  tt_read(y);
  double rtol = tt_rtol(y->t.dtype);
  int ok = check_close(what, y->val, w, y->n, rtol * scale, rtol);
  free(w);
  return ok;
}

/* The fused activations in double precision (GELU in its erf form), for references. */
static inline double tt_ref_act(double x, kiln_activation act) {
  switch (act) {
    case KILN_ACTIVATION_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case KILN_ACTIVATION_RELU: return x > 0 ? x : 0;
    case KILN_ACTIVATION_SILU: return x / (1.0 + exp(-x));
    default: return x;
  }
}

static const kiln_dtype tt_float_dtypes[3] = {KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_BF16};

#endif /* KILN_TESTS_CPU_TEST_UTIL_H */
