/* src/backends/cuda/matmul_wq.cu - kernels of the weight-only quantized matmul
 * y[M, N] = act(x[M, K] @ dequant(Wq)[N, K]^T + b[N]) (format: src/core/quant.h; the host side,
 * tactics and checks are in matmul_wq.c):
 *
 * 1. The small-M kernel (tactic KILN_TACTIC_KERNEL, variants below), for decoding (M = 1..64):
 *    the weights are the traffic, so each is read once from memory with a 16-byte load,
 *    dequantized in registers and used for up to 64 rows of x through tensor-core MMAs
 *    (mma.sync m16n8k16, fp16 or bf16 operands, fp32 accumulation; sm_80 and newer).
 *    Layout: a block owns 16 * NT weight rows and 8 * MT rows of x; its WARPS warps split K
 *    (chunk c goes to warp (c / U) % WARPS) and add their partial sums in shared memory at the
 *    end. In a warp, lane (g = lane / 4, t = lane % 4) loads 16 bytes of weight rows g and g + 8
 *    (16 int8 or 32 int4 codes: the K range [chunk * 4 * KPT + t * KPT, + KPT)), and the same K
 *    range of x row g of each 8-row tile. Because a dot product does not care about the order
 *    of K, the MMA's k index i of lane t is mapped to that lane's own contiguous range
 *    (k16 step s holds elements 4s..4s+3 of it: cols 2t, 2t+1 -> 4s, 4s+1; cols 2t+8, 2t+9 ->
 *    4s+2, 4s+3) for both operands, so every load is contiguous and nothing is shuffled.
 *    Codes become exact integers in fp16/bf16 with magic-number tricks (no int->float
 *    conversions); per-row scales (group 0) multiply the fp32 sums at the end, group scales
 *    multiply the dequantized weights before the MMA (in fp16/bf16). M above 64 runs as
 *    several row tiles (grid.y), each reading the weights again: correct, slow.
 *    Needs K a multiple of 16 (int8) or 32 (int4), group 0 or a multiple of that, 16-byte
 *    aligned x and Wq (kiln_cuda_wq_kernel_fits and the launcher in matmul_wq.c check).
 * 2. The dequantization kernel for the large-M path: Wq -> W in the float type (into the
 *    layer's workspace), one element per thread; cuBLASLt then runs the matmul.
 * Not here: int8 activations (weight-only), asymmetric zero points.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <string.h>

#include <type_traits>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_internal.h"

namespace {

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
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
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
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
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

/* A operands of k16 step s (elements 4s..4s+3 of the lane's K range) of rows g (lo) and g + 8
 * (hi): a[0] = (g, 4s..4s+1), a[1] = (g + 8, 4s..4s+1), a[2] = (g, 4s+2..4s+3), a[3] = (g + 8, ...). */
template <typename T, int QBITS>
static __device__ __forceinline__ void a_operands(const uint4 &lo, const uint4 &hi, int s, uint32_t (&a)[4]) {
  if (QBITS == 8) {
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

/* The small-M kernel (see the top of the file). grid (ceil(N / (16 NT)), ceil(M / (8 MT))),
 * block WARPS * 32 threads. */
template <typename T, int QBITS, int MT, int NT, int WARPS, int U>
__global__ void __launch_bounds__(WARPS * 32)
    wq_small_m_kernel(const T *__restrict__ x, const uint8_t *__restrict__ wq, const float *__restrict__ scales,
                      const void *__restrict__ bias, int bias_dt, int act, T *__restrict__ y, int m_rows, int n_cols,
                      int k_len, int group) {
  constexpr int KPT = QBITS == 8 ? 16 : 32; /* codes per lane per chunk: one 16-byte load per row */
  constexpr int STEPS = KPT / 4;            /* k16 MMA steps per chunk */
  constexpr int KPC = 4 * KPT;              /* K per chunk (the 4 lanes of a quad) */
  constexpr int P = NT * MT * 4 * 32;       /* partial sums per warp */
  __shared__ float red[WARPS * P];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n_base = blockIdx.x * (16 * NT), m_base = blockIdx.y * (8 * MT);
  const int64_t row_bytes = QBITS == 8 ? (int64_t)k_len : (int64_t)k_len / 2;
  const int n_chunks = (k_len + KPC - 1) / KPC;
  const int scales_per_row = group > 0 ? k_len / group : 1;

  float acc[NT][MT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[nt][mt][j] = 0.0f;

  for (int c0 = warp * U; c0 < n_chunks; c0 += WARPS * U) {
    uint4 wv[U][NT][2]; /* [chunk][row tile][rows g, g + 8] */
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k0 = (c0 + u) * KPC + t * KPT;
      const bool k_ok = c0 + u < n_chunks && k0 < k_len;
#pragma unroll
      for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int n = n_base + nt * 16 + g + 8 * h;
          wv[u][nt][h] = make_uint4(0u, 0u, 0u, 0u);
          if (k_ok && n < n_cols)
            wv[u][nt][h] = __ldcs(reinterpret_cast<const uint4 *>(wq + (int64_t)n * row_bytes + k0 * QBITS / 8));
        }
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (c0 + u >= n_chunks) break; /* uniform over the warp: every lane reaches each mma */
      const int k0 = (c0 + u) * KPC + t * KPT;
      const bool k_ok = k0 < k_len; /* per lane: a lane past K feeds zeros */
      float s_lo[NT], s_hi[NT];     /* group scales of rows g and g + 8 for this lane's K range */
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        const int n = n_base + nt * 16 + g;
        s_lo[nt] = group > 0 && k_ok && n < n_cols ? __ldg(scales + (int64_t)n * scales_per_row + k0 / group) : 0.0f;
        s_hi[nt] = group > 0 && k_ok && n + 8 < n_cols ? __ldg(scales + (int64_t)(n + 8) * scales_per_row + k0 / group)
                                                        : 0.0f;
      }
#pragma unroll
      for (int s = 0; s < STEPS; s++) {
        uint32_t a[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          a_operands<T, QBITS>(wv[u][nt][0], wv[u][nt][1], s, a[nt]);
          if (group > 0) {
            a[nt][0] = scale_pair<T>(a[nt][0], s_lo[nt]);
            a[nt][2] = scale_pair<T>(a[nt][2], s_lo[nt]);
            a[nt][1] = scale_pair<T>(a[nt][1], s_hi[nt]);
            a[nt][3] = scale_pair<T>(a[nt][3], s_hi[nt]);
          }
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          const int m = m_base + mt * 8 + g;
          uint2 xv = make_uint2(0u, 0u); /* B operand: x[m, k0 + 4s .. k0 + 4s + 3] */
          if (k_ok && m < m_rows) xv = __ldg(reinterpret_cast<const uint2 *>(x + (int64_t)m * k_len + k0 + 4 * s));
#pragma unroll
          for (int nt = 0; nt < NT; nt++) mma_16816<T>(acc[nt][mt], a[nt], xv.x, xv.y);
        }
      }
    }
  }

  /* add the warps' partial sums in a fixed order; epilogue; store */
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < 4; j++) red[warp * P + ((nt * MT + mt) * 4 + j) * 32 + lane] = acc[nt][mt][j];
  __syncthreads();
  for (int i = threadIdx.x; i < P; i += WARPS * 32) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) v += red[w * P + i];
    /* accumulator j of lane l in tile (nt, mt): weight row g + 8 (j / 2), x row 2 t + j % 2 */
    const int l = i & 31, j = (i >> 5) & 3, nt = (i >> 7) / MT, mt = (i >> 7) % MT;
    const int n = n_base + nt * 16 + (l >> 2) + (j >= 2 ? 8 : 0);
    const int m = m_base + mt * 8 + (l & 3) * 2 + (j & 1);
    if (n < n_cols && m < m_rows) {
      if (group == 0) v *= __ldg(scales + n);
      if (bias) v += kiln_ld(bias, bias_dt, n);
      y[(int64_t)m * n_cols + n] = wq_type<T>::from_float(kiln_act(v, act));
    }
  }
}

/* W[n, k] = code * scale in the float type wdt; grid-stride over rows (y) and columns (x). */
__global__ void wq_dequant_kernel(const uint8_t *__restrict__ wq, int qbits, const float *__restrict__ scales,
                                  int group, void *w, int wdt, int64_t n_rows, int k_len) {
  const int64_t per_row = group > 0 ? k_len / group : 1;
  for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y)
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < k_len; c += gridDim.x * blockDim.x) {
      const int64_t i = r * k_len + c;
      int code;
      if (qbits == 8) {
        code = (int8_t)wq[i];
      } else {
        int nib = (wq[i >> 1] >> ((i & 1) * 4)) & 0xf;
        code = nib >= 8 ? nib - 16 : nib;
      }
      float s = scales[group > 0 ? r * per_row + c / group : r];
      kiln_st(w, wdt, i, (float)code * s);
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

typedef struct wq_args {
  const void *x;
  const uint8_t *wq;
  const float *scales;
  const void *bias;
  int bias_dt, act;
  void *y;
  int m, n, k, group;
  cudaStream_t stream;
} wq_args;

template <typename T, int QBITS, int MT, int NT, int WARPS, int U>
static kiln_status launch(const wq_args *a) {
  int64_t m_tiles = ((int64_t)a->m + 8 * MT - 1) / (8 * MT), n_tiles = ((int64_t)a->n + 16 * NT - 1) / (16 * NT);
  if (m_tiles > 65535)
    return kiln_error(KILN_ERR_UNSUPPORTED, "matmul_wq kernel: %d rows of x is too many for one launch; use a "
                      "cuBLASLt tactic (rebuild with a profile whose opt shape has more rows)", a->m);
  dim3 grid((unsigned int)n_tiles, (unsigned int)m_tiles), block(WARPS * 32);
  wq_small_m_kernel<T, QBITS, MT, NT, WARPS, U><<<grid, block, 0, a->stream>>>(
      (const T *)a->x, a->wq, a->scales, a->bias, a->bias_dt, a->act, (T *)a->y, a->m, a->n, a->k, a->group);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

/* Rows of x per block: the smallest tile of 8, 16, 32 or 64 that holds M (more run as tiles). */
template <typename T, int QBITS, int NT, int WARPS, int U>
static kiln_status launch_rows(const wq_args *a) {
  if (a->m <= 8) return launch<T, QBITS, 1, NT, WARPS, U>(a);
  if (a->m <= 16) return launch<T, QBITS, 2, NT, WARPS, U>(a);
  if (a->m <= 32) return launch<T, QBITS, 4, NT, WARPS, U>(a);
  return launch<T, QBITS, 8, NT, WARPS, U>(a);
}

/* Variants (KILN_TACTIC_KERNEL index): 0: 16 weight rows per block, 8 warps over K, 4 chunks
 * in flight per lane; 1: 32 weight rows per block (x read half as often), 4 warps over K, 2
 * chunks in flight; 2: as 0 with 8 chunks in flight (more bytes in flight when N is small and
 * few blocks run). */
template <typename T, int QBITS>
static kiln_status launch_variant(int32_t variant, const wq_args *a) {
  if (variant == 0) return launch_rows<T, QBITS, 1, 8, 4>(a);
  if (variant == 1) return launch_rows<T, QBITS, 2, 4, 2>(a);
  return launch_rows<T, QBITS, 1, 8, 8>(a);
}

} /* namespace */

extern "C" kiln_status kiln_cuda_wq_small_m(int32_t variant, const kiln_tensor *x, const kiln_tensor *wq,
                                            const kiln_tensor *scales, const kiln_tensor *b, int32_t group,
                                            kiln_activation act, kiln_tensor *y, int64_t m, int64_t n, int64_t k,
                                            void *stream) {
  if (m == 0 || n == 0) return KILN_OK;
  if (variant < 0 || variant >= KILN_CUDA_WQ_KERNELS || m > 2147483647LL || n > 2147483647LL || k > 2147483647LL)
    return kiln_error(KILN_ERR_INVALID_ARG, "matmul_wq kernel: variant %d or shape [%lld, %lld, %lld] out of range",
                      (int)variant, (long long)m, (long long)n, (long long)k);
  wq_args a;
  a.x = x->data;
  a.wq = (const uint8_t *)wq->data;
  a.scales = (const float *)scales->data;
  a.bias = b ? b->data : NULL;
  a.bias_dt = b ? (int)b->dtype : (int)KILN_DTYPE_FP32;
  a.act = (int)act;
  a.y = y->data;
  a.m = (int)m, a.n = (int)n, a.k = (int)k, a.group = group;
  a.stream = kiln_stream(stream);
  int i8 = wq->dtype == KILN_DTYPE_INT8;
  if (x->dtype == KILN_DTYPE_FP16)
    return i8 ? launch_variant<__half, 8>(variant, &a) : launch_variant<__half, 4>(variant, &a);
  return i8 ? launch_variant<__nv_bfloat16, 8>(variant, &a) : launch_variant<__nv_bfloat16, 4>(variant, &a);
}

extern "C" kiln_status kiln_cuda_wq_dequantize(const kiln_tensor *wq, const kiln_tensor *scales, int32_t group,
                                               void *w, kiln_dtype dtype, int64_t n, int64_t k, void *stream) {
  if (n == 0 || k == 0) return KILN_OK;
  if (k > 2147483647LL)
    return kiln_error(KILN_ERR_UNSUPPORTED, "matmul_wq: K = %lld is too large to dequantize", (long long)k);
  int64_t bx = (k + KILN_CUDA_THREADS - 1) / KILN_CUDA_THREADS;
  dim3 grid((unsigned int)(bx < 64 ? bx : 64), (unsigned int)(n < 65535 ? n : 65535)), block(KILN_CUDA_THREADS);
  wq_dequant_kernel<<<grid, block, 0, kiln_stream(stream)>>>((const uint8_t *)wq->data,
                                                           wq->dtype == KILN_DTYPE_INT8 ? 8 : 4,
                                                           (const float *)scales->data, group, w, (int)dtype, n,
                                                           (int)k);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
