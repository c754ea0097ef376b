/* src/backends/cuda/matmul_wq.c - the weight-only quantized matmul on the GPU, host side:
 * argument checks, tactic candidates, workspace sizes and the two paths (tactics in cuda_ops.h):
 * the small-M kernel (skinny.cu) for decoding, or the weights dequantized into the layer's
 * workspace followed by the cuBLASLt matmul of matmul.c for large M. Which one runs is the
 * builder's choice, by timing (builder/tactics.c). Not a kernel file.
 */
#include <stdint.h>
#include <string.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_internal.h"
#include "core/quant.h"
#include "core/round.h"

#define WQ_ALIGN 256u /* the dequantized weights start the workspace; what follows stays aligned */
#define MAX_LT 8

/* Workspace bytes the dequantized weights take. */
static size_t dequant_bytes(int64_t n, int64_t k, kiln_dtype dtype) {
  return kiln_round_up(kiln_dtype_bytes(dtype, n * k), WQ_ALIGN);
}

_Static_assert(KILN_CUDA_WQ_KERNELS == KILN_CUDA_SKINNY_VARIANTS, "wq kernel tactics are the skinny variants");

int kiln_cuda_wq_kernel_fits(kiln_dtype dtype, kiln_dtype qdtype, int64_t k, int32_t group) {
  if (qdtype != KILN_DTYPE_INT8 && qdtype != KILN_DTYPE_INT4) return 0;
  return kiln_cuda_skinny_fits(dtype, qdtype, k, group);
}

static int has_tensor_cores(const kiln_cuda_ctx *cu) { return cu && cu->info.cc_major >= 8; }

int32_t kiln_cuda_matmul_wq_candidates(kiln_cuda_ctx *cu, int64_t m, int64_t n, int64_t k, kiln_dtype dtype,
                                       kiln_dtype qdtype, int32_t group, int32_t has_bias, kiln_activation act,
                                       size_t max_workspace, kiln_tactic *out, int32_t cap) {
  int32_t count = 0;
  int fits = has_tensor_cores(cu) && kiln_cuda_wq_kernel_fits(dtype, qdtype, k, group);
  if (!out || cap <= 0 || m < 0 || n < 0 || k < 0 || !kiln_dtype_is_float(dtype)) return 0;
  for (int32_t i = 0; fits && i < KILN_CUDA_WQ_KERNELS && count < cap; i++) {
    memset(&out[count], 0, sizeof out[count]);
    out[count].kind = KILN_TACTIC_KERNEL;
    out[count++].index = i;
  }
  size_t deq = dequant_bytes(n, k, dtype);
  int32_t added = 0;
  if (cu && deq <= max_workspace) {
    kiln_tactic lt[MAX_LT + KILN_CUDA_MATMUL_KERNELS];
    int32_t nl = kiln_cuda_matmul_candidates(cu, m, n, k, dtype, has_bias, act, max_workspace - deq, lt,
                                             MAX_LT + KILN_CUDA_MATMUL_KERNELS);
    for (int32_t i = 0; i < nl && count < cap; i++) {
      if (lt[i].kind != KILN_TACTIC_CUBLASLT) continue; /* kernel indexes mean the small-M kernel here */
      out[count] = lt[i];
      out[count++].workspace += deq;
      added++;
    }
  }
  if (!fits && !added && count < cap) { /* dequantize + whatever cuBLASLt (or kiln's tiled kernel) runs */
    memset(&out[count], 0, sizeof out[count]);
    out[count].kind = KILN_TACTIC_DEFAULT;
    out[count++].workspace = deq + KILN_CUDA_DEFAULT_MATMUL_WORKSPACE;
  }
  return count;
}

size_t kiln_cuda_matmul_wq_workspace(const kiln_tactic *tactic, int64_t n, int64_t k, kiln_dtype dtype,
                                     kiln_dtype qdtype, int32_t group) {
  int32_t kind = tactic ? tactic->kind : KILN_TACTIC_DEFAULT;
  if (kind == KILN_TACTIC_KERNEL) return 0;
  if (kind == KILN_TACTIC_CUBLASLT) return tactic->workspace;
  if (kiln_cuda_wq_kernel_fits(dtype, qdtype, k, group)) return 0;
  return dequant_bytes(n, k, dtype) + KILN_CUDA_DEFAULT_MATMUL_WORKSPACE;
}

static kiln_status check_view(const kiln_tensor *t, const char *what) {
  if (!t) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul_wq: %s is NULL", what);
  if (!kiln_tensor_is_contiguous(t))
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_cuda_matmul_wq: %s is not contiguous", what);
  if (!t->data && kiln_dims_count(&t->shape) > 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul_wq: %s has no data pointer", what);
  return KILN_OK;
}

static kiln_status check_args(const kiln_tensor *x, const kiln_tensor *wq, const kiln_tensor *scales,
                              const kiln_tensor *b, int32_t group, kiln_activation act, const kiln_tensor *y,
                              int64_t *m, int64_t *n, int64_t *k) {
  char sx[128], sw[128], sy[128], ss[128];
  KILN_TRY(check_view(x, "x"));
  KILN_TRY(check_view(wq, "Wq"));
  KILN_TRY(check_view(scales, "scales"));
  KILN_TRY(check_view(y, "y"));
  if (b) KILN_TRY(check_view(b, "b"));
  if (!kiln_dtype_is_float(x->dtype) || !kiln_dtype_is_float(y->dtype) || (b && !kiln_dtype_is_float(b->dtype)))
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_cuda_matmul_wq: x, y and b must be fp32, fp16 or bf16 (got %s, %s, %s)",
                      kiln_dtype_name(x->dtype), kiln_dtype_name(y->dtype), b ? kiln_dtype_name(b->dtype) : "none");
  if (scales->dtype != KILN_DTYPE_FP32)
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_cuda_matmul_wq: scales must be fp32, got %s", kiln_dtype_name(scales->dtype));
  if (act < KILN_ACTIVATION_NONE || act > KILN_ACTIVATION_SILU)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul_wq: unknown activation %d", (int)act);
  if (x->shape.rank < 1 || wq->shape.rank != 2 || y->shape.rank != x->shape.rank) goto bad_shape;
  int32_t r = x->shape.rank;
  *k = x->shape.d[r - 1];
  *n = wq->shape.d[0];
  *m = 1;
  for (int32_t i = 0; i < r - 1; i++) *m *= x->shape.d[i];
  if (wq->shape.d[1] != *k || y->shape.d[r - 1] != *n) goto bad_shape;
  for (int32_t i = 0; i < r - 1; i++)
    if (y->shape.d[i] != x->shape.d[i]) goto bad_shape;
  KILN_TRY(kiln_quant_check(wq->dtype, *n, *k, group));
  int scales_ok = group == 0 ? scales->shape.rank == 1 && scales->shape.d[0] == *n
                             : scales->shape.rank == 2 && scales->shape.d[0] == *n && scales->shape.d[1] == *k / group;
  if (!scales_ok)
    return kiln_error(KILN_ERR_SHAPE, "kiln_cuda_matmul_wq: scales %s do not fit Wq %s with group %d",
                      kiln_dims_str(&scales->shape, ss, sizeof ss), kiln_dims_str(&wq->shape, sw, sizeof sw), (int)group);
  if (b && kiln_dims_count(&b->shape) != *n)
    return kiln_error(KILN_ERR_SHAPE, "kiln_cuda_matmul_wq: b must have N = %lld elements", (long long)*n);
  return KILN_OK;
bad_shape:
  return kiln_error(KILN_ERR_SHAPE, "kiln_cuda_matmul_wq: need x [..., K], Wq [N, K], y [..., N] (got x %s, Wq %s, y %s)",
                    kiln_dims_str(&x->shape, sx, sizeof sx), kiln_dims_str(&wq->shape, sw, sizeof sw),
                    kiln_dims_str(&y->shape, sy, sizeof sy));
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

kiln_status kiln_cuda_matmul_wq(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                                const kiln_tensor *wq, const kiln_tensor *scales, const kiln_tensor *b, int32_t group,
                                kiln_activation act, kiln_tensor *y, void *workspace, size_t workspace_bytes,
                                void *stream) {
  return kiln_cuda_matmul_wq_fused(cu, tactic, x, wq, scales, b, group, act, NULL, y, workspace, workspace_bytes,
                                   stream);
}

kiln_status kiln_cuda_matmul_wq_fused(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                                      const kiln_tensor *wq, const kiln_tensor *scales, const kiln_tensor *b,
                                      int32_t group, kiln_activation act, const kiln_cuda_mm_fuse *fuse,
                                      kiln_tensor *y, void *workspace, size_t workspace_bytes, void *stream) {
  int64_t m = 0, n = 0, k = 0;
  int32_t kind = tactic ? tactic->kind : KILN_TACTIC_DEFAULT;
  KILN_TRY(check_args(x, wq, scales, b, group, act, y, &m, &n, &k));
  KILN_TRY(kiln_cuda_mm_fuse_check(fuse, x, y, k, "kiln_cuda_matmul_wq"));
  if (kind != KILN_TACTIC_DEFAULT && kind != KILN_TACTIC_CUBLASLT && kind != KILN_TACTIC_KERNEL)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul_wq: tactic kind %d is not a matmul tactic; rebuild the engine",
                      (int)kind);
  if (kind == KILN_TACTIC_KERNEL && (tactic->index < 0 || tactic->index >= KILN_CUDA_WQ_KERNELS))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul_wq: kernel tactic %d does not exist (this kiln has %d); "
                      "rebuild the engine", (int)tactic->index, KILN_CUDA_WQ_KERNELS);
  if (m == 0 || n == 0) return KILN_OK;
  int fits = kiln_cuda_wq_kernel_fits(x->dtype, wq->dtype, k, group) && y->dtype == x->dtype && has_tensor_cores(cu) &&
             aligned16(x->data) && aligned16(wq->data);
  if (kind == KILN_TACTIC_KERNEL && !fits)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "kiln_cuda_matmul_wq: the small-M kernel needs an sm_80+ GPU, fp16/bf16 x and y of one dtype, "
                      "K a multiple of %d, group 0 or a multiple of it, and 16-byte aligned x and Wq (got x %s, y %s, "
                      "%s K = %lld, group %d, x at %p); bind aligned buffers or rebuild the engine",
                      wq->dtype == KILN_DTYPE_INT8 ? 16 : 32, kiln_dtype_name(x->dtype), kiln_dtype_name(y->dtype),
                      kiln_dtype_name(wq->dtype), (long long)k, (int)group, x->data);
  if (kind == KILN_TACTIC_KERNEL || (kind == KILN_TACTIC_DEFAULT && fits))
    return kiln_cuda_skinny(kind == KILN_TACTIC_KERNEL ? tactic->index : 0, x, wq, scales, group, b, act, fuse, y, m, n,
                            k, stream);
  /* large-M path: the layernorm (if fused), then W = dequant(Wq) in x's dtype, both at the start
   * of the workspace, then cuBLASLt with the residual */
  kiln_tensor xn;
  KILN_TRY(kiln_cuda_mm_ln_prologue(x, fuse, &workspace, &workspace_bytes, &xn, stream));
  size_t need = dequant_bytes(n, k, x->dtype);
  if (need > 0 && (!workspace || workspace_bytes < need))
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "kiln_cuda_matmul_wq: dequantizing the weights [%lld, %lld] needs %zu bytes of workspace, got %zu; "
                      "rebuild the engine",
                      (long long)n, (long long)k, need, workspace ? workspace_bytes : (size_t)0);
  KILN_TRY(kiln_cuda_wq_dequantize(wq, scales, group, workspace, x->dtype, n, k, stream));
  kiln_tensor w = kiln_tensor_contiguous(workspace, x->dtype, &wq->shape);
  void *rest = need > 0 ? (char *)workspace + need : workspace;
  size_t rest_bytes = workspace ? workspace_bytes - need : 0;
  kiln_cuda_mm_fuse res_only = {NULL, NULL, 0.0f, fuse ? fuse->residual : NULL};
  return kiln_cuda_matmul_fused(cu, kind == KILN_TACTIC_CUBLASLT ? tactic : NULL, &xn, &w, b, act, &res_only, y,
                                rest_bytes ? rest : NULL, rest_bytes, stream);
}
