/* src/backends/cuda/skinny.cu - the skinny matmul: y[M, N] = act(norm(x)[M, K] @ W[N, K]^T + b[N])
 * (+ r[M, N]) for small M (decoding: M = batch x beams, 1 to 64), where reading the weights is
 * the whole cost. W is fp16/bf16 (the plain matmul) or int8 / packed int4 codes with fp32 scales
 * (the weight-only matmul; format src/core/quant.h), dequantized in registers. Optional fusions
 * (graph.h's KILN_FUSE_*): a layernorm of x over K before the product (norm), and a residual r
 * added after the activation. The host side (tactics, checks, the other paths) is matmul.c and
 * matmul_wq.c.
 *
 * Each weight is read once from memory with a 16-byte load and used for up to 64 rows of x
 * through tensor-core MMAs (mma.sync m16n8k16, fp16 or bf16 operands, fp32 accumulation; sm_80
 * and newer). Layout: a block owns 16 * NT weight rows and 8 * MT rows of x; its WARPS warps
 * split K (chunk c goes to warp (c / U) % WARPS) and add their partial sums in shared memory at
 * the end. In a warp, lane (g = lane / 4, t = lane % 4) loads 16 bytes of weight rows g and
 * g + 8 (8 fp16/bf16 values, 16 int8 or 32 int4 codes: the K range [chunk * 4 * KPT + t * KPT,
 * + KPT)), and the same K range of x row g of each 8-row tile. Because a dot product does not
 * care about the order of K, the MMA's k index i of lane t is mapped to that lane's own
 * contiguous range (k16 step s holds elements 4s..4s+3 of it: cols 2t, 2t+1 -> 4s, 4s+1; cols
 * 2t+8, 2t+9 -> 4s+2, 4s+3) for both operands, so every load is contiguous and nothing is
 * shuffled. Codes become exact integers in fp16/bf16 with magic-number tricks (no int->float
 * conversions); per-row scales (group 0) multiply the fp32 sums at the end, group scales
 * multiply the dequantized weights before the MMA (in fp16/bf16).
 * The layernorm: each block first computes the mean and 1/std of its rows of x (fp32, one pass
 * of sums shifted by the row's first element), then normalizes x, rounding to x's dtype as a
 * layernorm layer's output would be. When the tile's rows fit in shared memory (the 48 KB a
 * launch gets without opting in, which the warps' partial sums reuse after the MMA loop: K up
 * to ~2.5K at M <= 16), the block copies them there at once (asynchronous copies), takes the
 * statistics there and normalizes in place, each gamma/beta pair loaded once; else it takes the
 * statistics from global memory and normalizes as it loads x in the MMA loop.
 * M above 64 runs as several row tiles (grid.y), each reading the weights again: correct, slow.
 * Needs K a multiple of KPT (8 for fp16/bf16 weights, 16 int8, 32 int4), group 0 or a multiple
 * of KPT, 16-byte aligned x and W, 8-byte aligned gamma/beta (kiln_cuda_skinny_fits and the
 * launcher check).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <string.h>

#include <cooperative_groups.h>
#include <type_traits>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_internal.h"
#include "backends/cuda/mma_frag.cuh"

namespace {

using namespace kiln_mma;

/* Weight matrices up to this size are prefetched into L2 while the previous kernel runs (a
 * fraction of the 40-60 MB L2 of the GPUs that have programmatic dependent launch). */
#define KILN_SKINNY_PREFETCH_BYTES (24LL << 20)
/* Block shapes (variants 0-3); variants 4-7 are the same with split-K over a cluster of at most
 * SKINNY_MAX_SPLIT blocks (the portable cluster size). */
#define KILN_SKINNY_SHAPES 4
#define SKINNY_MAX_SPLIT 8

/* B operand: x[m, k .. k + 3] (k = the lane's range + 4s) as two pairs of T; with the layernorm
 * fused, normalized with the row's mean and 1/std and gamma/beta, rounded to T. */
template <typename T>
static __device__ __forceinline__ uint2 x_operand(const T *__restrict__ xr, int k, const T *__restrict__ gamma,
                                                   const T *__restrict__ beta, float mean, float rstd) {
  uint2 v = __ldg(reinterpret_cast<const uint2 *>(xr + k));
  if (!gamma) return v;
  const uint2 gv = __ldg(reinterpret_cast<const uint2 *>(gamma + k));
  const uint2 bv = __ldg(reinterpret_cast<const uint2 *>(beta + k));
  return make_uint2(ln_pair<T>(v.x, gv.x, bv.x, mean, rstd), ln_pair<T>(v.y, gv.y, bv.y, mean, rstd));
}

/* Mean and 1/std of rows m_base .. m_base + rows - 1 of x into mean[] / rstd[] (one warp per
 * row; sums shifted by the row's first element keep the one-pass variance accurate). */
template <typename T, int WARPS>
static __device__ __forceinline__ void row_stats(const T *__restrict__ x, int m_base, int rows, int k_len, float eps,
                                                 float *mean, float *rstd) {
  for (int r = threadIdx.x >> 5; r < rows; r += WARPS) {
    const T *xr = x + (int64_t)(m_base + r) * k_len;
    warp_row_stats<T>([&](int i) { return __ldg(reinterpret_cast<const uint4 *>(xr + i)); },
                      kiln_f32(xr[0]), k_len, eps, &mean[r], &rstd[r]);
  }
}

/* Arguments of one launch (pointers already checked). */
typedef struct skinny_args {
  const void *x, *w;
  const float *scales;
  const void *bias, *gamma, *beta, *residual;
  int bias_dt, act, group;
  float eps;
  void *y;
  int m, n, k;
  int ks, cps; /* split-K: blocks per cluster along K (1: none), chunks per block */
  int xs;       /* with the layernorm: 1 when the tile's normalized rows of x are staged in shared memory */
  cudaStream_t stream;
} skinny_args;

/* The kernel (see the top of the file). grid (ceil(N / (16 NT)), ceil(M / (8 MT))), block
 * WARPS * 32 threads. The fusions are run-time choices (uniform branches), which keeps the
 * number of instantiations (and the binary) small. */
template <typename T, int QBITS, int MT, int NT, int WARPS, int U>
__global__ void __launch_bounds__(WARPS * 32) skinny_kernel(const skinny_args a) {
  constexpr int KPT = 128 / QBITS; /* values per lane per chunk: one 16-byte load per row */
  constexpr int STEPS = KPT / 4;   /* k16 MMA steps per chunk */
  constexpr int KPC = 4 * KPT;     /* K per chunk (the 4 lanes of a quad) */
  constexpr int P = NT * MT * 4 * 32; /* partial sums per warp */
  /* dynamic: the normalized rows of x (xs) during the MMA loop, then the warps' partial sums */
  extern __shared__ uint4 skinny_sh[];
  float *red = reinterpret_cast<float *>(skinny_sh);
  __shared__ float s_mean[8 * MT], s_rstd[8 * MT];
  const T *__restrict__ x = (const T *)a.x;
  const uint8_t *__restrict__ wq = (const uint8_t *)a.w;
  const T *__restrict__ gamma = (const T *)a.gamma, *__restrict__ beta = (const T *)a.beta;
  const int m_rows = a.m, n_cols = a.n, k_len = a.k, group = a.group;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n_base = blockIdx.x * (16 * NT), m_base = blockIdx.y * (8 * MT);
  const int64_t row_bytes = (int64_t)k_len * QBITS / 8;
  const int n_chunks = (k_len + KPC - 1) / KPC;
  /* this block's chunks: all, or the blockIdx.z-th share of them under split-K */
  const int c_beg = a.ks > 1 ? (int)blockIdx.z * a.cps : 0;
  const int c_end = a.ks > 1 && c_beg + a.cps < n_chunks ? c_beg + a.cps : n_chunks;
  const int scales_per_row = group > 0 ? k_len / group : 1;

  /* Quantized weights give a warp 4x (int4) or 2x (int8) the MMAs of fp16 per byte; with few
   * tiles two accumulator sets (even and odd k16 steps) halve the chain of dependent MMAs. */
  constexpr int ACC = QBITS < 16 && NT * MT <= 2 ? 2 : 1;
  float acc[ACC][NT][MT][4];
#pragma unroll
  for (int i = 0; i < ACC; i++)
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][nt][mt][j] = 0.0f;

  /* weights of chunks c0 .. c0 + U - 1 into w (zeros past N or K), and with group scales the
   * scale of each lane's K range of rows g and g + 8 into sc (a lane's range lies in one group) */
  constexpr bool GS = QBITS < 16;
  auto load = [&](int c0, uint4 (&w)[U][NT][2], float (&sc)[U][NT][2]) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k0 = (c0 + u) * KPC + t * KPT;
      const bool k_ok = c0 + u < c_end && k0 < k_len;
#pragma unroll
      for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int n = n_base + nt * 16 + g + 8 * h;
          w[u][nt][h] = make_uint4(0u, 0u, 0u, 0u);
          sc[u][nt][h] = 0.0f;
          if (k_ok && n < n_cols) {
            w[u][nt][h] = __ldcs(reinterpret_cast<const uint4 *>(wq + (int64_t)n * row_bytes + k0 * QBITS / 8));
            if (GS && group > 0) sc[u][nt][h] = __ldg(a.scales + (int64_t)n * scales_per_row + k0 / group);
          }
        }
    }
  };
  /* software pipeline: the next chunks' loads are in flight while the current ones are used;
   * the first ones also overlap the layernorm statistics */
  uint4 wv[U][NT][2]; /* [chunk][row tile][rows g, g + 8] */
  float sv[U][NT][2];
  load(c_beg + warp * U, wv, sv);
  /* Weights are all a launch reads before kiln_pdl_wait() (cuda_common.cuh): while the kernel
   * before this one runs, the first chunks load into registers and the rest of this block's
   * part of its rows into L2 (when the whole matrix fits in a part of L2). */
  if (blockIdx.y == 0 && c_beg < c_end && (int64_t)n_cols * row_bytes <= KILN_SKINNY_PREFETCH_BYTES &&
      threadIdx.x < 16 * NT && n_base + (int)threadIdx.x < n_cols) {
    const int64_t b0 = (int64_t)c_beg * KPC * QBITS / 8, b1 = (int64_t)c_end * KPC * QBITS / 8;
    kiln_prefetch_l2(wq + (int64_t)(n_base + threadIdx.x) * row_bytes + b0,
                     (uint32_t)((b1 < row_bytes ? b1 : row_bytes) - b0));
  }
  kiln_pdl_wait();
  kiln_pdl_trigger();
  const bool ln = gamma != NULL, xs = ln && a.xs;
  const T *xn = reinterpret_cast<const T *>(skinny_sh); /* xs: normalized x rows m_base .., [rows][k_len] */
  if (ln) {
    const int rows = m_rows - m_base < 8 * MT ? m_rows - m_base : 8 * MT;
    if (xs) { /* normalize each element once here, not once per row tile of W in the MMA loop */
      const int per_row = k_len / 8;
      kiln_copy_to_shared(skinny_sh, reinterpret_cast<const uint4 *>(x + (int64_t)m_base * k_len), rows * per_row);
      __syncthreads();
      for (int r = warp; r < rows; r += WARPS)
        warp_row_stats<T>([&](int i) { return skinny_sh[(r * k_len + i) / 8]; }, kiln_f32(xn[r * k_len]), k_len, a.eps,
                          &s_mean[r], &s_rstd[r]);
      __syncthreads();
      for (int c = threadIdx.x; c < per_row; c += WARPS * 32) {
        const uint2 g0 = __ldg(reinterpret_cast<const uint2 *>(gamma) + 2 * c), g1 = __ldg(reinterpret_cast<const uint2 *>(gamma) + 2 * c + 1);
        const uint2 b0 = __ldg(reinterpret_cast<const uint2 *>(beta) + 2 * c), b1 = __ldg(reinterpret_cast<const uint2 *>(beta) + 2 * c + 1);
        for (int r = 0; r < rows; r++) { /* gamma and beta are 8-byte aligned: two 8-byte loads each */
          uint4 &v = skinny_sh[r * per_row + c];
          const float mu = s_mean[r], rs = s_rstd[r];
          v = make_uint4(ln_pair<T>(v.x, g0.x, b0.x, mu, rs), ln_pair<T>(v.y, g0.y, b0.y, mu, rs),
                         ln_pair<T>(v.z, g1.x, b1.x, mu, rs), ln_pair<T>(v.w, g1.y, b1.y, mu, rs));
        }
      }
    } else {
      row_stats<T, WARPS>(x, m_base, rows, k_len, a.eps, s_mean, s_rstd);
    }
    __syncthreads();
  }

  for (int c0 = c_beg + warp * U; c0 < c_end; c0 += WARPS * U) {
    uint4 cur[U][NT][2];
    float cs[U][NT][2];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) cur[u][nt][h] = wv[u][nt][h], cs[u][nt][h] = sv[u][nt][h];
    if (c0 + WARPS * U < c_end) load(c0 + WARPS * U, wv, sv);
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (c0 + u >= c_end) break; /* uniform over the warp: every lane reaches each mma */
      const int k0 = (c0 + u) * KPC + t * KPT;
      const bool k_ok = k0 < k_len; /* per lane: a lane past K feeds zeros */
#pragma unroll
      for (int s = 0; s < STEPS; s++) {
        uint32_t av[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          a_operands<T, QBITS>(cur[u][nt][0], cur[u][nt][1], s, av[nt]);
          if (GS && group > 0) {
            av[nt][0] = scale_pair<T>(av[nt][0], cs[u][nt][0]);
            av[nt][2] = scale_pair<T>(av[nt][2], cs[u][nt][0]);
            av[nt][1] = scale_pair<T>(av[nt][1], cs[u][nt][1]);
            av[nt][3] = scale_pair<T>(av[nt][3], cs[u][nt][1]);
          }
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          const int r = mt * 8 + g, m = m_base + r;
          uint2 xv = make_uint2(0u, 0u); /* B operand: x[m, k0 + 4s .. k0 + 4s + 3] */
          if (k_ok && m < m_rows && xs)
            xv = *reinterpret_cast<const uint2 *>(xn + (int64_t)r * k_len + k0 + 4 * s);
          else if (k_ok && m < m_rows)
            xv = x_operand<T>(x + (int64_t)m * k_len, k0 + 4 * s, gamma, beta, ln ? s_mean[r] : 0.0f,
                              ln ? s_rstd[r] : 0.0f);
#pragma unroll
          for (int nt = 0; nt < NT; nt++) mma_16816<T>(acc[s % ACC][nt][mt], av[nt], xv.x, xv.y);
        }
      }
    }
  }
  /* the accumulator sets into the first */
#pragma unroll
  for (int i = 1; i < ACC; i++)
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[0][nt][mt][j] += acc[i][nt][mt][j];

  /* add the warps' partial sums in a fixed order; epilogue; store */
  if (xs) __syncthreads(); /* red reuses the rows of x: every warp is past the MMA loop */
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < 4; j++) red[warp * P + ((nt * MT + mt) * 4 + j) * 32 + lane] = acc[0][nt][mt][j];
  __syncthreads();
  T *__restrict__ y = (T *)a.y;
  const T *__restrict__ res = (const T *)a.residual;
  /* bias, activation, residual and the store of partial sum i (see the layout below) */
  auto store = [&](int i, float v) {
    /* accumulator j of lane l in tile (nt, mt): weight row g + 8 (j / 2), x row 2 t + j % 2 */
    const int l = i & 31, j = (i >> 5) & 3, nt = (i >> 7) / MT, mt = (i >> 7) % MT;
    const int n = n_base + nt * 16 + (l >> 2) + (j >= 2 ? 8 : 0);
    const int m = m_base + mt * 8 + (l & 3) * 2 + (j & 1);
    if (n < n_cols && m < m_rows) {
      if (QBITS < 16 && group == 0) v *= __ldg(a.scales + n);
      if (a.bias) v += kiln_ld(a.bias, a.bias_dt, n);
      v = kiln_act(v, a.act);
      if (res) v += kiln_f32(res[(int64_t)m * n_cols + n]);
      y[(int64_t)m * n_cols + n] = kiln_from_f32<T>(v);
    }
  };
  if (a.ks == 1) {
    for (int i = threadIdx.x; i < P; i += WARPS * 32) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < WARPS; w++) v += red[w * P + i];
      store(i, v);
    }
    return;
  }
  /* split-K: each block's sums into red[0, P) (each i read and written by one thread), then the
   * cluster's blocks add the blocks' sums through distributed shared memory in rank order, each
   * block finishing a share of the outputs; the second barrier keeps every block's shared
   * memory alive until the others have read it */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  for (int i = threadIdx.x; i < P; i += WARPS * 32) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) v += red[w * P + i];
    red[i] = v;
  }
  cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
  cl.sync();
  const int rank = (int)cl.block_rank();
  for (int i = rank * WARPS * 32 + threadIdx.x; i < P; i += a.ks * WARPS * 32) {
    float v = 0.0f;
    for (int q = 0; q < a.ks; q++) v += cl.map_shared_rank(red, q)[i];
    store(i, v);
  }
  cl.sync();
#else
  __trap(); /* the host splits K only on sm_90 and newer */
#endif
}

/* ---- launchers ---------------------------------------------------------------------------- */

template <typename T, int QBITS, int MT, int NT, int WARPS, int U>
static kiln_status launch(const skinny_args *a) {
  int64_t m_tiles = ((int64_t)a->m + 8 * MT - 1) / (8 * MT), n_tiles = ((int64_t)a->n + 16 * NT - 1) / (16 * NT);
  if (m_tiles > 65535)
    return kiln_error(KILN_ERR_UNSUPPORTED, "skinny matmul kernel: %d rows of x is too many for one launch; use a "
                      "cuBLASLt tactic (rebuild with a profile whose opt shape has more rows)", a->m);
  skinny_args b = *a;
  b.ks = 1, b.cps = 0;
  if (a->ks > 1) { /* split K so that about two blocks run per SM, each with a chunk per warp at least */
    int major = 0, sms = 0;
    kiln_cuda_current_device(&major, &sms);
    const int kpc = 4 * (128 / QBITS), n_chunks = (a->k + kpc - 1) / kpc;
    int64_t want = (2 * (int64_t)sms + n_tiles * m_tiles - 1) / (n_tiles * m_tiles), most = n_chunks / WARPS;
    if (want > SKINNY_MAX_SPLIT) want = SKINNY_MAX_SPLIT;
    if (want > most) want = most;
    if (major >= 9 && want > 1) {
      b.cps = (int)((n_chunks + want - 1) / want);
      b.ks = (n_chunks + b.cps - 1) / b.cps;
    }
  }
  /* the layernorm's rows in shared memory when they fit beside the kernel's static arrays (as
   * compiled, asked once per instantiation; unknown: no staging) within the 48 KB a launch gets
   * without opting in; the warps' partial sums take the same dynamic bytes afterwards */
  static const size_t static_bytes = [] {
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, skinny_kernel<T, QBITS, MT, NT, WARPS, U>) == cudaSuccess) return fa.sharedSizeBytes;
    (void)cudaGetLastError(); /* not sticky: clear it */
    return (size_t)48 * 1024;
  }();
  const size_t red_bytes = (size_t)WARPS * NT * MT * 4 * 32 * sizeof(float);
  const size_t xs_bytes = (size_t)(8 * MT) * (size_t)a->k * sizeof(T);
  b.xs = a->gamma && static_bytes + (xs_bytes > red_bytes ? xs_bytes : red_bytes) <= 48 * 1024;
  dim3 grid((unsigned int)n_tiles, (unsigned int)m_tiles, (unsigned int)b.ks), block(WARPS * 32);
  KILN_CUDA_CHECK(kiln_launch_cluster(skinny_kernel<T, QBITS, MT, NT, WARPS, U>, grid, block,
                                      b.xs && xs_bytes > red_bytes ? xs_bytes : red_bytes, a->stream,
                                      dim3(1, 1, (unsigned)b.ks), b));
  return KILN_OK;
}

/* Rows of x per block: the smallest tile of 8, 16, 32 or 64 that holds M (more run as tiles). */
template <typename T, int QBITS, int NT, int WARPS, int U>
static kiln_status launch_rows(const skinny_args *a) {
  if (a->m <= 8) return launch<T, QBITS, 1, NT, WARPS, U>(a);
  if (a->m <= 16) return launch<T, QBITS, 2, NT, WARPS, U>(a);
  if (a->m <= 32) return launch<T, QBITS, 4, NT, WARPS, U>(a);
  return launch<T, QBITS, 8, NT, WARPS, U>(a);
}

/* Variants (KILN_CUDA_SKINNY_VARIANTS; chunk counts for fp16/bf16 weights, chunks_in_flight
 * below for int8/int4): 0: 16 weight rows per block, 8 warps over K, 4 chunks in flight per lane;
 * 1: 32 weight rows per block (x read half as often), 4 warps, 2 chunks; 2: as 0 with 8 chunks in
 * flight (more bytes in flight when N is small and few blocks run); 3: 4 warps, 4 chunks (smaller
 * blocks, more of them resident per SM). 4 + i: variant i with K split over a cluster of blocks
 * where the GPU has clusters (sm_90+; elsewhere the same as i). */
/* Chunks in flight per lane for quantized weights: a chunk of int8 (int4) codes spans 2x (4x) the
 * K of an fp16 chunk, so the same count would leave most warps of a block without a chunk (K =
 * 1280 is 10 int4 chunks) and each warp a long chain of MMAs; U fp16 chunks become U / 2 (U / 4),
 * at least one. (Keeping U in the split-K variants measured slower: bench/chain_bench.) */
static constexpr int chunks_in_flight(int u, int bits) { return u * bits / 16 > 0 ? u * bits / 16 : 1; }

template <typename T, int QBITS>
static kiln_status launch_variant(int32_t variant, const skinny_args *a) {
  variant %= KILN_SKINNY_SHAPES;
  if (variant == 0) return launch_rows<T, QBITS, 1, 8, chunks_in_flight(4, QBITS)>(a);
  if (variant == 1) return launch_rows<T, QBITS, 2, 4, chunks_in_flight(2, QBITS)>(a);
  if (variant == 2) return launch_rows<T, QBITS, 1, 8, chunks_in_flight(8, QBITS)>(a);
  return launch_rows<T, QBITS, 1, 4, chunks_in_flight(4, QBITS)>(a);
}

template <typename T>
static kiln_status launch_bits(int32_t variant, int bits, const skinny_args *a) {
  if (bits == 16) return launch_variant<T, 16>(variant, a);
  if (bits == 8) return launch_variant<T, 8>(variant, a);
  return launch_variant<T, 4>(variant, a);
}

static int aligned(const void *p, uintptr_t n) { return ((uintptr_t)p % n) == 0; }

} /* namespace */

extern "C" int kiln_cuda_skinny_fits(kiln_dtype dtype, kiln_dtype wdtype, int64_t k, int32_t group) {
  int64_t kpt = wdtype == KILN_DTYPE_INT4 ? 32 : wdtype == KILN_DTYPE_INT8 ? 16 : 8;
  if (dtype != KILN_DTYPE_FP16 && dtype != KILN_DTYPE_BF16) return 0;
  if (wdtype != dtype && wdtype != KILN_DTYPE_INT8 && wdtype != KILN_DTYPE_INT4) return 0;
  return k % kpt == 0 && k > 0 && k <= INT32_MAX && group >= 0 && group % kpt == 0;
}

extern "C" kiln_status kiln_cuda_skinny(int32_t variant, const kiln_tensor *x, const kiln_tensor *w,
                                        const kiln_tensor *scales, int32_t group, const kiln_tensor *b,
                                        kiln_activation act, const kiln_cuda_mm_fuse *fuse, kiln_tensor *y,
                                        int64_t m, int64_t n, int64_t k, void *stream) {
  if (m == 0 || n == 0) return KILN_OK;
  if (variant < 0 || variant >= KILN_CUDA_SKINNY_VARIANTS || m > 2147483647LL || n > 2147483647LL)
    return kiln_error(KILN_ERR_INVALID_ARG, "skinny matmul kernel: variant %d or shape [%lld, %lld, %lld] out of range",
                      (int)variant, (long long)m, (long long)n, (long long)k);
  if (!kiln_cuda_skinny_fits(x->dtype, w->dtype, k, group) || y->dtype != x->dtype)
    return kiln_error(KILN_ERR_UNSUPPORTED, "skinny matmul kernel: x %s, W %s, y %s, K %lld, group %d are not "
                      "operands it takes; rebuild the engine (another tactic)", kiln_dtype_name(x->dtype),
                      kiln_dtype_name(w->dtype), kiln_dtype_name(y->dtype), (long long)k, (int)group);
  const kiln_tensor *gamma = fuse ? fuse->gamma : NULL, *beta = fuse ? fuse->beta : NULL;
  const kiln_tensor *res = fuse ? fuse->residual : NULL;
  int ok = aligned(x->data, 16) && aligned(w->data, 16);
  if (gamma) ok = ok && beta && gamma->dtype == x->dtype && beta->dtype == x->dtype && aligned(gamma->data, 8) &&
                  aligned(beta->data, 8);
  if (res) ok = ok && res->dtype == x->dtype;
  if (!ok)
    return kiln_error(KILN_ERR_UNSUPPORTED, "skinny matmul kernel: x and W must be 16-byte aligned, gamma and beta "
                      "8-byte aligned, and gamma, beta and the residual in x's dtype");
  skinny_args a;
  memset(&a, 0, sizeof a);
  a.x = x->data;
  a.w = w->data;
  a.scales = scales ? (const float *)scales->data : NULL;
  a.group = group;
  a.bias = b ? b->data : NULL;
  a.bias_dt = b ? (int)b->dtype : (int)KILN_DTYPE_FP32;
  a.act = (int)act;
  a.gamma = gamma ? gamma->data : NULL;
  a.beta = beta ? beta->data : NULL;
  a.eps = fuse ? fuse->eps : 0.0f;
  a.residual = res ? res->data : NULL;
  a.y = y->data;
  a.m = (int)m, a.n = (int)n, a.k = (int)k;
  a.ks = variant >= KILN_SKINNY_SHAPES ? 2 : 1; /* a request: launch() sizes the split */
  a.stream = kiln_stream(stream);
  int bits = w->dtype == KILN_DTYPE_INT8 ? 8 : w->dtype == KILN_DTYPE_INT4 ? 4 : 16;
  if (x->dtype == KILN_DTYPE_FP16) return launch_bits<__half>(variant, bits, &a);
  return launch_bits<__nv_bfloat16>(variant, bits, &a);
}
