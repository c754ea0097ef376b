/* src/backends/cuda/mma_frag.cuh - tensor-core fragments for matmuls that read weights as 16-byte
 * rows of fp16/bf16 values, int8 codes or packed int4 codes (src/core/quant.h) and dequantize them
 * in registers: the fp16/bf16 specifics (exact code -> value tricks), mma.sync m16n8k16, and the
 * A operand (weights) of one k16 step from a lane's two 16-byte loads. Shared by the skinny
 * kernel (skinny.cu) and the persistent decoder chain (chain.cu); their file comments give the
 * lane-to-K mapping these helpers assume.
 */
#ifndef KILN_MMA_FRAG_CUH
#define KILN_MMA_FRAG_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

namespace kiln_mma {

/* ---- fp16 / bf16 specifics ---------------------------------------------------------------- */

template <typename V>
static __device__ __forceinline__ V from_u32(uint32_t u) {
  V r;
  memcpy(&r, &u, 4);
  return r;
}

template <typename V>
static __device__ __forceinline__ uint32_t to_u32(V v) {
  uint32_t r;
  memcpy(&r, &v, 4);
  return r;
}

template <typename T>
struct wq_type;

template <>
struct wq_type<__half> {
  typedef __half2 T2;
  /* int4: 0x6400 | u is the fp16 1024 + u for a nibble u; minus 1032 gives u - 8 */
  static constexpr uint32_t kNibbleMagic = 0x64006400u, kNibbleBias = 0x64086408u;
  /* int8 codes (bytes 2p, 2p + 1 of w) -> exact fp16 pair, via 1024 + (q + 128) - 1152 */
  static __device__ __forceinline__ uint32_t int8_pair(uint32_t w, int p) {
    uint32_t u = w ^ 0x80808080u; /* two's complement -> offset binary */
    uint32_t h = __byte_perm(u, 0x64646464u, p == 0 ? 0x5150u : 0x5352u);
    return to_u32(__hsub2(from_u32<T2>(h), from_u32<T2>(0x64806480u)));
  }
  static __device__ __forceinline__ T2 splat(float s) { return __float2half2_rn(s); }
  static __device__ __forceinline__ float2 to_float2(T2 v) { return __half22float2(v); }
  static __device__ __forceinline__ T2 from_float2(float a, float b) { return __floats2half2_rn(a, b); }
};

template <>
struct wq_type<__nv_bfloat16> {
  typedef __nv_bfloat162 T2;
  /* int4: 0x4300 | u is the bf16 128 + u; minus 136 gives u - 8 */
  static constexpr uint32_t kNibbleMagic = 0x43004300u, kNibbleBias = 0x43084308u;
  /* int8 codes -> exact bf16 pair through fp32: the float 2^23 + (q + 128), minus 2^23 + 128 */
  static __device__ __forceinline__ uint32_t int8_pair(uint32_t w, int p) {
    uint32_t u = w ^ 0x80808080u;
    float lo = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | (uint32_t)(2 * p))) - 8388736.0f;
    float hi = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | (uint32_t)(2 * p + 1))) - 8388736.0f;
    return to_u32(__floats2bfloat162_rn(lo, hi));
  }
  static __device__ __forceinline__ T2 splat(float s) { return __float2bfloat162_rn(s); }
  static __device__ __forceinline__ float2 to_float2(T2 v) { return __bfloat1622float2(v); }
  static __device__ __forceinline__ T2 from_float2(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

/* a - b and a * s on pairs of T held in 32-bit registers */
template <typename T>
static __device__ __forceinline__ uint32_t sub_pair(uint32_t a, uint32_t b) {
  typedef typename wq_type<T>::T2 T2;
  return to_u32(__hsub2(from_u32<T2>(a), from_u32<T2>(b)));
}

template <typename T>
static __device__ __forceinline__ uint32_t scale_pair(uint32_t a, float s) {
  typedef typename wq_type<T>::T2 T2;
  return to_u32(__hmul2(from_u32<T2>(a), wq_type<T>::splat(s)));
}

/* d += A (16 x 16, row) * B (16 x 8, col), fp32 accumulators (PTX fragment layouts). */
template <typename T>
static __device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<T, __half>::value)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap(); /* the host never launches the kernel below sm_80 */
#endif
}

static __device__ __forceinline__ uint32_t word_of(const uint4 &v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* int4 codes of byte j of w (elements 2j, 2j + 1; low nibble first) -> exact pair in T. */
template <typename T>
static __device__ __forceinline__ uint32_t int4_pair(uint32_t w, int j) {
  uint32_t u = w ^ 0x88888888u; /* two's complement nibbles -> offset binary u = q + 8 */
  /* byte 0 of r: byte j of u (its low nibble is element 2j); byte 2: byte j of u >> 4 (its low
   * nibble is element 2j + 1); the mask keeps those two nibbles */
  uint32_t r = __byte_perm(u, u >> 4, 0x0400u + 0x0101u * (uint32_t)j);
  r = (r & 0x000F000Fu) | wq_type<T>::kNibbleMagic;
  return sub_pair<T>(r, wq_type<T>::kNibbleBias);
}

/* A operands (the weights) of k16 step s (elements 4s..4s+3 of the lane's K range) of rows g (lo) and g + 8
 * (hi): a[0] = (g, 4s..4s+1), a[1] = (g + 8, 4s..4s+1), a[2] = (g, 4s+2..4s+3), a[3] = (g + 8, ...). */
template <typename T, int QBITS>
static __device__ __forceinline__ void a_operands(const uint4 &lo, const uint4 &hi, int s, uint32_t (&a)[4]) {
  if (QBITS == 16) { /* the values themselves: words 2s, 2s + 1 */
    a[0] = word_of(lo, 2 * s);
    a[1] = word_of(hi, 2 * s);
    a[2] = word_of(lo, 2 * s + 1);
    a[3] = word_of(hi, 2 * s + 1);
  } else if (QBITS == 8) {
    uint32_t wl = word_of(lo, s), wh = word_of(hi, s);
    a[0] = wq_type<T>::int8_pair(wl, 0);
    a[1] = wq_type<T>::int8_pair(wh, 0);
    a[2] = wq_type<T>::int8_pair(wl, 1);
    a[3] = wq_type<T>::int8_pair(wh, 1);
  } else {
    uint32_t wl = word_of(lo, s / 2), wh = word_of(hi, s / 2);
    int j = 2 * (s % 2);
    a[0] = int4_pair<T>(wl, j);
    a[1] = int4_pair<T>(wh, j);
    a[2] = int4_pair<T>(wl, j + 1);
    a[3] = int4_pair<T>(wh, j + 1);
  }
}

/* A layernorm of the pair of T in x (32 bits) with the row's mean and 1/std and the pairs of gamma
 * and beta, in fp32, rounded to T as a layernorm layer's output is. */
template <typename T>
static __device__ __forceinline__ uint32_t ln_pair(uint32_t x, uint32_t gamma, uint32_t beta, float mean, float rstd) {
  typedef typename wq_type<T>::T2 T2;
  const float2 xf = wq_type<T>::to_float2(from_u32<T2>(x));
  const float2 gf = wq_type<T>::to_float2(from_u32<T2>(gamma));
  const float2 bf = wq_type<T>::to_float2(from_u32<T2>(beta));
  return to_u32(wq_type<T>::from_float2((xf.x - mean) * rstd * gf.x + bf.x, (xf.y - mean) * rstd * gf.y + bf.y));
}

/* Mean and 1/std of one row of k values of T, by one warp: load(i) gives the 16 bytes at element
 * i (a multiple of 8). One pass of sums shifted by the row's first element `first` keeps the
 * variance accurate; lane 0 writes the results. */
template <typename T, typename Load>
static __device__ __forceinline__ void warp_row_stats(Load load, float first, int k, float eps, float *mean,
                                                      float *rstd) {
  typedef typename wq_type<T>::T2 T2;
  const int lane = threadIdx.x & 31;
  float s = 0.0f, q = 0.0f;
#pragma unroll 4
  for (int i = lane * 8; i < k; i += 32 * 8) {
    const uint4 v = load(i);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 f = wq_type<T>::to_float2(from_u32<T2>(word_of(v, j)));
      f.x -= first, f.y -= first;
      s += f.x + f.y;
      q += f.x * f.x + f.y * f.y;
    }
  }
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o), q += __shfl_xor_sync(0xffffffffu, q, o);
  if (lane == 0) {
    const float d = s / (float)k, var = fmaxf(q / (float)k - d * d, 0.0f);
    *mean = first + d;
    *rstd = rsqrtf(var + eps);
  }
}

} /* namespace kiln_mma */

#endif /* KILN_MMA_FRAG_CUH */
