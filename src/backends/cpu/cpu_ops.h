/* src/backends/cpu/cpu_ops.h - the CPU backend: readable reference kernels, one per op.
 *
 * These are the oracle for every GPU kernel and the path CI runs. Each function takes
 * contiguous kiln_tensor views on the host in fp32, fp16 or bf16 (int32 for embedding ids),
 * computes in fp32 (double where noted) and writes the output in the output's dtype.
 * Shapes are checked; a zero-size tensor produces an empty output and does nothing.
 * Functions return KILN_OK or an error (with kiln_last_error() set); outputs are untouched on
 * error. Matmul uses OpenBLAS when kiln was built with it, a blocked loop otherwise.
 */
#ifndef KILN_CPU_OPS_H
#define KILN_CPU_OPS_H

#include "kiln/dtype.h"
#include "kiln/network.h"
#include "kiln/status.h"
#include "net/graph.h"

/* y[..., N] = act(x[..., K] @ w[N, K]^T + b[N]); b may be NULL. */
kiln_status kiln_cpu_matmul(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                            kiln_activation act, kiln_tensor *y);
/* Weight-only quantized: y[..., N] = act(x[..., K] @ dequant(wq)[N, K]^T + b[N]); wq int8 or
 * packed int4 codes, scales fp32 [N] (group 0) or [N, K / group] (format: src/core/quant.h);
 * b may be NULL. */
kiln_status kiln_cpu_matmul_wq(const kiln_tensor *x, const kiln_tensor *wq, const kiln_tensor *scales,
                               const kiln_tensor *b, int32_t group, kiln_activation act, kiln_tensor *y);
/* y = a + b or a * b; b's shape equals a's or a suffix of it. */
kiln_status kiln_cpu_add(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y);
kiln_status kiln_cpu_mul(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y);
kiln_status kiln_cpu_activation(const kiln_tensor *x, kiln_activation act, kiln_tensor *y);
/* y = (x - mean) / sqrt(var + eps) * gamma + beta over the last dim. */
kiln_status kiln_cpu_layernorm(const kiln_tensor *x, const kiln_tensor *gamma,
                               const kiln_tensor *beta, float eps, kiln_tensor *y);
/* sum = a + b; y = layernorm(sum). sum may be NULL (not needed). */
kiln_status kiln_cpu_add_layernorm(const kiln_tensor *a, const kiln_tensor *b,
                                   const kiln_tensor *gamma, const kiln_tensor *beta, float eps,
                                   kiln_tensor *sum, kiln_tensor *y);
kiln_status kiln_cpu_softmax(const kiln_tensor *x, kiln_tensor *y);
/* y[..., N] = table[ids[...], :]; ids out of [0, V) are an error. */
kiln_status kiln_cpu_embedding(const kiln_tensor *table, const kiln_tensor *ids, kiln_tensor *y);
/* x [B, Cin, T], w [Cout, Cin, 3], b [Cout] or NULL, padding 1, stride 1|2. */
kiln_status kiln_cpu_conv1d(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                            int32_t stride, kiln_activation act, kiln_tensor *y);
/* Reshape is a copy with the output's shape (element count must match). */
kiln_status kiln_cpu_copy(const kiln_tensor *x, kiln_tensor *y);
kiln_status kiln_cpu_transpose(const kiln_tensor *x, const int64_t *perm, kiln_tensor *y);
kiln_status kiln_cpu_concat(int32_t n, const kiln_tensor *xs, int32_t axis, kiln_tensor *y);
/* start/end already normalized to 0 <= start <= end <= dim. */
kiln_status kiln_cpu_slice(const kiln_tensor *x, int32_t axis, int64_t start, int64_t end,
                           kiln_tensor *y);
/* q [B,H,Sq,D], k/v [B,H,Skv,D], y [B,H,Sq,D]; causal: bottom-right aligned mask. */
kiln_status kiln_cpu_attention(const kiln_tensor *q, const kiln_tensor *k, const kiln_tensor *v,
                               float scale, int32_t causal, kiln_tensor *y);
/* KILN_OP_KV_ATTENTION (network.h): self = 1: in qkv, cache_k, cache_v (written in place),
 * lengths (int32, host); self = 0: in q, k, v. Int8 caches: two more inputs, k_scale and
 * v_scale [rows, H, T] (written in place too by self-attention); n_in says which form. */
kiln_status kiln_cpu_kv_attention(int32_t n_in, const kiln_tensor *in, int32_t heads, float scale, int32_t self,
                                  kiln_tensor *y);
/* KILN_OP_QUANTIZE_INT8 (network.h): x [..., D] float -> codes [..., D] int8, scales [...]. */
kiln_status kiln_cpu_quantize_int8(const kiln_tensor *x, kiln_tensor *codes, kiln_tensor *scales);

/* Run one graph layer on the CPU (dispatch on l->op). in/out are the layer's tensors. */
kiln_status kiln_cpu_run_layer(const kiln_graph *g, const kiln_layer_def *l, const kiln_tensor *in,
                               kiln_tensor *out, void *workspace, size_t workspace_bytes);

/* Element access helpers for fp32/fp16/bf16/int32 storage. */
float kiln_cpu_load(const void *data, kiln_dtype dtype, int64_t i);
void kiln_cpu_store(void *data, kiln_dtype dtype, int64_t i, float v);

#endif /* KILN_CPU_OPS_H */
