/* src/core/quant.c - symmetric int8 / int4 weight quantization and dequantization on the host
 * (format in quant.h). Plain loops: run once per weight at build time, or per call by the CPU
 * backend's reference matmul. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/quant.h"

int64_t kiln_quant_scale_count(int64_t n, int64_t k, int32_t group) {
  return group > 0 ? n * (k / group) : n;
}

kiln_status kiln_quant_check(kiln_dtype qdtype, int64_t n, int64_t k, int32_t group) {
  if (qdtype != KILN_DTYPE_INT8 && qdtype != KILN_DTYPE_INT4)
    return kiln_error(KILN_ERR_UNSUPPORTED, "quantized weights are int8 or int4, not %s",
                      kiln_dtype_name(qdtype));
  if (n < 0 || k < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "quantized weights [%lld, %lld] have a negative dim",
                      (long long)n, (long long)k);
  if (group < 0 || (group > 0 && k % group != 0))
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "quantization group %d does not divide K = %lld; use 0 (one scale per row) "
                      "or a divisor of K",
                      (int)group, (long long)k);
  return KILN_OK;
}

static void put_code(void *q, kiln_dtype qdtype, int64_t i, int32_t code) {
  if (qdtype == KILN_DTYPE_INT8) {
    ((int8_t *)q)[i] = (int8_t)code;
    return;
  }
  uint8_t *b = (uint8_t *)q + i / 2;
  uint8_t nib = (uint8_t)(code & 0xf);
  *b = (i % 2) ? (uint8_t)((*b & 0x0f) | (nib << 4)) : (uint8_t)((*b & 0xf0) | nib);
}

int32_t kiln_quant_code(const void *q, kiln_dtype qdtype, int64_t i) {
  if (qdtype == KILN_DTYPE_INT8) return ((const int8_t *)q)[i];
  uint8_t b = ((const uint8_t *)q)[i / 2];
  int32_t nib = (i % 2) ? (b >> 4) : (b & 0xf);
  return nib >= 8 ? nib - 16 : nib; /* two's complement nibble */
}

/* Codes c[n] of w[n] at scale s != 0 (w / s rounded half away from zero, clamped to [lo, hi]);
 * returns sum (w - c s)^2 with c s rounded to fp32 as kiln_dequantize_rows computes it. */
static double codes_at(const float *w, int64_t n, float s, int32_t lo, int32_t hi, int8_t *c) {
  double err = 0;
  for (int64_t j = 0; j < n; j++) {
    float x = roundf(w[j] / s);
    c[j] = (int8_t)(x < (float)lo ? lo : x > (float)hi ? hi : (int32_t)x);
    double d = (double)w[j] - (double)((float)c[j] * s);
    err += d * d;
  }
  return err;
}

/* One span (a row or a group) of finite w[n] whose largest magnitude is amax > 0, first reached
 * by the element ext: codes c[n] in [lo, hi] = [-(hi + 1), hi] and the scale *s of the candidate
 * with the smaller squared error, the first on a tie (tmp[n] is scratch). Both candidates give
 * ext exactly: s = -ext / (hi + 1) puts it at code lo, a step of amax / 8 for int4; s = amax / hi
 * (round-to-nearest) at +-hi, a step of amax / 7. */
static void quantize_span(const float *w, int64_t n, float amax, float ext, int32_t lo, int32_t hi, int8_t *c,
                          int8_t *tmp, float *s) {
  float s_full = -ext / (float)(hi + 1), s_rtn = amax / (float)hi;
  if (!(s_rtn > 0.0f)) { /* amax / hi underflows: zeros, as round-to-nearest with s = 0 */
    memset(c, 0, (size_t)n);
    *s = 0.0f;
    return;
  }
  double e_full = s_full != 0.0f ? codes_at(w, n, s_full, lo, hi, c) : INFINITY;
  double e_rtn = codes_at(w, n, s_rtn, lo, hi, tmp);
  *s = s_full;
  if (e_rtn < e_full) {
    *s = s_rtn;
    memcpy(c, tmp, (size_t)n);
  }
}

kiln_status kiln_quantize(const float *w, int64_t n, int64_t k, kiln_dtype qdtype, int32_t group,
                          void *q, float *scales) {
  KILN_TRY(kiln_quant_check(qdtype, n, k, group));
  const int32_t hi = qdtype == KILN_DTYPE_INT8 ? 127 : 7, lo = -hi - 1;
  const int64_t span = group > 0 ? group : k; /* elements per scale */
  int8_t *c = malloc(2 * (size_t)(span > 0 ? span : 1));
  if (!c) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory quantizing a [%lld, %lld] matrix", (long long)n, (long long)k);
  memset(q, 0, kiln_dtype_bytes(qdtype, n * k)); /* int4 bytes are filled nibble by nibble */
  if (k == 0 && group == 0)
    for (int64_t r = 0; r < n; r++) scales[r] = 0.0f; /* empty rows still have their scale */
  for (int64_t r = 0; r < n; r++)
    for (int64_t k0 = 0; k0 < k; k0 += span) {
      const float *row = w + r * k + k0;
      float amax = 0.0f, ext = 0.0f;
      for (int64_t j = 0; j < span; j++) {
        if (!isfinite(row[j])) {
          free(c);
          return kiln_error(KILN_ERR_INVALID_ARG,
                            "weight element [%lld, %lld] is %g; only finite weights can be "
                            "quantized",
                            (long long)r, (long long)(k0 + j), (double)row[j]);
        }
        float a = fabsf(row[j]);
        if (a > amax) amax = a, ext = row[j];
      }
      float s = 0.0f;
      if (amax > 0.0f) quantize_span(row, span, amax, ext, lo, hi, c, c + span, &s);
      else memset(c, 0, (size_t)span);
      scales[group > 0 ? r * (k / group) + k0 / group : r] = s;
      for (int64_t j = 0; j < span; j++) put_code(q, qdtype, r * k + k0 + j, c[j]);
    }
  free(c);
  return KILN_OK;
}

void kiln_dequantize_rows(const void *q, kiln_dtype qdtype, const float *scales, int32_t group,
                          int64_t k, int64_t row0, int64_t rows, float *out) {
  for (int64_t r = 0; r < rows; r++) {
    int64_t n = row0 + r;
    for (int64_t j = 0; j < k; j++) {
      float s = scales[group > 0 ? n * (k / group) + j / group : n];
      out[r * k + j] = (float)kiln_quant_code(q, qdtype, n * k + j) * s;
    }
  }
}
