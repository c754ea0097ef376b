/* src/backends/cuda/chain.cu - a run of decoding-step layers as one persistent kernel (the
 * "chain"; API and what it takes: kiln_cuda_run_chain in cuda_ops.h).
 *
 * Why: at batch 1 a Whisper large decoding step is ~260 small kernels; each reads a few MB of
 * weights, and launching one after another (even with programmatic dependent launch) leaves the
 * memory idle between them and while each ramps up. Here one block per SM runs every phase
 * (one phase per layer), and the weights and cached keys/values, which do not depend on the
 * activations, stream into shared memory ahead of the computation that needs them.
 *
 * A block is CH_WARPS consumer warps and one producer warp. Each phase is cut into units:
 *   - matmul: 16 weight rows x kc values of K (kc * bits / 8 <= 2560 bytes a row; K split into
 *     `ks` pieces when longer), y[M, 16] of one row tile (M <= 16 rows of x);
 *   - attention: one (row b, head h) and a piece of its keys (slots of CH_KEYS keys each; a
 *     cross-attention phase is cut into about a unit per block, CH_MERGE_MAX pieces at most).
 * Unit u of phase p runs on block (u + offset_p) % grid, offset_p being the units of the phases
 * before it (mod grid), so every block gets a fair share of each layer's bytes. The producer
 * walks the same sequence and, for each of its block's units, copies the unit's weight rows (one
 * cp.async.bulk per row) or its keys and values (two bulk copies) into the next slot of a ring
 * of CH_SLOTS slots in shared memory, with an mbarrier per slot for "full" (the copies' bytes
 * arrived) and one for "empty" (the consumers are done with it). It never waits for another
 * block, so it runs up to CH_SLOTS units ahead, across phases.
 * The consumers of a block take a phase only if it has units for them: they wait until the
 * phase before it is complete (done[p - 1] == its unit count; one thread spins with acquire
 * loads), stage the unit's rows of x in shared memory (layer-normalized when the phase fuses a
 * layernorm: row statistics once a phase), then compute each unit from its slot:
 *   - matmul: the skinny kernel's tensor-core scheme (skinny.cu, mma_frag.cuh): lane (g, t)
 *     reads 16 bytes of weight rows g and g + 8, the 8 warps split the unit's K and add their
 *     partial sums in shared memory; bias, activation, residual, store. A K longer than a slot
 *     holds streams through consecutive slots, its pieces added up in registers.
 *   - attention: slot after slot, scores of the piece's keys (and of the new token's key, taken
 *     from qkv), an online softmax (running max and sum) and the weighted values; the new key and
 *     value are also written into the caches at lengths[b]. A (row, head) of one piece writes its
 *     output; with several, each piece writes its (output, max, sum) to the workspace, and the
 *     matmul phase that follows (the attention's output projection) merges them in piece order
 *     as it stages its x (kv_attention.cu's combine), so no counter or second pass is needed;
 *     the block holding its first row tile also stores the merged rows in y. An attention phase
 *     not followed by such a matmul runs one piece per (row, head).
 * Then the block adds its unit count to done[p] (after a fence). All blocks must be resident at
 * once (a cooperative launch guarantees it or fails). Activations written inside the kernel are
 * read with ld.global.cg (L2, never a stale L1 line): the arena reuses addresses across layers.
 *
 * Int8 caches (codes and a scale per key or value vector, kv_attention.cu): the producer copies a
 * slot's codes and the 16-byte lines holding its scales; scores are (q . codes) * key scale, the
 * softmax weights times the value scales weigh the value codes, and the new key and value are
 * quantized by one warp each as the append kernel does (kv_quant.cuh), bit for bit.
 * Workspace (the context's, its done counters cleared before each launch): done counters, then
 * the attention pieces' partial results. Needs sm_90 (bulk copies, mbarrier transaction counts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_internal.h"
#include "backends/cuda/kv_quant.cuh"
#include "backends/cuda/mma_frag.cuh"
#include "core/error.h"

namespace {

using namespace kiln_mma;

#define CH_WARPS 8
#define CH_CTHREADS (CH_WARPS * 32)
#define CH_THREADS (CH_CTHREADS + 32)
#define CH_SLOTS 4
#define CH_ROW_BYTES 2560                    /* most bytes of one weight row in a unit */
#define CH_SLOT_BYTES (16 * (CH_ROW_BYTES + 64)) /* 16 rows, each padded (ch_stride) */
#define CH_XS_BYTES CH_SLOT_BYTES            /* staged rows of x */
#define CH_KEYS 128                          /* keys per attention unit */
#define CH_Q8_SCALES (CH_KEYS * 64)          /* int8 caches: a slot half's scales after its codes */
#define CH_MAX_D 64
#define CH_MAX_ROWS 16
#define CH_MAX_PHASES 128
#define CH_STAGE_U 4   /* items of x a thread stages per round (loads in flight together) */
#define CH_MERGE_MAX 4 /* most pieces of a (row, head) a matmul merges as it stages x (8: spills in the products) */
#define CH_PART (CH_MAX_D + 4) /* floats of a piece's partial result: output, max, sum (16-byte rows) */
#define CH_TRACE KILN_CUDA_CHAIN_TRACE_WORDS
#define CH_PREFETCH 2 /* units of L2 prefetch ahead of the ring's copies (default; H100: 0-8 tried) */
/* Rows of x up to which KILN_CUDA_CHAIN_AUTO takes a layer, for matmuls of 16-bit weights and of
 * quantized ones. H100, Whisper large-v3, a decoding step (bench/RESULTS.md, session 11): batch 1,
 * chain against kernels one by one, fp16 1.60 vs 2.02 ms, int4 1.81 vs 1.89; batch 4, fp16 2.34 vs
 * 2.49, int4 2.56 vs 2.36 (int4 units of 16 rows are latency-bound). Larger batches: not measured. */
#define CH_AUTO_ROWS 4
#define CH_AUTO_ROWS_WQ 1
/* Rows up to which it takes attention over int8 caches. H100, large-v3, max-4 engines (session 17):
 * fp16 weights + int8 KV, batch 1: chain 1.738-1.747 ms a step against 2.086-2.119 one by one;
 * batch 4: 2.567 against 2.523 (its int8 attention units convert 16 codes a load: slower than
 * fp16's). int4 + int8 KV, batch 1: 1.963-1.994 against 1.977-1.984. */
#define CH_AUTO_ROWS_Q8 1
#define CH_RED_FLOATS (CH_WARPS * 2 * 128) /* the warps' partial sums at MT = 2 */
#define CH_ATT_FLOATS (CH_MAX_D * 3 + CH_KEYS + 16 + 8 * CH_MAX_D + 2)
#define CH_SMEM \
  (CH_SLOTS * CH_SLOT_BYTES + CH_XS_BYTES + (CH_RED_FLOATS > CH_ATT_FLOATS ? CH_RED_FLOATS : CH_ATT_FLOATS) * 4 + \
   2 * CH_SLOTS * 8 + 2 * CH_MAX_ROWS * 4)

enum { CH_MM = 0, CH_SELF = 1, CH_CROSS = 2 };

/* One phase (a layer). Matmul: y[m, n] = act(norm(x)[m, k] W[n, k]^T + b) (+ res). Attention:
 * m rows of queries, x = qkv [m, 3 H D] (self) or q [m, H D] (cross), w / v the key / value
 * caches [rows, H, cap, D]. */
struct ch_phase {
  int kind, bits, ln, act, bias_dt, group;
  int m, n, k, kc, ks, tiles;    /* matmul: rows, N, K, K per unit, K pieces, row tiles */
  int heads, d, cap, rep, pieces; /* attention: pieces = most units per (row, head) */
  int split;                      /* attention: pieces wanted per (row, head) (1: y written whole) */
  int q8;                         /* attention: int8 caches, their scales [rows, H, cap] in ksc / vsc */
  int xatt;                       /* matmul: the attention phase whose pieces x merges, or -1 */
  float eps, scale;
  const void *x, *w, *v, *ksc, *vsc;
  const float *scales;
  const void *bias, *gamma, *beta, *res;
  const int32_t *len;
  void *y;
  int layer; /* the graph layer (for the trace) */
};

struct ch_params {
  int n, grid;
  unsigned int *done; /* done[CH_MAX_PHASES] */
  float *part;
  uint32_t *trace; /* NULL, or CH_TRACE words per (layer, block): kiln_cuda_chain_trace */
  int prefetch;    /* units the producer's L2 prefetch runs ahead of its copies */
  ch_phase ph[CH_MAX_PHASES];
};

/* Padded shared-memory stride of a row of `bytes`: rows g and g + 8 of a quad's 16-byte loads
 * land in different halves of the banks. */
static __host__ __device__ __forceinline__ int ch_stride(int bytes) { return (bytes + 127) / 128 * 128 + 64; }

/* Device code for sm_90 and newer only (older targets compile the kernel as a trap). */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

/* ---- device helpers ---------------------------------------------------------------------- */

static __device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

static __device__ __forceinline__ void mbar_init(uint64_t *b, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(b)), "r"(count) : "memory");
}

static __device__ __forceinline__ void mbar_expect(uint64_t *b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void mbar_arrive(uint64_t *b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(b)) : "memory");
}

static __device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
  uint32_t ok = 0;
  while (!ok)
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(ok)
        : "r"(smem_addr(b)), "r"(parity)
        : "memory");
}

/* bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned), counted on b */
static __device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(b))
               : "memory");
}

static __device__ __forceinline__ unsigned int ld_acquire(const unsigned int *p) {
  unsigned int v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

/* *p += v at gpu scope, release: the block's writes before it, ordered by a barrier, are visible
 * to whoever acquires the new value. */
static __device__ __forceinline__ void red_release(unsigned int *p, unsigned int v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* the line at p into L1 (a hint) */
static __device__ __forceinline__ void prefetch_l1(const void *p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

/* the 128-byte line at p into L2, to stay (a hint: no fault, nothing waits for it) */
static __device__ __forceinline__ void prefetch_line(const void *p) {
  asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p));
}

static __device__ __forceinline__ uint32_t global_ns(void) {
  uint32_t t;
  asm volatile("mov.u32 %0, %%globaltimer_lo;" : "=r"(t));
  return t;
}

/* the consumer warps only (named barrier 1; the producer warp never joins) */
static __device__ __forceinline__ void cbar(void) { asm volatile("bar.sync 1, %0;" ::"n"(CH_CTHREADS) : "memory"); }

/* Keys row b attends to (cache positions 0 .. len[b], the last one new), clamped to the cache. */
static __device__ __forceinline__ int self_keys(const ch_phase &P, int b) {
  long long n = (long long)__ldg(P.len + b) + 1;
  return n < 0 ? 0 : n > P.cap ? P.cap : (int)n;
}

#define CH_MIN_PIECE 32 /* fewest keys of a self-attention piece */

/* Pieces (row, head) of `keys` keys is cut into: P.split at most, none empty, and for
 * self-attention CH_MIN_PIECE keys at least. The producer, the consumers and the next phase's merge all compute it. */
static __device__ __forceinline__ int att_pieces(const ch_phase &P, int keys) {
  int n = P.split;
  const int most = (keys + CH_MIN_PIECE - 1) / CH_MIN_PIECE;
  if (P.kind == CH_SELF && n > most) n = most;
  if (n <= 1 || keys <= 1) return 1;
  const int per = (keys + n - 1) / n;
  return (keys + per - 1) / per;
}

static __device__ __forceinline__ int row_keys(const ch_phase &P, int b) { return P.kind == CH_CROSS ? P.cap : self_keys(P, b); }

static __device__ int ch_units(const ch_phase &P) {
  if (P.kind == CH_MM) return P.tiles;
  if (P.kind == CH_CROSS) return P.m * P.heads * att_pieces(P, P.cap);
  int u = 0;
  for (int b = 0; b < P.m; b++) u += att_pieces(P, self_keys(P, b)) * P.heads;
  return u;
}

/* Attention unit u -> row b, head h, piece of pieces, its keys k0 .. k1 (the row's keys cut in
 * pieces of `per`), and the position of the new key (self-attention, when it lies in the cache
 * and in the piece; else -1). */
struct ch_att {
  int b, h, piece, pieces, k0, k1, pos;
};

static __device__ ch_att att_unit(const ch_phase &P, int u) {
  ch_att a;
  int keys = P.cap;
  if (P.kind == CH_CROSS) {
    a.pieces = att_pieces(P, keys);
    a.piece = u % a.pieces, u /= a.pieces;
    a.h = u % P.heads, a.b = u / P.heads;
  } else {
    for (a.b = 0; a.b < P.m; a.b++) {
      keys = self_keys(P, a.b);
      a.pieces = att_pieces(P, keys);
      if (u < a.pieces * P.heads) break;
      u -= a.pieces * P.heads;
    }
    a.h = u / a.pieces, a.piece = u % a.pieces;
  }
  const int per = (keys + a.pieces - 1) / a.pieces;
  a.k0 = a.piece * per, a.k1 = a.k0 + per < keys ? a.k0 + per : keys;
  a.pos = -1;
  if (P.kind == CH_SELF) {
    const long long pos = (long long)__ldg(P.len + a.b);
    if (pos >= 0 && pos < P.cap && pos >= a.k0 && pos < a.k1) a.pos = (int)pos;
  }
  return a;
}

/* Slots the unit's keys take (at least one, so that producer and consumers agree on empty ones) */
static __device__ __forceinline__ int att_slots(const ch_att &a) {
  return a.k1 - a.k0 > CH_KEYS ? (a.k1 - a.k0 + CH_KEYS - 1) / CH_KEYS : 1;
}

/* Slot s of the unit: its first key c0, its keys, and those of them held in the caches (copied
 * by the producer; the new key, when in this slot, comes last and from qkv). */
static __device__ __forceinline__ int att_chunk(const ch_att &a, int s, int *c0, int *cached) {
  *c0 = a.k0 + s * CH_KEYS;
  const int c1 = a.k1 < *c0 + CH_KEYS ? a.k1 : *c0 + CH_KEYS, n = c1 > *c0 ? c1 - *c0 : 0;
  *cached = a.pos >= *c0 && a.pos < c1 ? a.pos - *c0 : n;
  return n;
}

/* The cache vector of key `key` of the unit's (row, head): its index among the [rows, H, cap]
 * vectors (cross-attention's query rows share key rows). */
static __device__ __forceinline__ long long cache_vector(const ch_phase &P, const ch_att &a, int key) {
  int row = P.kind == CH_CROSS ? a.b / P.rep : a.b;
  return ((long long)row * P.heads + a.h) * P.cap + key;
}

static __device__ __forceinline__ const char *cache_row(const ch_phase &P, const void *c, const ch_att &a, int key,
                                                        int elem) {
  return (const char *)c + cache_vector(P, a, key) * P.d * elem;
}

/* Int8 caches: the scale of key `key` of the unit's (row, head), and the slot's copy of a slot
 * half's scales, which starts at the 16-byte line holding key c0's (the producer copies whole lines). */
template <typename T>
static __device__ __forceinline__ const T *scale_at(const ch_phase &P, const void *sc, const ch_att &a, int key) {
  return (const T *)sc + cache_vector(P, a, key);
}

template <typename T>
static __device__ __forceinline__ const T *att_scales(const ch_phase &P, const ch_att &a, int c0, const char *half) {
  const uintptr_t at = (uintptr_t)scale_at<T>(P, P.ksc, a, c0);
  return reinterpret_cast<const T *>(half + CH_Q8_SCALES + (at & 15));
}

/* ---- the producer ------------------------------------------------------------------------ */

/* A walk over this block's units, phase after phase (the producer's two walks and the consumers'
 * visit the same sequence). */
struct ch_walk {
  int ph, units, u, off;
};

static __device__ __forceinline__ ch_walk walk_start(void) {
  ch_walk w;
  w.ph = -1, w.units = 0, w.u = 0, w.off = 0;
  return w;
}

/* The next unit of this block; false past the last phase. */
static __device__ bool walk_next(const ch_params &p, ch_walk &w) {
  if (w.ph >= 0) w.u += p.grid;
  while (w.ph < 0 || w.u >= w.units) {
    if (w.ph >= 0) w.off = (w.off + w.units) % p.grid;
    if (++w.ph >= p.n) return false;
    w.units = ch_units(p.ph[w.ph]);
    w.u = ((int)blockIdx.x - w.off + p.grid) % p.grid;
  }
  return true;
}

/* Unit u of P as the producer sees it: the attention unit (unused for a matmul), worked out once
 * a unit, and the slots it takes (a matmul row tile's K pieces, or an attention piece's keys). */
struct ch_unit {
  ch_att a;
  int slots;
};

static __device__ __forceinline__ ch_unit unit_of(const ch_phase &P, int u) {
  ch_unit c;
  if (P.kind == CH_MM) {
    memset(&c.a, 0, sizeof c.a);
    c.slots = P.ks;
  } else {
    c.a = att_unit(P, u);
    c.slots = att_slots(c.a);
  }
  return c;
}

/* What lane `lane` of the producer copies for slot kp of unit u of P (attention: a, its
 * unit_of()): bytes from src to slot offset dst (0 bytes: nothing); *total is the slot's bytes. */
template <typename T>
static __device__ int unit_source(const ch_phase &P, int u, const ch_att &a, int kp, int lane, const char **src,
                                  int *dst, uint32_t *total) {
  if (P.kind == CH_MM) {
    const int n0 = u * 16, k0 = kp * P.kc;
    const int kc = P.k - k0 < P.kc ? P.k - k0 : P.kc, rows = P.n - n0 < 16 ? P.n - n0 : 16;
    const int rb = kc * P.bits / 8;
    *total = (uint32_t)(rows * rb);
    if (lane >= rows) return 0;
    *src = (const char *)P.w + (long long)(n0 + lane) * ((long long)P.k * P.bits / 8) + (long long)k0 * P.bits / 8;
    *dst = lane * ch_stride(rb);
    return rb;
  }
  int c0, cached;
  att_chunk(a, kp, &c0, &cached);
  const int bytes = cached * P.d * (P.q8 ? 1 : (int)sizeof(T));
  int sbytes = 0;
  if (P.q8 && cached) { /* the scales' 16-byte lines around keys c0 .. c0 + cached (att_scales) */
    const uintptr_t at = (uintptr_t)scale_at<T>(P, P.ksc, a, c0);
    sbytes = (int)(((at + (uintptr_t)cached * sizeof(T) + 15) & ~(uintptr_t)15) - (at & ~(uintptr_t)15));
  }
  *total = 2u * (uint32_t)(bytes + sbytes);
  if (lane >= 4 || !bytes || (lane >= 2 && !sbytes)) return 0;
  if (lane >= 2) {
    *src = (const char *)((uintptr_t)scale_at<T>(P, lane == 3 ? P.vsc : P.ksc, a, c0) & ~(uintptr_t)15);
    *dst = (lane - 2) * (CH_SLOT_BYTES / 2) + CH_Q8_SCALES;
    return sbytes;
  }
  *src = cache_row(P, lane ? P.v : P.w, a, c0, P.q8 ? 1 : (int)sizeof(T));
  *dst = lane * (CH_SLOT_BYTES / 2);
  return bytes;
}

/* The producer warp: each unit's bytes into the next ring slot (waiting for the consumers to free
 * it), and, p.prefetch units further on, the same bytes into L2: the memory keeps streaming while
 * the consumers wait for a phase, and the slot's copy then mostly reads L2. */
template <typename T>
static __device__ void produce(const ch_params &p, char *ring, uint64_t *full, uint64_t *empty) {
  const int lane = threadIdx.x & 31;
  ch_walk ld = walk_start(), pf = walk_start();
  bool pf_more = true;
  const char *src;
  int dst;
  uint32_t total;
  /* the small per-phase constants (bias, layernorm, per-row scales) into L2 once, kept there */
  for (int ph = blockIdx.x; ph < p.n; ph += p.grid) {
    const ch_phase &P = p.ph[ph];
    if (P.kind != CH_MM) continue;
    const int bias_bytes = P.bias ? P.n * (P.bias_dt == KILN_DTYPE_FP32 ? 4 : 2) : 0;
    const int ln_bytes = P.ln ? P.k * (int)sizeof(T) : 0, sc_bytes = P.bits < 16 && P.group == 0 ? P.n * 4 : 0;
    for (int o = lane * 128; o < bias_bytes; o += 32 * 128) prefetch_line((const char *)P.bias + o);
    for (int o = lane * 128; o < ln_bytes; o += 32 * 128)
      prefetch_line((const char *)P.gamma + o), prefetch_line((const char *)P.beta + o);
    for (int o = lane * 128; o < sc_bytes; o += 32 * 128) prefetch_line((const char *)P.scales + o);
  }
  auto prefetch_unit = [&](const ch_walk &w) {
    const ch_phase &P = p.ph[w.ph];
    const ch_unit un = unit_of(P, w.u);
    for (int q = 0; q < un.slots; q++) {
      const int b = unit_source<T>(P, w.u, un.a, q, lane, &src, &dst, &total);
      if (b) kiln_prefetch_l2(src, (uint32_t)b);
    }
  };
  for (int i = 0; i < p.prefetch && (pf_more = walk_next(p, pf)); i++) prefetch_unit(pf);
  uint32_t it = 0;
  while (walk_next(p, ld)) {
    if (pf_more && p.prefetch > 0 && (pf_more = walk_next(p, pf))) prefetch_unit(pf);
    const ch_phase &P = p.ph[ld.ph];
    /* group scales of the tile's rows (a few lines a row) into L2 ahead of the consumers */
    if (P.kind == CH_MM && P.bits < 16 && P.group > 0 && lane < 16 && ld.u * 16 + lane < P.n) {
      const int spr = P.k / P.group;
      const char *r = (const char *)(P.scales + (long long)(ld.u * 16 + lane) * spr);
      for (int o = 0; o < spr * 4; o += 128) prefetch_line(r + o);
    }
    const ch_unit un = unit_of(P, ld.u);
    for (int q = 0; q < un.slots; q++, it++) {
      const int s = (int)(it % CH_SLOTS);
      if (it >= CH_SLOTS) mbar_wait(&empty[s], ((it / CH_SLOTS) - 1) & 1);
      const int b = unit_source<T>(P, ld.u, un.a, q, lane, &src, &dst, &total);
      if (lane == 0) mbar_expect(&full[s], total);
      __syncwarp();
      if (b) bulk_copy(ring + (size_t)s * CH_SLOT_BYTES + dst, src, (uint32_t)b, &full[s]);
    }
  }
}

/* x[r, kk .. kk + 7] of a matmul whose x is attention phase A's output: y where the (row, head)
 * was one piece, else its pieces' (output, max, sum), all loaded at once (CH_MERGE_MAX at most:
 * link_pieces), merged in piece order (kv_attention.cu's combine) and rounded to T as y would be;
 * stored into y too when `store`. */
template <typename T>
static __device__ uint4 att_merged8(const ch_params &p, const ch_phase &A, int r, int kk, bool store) {
  const int h = kk / A.d, d0 = kk % A.d, n = att_pieces(A, row_keys(A, r));
  uint4 *y = reinterpret_cast<uint4 *>((T *)A.y + (long long)r * A.heads * A.d + kk);
  if (n == 1) return __ldcg(y);
  const float *pt = p.part + ((long long)r * A.heads + h) * A.split * CH_PART;
  float2 ml[CH_MERGE_MAX];
  float4 v[CH_MERGE_MAX][2];
#pragma unroll
  for (int i = 0; i < CH_MERGE_MAX; i++) {
    if (i >= n) break;
    const float *pi = pt + i * CH_PART;
    ml[i] = __ldcg(reinterpret_cast<const float2 *>(pi + CH_MAX_D));
    v[i][0] = __ldcg(reinterpret_cast<const float4 *>(pi + d0));
    v[i][1] = __ldcg(reinterpret_cast<const float4 *>(pi + d0) + 1);
  }
  float M = -INFINITY;
#pragma unroll
  for (int i = 0; i < CH_MERGE_MAX; i++)
    if (i < n) M = fmaxf(M, ml[i].x);
  float L = 0.0f, acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < CH_MERGE_MAX; i++) {
    if (i >= n || ml[i].x == -INFINITY) continue;
    const float w = __expf(ml[i].x - M);
    L += ml[i].y * w;
#pragma unroll
    for (int e = 0; e < 2; e++) {
      acc[4 * e] += v[i][e].x * w, acc[4 * e + 1] += v[i][e].y * w;
      acc[4 * e + 2] += v[i][e].z * w, acc[4 * e + 3] += v[i][e].w * w;
    }
  }
  uint32_t w[4];
#pragma unroll
  for (int e = 0; e < 4; e++)
    w[e] = to_u32(wq_type<T>::from_float2(L > 0.0f ? acc[2 * e] / L : 0.0f, L > 0.0f ? acc[2 * e + 1] / L : 0.0f));
  const uint4 out = make_uint4(w[0], w[1], w[2], w[3]);
  if (store) __stcg(y, out);
  return out;
}

/* ---- matmul units ------------------------------------------------------------------------ */

/* Mean and 1/std of x's m rows over k (from L2: x was written in this kernel), one warp a row. */
template <typename T>
static __device__ void row_stats(const T *x, int m, int k, float eps, float *mean, float *rstd) {
  for (int r = threadIdx.x >> 5; r < m; r += CH_WARPS) {
    const T *xr = x + (long long)r * k;
    warp_row_stats<T>([&](int i) { return __ldcg(reinterpret_cast<const uint4 *>(xr + i)); },
                      kiln_f32(__ldcg(xr)), k, eps, &mean[r], &rstd[r]);
  }
}

/* Rows of x, columns k0 .. k0 + kc, into xs (row stride ch_stride(kc * 2) bytes); with a fused
 * layernorm, normalized and rounded to T as a layernorm layer's output would be. When the unit
 * spans all of K the row statistics come from the staged rows (one read of x from L2), else
 * mean / rstd hold them already (row_stats at the phase's start). x of a phase that merges an
 * attention's pieces (P.xatt >= 0, all of K: the host checks it) is merged here; `store`: the
 * merged rows go to the attention's y too. */
template <typename T>
static __device__ void stage_x(const ch_params &p, const ch_phase &P, int k0, int kc, float *mean, float *rstd,
                               char *xs, bool store) {
  const T *x = (const T *)P.x, *gamma = (const T *)P.gamma, *beta = (const T *)P.beta;
  const int per_row = kc / 8, stride = ch_stride(kc * (int)sizeof(T)), items = P.m * per_row;
  auto at = [&](int i) { return reinterpret_cast<uint4 *>(xs + (i / per_row) * stride + (i % per_row) * 8 * (int)sizeof(T)); };
  /* CH_STAGE_U items (8 values) a thread, all loaded before any is stored: one L2 round trip for
   * them instead of one each; the layernorm's gamma and beta into L1 meanwhile */
  if (P.xatt >= 0) { /* a merge keeps its pieces' loads in flight: one item at a time */
    for (int i = threadIdx.x; i < items; i += CH_CTHREADS)
      *at(i) = att_merged8<T>(p, p.ph[P.xatt], i / per_row, k0 + (i % per_row) * 8, store);
  } else {
    for (int i0 = threadIdx.x; i0 < items; i0 += CH_STAGE_U * CH_CTHREADS) {
      uint4 v[CH_STAGE_U];
#pragma unroll
      for (int q = 0; q < CH_STAGE_U; q++) {
        const int i = i0 + q * CH_CTHREADS, r = i / per_row, kk = (i % per_row) * 8;
        if (i >= items) break;
        v[q] = __ldcg(reinterpret_cast<const uint4 *>(x + (long long)r * P.k + k0 + kk));
        if (P.ln && r == 0) prefetch_l1(gamma + k0 + kk), prefetch_l1(beta + k0 + kk);
      }
#pragma unroll
      for (int q = 0; q < CH_STAGE_U; q++)
        if (i0 + q * CH_CTHREADS < items) *at(i0 + q * CH_CTHREADS) = v[q];
    }
  }
  if (!P.ln) return;
  cbar();
  if (kc == P.k) { /* the statistics of the staged rows */
    for (int r = threadIdx.x >> 5; r < P.m; r += CH_WARPS) {
      const char *xr = xs + r * stride;
      warp_row_stats<T>([&](int i) { return *reinterpret_cast<const uint4 *>(xr + i * (int)sizeof(T)); },
                        kiln_f32(*reinterpret_cast<const T *>(xr)), kc, P.eps, &mean[r], &rstd[r]);
    }
    cbar();
  }
  for (int i = threadIdx.x; i < items; i += CH_CTHREADS) { /* gamma and beta: L1 hits now */
    const int r = i / per_row, kk = (i % per_row) * 8;
    const uint4 xv = *at(i), g = __ldg(reinterpret_cast<const uint4 *>(gamma + k0 + kk)),
                b = __ldg(reinterpret_cast<const uint4 *>(beta + k0 + kk));
    *at(i) = make_uint4(ln_pair<T>(xv.x, g.x, b.x, mean[r], rstd[r]), ln_pair<T>(xv.y, g.y, b.y, mean[r], rstd[r]),
                        ln_pair<T>(xv.z, g.z, b.z, mean[r], rstd[r]), ln_pair<T>(xv.w, g.w, b.w, mean[r], rstd[r]));
  }
}

/* The epilogue of output i of a unit (the accumulator layout: lane l, register j, row tile mt)
 * of row tile n0: its place, and the per-row scale, bias and residual it needs, loaded before the
 * products so that their latency hides behind them. */
struct ch_epi {
  long long at;
  float mul, add, res;
  bool ok;
};

template <typename T>
static __device__ __forceinline__ ch_epi epi_load(const ch_phase &P, int n0, int i) {
  ch_epi e;
  const int l = i & 31, j = (i >> 5) & 3, mt = i >> 7;
  const int n = n0 + (l >> 2) + (j >= 2 ? 8 : 0), m = mt * 8 + (l & 3) * 2 + (j & 1);
  e.ok = n < P.n && m < P.m;
  e.at = (long long)m * P.n + n, e.mul = 1.0f, e.add = 0.0f, e.res = 0.0f;
  if (!e.ok) return e;
  if (P.bits < 16 && P.group == 0) e.mul = __ldg(P.scales + n);
  if (P.bias) e.add = kiln_ld(P.bias, P.bias_dt, n);
  if (P.res) e.res = kiln_f32(__ldcg((const T *)P.res + e.at));
  return e;
}

template <typename T>
static __device__ __forceinline__ void epi_store(const ch_phase &P, const ch_epi &e, float v) {
  if (e.ok) ((T *)P.y)[e.at] = kiln_from_f32<T>(kiln_act(v * e.mul + e.add, P.act) + e.res);
}

/* The warps' partial products of one K piece: weights from the slot (rows ch_stride(kc * bits / 8)
 * apart), x from xs (rows xstride bytes apart, starting at the piece's column). */
template <typename T, int QBITS, int MT>
static __device__ void mm_products(const ch_phase &P, int n0, int k0, int kc, const char *w, const char *xs,
                                   int xstride, float (&acc)[MT][4]) {
  constexpr int KPT = 128 / QBITS, STEPS = KPT / 4, KPC = 4 * KPT;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int stride = ch_stride(kc * QBITS / 8);
  const int chunks = kc / KPC, spr = P.group > 0 ? P.k / P.group : 1;
  const bool gs = QBITS < 16 && P.group > 0;
#pragma unroll 2
  for (int c = warp; c < chunks; c += CH_WARPS) {
    const uint4 lo = *reinterpret_cast<const uint4 *>(w + g * stride + c * 64 + t * 16);
    const uint4 hi = *reinterpret_cast<const uint4 *>(w + (g + 8) * stride + c * 64 + t * 16);
    const int kl = c * KPC + t * KPT; /* the lane's K range in the unit */
    float s_lo = 0.0f, s_hi = 0.0f;
    if (gs) {
      const int gi = (k0 + kl) / P.group;
      if (n0 + g < P.n) s_lo = __ldg(P.scales + (long long)(n0 + g) * spr + gi);
      if (n0 + g + 8 < P.n) s_hi = __ldg(P.scales + (long long)(n0 + g + 8) * spr + gi);
    }
#pragma unroll
    for (int s = 0; s < STEPS; s++) {
      uint32_t av[4];
      a_operands<T, QBITS>(lo, hi, s, av);
      if (gs) {
        av[0] = scale_pair<T>(av[0], s_lo);
        av[2] = scale_pair<T>(av[2], s_lo);
        av[1] = scale_pair<T>(av[1], s_hi);
        av[3] = scale_pair<T>(av[3], s_hi);
      }
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        const int r = mt * 8 + g;
        uint2 xv = make_uint2(0u, 0u);
        if (r < P.m) xv = *reinterpret_cast<const uint2 *>(xs + r * xstride + (kl + 4 * s) * (int)sizeof(T));
        mma_16816<T>(acc[mt], av, xv.x, xv.y);
      }
    }
  }
}

/* One matmul unit: row tile u, its K pieces from ks consecutive ring slots (from *it on), products
 * accumulated in registers; each slot is released as soon as it is read. x comes from xs: all of
 * K staged at the phase's start (full_x), or staged here piece by piece. Then the warps' sums, and
 * bias, activation, residual, store. */
template <typename T, int MT>
static __device__ void mm_tile(const ch_params &p, const ch_phase &P, int u, const char *ring, uint32_t *it, uint64_t *full,
                               uint64_t *empty, bool full_x, char *xs, float *mean, float *rstd, float *red) {
  constexpr int NP = MT * 128; /* outputs of a unit: 16 columns x 8 MT rows */
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n0 = u * 16;
  const ch_epi e = epi_load<T>(P, n0, threadIdx.x < NP ? threadIdx.x : 0);
  float acc[MT][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[mt][j] = 0.0f;
  for (int kp = 0; kp < P.ks; kp++, (*it)++) {
    const int k0 = kp * P.kc, kc = P.k - k0 < P.kc ? P.k - k0 : P.kc, s = (int)(*it % CH_SLOTS);
    const char *x = xs + (full_x ? k0 * (int)sizeof(T) : 0);
    const int xstride = ch_stride((full_x ? P.k : kc) * (int)sizeof(T));
    if (!full_x) stage_x<T>(p, P, k0, kc, mean, rstd, xs, false); /* xs is free: see the barriers below */
    mbar_wait(&full[s], (*it / CH_SLOTS) & 1);
    if (!full_x) cbar(); /* xs staged by every thread */
    const char *slot = ring + (size_t)s * CH_SLOT_BYTES;
    if (P.bits == 16) mm_products<T, 16, MT>(P, n0, k0, kc, slot, x, xstride, acc);
    else if (P.bits == 8) mm_products<T, 8, MT>(P, n0, k0, kc, slot, x, xstride, acc);
    else mm_products<T, 4, MT>(P, n0, k0, kc, slot, x, xstride, acc);
    cbar(); /* the slot and xs are read, and red is free (the previous unit's sums are taken) */
    if (threadIdx.x == 0) mbar_arrive(&empty[s]);
  }
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int j = 0; j < 4; j++) red[warp * NP + (mt * 4 + j) * 32 + lane] = acc[mt][j];
  cbar();
  const int i = threadIdx.x; /* NP <= CH_CTHREADS: one output a thread at most */
  if (i < NP) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < CH_WARPS; w++) v += red[w * NP + i];
    epi_store<T>(P, e, v);
  }
}

/* ---- attention units --------------------------------------------------------------------- */

template <typename T>
static __device__ __forceinline__ float2 pair_of(const T *p) {
  return wq_type<T>::to_float2(*reinterpret_cast<const typename wq_type<T>::T2 *>(p));
}

/* One attention unit: (row b, head h, piece) of P, its keys and values in att_slots() consecutive
 * ring slots (from *it on; keys in the first half of a slot, values in the second), an online
 * softmax over them; each slot is released as soon as it is read. */
template <typename T>
static __device__ void att_unit_run(const ch_params &p, const ch_phase &P, int u, const char *ring, uint32_t *it,
                                    uint64_t *full, uint64_t *empty, float *sm) {
  const int ct = threadIdx.x, D = P.d, H = P.heads, lane = ct & 31, warp = ct >> 5;
  const ch_att a = att_unit(P, u);
  float *qs = sm, *nk = sm + CH_MAX_D, *nv = nk + CH_MAX_D, *sc = nv + CH_MAX_D, *wred = sc + CH_KEYS,
        *ored = wred + 16, *nsc = ored + CH_WARPS * CH_MAX_D; /* nsc: the new key's and value's scales (int8) */
  const long long ldq = P.kind == CH_SELF ? 3LL * H * D : (long long)H * D;
  const T *qr = (const T *)P.x + a.b * ldq + (long long)a.h * D;
  const long long at = ((long long)a.b * H + a.h) * P.cap + a.pos; /* the new key's place (a.pos >= 0) */
  if (ct < D) {
    qs[ct] = kiln_f32(__ldcg(qr + ct)) * P.scale;
    if (a.pos >= 0) {
      const T kv = __ldcg(qr + (long long)H * D + ct), vv = __ldcg(qr + 2LL * H * D + ct);
      nk[ct] = kiln_f32(kv);
      nv[ct] = kiln_f32(vv);
      if (!P.q8) { /* no unit of this step reads position len[b] from the cache */
        ((T *)P.w)[at * D + ct] = kv;
        ((T *)P.v)[at * D + ct] = vv;
      }
    }
  }
  if (P.q8 && a.pos >= 0) { /* int8 caches: the new key and value quantized as the append kernel does */
    cbar();
    if (warp < 2) {
      float *x = warp ? nv : nk;
      const float sv = kiln_quantize_warp_int8<T>([&](int d) { return x[d]; }, D, (int8_t *)(warp ? P.v : P.w) + at * D,
                                                  (T *)(warp ? P.vsc : P.ksc) + at);
      __syncwarp();
      for (int d = lane; d < D; d += 32) x[d] = (float)kq_code(x[d], sv); /* the codes, as the cache holds them */
      if (lane == 0) nsc[warp] = sv;
    }
  }
  /* thread pairs of dimensions (2 pr, 2 pr + 1) of the weighted values, 8 groups of keys */
  const int pr = ct & 31, grp = ct >> 5, j = ct >> 1, half = ct & 1, nvec = D / 16;
  float M = -INFINITY, L = 0.0f, o0 = 0.0f, o1 = 0.0f;
  const int slots = att_slots(a);
  for (int q = 0; q < slots; q++, (*it)++) {
    int c0, cached;
    const int n = att_chunk(a, q, &c0, &cached), s = (int)(*it % CH_SLOTS);
    mbar_wait(&full[s], (*it / CH_SLOTS) & 1);
    cbar(); /* qs, nk, nv written (first slot); sc and wred free (later ones) */
    const char *slot = ring + (size_t)s * CH_SLOT_BYTES;
    /* scores: two threads a key, each half of the head (16-byte loads rotated by key: no bank
     * conflicts between the keys of a quarter warp) */
    const T *kb = reinterpret_cast<const T *>(slot);
    float sco = 0.0f;
    if (P.q8 && j < cached) { /* 16 codes a load; the key's scale after the pair's sum */
      const int8_t *kc = reinterpret_cast<const int8_t *>(slot) + (long long)j * D;
      for (int i0 = 0; i0 < D / 32; i0++) {
        const int i = (i0 + j) % (D / 32), d0 = half * (D / 2) + i * 16;
        const uint4 kv = *reinterpret_cast<const uint4 *>(kc + d0);
#pragma unroll
        for (int e = 0; e < 16; e++) sco += qs[d0 + e] * (float)(int8_t)(word_of(kv, e / 4) >> (8 * (e % 4)));
      }
    } else if (j < cached) {
      for (int i0 = 0; i0 < nvec; i0++) {
        const int i = (i0 + j) % nvec, d0 = half * (D / 2) + i * 8;
        const uint4 kv = *reinterpret_cast<const uint4 *>(kb + (long long)j * D + d0);
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const float2 f = wq_type<T>::to_float2(from_u32<typename wq_type<T>::T2>(word_of(kv, e)));
          sco += qs[d0 + 2 * e] * f.x + qs[d0 + 2 * e + 1] * f.y;
        }
      }
    } else if (j == cached && j < n) {
      for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) sco += qs[d] * nk[d];
    }
    sco += __shfl_xor_sync(0xffffffffu, sco, 1);
    const T *ksl = P.q8 ? att_scales<T>(P, a, c0, slot) : NULL, *vsl = P.q8 ? att_scales<T>(P, a, c0, slot + CH_SLOT_BYTES / 2) : NULL;
    if (P.q8 && j < n) sco *= j < cached ? kiln_f32(ksl[j]) : nsc[0];
    if (half == 0) sc[j] = j < n ? sco : -INFINITY;
    cbar();
    if (ct < CH_KEYS) {
      const float m = kiln_warp_max(sc[ct]);
      if (lane == 0) wred[warp] = m;
    }
    cbar();
    const float mn = fmaxf(M, fmaxf(fmaxf(wred[0], wred[1]), fmaxf(wred[2], wred[3])));
    if (ct < CH_KEYS) {
      const float e = sc[ct] == -INFINITY ? 0.0f : __expf(sc[ct] - mn);
      sc[ct] = e;
      const float sum = kiln_warp_sum(e);
      if (lane == 0) wred[4 + warp] = sum;
    }
    cbar();
    const float alpha = M == -INFINITY ? 0.0f : __expf(M - mn);
    L = L * alpha + (wred[4] + wred[5] + wred[6] + wred[7]);
    M = mn;
    const T *vb = reinterpret_cast<const T *>(slot + CH_SLOT_BYTES / 2);
    if (2 * pr < D) {
      o0 *= alpha, o1 *= alpha;
      for (int jj = grp; jj < n; jj += CH_WARPS) {
        float w = sc[jj];
        float2 f = make_float2(nv[2 * pr], nv[2 * pr + 1]); /* the new key's value */
        if (jj < cached && P.q8) {
          const char2 c = *reinterpret_cast<const char2 *>(reinterpret_cast<const int8_t *>(vb) + (long long)jj * D + 2 * pr);
          f = make_float2((float)c.x, (float)c.y);
        } else if (jj < cached) {
          f = pair_of<T>(vb + (long long)jj * D + 2 * pr);
        }
        if (P.q8) w *= jj < cached ? kiln_f32(vsl[jj]) : nsc[1]; /* int8: the weight times the value's scale */
        o0 += w * f.x, o1 += w * f.y;
      }
    }
    cbar(); /* the slot, sc and wred are read */
    if (ct == 0) mbar_arrive(&empty[s]);
  }
  if (2 * pr < D) ored[grp * CH_MAX_D + 2 * pr] = o0, ored[grp * CH_MAX_D + 2 * pr + 1] = o1;
  cbar();
  if (ct >= D) return;
  float o = 0.0f;
  for (int g = 0; g < CH_WARPS; g++) o += ored[g * CH_MAX_D + ct];
  if (a.pieces == 1) {
    T *y = (T *)P.y + (long long)a.b * H * D + (long long)a.h * D;
    y[ct] = kiln_from_f32<T>(L > 0.0f ? o / L : 0.0f);
    return;
  }
  float *part = p.part + (((long long)a.b * H + a.h) * P.split + a.piece) * CH_PART;
  __stcg(part + ct, o);
  if (ct == 0) __stcg(part + CH_MAX_D, M), __stcg(part + CH_MAX_D + 1, L);
}

#endif /* sm_90 */

/* ---- the kernel -------------------------------------------------------------------------- */

template <typename T, int MT>
__global__ void __launch_bounds__(CH_THREADS, 1) chain_kernel(const __grid_constant__ ch_params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) char ch_smem[];
  char *ring = ch_smem, *xs = ring + CH_SLOTS * CH_SLOT_BYTES;
  float *red = reinterpret_cast<float *>(xs + CH_XS_BYTES); /* matmul sums, or attention scratch */
  uint64_t *full = reinterpret_cast<uint64_t *>(
      reinterpret_cast<char *>(red) + 4 * (CH_RED_FLOATS > CH_ATT_FLOATS ? CH_RED_FLOATS : CH_ATT_FLOATS));
  uint64_t *empty = full + CH_SLOTS;
  float *mean = reinterpret_cast<float *>(empty + CH_SLOTS), *rstd = mean + CH_MAX_ROWS;
  if (threadIdx.x == 0) {
    for (int s = 0; s < CH_SLOTS; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x >= CH_CTHREADS) {
    produce<T>(p, ring, full, empty);
    return;
  }
  uint32_t it = 0;
  int off = 0, prev_units = 0;
  for (int ph = 0; ph < p.n; ph++) {
    const ch_phase &P = p.ph[ph];
    const int units = ch_units(P);
    const int u0 = ((int)blockIdx.x - off % p.grid + p.grid) % p.grid;
    if (u0 < units) {
      uint32_t *tr = p.trace && threadIdx.x == 0 ? p.trace + ((size_t)P.layer * p.grid + blockIdx.x) * CH_TRACE : NULL;
      long long c0 = clock64(), c1 = c0, c2 = c0;
      if (tr) tr[0] = global_ns();
      if (threadIdx.x == 0 && ph > 0)
        while (ld_acquire(p.done + ph - 1) < (unsigned int)prev_units) {
        }
      cbar();
      if (tr) tr[1] = global_ns(), c1 = clock64();
      /* x's rows whole in xs when they fit (once a phase), else a K piece at a time */
      const bool full_x = P.kind == CH_MM && P.m * ch_stride(P.k * (int)sizeof(T)) <= CH_XS_BYTES;
      if (full_x) {
        stage_x<T>(p, P, 0, P.k, mean, rstd, xs, u0 == 0);
        cbar();
      } else if (P.kind == CH_MM && P.ln) {
        row_stats<T>((const T *)P.x, P.m, P.k, P.eps, mean, rstd);
        cbar();
      }
      int mine = 0;
      for (int u = u0; u < units; u += p.grid, mine++) {
        if (P.kind == CH_MM) {
          mm_tile<T, MT>(p, P, u, ring, &it, full, empty, full_x, xs, mean, rstd, red);
        } else {
          att_unit_run<T>(p, P, u, ring, &it, full, empty, red);
        }
        cbar(); /* red and the attention scratch are free again */
        if (tr && mine == 0) tr[2] = global_ns(), c2 = clock64();
      }
      if (tr) {
        const long long c3 = clock64();
        tr[3] = global_ns();
        tr[4] = (uint32_t)(c1 - c0), tr[5] = (uint32_t)(c2 - c1), tr[6] = (uint32_t)(c3 - c2);
        tr[7] = (uint32_t)P.kind << 24 | (uint32_t)mine;
      }
      if (threadIdx.x == 0) red_release(p.done + ph, (unsigned int)mine);
    } else if (p.trace && threadIdx.x == 0)
      p.trace[((size_t)P.layer * p.grid + blockIdx.x) * CH_TRACE + 7] = 0; /* no units here this time */
    prev_units = units;
    off = (off + units) % p.grid;
  }
#else
  (void)p;
  __trap(); /* the host launches it only on sm_90 and newer */
#endif
}

/* ---- host -------------------------------------------------------------------------------- */

/* KILN_CUDA_CHAIN_* mode; -1: not decided yet (KILN_CHAIN in the environment: 0, 1 or 2). */
static int chain_mode = -1;
static uint32_t *chain_trace;
static long long chain_launches;

static int mode(void) {
  if (chain_mode < 0) {
    const char *e = getenv("KILN_CHAIN");
    chain_mode = e && e[0] >= '0' && e[0] <= '2' && !e[1] ? e[0] - '0' : KILN_CUDA_CHAIN_AUTO;
  }
  return chain_mode;
}

/* Units the L2 prefetch runs ahead (KILN_CHAIN_PREFETCH in the environment, for tuning). */
static int chain_prefetch(void) {
  static int n = -1;
  if (n < 0) {
    const char *e = getenv("KILN_CHAIN_PREFETCH");
    n = e && e[0] ? atoi(e) : CH_PREFETCH;
    if (n < 0 || n > 64) n = CH_PREFETCH;
  }
  return n;
}

/* Most pieces per (row, head) of self- and cross-attention phases (KILN_CHAIN_SPLIT=S,C in the
 * environment, for tuning; CH_MERGE_MAX at most). Self-attention is not split by default: at
 * batch 1 its pieces' merge cost the output projection more than they saved (H100, session 11). */
static void chain_split(int *self, int *cross) {
  static int s = -1, c = -1;
  if (s < 0) {
    const char *e = getenv("KILN_CHAIN_SPLIT");
    int a = 1, b = CH_MERGE_MAX;
    if (e && sscanf(e, "%d,%d", &a, &b) != 2) a = 1, b = CH_MERGE_MAX;
    s = a < 1 ? 1 : a > CH_MERGE_MAX ? CH_MERGE_MAX : a;
    c = b < 1 ? 1 : b > CH_MERGE_MAX ? CH_MERGE_MAX : b;
  }
  *self = s, *cross = c;
}

static int aligned16(const void *p) { return p && (uintptr_t)p % 16 == 0; }

static int float16(kiln_dtype d) { return d == KILN_DTYPE_FP16 || d == KILN_DTYPE_BF16; }

/* K per unit for weights of `bits` and m rows of x: a row of the unit fits CH_ROW_BYTES, the
 * unit's m staged rows fit CH_XS_BYTES; a multiple of the K of a chunk (4 lanes x 16 bytes). */
static int unit_k(int64_t k, int bits, int64_t m, int elem) {
  int64_t kpc = 4 * 128 / bits, kc = k < CH_ROW_BYTES * 8 / bits ? k : CH_ROW_BYTES * 8 / bits;
  while (kc > 0 && m * ch_stride((int)(kc * elem)) > CH_XS_BYTES) kc -= kpc;
  kc = kc / kpc * kpc;
  if (kc <= 0) return 0;
  int64_t ks = (k + kc - 1) / kc;                /* pieces */
  kc = ((k + ks - 1) / ks + kpc - 1) / kpc * kpc; /* even pieces */
  return (int)kc;
}

/* A matmul layer as a phase; 0 when the chain does not take it. */
static int mm_phase(const kiln_layer_def *l, const kiln_tensor *in, const kiln_tensor *out, ch_phase *P) {
  kiln_matmul_io io;
  if (kiln_matmul_io_of(l, &io) != KILN_OK) return 0;
  const kiln_tensor *x = &in[io.x], *w = &in[io.w], *y = &out[0];
  int wq = l->op == KILN_OP_MATMUL_WQ;
  int bits = !wq ? 16 : w->dtype == KILN_DTYPE_INT8 ? 8 : w->dtype == KILN_DTYPE_INT4 ? 4 : 0;
  if (!float16(x->dtype) || y->dtype != x->dtype || !bits || (!wq && w->dtype != x->dtype)) return 0;
  if (w->shape.rank != 2 || x->shape.rank < 1) return 0;
  int64_t n = w->shape.d[0], k = w->shape.d[1];
  if (k < 1 || x->shape.d[x->shape.rank - 1] != k) return 0;
  int64_t m = kiln_dims_count(&x->shape) / k;
  if (m < 1 || m > CH_MAX_ROWS || n < 1 || n > INT32_MAX / 2 || k % (4 * 128 / bits) || k > INT32_MAX / 16) return 0;
  if (kiln_dims_count(&y->shape) != m * n) return 0;
  if (!aligned16(x->data) || !aligned16(w->data) || !aligned16(y->data)) return 0;
  int32_t group = wq ? l->p.group : 0;
  if (wq && (!in[io.scales].data || in[io.scales].dtype != KILN_DTYPE_FP32 ||
             (group != 0 && (group % (128 / bits) || k % group))))
    return 0;
  int ln = io.gamma >= 0;
  if (ln && (in[io.gamma].dtype != x->dtype || in[io.beta].dtype != x->dtype || !aligned16(in[io.gamma].data) ||
             !aligned16(in[io.beta].data)))
    return 0;
  if (io.residual >= 0 && (in[io.residual].dtype != x->dtype || kiln_dims_count(&in[io.residual].shape) != m * n))
    return 0;
  int kc = unit_k(k, bits, m, 2);
  if (!kc) return 0;
  memset(P, 0, sizeof *P);
  P->kind = CH_MM, P->bits = bits, P->ln = ln, P->act = l->p.activation, P->group = group;
  P->m = (int)m, P->n = (int)n, P->k = (int)k, P->kc = kc, P->ks = (int)((k + kc - 1) / kc);
  P->tiles = (int)((n + 15) / 16);
  P->xatt = -1;
  P->eps = l->p.eps;
  P->x = x->data, P->w = w->data, P->y = y->data;
  P->scales = wq ? (const float *)in[io.scales].data : NULL;
  if (io.bias >= 0) P->bias = in[io.bias].data, P->bias_dt = (int)in[io.bias].dtype;
  if (ln) P->gamma = in[io.gamma].data, P->beta = in[io.beta].data;
  if (io.residual >= 0) P->res = in[io.residual].data;
  return 1;
}

/* A KV_ATTENTION layer as a phase (float or int8 caches, one new token per row); 0 when not taken. */
static int att_phase(const kiln_layer_def *l, const kiln_tensor *in, const kiln_tensor *out, ch_phase *P) {
  int self = l->p.causal != 0, q8 = l->p.cache_dtype == KILN_DTYPE_INT8;
  if ((l->p.cache_dtype != 0 && !q8) || l->n_in != (self ? 4 : 3) + (q8 ? 2 : 0)) return 0;
  const kiln_tensor *q = &in[0], *k = &in[1], *v = &in[2], *y = &out[0];
  const kiln_dtype cd = q8 ? KILN_DTYPE_INT8 : q->dtype;
  if (!float16(q->dtype) || k->dtype != cd || v->dtype != cd || y->dtype != q->dtype) return 0;
  if (q->shape.rank != 3 || k->shape.rank != 4 || !kiln_dims_equal(&k->shape, &v->shape)) return 0;
  int64_t B = q->shape.d[0], S = q->shape.d[1], H = l->p.heads, Bk = k->shape.d[0], cap = k->shape.d[2];
  int64_t D = k->shape.d[3];
  if (H < 1 || k->shape.d[1] != H || D < 16 || D > CH_MAX_D || D % 16 || B < 1 || B > CH_MAX_ROWS || S != 1) return 0;
  if (cap < 1 || cap > (1 << 20) || q->shape.d[2] != (self ? 3 : 1) * H * D) return 0;
  if (self ? (in[3].dtype != KILN_DTYPE_INT32 || Bk < B) : (Bk < 1 || B % Bk)) return 0;
  if (!aligned16(k->data) || !aligned16(v->data) || !q->data || !y->data) return 0;
  if (q8) { /* scales [rows, H, cap] in q's dtype, whole 16-byte lines (the producer copies lines) */
    const kiln_tensor *ks = &in[l->n_in - 2], *vs = &in[l->n_in - 1];
    const int64_t n = kiln_dims_count(&ks->shape);
    if (ks->dtype != q->dtype || vs->dtype != q->dtype || !aligned16(ks->data) || !aligned16(vs->data) ||
        n != Bk * H * cap || kiln_dims_count(&vs->shape) != n || n * 2 % 16 || D % 32)
      return 0;
  }
  memset(P, 0, sizeof *P);
  P->kind = self ? CH_SELF : CH_CROSS;
  P->m = (int)B, P->heads = (int)H, P->d = (int)D, P->cap = (int)cap, P->rep = self ? 1 : (int)(B / Bk);
  P->pieces = (int)((cap + CH_KEYS - 1) / CH_KEYS);
  P->split = 1; /* more once a matmul that merges the pieces follows (link_pieces) */
  P->scale = l->p.scale;
  P->x = q->data, P->w = k->data, P->v = v->data, P->y = y->data;
  P->len = self ? (const int32_t *)in[3].data : NULL;
  P->q8 = q8;
  if (q8) P->ksc = in[l->n_in - 2].data, P->vsc = in[l->n_in - 1].data;
  return 1;
}

/* Floats of partial results an attention phase's pieces may need (after the done[] counters): a
 * (row, head) takes P->split pieces at most (att_pieces), and split is CH_MERGE_MAX at most
 * (link_pieces), P->pieces being only split_of's search bound. */
static size_t phase_floats(const ch_phase *P) {
  const int most = P->pieces < CH_MERGE_MAX ? P->pieces : CH_MERGE_MAX;
  return P->kind != CH_MM && most > 1 ? (size_t)P->m * (size_t)P->heads * (size_t)most * CH_PART : 0;
}

/* Pieces per (row, head) for attention phase A on `grid` blocks. Cross-attention (every row has
 * cap keys): the split that minimizes the phase's rounds of units times the keys of a unit plus
 * a unit's fixed cost (counted as CH_UNIT_COST keys: the query's load, the partial results).
 * Self-attention (the rows' key counts are known on the device only): about one unit per block;
 * att_pieces() keeps pieces of CH_MIN_PIECE keys at least. */
#define CH_UNIT_COST 64
static int split_of(const ch_phase *A, int grid) {
  const long long R = (long long)A->m * A->heads;
  if (A->kind == CH_SELF) {
    long long n = grid / R;
    return (int)(n < 1 ? 1 : n > A->pieces ? A->pieces : n);
  }
  int best = 1;
  long long best_cost = -1;
  for (int n = 1; n <= A->pieces; n++) {
    const long long rounds = (R * n + grid - 1) / grid, cost = rounds * ((A->cap + n - 1) / n + CH_UNIT_COST);
    if (best_cost < 0 || cost < best_cost) best = n, best_cost = cost;
  }
  return best;
}

/* Matmul phase P right after attention phase A: when P's x is A's output whole (all of K staged
 * at once, not its residual), P merges A's pieces and A may be split. */
static void link_pieces(ch_phase *A, ch_phase *P, int xatt, int grid) {
  if (A->kind == CH_MM || P->kind != CH_MM || P->x != A->y || P->res == A->y || P->m != A->m ||
      P->k != A->heads * A->d || P->m * ch_stride(P->k * 2) > CH_XS_BYTES || !aligned16(A->y))
    return;
  int most_self, most_cross;
  chain_split(&most_self, &most_cross);
  const int most = A->kind == CH_SELF ? most_self : most_cross;
  A->split = split_of(A, grid);
  if (A->split > most) A->split = most;
  if (A->split > 1) P->xatt = xatt;
}

/* The workspace: the done[] counters (the same head for every layer, so that the largest layer's
 * workspace holds any chain's), then the partial results. */
#define CH_HEAD_BYTES ((CH_MAX_PHASES * 4 + 255) / 256 * 256)
static size_t needs_bytes(size_t floats) { return CH_HEAD_BYTES + floats * 4; }

template <typename T, int MT>
static kiln_status launch(ch_params *p, cudaStream_t st) {
  static int configured = 0; /* 1 ok, -1 failed */
  if (!configured) {
    cudaError_t e = cudaFuncSetAttribute(chain_kernel<T, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, CH_SMEM);
    int blocks = 0;
    if (e == cudaSuccess)
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, chain_kernel<T, MT>, CH_THREADS, CH_SMEM);
    configured = e == cudaSuccess && blocks >= 1 ? 1 : -1;
    if (configured < 0) (void)cudaGetLastError();
  }
  if (configured < 0) return KILN_ERR_UNSUPPORTED;
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.gridDim = dim3((unsigned)p->grid);
  cfg.blockDim = dim3(CH_THREADS);
  cfg.dynamicSmemBytes = CH_SMEM;
  cfg.stream = st;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  KILN_CUDA_CHECK(cudaLaunchKernelEx(&cfg, chain_kernel<T, MT>, (const ch_params)*p));
  chain_launches++;
  return KILN_OK;
}

} /* namespace */

extern "C" void kiln_cuda_chain_allow(int m) {
  chain_mode = m == KILN_CUDA_CHAIN_OFF || m == KILN_CUDA_CHAIN_ALWAYS ? m : KILN_CUDA_CHAIN_AUTO;
}

extern "C" void kiln_cuda_chain_trace(void *buffer) { chain_trace = (uint32_t *)buffer; }

extern "C" int64_t kiln_cuda_chain_launches(void) { return (int64_t)chain_launches; }

extern "C" size_t kiln_cuda_chain_workspace(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in_dims) {
  if (!g || !l || !in_dims) return 0;
  ch_phase P;
  memset(&P, 0, sizeof P);
  if (l->op == KILN_OP_MATMUL || l->op == KILN_OP_MATMUL_WQ) { /* the head only, when it can join */
    kiln_matmul_io io;
    if (kiln_matmul_io_of(l, &io) != KILN_OK || in_dims[io.w].rank != 2) return 0;
    kiln_dtype wd = g->tensors[l->in[io.w]].dtype;
    int bits = l->op == KILN_OP_MATMUL ? 16 : wd == KILN_DTYPE_INT8 ? 8 : wd == KILN_DTYPE_INT4 ? 4 : 0;
    int64_t k = in_dims[io.w].d[1];
    if (!bits || k < 1 || k % (4 * 128 / bits) || !unit_k(k, bits, CH_MAX_ROWS, 2)) return 0;
    P.kind = CH_MM;
  } else if (l->op == KILN_OP_KV_ATTENTION && l->n_in >= 3 && in_dims[1].rank == 4 && in_dims[0].rank == 3) {
    int64_t B = in_dims[0].d[0] < CH_MAX_ROWS ? in_dims[0].d[0] : CH_MAX_ROWS;
    P.kind = l->p.causal ? CH_SELF : CH_CROSS, P.m = (int)B, P.heads = (int)in_dims[1].d[1];
    P.pieces = (int)((in_dims[1].d[2] + CH_KEYS - 1) / CH_KEYS);
  } else {
    return 0;
  }
  return needs_bytes(phase_floats(&P));
}

extern "C" kiln_status kiln_cuda_run_chain(kiln_cuda_ctx *cu, const kiln_graph *g, int32_t first, kiln_cuda_layer_io io,
                                           void *user, void *workspace, size_t workspace_bytes, void *stream,
                                           int32_t *ran) {
  if (!ran || !g || !io) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_run_chain: NULL argument");
  *ran = 0;
  int major = 0, sms = 0;
  kiln_cuda_current_device(&major, &sms);
  const int m = mode();
  if (m == KILN_CUDA_CHAIN_OFF || major < 9 || sms < 1 || !workspace) return KILN_OK;
  (void)cu;
  static ch_params p; /* ~20 KB: not on the stack; filled and launched under the lock below */
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&lock);
  p.n = 0; /* phases are filled whole by mm_phase / att_phase; the rest is set before a launch */
  int32_t li = first, taken = 0, m_max = 0, rows_cut = 0;
  kiln_dtype dt = KILN_DTYPE_FP32;
  size_t floats = 0;
  for (; li < g->n_layers && p.n < CH_MAX_PHASES; li++) {
    const kiln_layer_def *l = &g->layers[li];
    kiln_tensor in[KILN_MAX_LAYER_IO], out[KILN_MAX_LAYER_IO];
    io(user, li, in, out);
    if (l->op == KILN_OP_RESHAPE && l->n_in >= 1 && l->n_out >= 1 && in[0].data == out[0].data) continue;
    ch_phase *P = &p.ph[p.n];
    int ok = (l->op == KILN_OP_MATMUL || l->op == KILN_OP_MATMUL_WQ) ? mm_phase(l, in, out, P)
             : l->op == KILN_OP_KV_ATTENTION                           ? att_phase(l, in, out, P)
                                                                       : 0;
    kiln_dtype d = l->n_in > 0 ? in[0].dtype : KILN_DTYPE_FP32;
    const int auto_rows = P->kind == CH_MM ? (P->bits < 16 ? CH_AUTO_ROWS_WQ : CH_AUTO_ROWS) : P->q8 ? CH_AUTO_ROWS_Q8 : CH_AUTO_ROWS;
    if (ok && m == KILN_CUDA_CHAIN_AUTO && P->m > auto_rows) rows_cut = 1;
    if (!ok || (p.n > 0 && d != dt) || rows_cut) break;
    dt = d;
    const size_t f = phase_floats(P);
    if (needs_bytes(f > floats ? f : floats) > workspace_bytes) break;
    if (f > floats) floats = f;
    if (P->m > m_max) m_max = P->m;
    if (p.n > 0) link_pieces(&p.ph[p.n - 1], P, p.n - 1, sms);
    P->layer = li;
    p.n++;
    taken = li + 1 - first;
  }
  /* The default takes no piece of a step that its rows rule cuts: a chain of the few matmuls
   * between two attention layers left to their kernels was slower than the kernels (H100, fp16
   * weights + int8 KV, batch 4: 2.84-2.92 ms against 2.49-2.51, session 17). */
  if (rows_cut) p.n = 0;
  kiln_status st = KILN_OK;
  if (p.n >= KILN_CUDA_CHAIN_MIN_PHASES) {
    cudaStream_t s = kiln_stream(stream);
    p.grid = sms;
    p.done = (unsigned int *)workspace;
    p.part = (float *)((char *)workspace + CH_HEAD_BYTES);
    p.trace = chain_trace;
    p.prefetch = chain_prefetch();
    cudaError_t e = cudaMemsetAsync(workspace, 0, CH_MAX_PHASES * 4, s);
    if (e != cudaSuccess) {
      st = kiln_error(KILN_ERR_CUDA, "chain: clearing its counters: %s", cudaGetErrorString(e));
    } else {
      if (dt == KILN_DTYPE_FP16) st = m_max > 8 ? launch<__half, 2>(&p, s) : launch<__half, 1>(&p, s);
      else st = m_max > 8 ? launch<__nv_bfloat16, 2>(&p, s) : launch<__nv_bfloat16, 1>(&p, s);
      if (st == KILN_ERR_UNSUPPORTED) st = KILN_OK; /* the kernel cannot run here: layer by layer (*ran 0) */
      else if (st == KILN_OK) *ran = taken;
    }
  }
  pthread_mutex_unlock(&lock);
  return st;
}
