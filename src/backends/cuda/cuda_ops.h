/* src/backends/cuda/cuda_ops.h - the CUDA backend: driver/runtime helpers, cuBLASLt matmul with
 * tactics, and one CUDA C kernel launcher per op.
 *
 * Every launcher takes contiguous device tensors (fp32, fp16 or bf16; int32 ids), computes in
 * fp32 and writes the output dtype, on the stream passed explicitly. A zero-size output launches
 * nothing and returns KILN_OK. Launchers check their arguments and the launch, and return a
 * status (never exit, never print). Semantics are those of the CPU functions of the same name
 * (cpu_ops.h), which are the oracle in tests/gpu.
 *
 * This header is plain C; the implementations are .cu files exporting extern "C" functions.
 * Only compiled when kiln is built with CUDA (KILN_HAVE_CUDA).
 */
#ifndef KILN_CUDA_OPS_H
#define KILN_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/network.h"
#include "kiln/status.h"
#include "net/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-device state: cuBLASLt handle and device properties. Thread-safe after creation. */
typedef struct kiln_cuda_ctx kiln_cuda_ctx;

typedef struct kiln_cuda_device_info {
  int32_t device;
  char name[256];
  int32_t cc_major, cc_minor;
  int32_t sm_count;
  size_t shared_mem_per_block_optin; /* bytes */
  size_t total_mem;
  int32_t driver_version, runtime_version;
} kiln_cuda_device_info;

/* KILN_ERR_NO_DEVICE when no GPU (or no driver) is present. */
kiln_status kiln_cuda_ctx_create(int32_t device, kiln_cuda_ctx **out);
void kiln_cuda_ctx_destroy(kiln_cuda_ctx *cu);
const kiln_cuda_device_info *kiln_cuda_ctx_info(const kiln_cuda_ctx *cu);
/* 1 if at least one CUDA device is usable, else 0 (never fails loudly). */
int kiln_cuda_available(void);
/* The current device's compute capability (major) and SM count (0, 0 when unknown), cached. */
void kiln_cuda_current_device(int *cc_major, int *sm_count);

/* Memory (device and pinned host) and copies; all return a status. */
kiln_status kiln_cuda_malloc(void **p, size_t bytes);
void kiln_cuda_free(void *p);
/* Page-locked host memory (cudaMallocHost): copies from it are asynchronous. */
kiln_status kiln_cuda_host_alloc(void **p, size_t bytes);
void kiln_cuda_host_free(void *p);
kiln_status kiln_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream);
kiln_status kiln_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream);
kiln_status kiln_cuda_memset(void *dst, int value, size_t bytes, void *stream);
/* With KILN_POISON=1 (core/error.h), fills `bytes` of freshly allocated device memory at p with
 * KILN_POISON_BYTE on `stream` (NULL: the default stream); without it, does nothing. */
kiln_status kiln_cuda_poison(void *p, size_t bytes, void *stream);
kiln_status kiln_cuda_stream_sync(void *stream);

/* Fusions of a matmul (graph.h's KILN_FUSE_*): gamma and beta (both or neither, [K]) layer-
 * normalize x over K first (eps); residual (y's shape) is added after the activation:
 * y = act(norm(x) @ w^T + b) + residual. NULL, or NULL members: none. */
typedef struct kiln_cuda_mm_fuse {
  const kiln_tensor *gamma, *beta;
  float eps;
  const kiln_tensor *residual;
} kiln_cuda_mm_fuse;

#define KILN_CUDA_SKINNY_VARIANTS 8 /* variants of the skinny (small-M) kernel, skinny.cu */

/* Matmul y = act(x @ w^T + b). Candidates: cuBLASLt heuristic algorithms (kind
 * KILN_TACTIC_CUBLASLT) and kiln's own kernels (KILN_TACTIC_KERNEL: index 0 the tiled kernel,
 * any dtypes; 1 + i the skinny kernel's variant i (skinny.cu), offered for M <= 64, fp16/bf16
 * with W in x's dtype, K a multiple of 8, sm_80+). Returns the number of candidates written
 * (<= cap). */
int32_t kiln_cuda_matmul_candidates(kiln_cuda_ctx *cu, int64_t m, int64_t n, int64_t k,
                                    kiln_dtype dtype, int32_t has_bias, kiln_activation act,
                                    size_t max_workspace, kiln_tactic *out, int32_t cap);
kiln_status kiln_cuda_matmul(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                             const kiln_tensor *w, const kiln_tensor *b, kiln_activation act,
                             kiln_tensor *y, void *workspace, size_t workspace_bytes,
                             void *stream);
/* The same with fusions. The skinny kernel fuses both in one launch; the other tactics
 * layer-normalize x into the front of the workspace (kiln_cuda_matmul_ln_bytes more than the
 * tactic's own) and add the residual in cuBLASLt's C (beta = 1) when there is no activation,
 * else with an add after. */
kiln_status kiln_cuda_matmul_fused(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                                   const kiln_tensor *w, const kiln_tensor *b, kiln_activation act,
                                   const kiln_cuda_mm_fuse *fuse, kiln_tensor *y, void *workspace,
                                   size_t workspace_bytes, void *stream);
/* Workspace bytes the layernorm prologue takes for x [m, k] outside the skinny kernel. */
size_t kiln_cuda_matmul_ln_bytes(int64_t m, int64_t k, kiln_dtype dtype);
/* 1 when tactic t of a matmul (op MATMUL or MATMUL_WQ) is the skinny kernel (fusions in-kernel). */
int kiln_cuda_matmul_tactic_is_skinny(int32_t op_is_wq, const kiln_tactic *t);

/* Weight-only quantized matmul y = act(x @ dequant(wq)^T + b): wq int8 or packed int4 codes
 * [N, K], scales fp32 [N] (group 0) or [N, K / group] (format: src/core/quant.h; semantics of
 * kiln_cpu_matmul_wq). Tactics:
 *   KILN_TACTIC_KERNEL i  kiln's small-M kernel variant i (skinny.cu): weights dequantized in
 *                         registers, tensor cores; fp16/bf16, sm_80+, K a multiple of 16 (int8)
 *                         or 32 (int4), group 0 or a multiple of that; no workspace; any M (rows
 *                         beyond 64 run as more tiles, each reading the weights again);
 *   KILN_TACTIC_CUBLASLT  the weights dequantized into the workspace in x's dtype, then
 *                         kiln_cuda_matmul with the stored algorithm (tactic.workspace counts
 *                         both);
 *   KILN_TACTIC_DEFAULT   the small-M kernel 0 when it takes the operands, else the dequantized
 *                         weights and cuBLASLt's heuristic choice.
 * Candidates: the kernel variants that apply, then the cuBLASLt algorithms for the dequantized
 * problem whose workspace fits (the default when neither applies). */
#define KILN_CUDA_WQ_KERNELS 8 /* variants of the small-M (skinny) kernel */
int32_t kiln_cuda_matmul_wq_candidates(kiln_cuda_ctx *cu, int64_t m, int64_t n, int64_t k,
                                       kiln_dtype dtype, kiln_dtype qdtype, int32_t group,
                                       int32_t has_bias, kiln_activation act,
                                       size_t max_workspace, kiln_tactic *out, int32_t cap);
kiln_status kiln_cuda_matmul_wq(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                                const kiln_tensor *wq, const kiln_tensor *scales,
                                const kiln_tensor *b, int32_t group, kiln_activation act,
                                kiln_tensor *y, void *workspace, size_t workspace_bytes,
                                void *stream);
/* With fusions (as kiln_cuda_matmul_fused; the layernorm buffer comes first in the workspace,
 * then the dequantized weights). */
kiln_status kiln_cuda_matmul_wq_fused(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                                      const kiln_tensor *wq, const kiln_tensor *scales, const kiln_tensor *b,
                                      int32_t group, kiln_activation act, const kiln_cuda_mm_fuse *fuse,
                                      kiln_tensor *y, void *workspace, size_t workspace_bytes, void *stream);
/* Workspace bytes a matmul_wq tactic needs for weights [n, k] and activations of `dtype`. */
size_t kiln_cuda_matmul_wq_workspace(const kiln_tactic *tactic, int64_t n, int64_t k,
                                     kiln_dtype dtype, kiln_dtype qdtype, int32_t group);
/* 1 when the small-M kernel takes these operands (besides sm_80+ and 16-byte alignment). */
int kiln_cuda_wq_kernel_fits(kiln_dtype dtype, kiln_dtype qdtype, int64_t k, int32_t group);

kiln_status kiln_cuda_add(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y, void *stream);
kiln_status kiln_cuda_mul(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y, void *stream);
kiln_status kiln_cuda_activation(const kiln_tensor *x, kiln_activation act, kiln_tensor *y,
                                 void *stream);
kiln_status kiln_cuda_layernorm(const kiln_tensor *x, const kiln_tensor *gamma,
                                const kiln_tensor *beta, float eps, kiln_tensor *y, void *stream);
kiln_status kiln_cuda_add_layernorm(const kiln_tensor *a, const kiln_tensor *b,
                                    const kiln_tensor *gamma, const kiln_tensor *beta, float eps,
                                    kiln_tensor *sum, kiln_tensor *y, void *stream);
kiln_status kiln_cuda_softmax(const kiln_tensor *x, kiln_tensor *y, void *stream);
kiln_status kiln_cuda_embedding(const kiln_tensor *table, const kiln_tensor *ids, kiln_tensor *y,
                                void *stream);
/* conv1d (kernel 3, padding 1, stride 1 or 2): through cuBLASLt when given a context and a
 * workspace of kiln_cuda_conv1d_workspace bytes (x, w, y in one dtype), else kiln's direct kernel
 * (any dtype mix, no workspace). */
kiln_status kiln_cuda_conv1d(kiln_cuda_ctx *cu, const kiln_tensor *x, const kiln_tensor *w,
                             const kiln_tensor *b, int32_t stride, kiln_activation act,
                             kiln_tensor *y, void *workspace, size_t workspace_bytes, void *stream);
/* Workspace bytes for conv1d's cuBLASLt path at input dims x [B, Cin, T], weight w, in dtype
 * (one window's columns and a matmul workspace); 0 for arguments it does not take. */
size_t kiln_cuda_conv1d_workspace(const kiln_dims *x, const kiln_dims *w, int32_t stride, kiln_dtype dtype);
kiln_status kiln_cuda_copy(const kiln_tensor *x, kiln_tensor *y, void *stream);
kiln_status kiln_cuda_transpose(const kiln_tensor *x, const int64_t *perm, kiln_tensor *y,
                                void *stream);
kiln_status kiln_cuda_concat(int32_t n, const kiln_tensor *xs, int32_t axis, kiln_tensor *y,
                             void *stream);
kiln_status kiln_cuda_slice(const kiln_tensor *x, int32_t axis, int64_t start, int64_t end,
                            kiln_tensor *y, void *stream);
kiln_status kiln_cuda_attention(const kiln_tensor *q, const kiln_tensor *k, const kiln_tensor *v,
                                float scale, int32_t causal, kiln_tensor *y, void *stream);
/* KILN_OP_KV_ATTENTION (kiln/network.h): self = 1: in qkv, cache_k, cache_v (written in place),
 * lengths (int32, device); self = 0: in q, k, v. Int8 caches: two more inputs, k_scale and
 * v_scale [rows, H, T] in the queries' dtype (written in place too by self-attention); n_in
 * says which form. */
kiln_status kiln_cuda_kv_attention(int32_t n_in, const kiln_tensor *in, int32_t heads, float scale,
                                   int32_t self, kiln_tensor *y, void *workspace,
                                   size_t workspace_bytes, void *stream);
/* KILN_OP_QUANTIZE_INT8 (kiln/network.h): x [..., D] -> codes [..., D] int8, scales [...] in
 * x's dtype; bit for bit the CPU backend's result. */
kiln_status kiln_cuda_quantize_int8(const kiln_tensor *x, kiln_tensor *codes, kiln_tensor *scales,
                                    void *stream);
/* Workspace that lets kiln_cuda_kv_attention take its fast (split keys) path for q/qkv dims q
 * and key dims k (without it, or with less, the general kernel runs). */
size_t kiln_cuda_kv_attention_workspace(const kiln_dims *q, const kiln_dims *k, int32_t heads);
/* On sm_90 and newer, kiln_cuda_kv_attention runs the decode shape (one new token per row for
 * self-attention) as one kernel (append, attention and merge of the splits through a thread
 * block cluster); allow = 0 makes it take the path of older GPUs (append, split, combine
 * kernels) instead, so tests cover both. Process-wide; default 1 unless KILN_NO_FUSED_ATTENTION=1
 * is in the environment (for comparisons). */
void kiln_cuda_kv_attention_allow_fused(int allow);

/* chain.cu: a run of decoding-step layers as one persistent kernel. From layer `first` of g on,
 * the layers that it takes (MATMUL / MATMUL_WQ with M <= 16 rows, fp16/bf16 activations, fp16/
 * bf16 or int8/int4 weights, any of the fusions; KV_ATTENTION with float caches, head size 16..64
 * (a multiple of 16), self-attention with one new token per row; RESHAPE views) become phases of
 * one cooperative kernel: one block per SM, a producer warp streaming every phase's weights and
 * cached keys/values into a ring of shared memory with bulk copies (TMA) while the consumer warps
 * compute the phase before, phases ordered by counters in global memory. `io` gives a layer's
 * tensors for this run (in l->in / l->out order). *ran is the number of layers it ran (0: layer
 * `first` does not start a run of at least KILN_CUDA_CHAIN_MIN_PHASES, the GPU is older than
 * sm_90, the workspace is too small, or chains are off; the caller runs the layer itself). */
typedef void (*kiln_cuda_layer_io)(void *user, int32_t layer, kiln_tensor *in, kiln_tensor *out);
#define KILN_CUDA_CHAIN_MIN_PHASES 3
kiln_status kiln_cuda_run_chain(kiln_cuda_ctx *cu, const kiln_graph *g, int32_t first, kiln_cuda_layer_io io,
                                void *user, void *workspace, size_t workspace_bytes, void *stream, int32_t *ran);
/* Workspace bytes a chain needs for layer l at input dims in_dims (0: l never joins one). */
size_t kiln_cuda_chain_workspace(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in_dims);
/* When chains run (process-wide): OFF never; AUTO (the default) where they are measured faster
 * (runs of layers with one row of x, or up to 4 where the weights are 16-bit); ALWAYS wherever
 * they can (up to 16 rows: tests, benchmarks). KILN_CHAIN=0 / 1 / 2 in the environment sets the default. */
#define KILN_CUDA_CHAIN_OFF 0
#define KILN_CUDA_CHAIN_AUTO 1
#define KILN_CUDA_CHAIN_ALWAYS 2
void kiln_cuda_chain_allow(int mode);
/* Benchmarks: chains launched from now on (or captured into graphs) record where their time goes
 * into `buffer` (device memory, 8 uint32 per (graph layer, SM): for a block with units in the
 * layer's phase, the global timer (ns) at the phase's entry, after waiting for the phase before,
 * after its first unit, after its last; the clock cycles of those three steps; kind << 24 | units).
 * NULL stops it. */
#define KILN_CUDA_CHAIN_TRACE_WORDS 8
void kiln_cuda_chain_trace(void *buffer);
/* Chain kernels launched so far in this process (tests check that the chain ran). */
int64_t kiln_cuda_chain_launches(void);

/* Run one graph layer on the GPU (dispatch on l->op, using l->tactic for matmuls). */
kiln_status kiln_cuda_run_layer(kiln_cuda_ctx *cu, const kiln_graph *g, const kiln_layer_def *l,
                                const kiln_tensor *in, kiln_tensor *out, void *workspace,
                                size_t workspace_bytes, void *stream);
/* Workspace bytes a layer needs on the GPU with its tactic for these shapes. */
size_t kiln_cuda_layer_workspace(const kiln_graph *g, const kiln_layer_def *l,
                                 const kiln_dims *in_dims);

#ifdef __cplusplus
}
#endif
#endif /* KILN_CUDA_OPS_H */
