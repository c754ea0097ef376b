/* src/backends/cuda/kv_attention.cu - decoder attention over a KV cache kept in place
 * (KILN_OP_KV_ATTENTION; semantics in kiln/network.h, kiln_network_add_cached_self_attention).
 *
 * Self-attention (qkv [B, S, 3HD], caches [Bc, H, T, D], lengths [B] on the device): one kernel
 * writes the S new keys/values of each row at positions lengths[b] .., then the attention
 * kernel lets token s of row b attend to cache positions 0 .. lengths[b] + s. The lengths are
 * read on the device, so a captured CUDA graph replays every decoding step unchanged.
 * Cross-attention (q [B, S, HD], k/v [Bk, H, A, D]): query row b reads key/value row
 * b / (B / Bk).
 *
 * Two attention kernels for the decode shape (few queries, up to a few thousand keys), fp32
 * accumulation in both. The fast one splits the keys of each (query, head) into chunks, one
 * block each, so even one row fills the GPU (flash-decoding); a second kernel merges the chunks'
 * partial results, kept in the layer's workspace (kiln_cuda_kv_attention_workspace). It serves
 * head sizes of 4, 8 or 16 16-byte vectors (fp16/bf16: 32, 64, 128). The general one (any head
 * size, no workspace) is one block per (query, head, row): the threads score one key each (q
 * scaled in shared memory), the block takes max and sum, then thread groups accumulate value
 * pairs over the keys and are summed in shared memory.
 * Every float tensor has the same dtype T (fp32, fp16 or bf16).
 * Int8 caches (cache_dtype INT8: two more inputs, k_scale / v_scale [rows, H, T] in T): the
 * append kernel quantizes each new key/value vector with one warp (max |x| -> scale rounded to
 * T -> codes, the rule of network.h and of the CPU backend's quantize_row, bit for bit), and
 * both attention kernels read the codes with the same loads (8 codes per 8 bytes) and
 * dequantize in registers: score = (q . codes) * k_scale, and the softmax weight of key j is
 * multiplied by v_scale[j] before it weighs the value codes. kiln_cuda_quantize_int8 (the
 * quantize_int8 op, which makes int8 cross-attention caches) shares the warp quantizer.
 * Every kernel here except quantize_int8's is a programmatic dependent launch (cuda_common.cuh):
 * cross-attention's split blocks prefetch their chunk of the (constant) caches into L2 before
 * they wait for the kernel before them.
 * Not here: long-query prefill tiles (the fused attention plugin).
 */
#include <cooperative_groups.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/kv_quant.cuh"

#define KVA_THREADS 256

template <typename T> struct kva_vec;
template <> struct kva_vec<float> {
  static constexpr int n = 4;
  static __device__ __forceinline__ void load(const float *p, float *o) {
    float4 v = *(const float4 *)p;
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
  }
  static __device__ __forceinline__ float2 pair(const float *p) { return *(const float2 *)p; }
};
template <> struct kva_vec<__half> {
  static constexpr int n = 8;
  static __device__ __forceinline__ void load(const __half *p, float *o) {
    uint4 u = *(const uint4 *)p;
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float2 f = __half22float2(h[i]);
      o[2 * i] = f.x, o[2 * i + 1] = f.y;
    }
  }
  static __device__ __forceinline__ float2 pair(const __half *p) { return __half22float2(*(const __half2 *)p); }
};
template <> struct kva_vec<__nv_bfloat16> {
  static constexpr int n = 8;
  static __device__ __forceinline__ void load(const __nv_bfloat16 *p, float *o) {
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float2 f = __bfloat1622float2(h[i]);
      o[2 * i] = f.x, o[2 * i + 1] = f.y;
    }
  }
  static __device__ __forceinline__ float2 pair(const __nv_bfloat16 *p) {
    return __bfloat1622float2(*(const __nv_bfloat162 *)p);
  }
};

/* Int8 cache codes: 8 per 8-byte load (a thread of the split kernel reads 8 codes where it
 * reads 8 fp16 values), pairs as char2. */
template <> struct kva_vec<int8_t> {
  static constexpr int n = 8;
  static __device__ __forceinline__ void load(const int8_t *p, float *o) {
    uint2 u = *(const uint2 *)p;
    const char4 *c = (const char4 *)&u;
#pragma unroll
    for (int i = 0; i < 2; i++) o[4 * i] = c[i].x, o[4 * i + 1] = c[i].y, o[4 * i + 2] = c[i].z, o[4 * i + 3] = c[i].w;
  }
  static __device__ __forceinline__ float2 pair(const int8_t *p) {
    char2 c = *(const char2 *)p;
    return make_float2((float)c.x, (float)c.y);
  }
};

/* One warp quantizes x[D] (T) into codes[D] and *scale (T): kv_quant.cuh's rule. */
template <typename T>
static __device__ __forceinline__ void kva_quantize_warp(const T *x, int D, int8_t *codes, T *scale) {
  kiln_quantize_warp_int8<T>([&](int d) { return kiln_f32(x[d]); }, D, codes, scale);
}

/* New keys/values into int8 caches: grid (S, B), KVA_THREADS threads; each warp quantizes
 * vectors (head, key or value) of token s of row b into position len[b] + s. */
template <typename T>
static __global__ void kv_append_int8_kernel(const T *qkv, int8_t *ck, int8_t *cv, T *ks, T *vs, const int32_t *len,
                                             int S, int H, int D, int64_t cap) {
  int s = blockIdx.x, b = blockIdx.y, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  kiln_pdl_wait();
  kiln_pdl_trigger();
  int64_t pos = (int64_t)len[b] + s, hd = (int64_t)H * D;
  if (len[b] < 0 || pos >= cap) return;
  const T *src = qkv + ((int64_t)b * S + s) * 3 * hd;
  for (int t = warp; t < 2 * H; t += warps) {
    int h = t >> 1, is_v = t & 1;
    int64_t at = ((int64_t)b * H + h) * cap + pos;
    kva_quantize_warp<T>(src + (1 + is_v) * hd + (int64_t)h * D, D, (is_v ? cv : ck) + at * D, (is_v ? vs : ks) + at);
  }
}

/* quantize_int8: rows of D values, one warp each (grid-stride over rows). */
template <typename T>
static __global__ void kva_quantize_kernel(const T *x, int8_t *codes, T *scales, int64_t rows, int D) {
  int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps)
    kva_quantize_warp<T>(x + r * D, D, codes + r * D, scales + r);
}

/* New keys/values into the caches: grid (S, B), threads over H*D. Rows whose new tokens do not
 * fit are skipped (the host checks lengths before it launches). */
template <typename T>
static __global__ void kv_append_kernel(const T *qkv, T *ck, T *cv, const int32_t *len, int S, int H, int D,
                                        int64_t cap) {
  int s = blockIdx.x, b = blockIdx.y;
  kiln_pdl_wait();
  kiln_pdl_trigger();
  int64_t pos = (int64_t)len[b] + s, hd = (int64_t)H * D;
  if (len[b] < 0 || pos >= cap) return;
  const T *src = qkv + ((int64_t)b * S + s) * 3 * hd;
  for (int64_t e = threadIdx.x; e < hd; e += blockDim.x) {
    int64_t h = e / D, d = e % D, dst = (((int64_t)b * H + h) * cap + pos) * D + d;
    ck[dst] = src[hd + e];
    cv[dst] = src[2 * hd + e];
  }
}

/* grid (S, H, B). q rows ldq apart (3HD for self, HD for cross); k/v rows [.., H, cap, D] of C
 * (T, or int8 codes with scales ks / vs [.., H, cap] of T); y [B, S, HD]. Self: keys
 * 0 .. len[b] + s; cross (len NULL): all `cap` keys of row b / rep.
 * Shared memory: D (q) + cap (scores) + blockDim (partial sums) floats. */
template <typename T, typename C>
static __global__ void kv_attention_kernel(const T *q, int64_t ldq, const C *k, const C *v, const T *ks, const T *vs,
                                           const int32_t *len, int64_t cap, int rep, T *y, int S, int H, int D,
                                           float scale, int vec, int pairs_ok) {
  typedef kva_vec<T> V;
  typedef kva_vec<C> CV;
  constexpr bool Q8 = sizeof(C) == 1;
  extern __shared__ float kva_sh[];
  __shared__ float red[32];
  int s = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  float *qs = kva_sh, *sc = kva_sh + D, *part = sc + cap;
  kiln_pdl_wait();
  kiln_pdl_trigger();
  int64_t n_keys = cap;
  if (len) {
    n_keys = (int64_t)len[b] + s + 1;
    if (n_keys > cap) n_keys = cap;
    if (n_keys < 0) n_keys = 0;
  }
  const T *qr = q + ((int64_t)b * S + s) * ldq + (int64_t)h * D;
  int64_t row = (int64_t)(b / rep) * H + h, kv_off = row * cap * D;
  const C *kb = k + kv_off, *vb = v + kv_off;
  const T *ksr = Q8 ? ks + row * cap : NULL, *vsr = Q8 ? vs + row * cap : NULL;
  for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = kiln_f32(qr[d]) * scale;
  __syncthreads();
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n_keys; j += blockDim.x) {
    const C *kr = kb + j * D;
    float acc = 0.0f;
    if (vec) {
      for (int d = 0; d < D; d += CV::n) {
        float f[CV::n];
        CV::load(kr + d, f);
#pragma unroll
        for (int i = 0; i < CV::n; i++) acc += qs[d + i] * f[i];
      }
    } else {
      for (int d = 0; d < D; d++) acc += qs[d] * kiln_f32(kr[d]);
    }
    if (Q8) acc *= kiln_f32(ksr[j]);
    sc[j] = acc;
    m = fmaxf(m, acc);
  }
  m = kiln_block_reduce(m, red, 1);
  float l = 0.0f;
  for (int64_t j = threadIdx.x; j < n_keys; j += blockDim.x) {
    float p = __expf(sc[j] - m);
    sc[j] = Q8 ? p * kiln_f32(vsr[j]) : p; /* int8: the value's scale joins its weight */
    l += p;
  }
  l = kiln_block_reduce(l, red, 0); /* its barriers also publish sc[] */
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T *yr = y + ((int64_t)b * S + s) * (int64_t)H * D + (int64_t)h * D;
  if (pairs_ok) {
    int pairs = D / 2, groups = blockDim.x / pairs, g = threadIdx.x / pairs, dp = threadIdx.x % pairs;
    float2 acc = make_float2(0.0f, 0.0f);
    if (g < groups)
      for (int64_t j = g; j < n_keys; j += groups) {
        float2 f = CV::pair(vb + j * D + 2 * dp);
        acc.x += sc[j] * f.x;
        acc.y += sc[j] * f.y;
      }
    part[2 * threadIdx.x] = acc.x, part[2 * threadIdx.x + 1] = acc.y;
    __syncthreads();
    if (g == 0) {
      float sx = 0.0f, sy = 0.0f;
      for (int i = 0; i < groups; i++) sx += part[2 * (i * pairs + dp)], sy += part[2 * (i * pairs + dp) + 1];
      yr[2 * dp] = kiln_from_f32<T>(sx * inv);
      yr[2 * dp + 1] = kiln_from_f32<T>(sy * inv);
    }
  } else {
    int groups = blockDim.x / D, g = threadIdx.x / D, d = threadIdx.x % D;
    float acc = 0.0f;
    if (g < groups)
      for (int64_t j = g; j < n_keys; j += groups) acc += sc[j] * kiln_f32(vb[j * D + d]);
    part[threadIdx.x] = acc;
    __syncthreads();
    if (g == 0) {
      float sum = 0.0f;
      for (int i = 0; i < groups; i++) sum += part[i * D + d];
      yr[d] = kiln_from_f32<T>(sum * inv);
    }
  }
}

/* ---- split keys (flash-decoding): the fast path for the decode shape ----------------------------
 * grid (splits, H, B*S), KVA_SPLIT_THREADS threads. TPK threads share a key (one vector load
 * each: 16 bytes of fp32/fp16/bf16, or 8 int8 codes; so a warp reads 32 / TPK whole key rows,
 * contiguous), their partial dot products summed by shuffles;
 * each block scores its chunk of keys, takes the chunk's max and sum, accumulates the values with
 * the same vector loads (per thread N dims of every per_iter-th row, summed in shared memory) and
 * writes (acc[D], max, sum) to part[(bs * H + h) * splits + split]. kva_combine_kernel merges the
 * splits of each (row, head). */
#define KVA_SPLIT_THREADS 128

/* The work of one split block (split, h, bs = b * S + s): its chunk's (acc[D], max, sum) into
 * out (global memory, or shared for the cluster kernel below). */
template <typename T, typename C, int TPK>
static __device__ __forceinline__ void kva_chunk(const T *q, int64_t ldq, const C *k, const C *v, const T *ks,
                                                 const T *vs, const int32_t *len, int64_t cap, int rep, int S, int H,
                                                 float scale, int chunk, int split, int h, int bs, float *out) {
  typedef kva_vec<T> V;
  typedef kva_vec<C> CV;
  constexpr bool Q8 = sizeof(C) == 1;
  constexpr int N = CV::n, D = TPK * N;
  extern __shared__ float kvs_sh[]; /* chunk scores, then blockDim.x * N partial sums */
  __shared__ float red[32];
  int b = bs / S, s = bs % S;
  int64_t n_keys = cap;
  if (len) {
    n_keys = (int64_t)len[b] + s + 1;
    if (n_keys > cap) n_keys = cap;
    if (n_keys < 0) n_keys = 0;
  }
  int64_t j0 = (int64_t)split * chunk, j1 = j0 + chunk < n_keys ? j0 + chunk : n_keys;
  int n = j1 > j0 ? (int)(j1 - j0) : 0;
  const T *qr = q + ((int64_t)b * S + s) * ldq + (int64_t)h * D;
  int64_t row = (int64_t)(b / rep) * H + h, kv_off = row * cap * D;
  const C *kb = k + kv_off + j0 * D, *vb = v + kv_off + j0 * D;
  const T *ksr = Q8 ? ks + row * cap + j0 : NULL, *vsr = Q8 ? vs + row * cap + j0 : NULL;
  int sub = threadIdx.x % TPK, slot = threadIdx.x / TPK, per_iter = blockDim.x / TPK;
  float qf[N];
#pragma unroll
  for (int i = 0; i < N; i++) qf[i] = kiln_f32(qr[sub * N + i]) * scale;
  float *sc = kvs_sh;
  float m = -INFINITY;
#pragma unroll 4
  for (int base = 0; base < n; base += per_iter) { /* uniform trip count: shuffles see every lane */
    int j = base + slot;
    float f[N], dot = 0.0f;
    if (j < n) {
      CV::load(kb + (int64_t)j * D + sub * N, f);
#pragma unroll
      for (int i = 0; i < N; i++) dot += qf[i] * f[i];
    }
#pragma unroll
    for (int o = TPK / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    if (j < n && sub == 0) sc[j] = Q8 ? dot * kiln_f32(ksr[j]) : dot;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, sc[j]);
  m = kiln_block_reduce(m, red, 1);
  float l = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float p = __expf(sc[j] - m);
    sc[j] = Q8 ? p * kiln_f32(vsr[j]) : p; /* int8: the value's scale joins its weight */
    l += p;
  }
  l = kiln_block_reduce(l, red, 0); /* its barriers also publish sc[] */
  /* values as the keys were read: TPK threads per row, one 16-byte (int8: 8-byte) load each,
   * per_iter rows at a time; then the per_iter partial sums of each dim added in shared memory */
  float acc[N];
#pragma unroll
  for (int i = 0; i < N; i++) acc[i] = 0.0f;
#pragma unroll 4
  for (int j = slot; j < n; j += per_iter) {
    float f[N];
    CV::load(vb + (int64_t)j * D + sub * N, f);
    const float p = sc[j];
#pragma unroll
    for (int i = 0; i < N; i++) acc[i] += p * f[i];
  }
  float *ps = kvs_sh + chunk; /* [per_iter][D]: thread t's N sums at t * N */
#pragma unroll
  for (int i = 0; i < N; i++) ps[threadIdx.x * N + i] = acc[i];
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.0f;
    for (int i = 0; i < per_iter; i++) sum += ps[i * D + d];
    out[d] = sum;
  }
  if (threadIdx.x == 0) out[D] = n ? m : -INFINITY, out[D + 1] = l;
}

/* Cross-attention: the keys and values are constant; bring block (split, h, b)'s chunk into L2
 * (before kiln_pdl_wait: see cuda_common.cuh), when all of the layer's keys and values fit in a
 * part of L2 (a few windows; more would only evict what the kernel before is reading).
 * grid.z is B * S. */
#define KVA_PREFETCH_BYTES (16LL << 20)
template <typename C>
static __device__ __forceinline__ void kva_prefetch_chunk(const C *k, const C *v, int64_t cap, int rep, int S, int H,
                                                          int D, int chunk, int split, int h, int b) {
  int64_t key_rows = (int64_t)gridDim.z / S / rep;
  if (2 * key_rows * H * cap * D * (int64_t)sizeof(C) > KVA_PREFETCH_BYTES) return;
  int64_t j0 = (int64_t)split * chunk, n = cap - j0 < chunk ? cap - j0 : chunk;
  int64_t off = (((int64_t)(b / rep) * H + h) * cap + j0) * D;
  uint32_t bytes = n > 0 ? (uint32_t)(n * D * (int64_t)sizeof(C)) : 0u;
  if (threadIdx.x < 2 && bytes % 16 == 0 && ((uintptr_t)(k + off) | (uintptr_t)(v + off)) % 16 == 0)
    kiln_prefetch_l2(threadIdx.x ? (const void *)(v + off) : (const void *)(k + off), bytes);
}

template <typename T, typename C, int TPK>
static __global__ void kva_split_kernel(const T *q, int64_t ldq, const C *k, const C *v, const T *ks, const T *vs,
                                        const int32_t *len, int64_t cap, int rep, int S, int H, float scale, int chunk,
                                        int splits, float *part) {
  constexpr int D = TPK * kva_vec<C>::n;
  int split = blockIdx.x, h = blockIdx.y, bs = blockIdx.z;
  if (!len) kva_prefetch_chunk<C>(k, v, cap, rep, S, H, D, chunk, split, h, bs / S);
  kiln_pdl_wait();
  kiln_pdl_trigger();
  kva_chunk<T, C, TPK>(q, ldq, k, v, ks, vs, len, cap, rep, S, H, scale, chunk, split, h, bs,
                       part + (((int64_t)bs * H + h) * splits + split) * (D + 2));
}

/* ---- one kernel per attention (sm_90 and newer) --------------------------------------------
 * The splits of each (row, head) form a thread block cluster: every block computes its chunk as
 * kva_split_kernel does into its own shared memory, then block 0 of the cluster merges them
 * through distributed shared memory (kva_combine_kernel's arithmetic, in the same order) and
 * writes y. For self-attention with one new token per row, the block whose chunk holds the new
 * position len[b] first writes the new key and value into the caches (quantized for int8
 * caches, as kv_append_int8_kernel does) — no other block reads that position — so the layer is
 * one launch instead of three. grid (splits <= 8, H, B*S), cluster (splits, 1, 1), 128 threads
 * (self) or 256 (cross). */
template <typename T, typename C, int TPK>
static __global__ void kva_fused_kernel(const T *q, int64_t ldq, C *k, C *v, T *ks, T *vs, const int32_t *len,
                                        int64_t cap, int rep, int S, int H, float scale, int chunk, T *y) {
  typedef kva_vec<T> V;
  constexpr int D = TPK * kva_vec<C>::n;
  __shared__ float fin[D + 2];
  int split = blockIdx.x, h = blockIdx.y, bs = blockIdx.z;
  if (!len) kva_prefetch_chunk<C>(k, v, cap, rep, S, H, D, chunk, split, h, bs / S);
  kiln_pdl_wait();
  kiln_pdl_trigger();
  if (len) { /* S == 1: bs is the row */
    int64_t pos = len[bs], hd = (int64_t)H * D, at = ((int64_t)bs * H + h) * cap + pos;
    if (pos >= 0 && pos < cap && pos / chunk == split) {
      const T *src = q + (int64_t)bs * 3 * hd + (int64_t)h * D;
      if constexpr (sizeof(C) == 1) {
        int warp = threadIdx.x >> 5;
        if (warp < 2) kva_quantize_warp<T>(src + (1 + warp) * hd, D, (warp ? v : k) + at * D, (warp ? vs : ks) + at);
      } else {
        for (int d = threadIdx.x; d < D; d += blockDim.x) k[at * D + d] = src[hd + d], v[at * D + d] = src[2 * hd + d];
      }
      __syncthreads(); /* the block reads them back below */
    }
  }
  kva_chunk<T, C, TPK>(q, ldq, k, v, ks, vs, len, cap, rep, S, H, scale, chunk, split, h, bs, fin);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
  cl.sync();
  int d = threadIdx.x;
  if (cl.block_rank() == 0 && d < D) {
    int splits = (int)cl.num_blocks();
    float M = -INFINITY, L = 0.0f, acc = 0.0f;
    for (int i = 0; i < splits; i++) M = fmaxf(M, cl.map_shared_rank(fin, i)[D]);
    for (int i = 0; i < splits; i++) {
      const float *pi = cl.map_shared_rank(fin, i);
      float w = pi[D] == -INFINITY ? 0.0f : __expf(pi[D] - M);
      L += pi[D + 1] * w;
      acc += pi[d] * w;
    }
    y[((int64_t)bs * H + h) * D + d] = kiln_from_f32<T>(L > 0.0f ? acc / L : 0.0f);
  }
  cl.sync(); /* block 0 has read every block's fin */
#else
  (void)y;
  __trap(); /* the host launches it only on sm_90 and newer */
#endif
}

/* grid (B*S, H), D threads: y = sum_i acc_i e^(m_i - M) / sum_i l_i e^(m_i - M). */
template <typename T>
static __global__ void kva_combine_kernel(const float *part, int splits, int H, int D, T *y) {
  typedef kva_vec<T> V;
  int bs = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  kiln_pdl_wait();
  kiln_pdl_trigger();
  if (d >= D) return;
  const float *p = part + ((int64_t)bs * H + h) * splits * (D + 2);
  float M = -INFINITY;
  for (int i = 0; i < splits; i++) M = fmaxf(M, p[i * (D + 2) + D]);
  float L = 0.0f, acc = 0.0f;
  for (int i = 0; i < splits; i++) {
    const float *pi = p + i * (D + 2);
    float w = pi[D] == -INFINITY ? 0.0f : __expf(pi[D] - M);
    L += pi[D + 1] * w;
    acc += pi[d] * w;
  }
  y[((int64_t)bs * H + h) * D + d] = kiln_from_f32<T>(L > 0.0f ? acc / L : 0.0f);
}

/* Splits of the key range for rows = B * S * H query rows: enough blocks to fill the GPU, at
 * least min_keys keys each; rows * splits <= rows + 2048 (the workspace bound). Self-attention
 * plans over the cache's capacity while a window holds fewer tokens for most of its steps, so
 * its splits take 128 keys at least: fewer blocks that find no key. With `resident` blocks at
 * once on the GPU (0: not known), the count at most that large that takes the fewest rounds of
 * blocks times a block's keys plus its fixed cost (KVA_BLOCK_COST keys: the query, the
 * reductions, the partial result); a last round of a few blocks costs about a whole one (H100,
 * large-v3 batch 16: 7 splits of 224 keys made 2240 blocks, 4 of 384 make 1280). Chunks stay
 * within KVA_MAX_CHUNK keys, the most a split or fused block's scores take. */
#define KVA_BLOCK_COST 64
#define KVA_MAX_CHUNK 8192
static int64_t kva_chunk_of(int64_t cap, int64_t sp) { return ((cap + sp - 1) / sp + 15) / 16 * 16; }
static void kva_plan(int64_t rows, int64_t cap, int64_t min_keys, int64_t resident, int *splits, int *chunk) {
  int64_t sp = (2048 + rows - 1) / rows, most = (cap + min_keys - 1) / min_keys;
  if (sp > most) sp = most;
  if (sp < 1) sp = 1;
  int64_t best = sp, best_cost = -1;
  for (int64_t s = sp; resident > 0 && s >= 1; s--) { /* ties keep the larger count */
    if (s < sp && kva_chunk_of(cap, s) > KVA_MAX_CHUNK) break;
    int64_t cost = (rows * s + resident - 1) / resident * (kva_chunk_of(cap, s) + KVA_BLOCK_COST);
    if (best_cost < 0 || cost < best_cost) best_cost = cost, best = s;
  }
  const int64_t c = kva_chunk_of(cap, best);
  *chunk = (int)c;
  *splits = (int)((cap + c - 1) / c);
}

/* Threads per key for the split kernel (head size / vector of C), 0 when it does not apply. */
template <typename C>
static int kva_tpk(int64_t D) {
  int64_t t = D % kva_vec<C>::n == 0 ? D / kva_vec<C>::n : 0;
  return t == 4 || t == 8 || t == 16 ? (int)t : 0;
}

/* The layer's tensors for one launch: caches of C (T, or int8 with scales of T). */
template <typename T, typename C>
struct kva_args {
  const T *q;
  const C *k, *v;
  const T *ks, *vs; /* int8 caches' scales, else NULL */
  const int32_t *len; /* self-attention, else NULL */
  T *y;
  int64_t ldq, B, S, D, cap;
  int heads, rep;
  float scale;
};

/* Dynamic shared memory of a split block: the chunk's scores, then the threads' partial sums. */
template <typename C>
static size_t kva_split_smem(int chunk) {
  return ((size_t)chunk + (size_t)kva_vec<C>::n * KVA_SPLIT_THREADS) * sizeof(float);
}

/* Blocks of the split kernel one SM holds at once, asked once per instantiation with room for
 * 1024 keys (threads and registers bound it, not the few KB of shared memory); 0 when the
 * runtime cannot say. */
template <typename T, typename C, int TPK>
static int kva_split_blocks_per_sm(void) {
  static const int n = [] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kva_split_kernel<T, C, TPK>, KVA_SPLIT_THREADS,
                                                      kva_split_smem<C>(1024)) != cudaSuccess) {
      (void)cudaGetLastError(); /* not sticky: clear it */
      return 0;
    }
    return b;
  }();
  return n;
}

template <typename T, typename C, int TPK>
static kiln_status launch_split(const kva_args<T, C> &a, float *part, int splits, int chunk, cudaStream_t st) {
  size_t smem = kva_split_smem<C>(chunk);
  KILN_CUDA_CHECK(kiln_launch(kva_split_kernel<T, C, TPK>, dim3((unsigned)splits, (unsigned)a.heads, (unsigned)(a.B * a.S)),
                              dim3(KVA_SPLIT_THREADS), smem, st, a.q, a.ldq, a.k, a.v, a.ks, a.vs, a.len, a.cap, a.rep,
                              (int)a.S, a.heads, a.scale, chunk, splits, part));
  KILN_CUDA_CHECK(kiln_launch(kva_combine_kernel<T>, dim3((unsigned)(a.B * a.S), (unsigned)a.heads),
                              dim3((unsigned)((a.D + 31) / 32 * 32)), 0, st, (const float *)part, splits, a.heads, (int)a.D,
                              a.y));
  return KILN_OK;
}

template <typename T, typename C, int TPK>
static kiln_status launch_fused(const kva_args<T, C> &a, int splits, int chunk, cudaStream_t st) {
  /* cross-attention's chunks (1500 keys over at most 8 blocks) read twice the keys per pass with
   * 256 threads: 13.6 -> 10.5 us at batch 1 in bench/chain_bench; self-attention's short caches
   * are faster with 128 at batch 4 (8.6 vs 10.6 us) */
  const int threads = a.len ? KVA_SPLIT_THREADS : 2 * KVA_SPLIT_THREADS;
  size_t smem = ((size_t)chunk + (size_t)kva_vec<C>::n * threads) * sizeof(float);
  KILN_CUDA_CHECK(kiln_launch_cluster(kva_fused_kernel<T, C, TPK>,
                                      dim3((unsigned)splits, (unsigned)a.heads, (unsigned)(a.B * a.S)),
                                      dim3(threads), smem, st, dim3((unsigned)splits, 1, 1), a.q, a.ldq,
                                      (C *)a.k, (C *)a.v, (T *)a.ks, (T *)a.vs, a.len, a.cap, a.rep, (int)a.S, a.heads,
                                      a.scale, chunk, a.y));
  return KILN_OK;
}

#define KVA_FUSED_MAX_ROWS 128

/* 1 allowed, 0 not, -1 not decided yet (KILN_NO_FUSED_ATTENTION=1 in the environment: not) */
static int kva_fused_allowed = -1;
extern "C" void kiln_cuda_kv_attention_allow_fused(int allow) { kva_fused_allowed = allow != 0; }

template <typename T, typename C>
static kiln_status launch(const kiln_tensor *in, int self, const kva_args<T, C> &a, size_t smem, void *workspace,
                          size_t workspace_bytes, cudaStream_t st) {
  constexpr bool Q8 = sizeof(C) == 1;
  constexpr size_t LOAD = sizeof(C) * kva_vec<C>::n; /* bytes of one vector load of the caches */
  int splits = 0, chunk = 0, tpk = kva_tpk<C>(a.D), major = 0, sms = 0;
  const int64_t rows = a.B * a.S * a.heads, min_keys = self ? 128 : 64;
  uintptr_t kp = (uintptr_t)a.k, vp = (uintptr_t)a.v;
  kiln_cuda_current_device(&major, &sms);
  if (kva_fused_allowed < 0) {
    const char *off = getenv("KILN_NO_FUSED_ATTENTION");
    kva_fused_allowed = !(off && off[0] && strcmp(off, "0") != 0);
  }
  /* up to KVA_FUSED_MAX_ROWS (row, head) pairs: with more, clusters cost more than the launches they save (H200,
   * large-v3 batch 16: 6.6 ms per decoding step fused, 5.0 ms not) */
  if (kva_fused_allowed && tpk && major >= 9 && (!self || a.S == 1) && (kp | vp) % LOAD == 0 &&
      rows <= KVA_FUSED_MAX_ROWS) {
    int sp = 0, ch = 0; /* a cluster holds at most 8 blocks */
    kva_plan(rows, a.cap, min_keys, 0, &sp, &ch);
    if (sp > 8) {
      ch = (int)((a.cap + 7) / 8 + 15) / 16 * 16;
      sp = (int)((a.cap + ch - 1) / ch);
    }
    if (ch <= KVA_MAX_CHUNK) switch (tpk) {
        case 4: return launch_fused<T, C, 4>(a, sp, ch, st);
        case 8: return launch_fused<T, C, 8>(a, sp, ch, st);
        default: return launch_fused<T, C, 16>(a, sp, ch, st);
      }
  }
  if (tpk) { /* the split kernel's plan, by the blocks that run at once */
    const int bps = tpk == 4 ? kva_split_blocks_per_sm<T, C, 4>()
                    : tpk == 8 ? kva_split_blocks_per_sm<T, C, 8>() : kva_split_blocks_per_sm<T, C, 16>();
    kva_plan(rows, a.cap, min_keys, (int64_t)bps * sms, &splits, &chunk);
  }
  size_t need = (size_t)rows * (size_t)splits * (size_t)(a.D + 2) * sizeof(float);
  int split_path = tpk && workspace && need <= workspace_bytes && (kp | vp) % LOAD == 0 && chunk <= KVA_MAX_CHUNK &&
                   a.S * a.B <= 65535;
  if (self && Q8) {
    KILN_CUDA_CHECK(kiln_launch(kv_append_int8_kernel<T>, dim3((unsigned)a.S, (unsigned)a.B), dim3(KVA_THREADS), 0, st, a.q,
                                (int8_t *)in[1].data, (int8_t *)in[2].data, (T *)a.ks, (T *)a.vs, a.len, (int)a.S,
                                a.heads, (int)a.D, a.cap));
  } else if (self) {
    KILN_CUDA_CHECK(kiln_launch(kv_append_kernel<T>, dim3((unsigned)a.S, (unsigned)a.B), dim3(KVA_THREADS), 0, st, a.q,
                                (T *)in[1].data, (T *)in[2].data, a.len, (int)a.S, a.heads, (int)a.D, a.cap));
  }
  if (split_path) {
    float *part = (float *)workspace;
    switch (tpk) {
      case 4: return launch_split<T, C, 4>(a, part, splits, chunk, st);
      case 8: return launch_split<T, C, 8>(a, part, splits, chunk, st);
      default: return launch_split<T, C, 16>(a, part, splits, chunk, st);
    }
  }
  int vec = a.D % kva_vec<C>::n == 0 && kp % LOAD == 0;
  int pairs_ok = a.D % 2 == 0 && vp % (2 * sizeof(C)) == 0;
  KILN_CUDA_CHECK(kiln_launch(kv_attention_kernel<T, C>, dim3((unsigned)a.S, (unsigned)a.heads, (unsigned)a.B),
                              dim3(KVA_THREADS), smem, st, a.q, a.ldq, a.k, a.v, a.ks, a.vs, a.len, a.cap, a.rep, a.y,
                              (int)a.S, a.heads, (int)a.D, a.scale, vec, pairs_ok));
  return KILN_OK;
}

template <typename T>
static kiln_status launch_dtype(const kiln_tensor *in, int self, int q8, int heads, float scale, kiln_tensor *y, int64_t B,
                                int64_t S, int64_t D, int64_t cap, int rep, size_t smem, void *workspace,
                                size_t workspace_bytes, cudaStream_t st) {
  int n_in = (self ? 4 : 3) + (q8 ? 2 : 0);
  const T *ks = q8 ? (const T *)in[n_in - 2].data : NULL, *vs = q8 ? (const T *)in[n_in - 1].data : NULL;
  const int32_t *len = self ? (const int32_t *)in[3].data : NULL;
  int64_t ldq = (self ? 3 : 1) * (int64_t)heads * D;
  if (q8) {
    kva_args<T, int8_t> a = {(const T *)in[0].data, (const int8_t *)in[1].data, (const int8_t *)in[2].data, ks, vs, len,
                             (T *)y->data, ldq, B, S, D, cap, heads, rep, scale};
    return launch<T, int8_t>(in, self, a, smem, workspace, workspace_bytes, st);
  }
  kva_args<T, T> a = {(const T *)in[0].data, (const T *)in[1].data, (const T *)in[2].data, NULL, NULL, len,
                      (T *)y->data, ldq, B, S, D, cap, heads, rep, scale};
  return launch<T, T>(in, self, a, smem, workspace, workspace_bytes, st);
}

extern "C" size_t kiln_cuda_kv_attention_workspace(const kiln_dims *q, const kiln_dims *k, int32_t heads) {
  if (!q || !k || q->rank != 3 || k->rank != 4 || heads < 1) return 0;
  int64_t rows = q->d[0] * q->d[1] * heads;
  return (size_t)(rows + 2048) * (size_t)(k->d[3] + 2) * sizeof(float);
}

/* Int8 caches: codes int8, scales in the queries' dtype, [rows, H, T] (the caches' first dims). */
static kiln_status check_int8(const kiln_tensor *in, int32_t n_in, const char *op) {
  if (in[1].dtype != KILN_DTYPE_INT8 || in[2].dtype != KILN_DTYPE_INT8)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: int8 caches must be int8 (got %s and %s)", op, kiln_dtype_name(in[1].dtype),
                      kiln_dtype_name(in[2].dtype));
  for (int32_t i = n_in - 2; i < n_in; i++) {
    const kiln_dims *c = &in[1].shape, *s = &in[i].shape;
    if (in[i].dtype != in[0].dtype)
      return kiln_error(KILN_ERR_UNSUPPORTED, "%s: the caches' scales must have the queries' dtype %s (got %s)", op,
                        kiln_dtype_name(in[0].dtype), kiln_dtype_name(in[i].dtype));
    if (c->rank != 4 || s->rank != 3 || s->d[0] != c->d[0] || s->d[1] != c->d[1] || s->d[2] != c->d[2])
      return kiln_error(KILN_ERR_SHAPE, "%s: scales must be [rows, H, T] of the int8 caches [rows, H, T, D]", op);
  }
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_kv_attention(int32_t n_in, const kiln_tensor *in, int32_t heads, float scale,
                                              int32_t self, kiln_tensor *y, void *workspace, size_t workspace_bytes,
                                              void *stream) {
  const char *op = "kiln_cuda_kv_attention";
  int32_t base = self ? 4 : 3, q8 = n_in == base + 2;
  if (n_in != base && !q8)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: %d inputs; expected %d (float caches) or %d (int8)", op, n_in, base, base + 2);
  KILN_TRY(kiln_check_float(&in[0], op, self ? "qkv" : "q"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (q8) {
    KILN_TRY(check_int8(in, n_in, op));
  } else {
    KILN_TRY(kiln_check_float(&in[1], op, "keys"));
    KILN_TRY(kiln_check_float(&in[2], op, "values"));
    if (in[1].dtype != in[0].dtype || in[2].dtype != in[0].dtype)
      return kiln_error(KILN_ERR_UNSUPPORTED, "%s: queries, keys, values and output must share one dtype", op);
  }
  if (y->dtype != in[0].dtype) return kiln_error(KILN_ERR_UNSUPPORTED, "%s: the output must have the queries' dtype", op);
  if (in[0].shape.rank != 3 || in[1].shape.rank != 4 || !kiln_dims_equal(&in[1].shape, &in[2].shape) ||
      in[1].shape.d[1] != heads)
    return kiln_error(KILN_ERR_SHAPE, "%s: expects q [B, S, H*D] and k, v [Bk, H, T, D]", op);
  int64_t B = in[0].shape.d[0], S = in[0].shape.d[1], D = in[1].shape.d[3], cap = in[1].shape.d[2];
  int64_t Bk = in[1].shape.d[0];
  if (self && (in[3].dtype != KILN_DTYPE_INT32 || Bk < B))
    return kiln_error(KILN_ERR_SHAPE, "%s: self-attention needs int32 lengths and caches with >= %lld rows", op,
                      (long long)B);
  if (!self && (Bk < 1 || B % Bk != 0))
    return kiln_error(KILN_ERR_SHAPE, "%s: %lld query rows are not a multiple of %lld key rows", op, (long long)B,
                      (long long)Bk);
  if (B * S * heads * D == 0) return KILN_OK;
  size_t smem = ((size_t)D + (size_t)cap + 2 * KVA_THREADS) * sizeof(float);
  if (smem > 48 * 1024 || D > 2 * KVA_THREADS || (D % 2 && D > KVA_THREADS) || S > 65535 || B > 65535 || heads > 65535)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %lld keys of head size %lld are beyond the decode kernel (about 11000 keys)", op,
                      (long long)cap, (long long)D);
  int rep = self ? 1 : (int)(B / Bk);
  cudaStream_t st = kiln_stream(stream);
  switch (in[0].dtype) {
    case KILN_DTYPE_FP32:
      return launch_dtype<float>(in, self, q8, heads, scale, y, B, S, D, cap, rep, smem, workspace, workspace_bytes, st);
    case KILN_DTYPE_FP16:
      return launch_dtype<__half>(in, self, q8, heads, scale, y, B, S, D, cap, rep, smem, workspace, workspace_bytes, st);
    default:
      return launch_dtype<__nv_bfloat16>(in, self, q8, heads, scale, y, B, S, D, cap, rep, smem, workspace, workspace_bytes,
                                         st);
  }
}

extern "C" kiln_status kiln_cuda_quantize_int8(const kiln_tensor *x, kiln_tensor *codes, kiln_tensor *scales, void *stream) {
  const char *op = "kiln_cuda_quantize_int8";
  KILN_TRY(kiln_check_float(x, op, "x"));
  if (codes->dtype != KILN_DTYPE_INT8 || scales->dtype != x->dtype)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: codes must be int8 and scales %s (got %s and %s)", op,
                      kiln_dtype_name(x->dtype), kiln_dtype_name(codes->dtype), kiln_dtype_name(scales->dtype));
  int32_t r = x->shape.rank;
  int64_t n = kiln_dims_count(&x->shape), D = r ? x->shape.d[r - 1] : 0, rows = D ? n / D : 0;
  if (r < 1 || !kiln_dims_equal(&codes->shape, &x->shape) || scales->shape.rank != r - 1 ||
      kiln_dims_count(&scales->shape) != rows || D > INT32_MAX)
    return kiln_error(KILN_ERR_SHAPE, "%s: x [..., D] needs codes [..., D] and scales [...]", op);
  if (n == 0) return KILN_OK;
  int64_t blocks = (rows + KVA_THREADS / 32 - 1) / (KVA_THREADS / 32);
  unsigned grid = (unsigned)(blocks < 65535 * 32 ? blocks : 65535 * 32);
  cudaStream_t st = kiln_stream(stream);
  switch (x->dtype) {
    case KILN_DTYPE_FP32:
      kva_quantize_kernel<float><<<grid, KVA_THREADS, 0, st>>>((const float *)x->data, (int8_t *)codes->data,
                                                               (float *)scales->data, rows, (int)D);
      break;
    case KILN_DTYPE_FP16:
      kva_quantize_kernel<__half><<<grid, KVA_THREADS, 0, st>>>((const __half *)x->data, (int8_t *)codes->data,
                                                                (__half *)scales->data, rows, (int)D);
      break;
    default:
      kva_quantize_kernel<__nv_bfloat16><<<grid, KVA_THREADS, 0, st>>>(
          (const __nv_bfloat16 *)x->data, (int8_t *)codes->data, (__nv_bfloat16 *)scales->data, rows, (int)D);
      break;
  }
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}
