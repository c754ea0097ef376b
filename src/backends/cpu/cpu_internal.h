/* src/backends/cpu/cpu_internal.h - helpers shared by the CPU backend's op files.
 *
 * Argument checks that produce kiln errors, fp32 staging of fp16/bf16 tensors, the fused
 * activations, and one fp32 GEMM (OpenBLAS when available, a plain loop otherwise).
 * Not a public header, and not used outside src/backends/cpu.
 */
#ifndef KILN_CPU_INTERNAL_H
#define KILN_CPU_INTERNAL_H

#include <stdint.h>

#include "backends/cpu/cpu_ops.h"
#include "kiln/dtype.h"
#include "kiln/network.h"
#include "kiln/status.h"

/* Checks that `t` is a non-NULL, contiguous float (fp32/fp16/bf16) tensor with data when it has
 * elements. `op` and `name` go into the message ("matmul: x ..."). */
kiln_status kiln_cpu_check_float(const kiln_tensor *t, const char *op, const char *name);
/* Same, for a tensor of exactly `dtype` (used for int32 ids). */
kiln_status kiln_cpu_check_dtype(const kiln_tensor *t, kiln_dtype dtype, const char *op,
                                 const char *name);
/* KILN_ERR_SHAPE naming both shapes unless a and b are equal. */
kiln_status kiln_cpu_check_same_shape(const kiln_dims *a, const char *a_name, const kiln_dims *b,
                                      const char *b_name, const char *op);
kiln_status kiln_cpu_check_activation(kiln_activation act, const char *op);

/* act(x) for one value: GELU (erf form), ReLU, SiLU, or x itself. */
float kiln_cpu_activate(float x, kiln_activation act);

/* A read-only fp32 view of a float tensor: `data` is t->data for fp32 tensors, else a converted
 * copy that kiln_cpu_f32_release() frees. */
typedef struct kiln_cpu_f32 {
  const float *data;
  float *owned;
} kiln_cpu_f32;
kiln_status kiln_cpu_f32_acquire(const kiln_tensor *t, kiln_cpu_f32 *v);
void kiln_cpu_f32_release(kiln_cpu_f32 *v);

/* Convert n fp32 values into t's storage, starting at element `first`. */
void kiln_cpu_store_f32(kiln_tensor *t, int64_t first, const float *src, int64_t n);

/* Softmax in place on row[n] (an all -inf row becomes zeros). Used by softmax and attention. */
void kiln_cpu_softmax_row(float *row, int64_t n);

/* C[M, N] = A[M, K] @ op(B), row-major; op(B) = B^T with B [N, K] when b_trans, else B [K, N].
 * lda/ldb/ldc are row strides in elements. K may be 0 (C becomes 0). */
void kiln_cpu_gemm(int b_trans, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float *c, int64_t ldc);

/* Checks of y[..., N] = act(x[..., K] @ w[N, K]^T + b[N]) named `op` in messages: x, b, y float,
 * w float or int8/int4 codes (the caller checks which it takes), shapes consistent. */
kiln_status kiln_cpu_check_linear(const char *op, const kiln_tensor *x, const kiln_tensor *w,
                                  const kiln_tensor *b, kiln_activation act, const kiln_tensor *y);

/* The fp32 accumulator [m, n] of a matmul (malloc; NULL with the error set when out of memory),
 * and the shared epilogue: acc + b[n] (b may be NULL), the activation, stored into y in y's
 * dtype. acc is overwritten. */
float *kiln_cpu_matmul_acc(int64_t m, int64_t n);
kiln_status kiln_cpu_matmul_epilogue(float *acc, int64_t m, int64_t n, const kiln_tensor *b,
                                     kiln_activation act, kiln_tensor *y);

#endif /* KILN_CPU_INTERNAL_H */
