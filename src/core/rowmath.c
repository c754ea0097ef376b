/* src/core/rowmath.c - max, argmax and logsumexp over a row of floats (see rowmath.h): portable
 * C, and AVX2 + FMA versions (x86-64, chosen at run time through core/cpu.h) that compute the
 * same things eight lanes at a time. Each operation is two or three passes over the row: the
 * maximum (also what argmax needs), then exp(x - max) summed, then the first index holding the
 * maximum (a pass that stops there).
 *
 * exp: Cephes' expf (k = round(d log2 e), r = d - k ln 2 in two parts, a degree-6 polynomial in
 * r, times 2^k), for d = x - max <= 0; d below EXP_LO (-inf included) counts as exp(EXP_LO),
 * about 1.6e-38: next to the largest term, exp(0) = 1, a sum of fewer than 2^100 such terms
 * does not show in double. The AVX2 code sums blocks of 16 terms a lane in float (16 roundings
 * of 6e-8 at most), then the blocks in double; the portable code sums in double. */
#include "core/rowmath.h"

#include <math.h>
#include <string.h>

#include "core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#define ROWMATH_X86 1
#include <immintrin.h>
#endif

#define EXP_LO (-87.0f)         /* d * log2(e) >= -125.6: 2^k stays a normal float */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f     /* ln 2 = LN2_HI + LN2_LO, LN2_HI with few mantissa bits */
#define LN2_LO (-2.12194440e-4f)
/* Cephes expf: exp(r) ~ 1 + r + r^2 (P0 r^5 + P1 r^4 + ... + P5) for |r| <= ln(2) / 2 */
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* ---- portable C ------------------------------------------------------------------------------ */

/* exp(d) for d <= 0 (d < EXP_LO: about 1e-38, NaN: NaN), without branches so that the compiler
 * can vectorize loops over it (this file is compiled with -fno-trapping-math, which lets it turn
 * the selects into vector code); round(d log2 e) as a conversion toward zero of d log2 e - 0.5. */
static float exp_poly(float d) {
  float t = d < EXP_LO ? EXP_LO : d > 0 ? 0 : d; /* NaN stays NaN */
  int32_t ki = (int32_t)((t == t ? t : 0) * LOG2E - 0.5f);
  float k = (float)ki;
  float r = t - k * LN2_HI;
  r = r - k * LN2_LO;
  float p = EXP_P0;
  p = p * r + EXP_P1;
  p = p * r + EXP_P2;
  p = p * r + EXP_P3;
  p = p * r + EXP_P4;
  p = p * r + EXP_P5;
  p = p * (r * r) + r + 1.0f;
  uint32_t bits = (uint32_t)(ki + 127) << 23; /* 2^k, k in [-126, 0] */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static float max_portable(const float *x, int64_t n) {
  float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) /* eight independent maxima: a loop the compiler vectorizes */
    for (int l = 0; l < 8; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
  for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
  float r = m[0];
  for (int l = 1; l < 8; l++) r = m[l] > r ? m[l] : r;
  return r;
}

static int64_t find_portable(const float *x, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++)
    if (x[i] == v) return i;
  return -1;
}

static double sum_exp_portable(const float *x, int64_t n, float m) {
  float e[64];
  double s[4] = {0, 0, 0, 0}; /* four chains: the additions do not wait on each other */
  for (int64_t i = 0; i < n; i += 64) { /* exp of 64 entries (vectorized), then their sum */
    int64_t c = n - i < 64 ? n - i : 64, k = 0;
    for (int64_t j = 0; j < c; j++) e[j] = exp_poly(x[i + j] - m);
    for (; k + 4 <= c; k += 4)
      for (int l = 0; l < 4; l++) s[l] += e[k + l];
    for (; k < c; k++) s[0] += e[k];
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/* ---- AVX2 + FMA ------------------------------------------------------------------------------ */

#ifdef ROWMATH_X86
__attribute__((target("avx2,fma"))) static float max_avx2(const float *x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  /* _mm256_max_ps(a, b) answers b when a is NaN: NaN entries never enter the maxima */
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    m2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), m2);
    m3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), m3);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
  float m = max_portable(lanes, 8);
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

__attribute__((target("avx2,fma"))) static int64_t find_avx2(const float *x, int64_t n, float v) {
  __m256 t = _mm256_set1_ps(v);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_EQ_OQ));
    if (bits) return i + __builtin_ctz((unsigned)bits);
  }
  int64_t j = find_portable(x + i, n - i, v);
  return j < 0 ? -1 : i + j;
}

/* exp_poly on eight lanes */
__attribute__((target("avx2,fma"))) static __m256 exp_avx2(__m256 d) {
  const __m256 lo = _mm256_set1_ps(EXP_LO);
  __m256 t = _mm256_max_ps(lo, d); /* NaN stays NaN (the second operand is answered) */
  __m256 k = _mm256_floor_ps(_mm256_fmadd_ps(t, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), t);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), r);
  __m256 p = _mm256_set1_ps(EXP_P0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma"))) static double sum_exp_avx2(const float *x, int64_t n, float m) {
  __m256 vm = _mm256_set1_ps(m);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) { /* blocks of 128 summed in float (16 terms a lane), then in double */
    __m256 b0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    __m256 b1 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
    for (int64_t k = 16; k < 128; k += 16) {
      b0 = _mm256_add_ps(b0, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + k), vm)));
      b1 = _mm256_add_ps(b1, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + k + 8), vm)));
    }
    b0 = _mm256_add_ps(b0, b1);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(b0)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(b0, 1)));
  }
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double lanes[4];
  _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + sum_exp_portable(x + i, n - i, m);
}
#endif

/* ---- the operations -------------------------------------------------------------------------- */

float kiln_row_max(const float *x, int64_t n) {
#ifdef ROWMATH_X86
  if (kiln_cpu_has_avx2_fma()) return max_avx2(x, n);
#endif
  return max_portable(x, n);
}

static int64_t first_index(const float *x, int64_t n, float v) {
#ifdef ROWMATH_X86
  int64_t i = kiln_cpu_has_avx2_fma() ? find_avx2(x, n, v) : find_portable(x, n, v);
#else
  int64_t i = find_portable(x, n, v);
#endif
  return i < 0 ? 0 : i;
}

int64_t kiln_row_argmax(const float *x, int64_t n) { return first_index(x, n, kiln_row_max(x, n)); }

double kiln_row_logsumexp(const float *x, int64_t n, int64_t *argmax) {
  float m = kiln_row_max(x, n);
  if (argmax) *argmax = first_index(x, n, m);
  if (m == -INFINITY) { /* only -inf and NaN */
    for (int64_t i = 0; i < n; i++)
      if (isnan(x[i])) return NAN;
    return -INFINITY;
  }
#ifdef ROWMATH_X86
  double s = kiln_cpu_has_avx2_fma() ? sum_exp_avx2(x, n, m) : sum_exp_portable(x, n, m);
#else
  double s = sum_exp_portable(x, n, m);
#endif
  return (double)m + log(s);
}
