/* src/core/dtype.c - dtype names and sizes, fp16/bf16 conversions, dims and tensor views.
 * kiln_convert_floats widens fp16 with F16C's vcvtph2ps when the CPU has it (core/cpu.h; the same
 * values as kiln_fp16_to_fp32, except that a signaling NaN comes out quiet), and bf16 with a
 * plain loop the compiler vectorizes: the host converts every logits row of a decoding step. It
 * narrows fp32 to fp16 with F16C's vcvtps2ph (round to nearest even: the same bits as
 * kiln_fp32_to_fp16 for every input) when the CPU has it: Whisper's mel windows, 1.5 M values a
 * window of 4, took 7 ms in the portable loop. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/cpu.h"
#include "kiln/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#define DTYPE_X86 1
#include <immintrin.h>
#endif

static const char *const dtype_names[KILN_DTYPE_COUNT_] = {"invalid", "fp32", "fp16", "bf16",
                                                            "int8",    "int4", "int32", "int64"};

const char *kiln_dtype_name(kiln_dtype dtype) {
  if (dtype <= KILN_DTYPE_INVALID || dtype >= KILN_DTYPE_COUNT_) return "invalid";
  return dtype_names[dtype];
}

kiln_dtype kiln_dtype_from_name(const char *name) {
  static const struct {
    const char *name;
    kiln_dtype dtype;
  } aliases[] = {{"fp32", KILN_DTYPE_FP32},    {"float32", KILN_DTYPE_FP32},
                 {"float", KILN_DTYPE_FP32},   {"fp16", KILN_DTYPE_FP16},
                 {"float16", KILN_DTYPE_FP16}, {"half", KILN_DTYPE_FP16},
                 {"bf16", KILN_DTYPE_BF16},    {"bfloat16", KILN_DTYPE_BF16},
                 {"int8", KILN_DTYPE_INT8},    {"int4", KILN_DTYPE_INT4},
                 {"int32", KILN_DTYPE_INT32},  {"int64", KILN_DTYPE_INT64}};
  if (!name) return KILN_DTYPE_INVALID;
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcmp(name, aliases[i].name) == 0) return aliases[i].dtype;
  return KILN_DTYPE_INVALID;
}

size_t kiln_dtype_bytes(kiln_dtype dtype, int64_t n) {
  if (n < 0) return 0;
  switch (dtype) {
    case KILN_DTYPE_FP32:
    case KILN_DTYPE_INT32:
      return (size_t)n * 4;
    case KILN_DTYPE_FP16:
    case KILN_DTYPE_BF16:
      return (size_t)n * 2;
    case KILN_DTYPE_INT8:
      return (size_t)n;
    case KILN_DTYPE_INT4:
      return ((size_t)n + 1) / 2;
    case KILN_DTYPE_INT64:
      return (size_t)n * 8;
    default:
      return 0;
  }
}

int kiln_dtype_is_float(kiln_dtype dtype) {
  return dtype == KILN_DTYPE_FP32 || dtype == KILN_DTYPE_FP16 || dtype == KILN_DTYPE_BF16;
}

static uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t kiln_fp32_to_fp16(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) /* Inf or NaN (keep NaN quiet and non-zero) */
    return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u | ((mag >> 13) & 0x3ffu) : 0));
  if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: Inf */
  if (mag < 0x38800000u) {                                   /* subnormal half or zero */
    /* value = mag_float; half subnormal unit is 2^-24: round(f * 2^24) */
    float a = bits_float(mag) * 16777216.0f; /* exact scaling by 2^24 */
    uint32_t r = (uint32_t)a;
    float frac = a - (float)r;
    if (frac > 0.5f || (frac == 0.5f && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  /* normal: rebias exponent 127 -> 15, round mantissa 23 -> 10 bits to nearest even */
  uint32_t h = ((mag - 0x38000000u) >> 13);
  uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

/* kiln_fp16_to_fp32's body, static so that the conversion loops inline it (-fPIC keeps exported
 * functions from being inlined into their own library) */
static float fp16_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    float v = (float)man / 16777216.0f; /* man * 2^-24 */
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (man << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

float kiln_fp16_to_fp32(uint16_t h) { return fp16_to_float(h); }

uint16_t kiln_fp32_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

float kiln_bf16_to_fp32(uint16_t b) { return bits_float((uint32_t)b << 16); }

#ifdef DTYPE_X86
__attribute__((target("avx,f16c"))) static void fp16_to_fp32_f16c(float *dst, const uint16_t *src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) dst[i] = fp16_to_float(src[i]);
}
#endif

static void fp16_to_fp32(float *dst, const uint16_t *src, int64_t n) {
#ifdef DTYPE_X86
  if (kiln_cpu_has_f16c()) {
    fp16_to_fp32_f16c(dst, src, n);
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_float(src[i]);
}

#ifdef DTYPE_X86
__attribute__((target("avx,f16c"))) static void fp32_to_fp16_f16c(uint16_t *dst, const float *src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = kiln_fp32_to_fp16(src[i]);
}
#endif

static void bf16_to_fp32(float *dst, const uint16_t *src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = bits_float((uint32_t)src[i] << 16); /* kiln_bf16_to_fp32 */
}

int kiln_convert_floats(void *dst, kiln_dtype dst_dtype, const void *src, kiln_dtype src_dtype,
                        int64_t n) {
  if (!kiln_dtype_is_float(dst_dtype) || !kiln_dtype_is_float(src_dtype) || n < 0) return -1;
  if (dst_dtype == src_dtype) {
    if (dst != src) memmove(dst, src, kiln_dtype_bytes(dst_dtype, n));
    return 0;
  }
  if (dst_dtype == KILN_DTYPE_FP32 && src_dtype == KILN_DTYPE_FP16) {
    fp16_to_fp32(dst, src, n);
    return 0;
  }
  if (dst_dtype == KILN_DTYPE_FP32 && src_dtype == KILN_DTYPE_BF16) {
    bf16_to_fp32(dst, src, n);
    return 0;
  }
#ifdef DTYPE_X86
  if (dst_dtype == KILN_DTYPE_FP16 && src_dtype == KILN_DTYPE_FP32 && kiln_cpu_has_f16c()) {
    fp32_to_fp16_f16c(dst, src, n);
    return 0;
  }
#endif
  for (int64_t i = 0; i < n; i++) {
    float v;
    switch (src_dtype) {
      case KILN_DTYPE_FP32: v = ((const float *)src)[i]; break;
      case KILN_DTYPE_FP16: v = kiln_fp16_to_fp32(((const uint16_t *)src)[i]); break;
      default: v = kiln_bf16_to_fp32(((const uint16_t *)src)[i]); break;
    }
    switch (dst_dtype) {
      case KILN_DTYPE_FP32: ((float *)dst)[i] = v; break;
      case KILN_DTYPE_FP16: ((uint16_t *)dst)[i] = kiln_fp32_to_fp16(v); break;
      default: ((uint16_t *)dst)[i] = kiln_fp32_to_bf16(v); break;
    }
  }
  return 0;
}

int64_t kiln_dims_count(const kiln_dims *dims) {
  int64_t n = 1;
  for (int32_t i = 0; i < dims->rank; i++) /* saturates instead of overflowing on absurd shapes */
    if (__builtin_mul_overflow(n, dims->d[i], &n)) return INT64_MAX;
  return n;
}

int kiln_dims_equal(const kiln_dims *a, const kiln_dims *b) {
  if (a->rank != b->rank) return 0;
  for (int32_t i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

char *kiln_dims_str(const kiln_dims *dims, char *buf, size_t size) {
  size_t used = 0;
  if (!size) return buf;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, size, "[");
  for (int32_t i = 0; i < dims->rank && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "",
                             (long long)dims->d[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

kiln_tensor kiln_tensor_contiguous(void *data, kiln_dtype dtype, const kiln_dims *shape) {
  kiln_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dtype;
  t.shape = *shape;
  int64_t s = 1;
  for (int32_t i = shape->rank - 1; i >= 0; i--) {
    t.strides[i] = s;
    s *= shape->d[i];
  }
  return t;
}

int kiln_tensor_is_contiguous(const kiln_tensor *t) {
  int64_t s = 1;
  for (int32_t i = t->shape.rank - 1; i >= 0; i--) {
    if (t->shape.d[i] != 1 && t->strides[i] != s) return 0;
    s *= t->shape.d[i];
  }
  return 1;
}
