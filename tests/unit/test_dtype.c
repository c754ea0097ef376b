/* tests/unit/test_dtype.c - src/core/dtype.c: fp16/bf16 conversions against references written
 * here in double arithmetic (every half and bf16 value decoded; every rounding midpoint and its
 * neighbours; random floats over the whole range; subnormals, overflow, Inf, NaN, signed zero),
 * the compiler's _Float16 where it exists, dtype names and sizes (int4 rounds up), dims and
 * tensor views.
 */
#include <float.h>
#include <math.h>

#include "check.h"
#include "core/cpu.h"
#include "kiln/dtype.h"

static float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* ---- references ----------------------------------------------------------------------------- */

static double ref_half_value(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}

/* Round |f| to a multiple of the quantum of its binade (round half to even, double's default),
 * then encode; a carry out of the mantissa correctly bumps the exponent. */
static uint16_t ref_fp32_to_fp16(float f) {
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  double a = fabs((double)f);
  if (isnan(f)) return 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;
  if (a < ldexp(1, -14)) return sign | (uint16_t)nearbyint(a / ldexp(1, -24));
  int e;
  frexp(a, &e); /* a in [2^(e-1), 2^e) */
  e -= 1;
  double r = nearbyint(a / ldexp(1, e - 10)); /* 1024..2048 */
  return sign | (uint16_t)(((e + 15) << 10) + ((int)r - 1024));
}

static uint16_t ref_fp32_to_bf16(float f) {
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  double a = fabs((double)f);
  if (isnan(f)) return 0x7fc0;
  if (a >= ldexp(2.0 - ldexp(1, -8), 127)) return sign | 0x7f80;
  if (a < ldexp(1, -126)) return sign | (uint16_t)nearbyint(a / ldexp(1, -133));
  int e;
  frexp(a, &e);
  e -= 1;
  double r = nearbyint(a / ldexp(1, e - 7)); /* 128..256 */
  return sign | (uint16_t)(((e + 127) << 7) + ((int)r - 128));
}

static int bad_fp16 = 0, bad_bf16 = 0;

static void check_one_fp16(float f) {
  uint16_t got = kiln_fp32_to_fp16(f), want = ref_fp32_to_fp16(f);
  int ok = isnan(f) ? ((got & 0x7c00) == 0x7c00 && (got & 0x3ff) != 0) : got == want;
  if (!ok && bad_fp16++ < 5)
    fprintf(stderr, "fp32_to_fp16(%.9g = 0x%08x) = 0x%04x, want 0x%04x\n", (double)f,
            float_to_bits(f), got, want);
}

static void check_one_bf16(float f) {
  uint16_t got = kiln_fp32_to_bf16(f), want = ref_fp32_to_bf16(f);
  int ok = isnan(f) ? ((got & 0x7f80) == 0x7f80 && (got & 0x7f) != 0) : got == want;
  if (!ok && bad_bf16++ < 5)
    fprintf(stderr, "fp32_to_bf16(%.9g = 0x%08x) = 0x%04x, want 0x%04x\n", (double)f,
            float_to_bits(f), got, want);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_fp16_decode_and_round_trip(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = kiln_fp16_to_fp32((uint16_t)h);
    double want = ref_half_value((uint16_t)h);
    if (isnan(want)) {
      if (!isnan(f) || !isnan(kiln_fp16_to_fp32(kiln_fp32_to_fp16(f)))) bad++;
      continue;
    }
    if ((double)f != want || !signbit(f) != !signbit(want)) bad++;
    if (kiln_fp32_to_fp16(f) != h) bad++; /* exact round trip, -0 included */
  }
  CHECK_EQ_INT(bad, 0);
}

static void test_bf16_decode_and_round_trip(void) {
  int bad = 0;
  for (uint32_t b = 0; b < 65536; b++) {
    float f = kiln_bf16_to_fp32((uint16_t)b);
    if (float_to_bits(f) != b << 16) bad++;
    if (isnan(f)) {
      if (!isnan(kiln_bf16_to_fp32(kiln_fp32_to_bf16(f)))) bad++;
    } else if (kiln_fp32_to_bf16(f) != b) {
      bad++;
    }
  }
  CHECK_EQ_INT(bad, 0);
}

/* Midpoints between neighbouring values are where round-to-nearest-even shows. */
static void test_midpoints(void) {
  for (uint32_t h = 0; h < 0x7c00; h++) {
    double lo = ref_half_value((uint16_t)h), hi = ref_half_value((uint16_t)(h + 1));
    float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits at most */
    for (int s = 0; s < 2; s++) {
      float m = s ? -mid : mid;
      check_one_fp16(m);
      check_one_fp16(nextafterf(m, INFINITY));
      check_one_fp16(nextafterf(m, -INFINITY));
    }
  }
  for (uint32_t b = 0; b < 0x7f80; b++) {
    float mid = bits_to_float((b << 16) | 0x8000u);
    for (int s = 0; s < 2; s++) {
      float m = s ? -mid : mid;
      check_one_bf16(m);
      check_one_bf16(nextafterf(m, INFINITY));
      check_one_bf16(nextafterf(m, -INFINITY));
    }
  }
  CHECK_EQ_INT(bad_fp16, 0);
  CHECK_EQ_INT(bad_bf16, 0);
}

static void test_random_floats(void) {
  check_rng r = {0xa0761d6478bd642full};
  for (int i = 0; i < 1000000; i++) {
    r.s ^= r.s >> 12, r.s ^= r.s << 25, r.s ^= r.s >> 27;
    float f = bits_to_float((uint32_t)((r.s * 2685821657736338717ull) >> 32));
    check_one_fp16(f);
    check_one_bf16(f);
    /* also values in fp16's own range, where most of its encodings live */
    float g = ldexpf(check_uniform(&r, -1, 1), (int)check_uniform(&r, -26, 17));
    check_one_fp16(g);
  }
  CHECK_EQ_INT(bad_fp16, 0);
  CHECK_EQ_INT(bad_bf16, 0);
#if defined(__FLT16_MAX__)
  /* the compiler's own conversion as a second oracle */
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    float g = ldexpf(check_uniform(&r, -1, 1), (int)check_uniform(&r, -26, 17));
    _Float16 h = (_Float16)g;
    uint16_t hb;
    memcpy(&hb, &h, 2);
    if (kiln_fp32_to_fp16(g) != hb) bad++;
  }
  CHECK_EQ_INT(bad, 0);
#endif
}

static void test_special_values(void) {
  CHECK_EQ_INT(kiln_fp32_to_fp16(0.0f), 0x0000);
  CHECK_EQ_INT(kiln_fp32_to_fp16(-0.0f), 0x8000);
  CHECK_EQ_INT(kiln_fp32_to_fp16(1.0f), 0x3c00);
  CHECK_EQ_INT(kiln_fp32_to_fp16(65504.0f), 0x7bff);
  CHECK_EQ_INT(kiln_fp32_to_fp16(65519.99f), 0x7bff);
  CHECK_EQ_INT(kiln_fp32_to_fp16(65520.0f), 0x7c00); /* the midpoint to 2^16 rounds to Inf */
  CHECK_EQ_INT(kiln_fp32_to_fp16(1e10f), 0x7c00);
  CHECK_EQ_INT(kiln_fp32_to_fp16(-INFINITY), 0xfc00);
  CHECK_EQ_INT(kiln_fp32_to_fp16(ldexpf(1, -24)), 0x0001);         /* smallest subnormal */
  CHECK_EQ_INT(kiln_fp32_to_fp16(ldexpf(1, -25)), 0x0000);         /* tie -> even (0) */
  CHECK_EQ_INT(kiln_fp32_to_fp16(ldexpf(3, -25)), 0x0002);         /* tie -> even (2) */
  CHECK_EQ_INT(kiln_fp32_to_fp16(ldexpf(1.0001f, -25)), 0x0001);   /* above the tie */
  CHECK_EQ_INT(kiln_fp32_to_fp16(ldexpf(1023, -24)), 0x03ff);      /* largest subnormal */
  CHECK_EQ_INT(kiln_fp32_to_fp16(ldexpf(2047, -25)), 0x0400);      /* rounds up to normal */
  CHECK_EQ_INT(kiln_fp32_to_fp16(1.0f + ldexpf(1, -11)), 0x3c00);  /* tie -> even */
  CHECK_EQ_INT(kiln_fp32_to_fp16(1.0f + ldexpf(3, -11)), 0x3c02);  /* tie -> even (up) */
  CHECK_EQ_INT(kiln_fp32_to_fp16(FLT_MIN), 0x0000);
  CHECK(isnan(kiln_fp16_to_fp32(kiln_fp32_to_fp16(NAN))));
  CHECK(isinf(kiln_fp16_to_fp32(0x7c00)) && kiln_fp16_to_fp32(0xfc00) < 0);
  CHECK(kiln_fp16_to_fp32(0x0001) == ldexpf(1, -24));
  CHECK(signbit(kiln_fp16_to_fp32(0x8000)));

  CHECK_EQ_INT(kiln_fp32_to_bf16(1.0f), 0x3f80);
  CHECK_EQ_INT(kiln_fp32_to_bf16(-0.0f), 0x8000);
  CHECK_EQ_INT(kiln_fp32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);  /* tie -> even */
  CHECK_EQ_INT(kiln_fp32_to_bf16(1.0f + ldexpf(3, -8)), 0x3f82);  /* tie -> even (up) */
  CHECK_EQ_INT(kiln_fp32_to_bf16(FLT_MAX), 0x7f80);               /* rounds to Inf */
  CHECK_EQ_INT(kiln_fp32_to_bf16(INFINITY), 0x7f80);
  CHECK_EQ_INT(kiln_fp32_to_bf16(bits_to_float(0x00000001u)), 0x0000); /* tiny subnormal */
  CHECK_EQ_INT(kiln_fp32_to_bf16(bits_to_float(0x00018000u)), 0x0002); /* subnormal tie up */
  CHECK(isnan(kiln_bf16_to_fp32(kiln_fp32_to_bf16(NAN))));
  CHECK(isnan(kiln_bf16_to_fp32(kiln_fp32_to_bf16(bits_to_float(0x7f800001u))))); /* low-bit NaN */
}

static void test_convert_floats(void) {
  float src[5] = {1.0f / 3.0f, -2.5f, 65504.0f, 1e-6f, 0.0f}, back[5];
  uint16_t h[5], b[5], h2[5];
  CHECK_EQ_INT(kiln_convert_floats(h, KILN_DTYPE_FP16, src, KILN_DTYPE_FP32, 5), 0);
  CHECK_EQ_INT(kiln_convert_floats(b, KILN_DTYPE_BF16, h, KILN_DTYPE_FP16, 5), 0);
  CHECK_EQ_INT(kiln_convert_floats(h2, KILN_DTYPE_FP16, h, KILN_DTYPE_FP16, 5), 0);
  CHECK_EQ_INT(kiln_convert_floats(back, KILN_DTYPE_FP32, h, KILN_DTYPE_FP16, 5), 0);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(h[i], kiln_fp32_to_fp16(src[i]));
    CHECK_EQ_INT(b[i], kiln_fp32_to_bf16(kiln_fp16_to_fp32(h[i])));
    CHECK_EQ_INT(h2[i], h[i]);
    CHECK(back[i] == kiln_fp16_to_fp32(h[i]));
  }
  CHECK_EQ_INT(kiln_convert_floats(h, KILN_DTYPE_INT8, src, KILN_DTYPE_FP32, 5), -1);
  CHECK_EQ_INT(kiln_convert_floats(h, KILN_DTYPE_FP16, src, KILN_DTYPE_FP32, -1), -1);
}

/* kiln_convert_floats fp16 / bf16 -> fp32 on every bit pattern, on the CPU's fast path (F16C)
 * and the portable one, against kiln_fp16_to_fp32 / kiln_bf16_to_fp32 (the scalar path): the
 * same bits, except that F16C returns a signaling NaN quiet (bit 22 set, sign and payload kept).
 * Unaligned starts and lengths that end inside a vector cover the tails. */
static void test_convert_all_patterns(void) {
  uint16_t *src = malloc(sizeof(uint16_t) * 65536 + 16);
  float *dst = malloc(sizeof(float) * 65536 + 16);
  if (!src || !dst) abort();
  for (int portable = 0; portable < 2; portable++) {
    kiln_cpu_set_portable(portable);
    for (int bf = 0; bf < 2; bf++) {
      for (int start = 0; start < 3; start++) {
        int64_t n = 65536 - 2 * start;
        for (int64_t i = 0; i < n; i++) src[start + i] = (uint16_t)(i + start);
        CHECK_EQ_INT(kiln_convert_floats(dst + start, KILN_DTYPE_FP32, src + start, bf ? KILN_DTYPE_BF16 : KILN_DTYPE_FP16, n), 0);
        int64_t bad = 0, first_bad = -1;
        for (int64_t i = 0; i < n; i++) {
          uint16_t h = src[start + i];
          uint32_t got = float_to_bits(dst[start + i]);
          uint32_t want = float_to_bits(bf ? kiln_bf16_to_fp32(h) : kiln_fp16_to_fp32(h));
          int nan = (want & 0x7fffffffu) > 0x7f800000u;
          int ok = got == want || (nan && !bf && got == (want | 0x00400000u));
          if (!ok && bad++ == 0) first_bad = i;
        }
        if (bad)
          fprintf(stderr, "%s -> fp32 (%s, start %d): %lld of %lld patterns differ, first 0x%04x -> 0x%08x\n", bf ? "bf16" : "fp16",
                  portable ? "portable" : "fast path", start, (long long)bad, (long long)n, src[start + first_bad],
                  float_to_bits(dst[start + first_bad]));
        CHECK_EQ_INT(bad, 0);
      }
    }
  }
  kiln_cpu_set_portable(0);
  free(src), free(dst);
}

/* kiln_convert_floats fp32 -> fp16 on the fast path (F16C) and the portable one against
 * kiln_fp32_to_fp16, on random bit patterns (every exponent: subnormals, overflow, NaN payloads)
 * and on the halfway cases between neighbouring halves (ties to even), unaligned starts and
 * lengths that end inside a vector. */
static void test_narrow_patterns(void) {
  enum { N = 1 << 18 };
  uint32_t *bits = malloc(sizeof(uint32_t) * N + 16);
  uint16_t *dst = malloc(sizeof(uint16_t) * N + 16);
  if (!bits || !dst) abort();
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int64_t i = 0; i < N; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (i % 4 == 3) { /* the midpoint above a random half (or its neighbours) */
      uint32_t h = (uint32_t)(x >> 20) & 0x7bffu;
      uint32_t mid = float_to_bits(kiln_fp16_to_fp32((uint16_t)h)) + (h >= 0x0400u ? 0x1000u : 0u);
      bits[i] = (mid + (uint32_t)(x % 3) - 1u) | (uint32_t)(x >> 63) << 31;
    } else {
      bits[i] = (uint32_t)(x >> 16);
    }
  }
  for (int portable = 0; portable < 2; portable++) {
    kiln_cpu_set_portable(portable);
    for (int start = 0; start < 3; start++) {
      int64_t n = N - 2 * start, bad = 0;
      CHECK_EQ_INT(kiln_convert_floats(dst, KILN_DTYPE_FP16, (const float *)(bits + start), KILN_DTYPE_FP32, n), 0);
      for (int64_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, &bits[start + i], 4);
        uint16_t want = kiln_fp32_to_fp16(f);
        if (dst[i] != want && bad++ == 0)
          fprintf(stderr, "fp32 0x%08x -> fp16 (%s): 0x%04x, want 0x%04x\n", bits[start + i],
                  portable ? "portable" : "fast path", dst[i], want);
      }
      CHECK_EQ_INT(bad, 0);
    }
  }
  kiln_cpu_set_portable(0);
  free(bits), free(dst);
}

static void test_names_and_sizes(void) {
  for (int d = KILN_DTYPE_FP32; d < KILN_DTYPE_COUNT_; d++)
    CHECK_EQ_INT(kiln_dtype_from_name(kiln_dtype_name((kiln_dtype)d)), d);
  CHECK_EQ_INT(kiln_dtype_from_name("half"), KILN_DTYPE_FP16);
  CHECK_EQ_INT(kiln_dtype_from_name("bfloat16"), KILN_DTYPE_BF16);
  CHECK_EQ_INT(kiln_dtype_from_name("float64"), KILN_DTYPE_INVALID);
  CHECK_EQ_INT(kiln_dtype_from_name(NULL), KILN_DTYPE_INVALID);
  CHECK_EQ_STR(kiln_dtype_name((kiln_dtype)42), "invalid");
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT4, 0), 0);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT4, 1), 1);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT4, 2), 1);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT4, 3), 2);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT4, 4097), 2049);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_FP32, 3), 12);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_FP16, 3), 6);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_BF16, 3), 6);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT8, 3), 3);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT32, 3), 12);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INT64, 3), 24);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_INVALID, 3), 0);
  CHECK_EQ_INT(kiln_dtype_bytes(KILN_DTYPE_FP32, -1), 0);
  CHECK(kiln_dtype_is_float(KILN_DTYPE_BF16) && !kiln_dtype_is_float(KILN_DTYPE_INT32));
}

static void test_dims_and_views(void) {
  kiln_dims d = {3, {2, 3, -1}}, scalar = {0, {0}}, z = {2, {4, 0}};
  char buf[64], small[6];
  CHECK_EQ_STR(kiln_dims_str(&d, buf, sizeof buf), "[2, 3, -1]");
  CHECK_EQ_STR(kiln_dims_str(&scalar, buf, sizeof buf), "[]");
  kiln_dims_str(&d, small, sizeof small);
  CHECK(strlen(small) < sizeof small);
  CHECK_EQ_INT(kiln_dims_count(&scalar), 1);
  CHECK_EQ_INT(kiln_dims_count(&z), 0);
  kiln_dims e = {3, {2, 3, 4}};
  CHECK(!kiln_dims_equal(&d, &e));
  e.d[2] = -1;
  CHECK(kiln_dims_equal(&d, &e));
  float data[24];
  kiln_dims s = {3, {2, 3, 4}};
  kiln_tensor t = kiln_tensor_contiguous(data, KILN_DTYPE_FP32, &s);
  CHECK_EQ_INT(t.strides[0], 12);
  CHECK_EQ_INT(t.strides[1], 4);
  CHECK_EQ_INT(t.strides[2], 1);
  CHECK(kiln_tensor_is_contiguous(&t));
  t.strides[1] = 8;
  CHECK(!kiln_tensor_is_contiguous(&t));
}

int main(void) {
  test_fp16_decode_and_round_trip();
  test_bf16_decode_and_round_trip();
  test_midpoints();
  test_random_floats();
  test_special_values();
  test_convert_floats();
  test_convert_all_patterns();
  test_narrow_patterns();
  test_names_and_sizes();
  test_dims_and_views();
  return check_report();
}
