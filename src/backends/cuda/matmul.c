/* src/backends/cuda/matmul.c - matmul y = act(x @ W^T + b) through cuBLASLt, with tactics.
 *
 * Layouts: x [..., K] row-major (M = product of the leading dims), W [N, K] row-major (PyTorch
 * Linear), b [N], y [..., N] row-major. cuBLASLt is column-major, so we compute y^T = W x^T:
 * A = W seen as a K x N column-major matrix with op T, B = x seen as K x M column-major with
 * op N, D = y seen as N x M column-major. The bias runs along D's rows (N), as the BIAS
 * epilogues expect. Accumulation and scale are fp32 (CUBLAS_COMPUTE_32F, no TF32, so fp32
 * results stay close to the CPU's). Epilogues: BIAS, RELU, RELU_BIAS; GELU and SiLU run as
 * kiln's own elementwise kernel after the matmul (cuBLASLt's GELU is the tanh form, kiln's is
 * the erf form).
 *
 * Tactics: KILN_TACTIC_CUBLASLT (index = heuristic rank, data = the cublasLtMatmulAlgo_t),
 * KILN_TACTIC_KERNEL (index 0: kiln's tiled kernel, matmul_kernel.cu; 1 + i: the skinny
 * kernel's variant i, skinny.cu, for small M) and KILN_TACTIC_DEFAULT (the first heuristic
 * answer for the pointers at hand). Fusions (kiln_cuda_mm_fuse): in the skinny kernel, else a
 * layernorm into the workspace before and the residual as cuBLASLt's C (beta = 1) or an add
 * after. A stored algorithm that cublasLtMatmulAlgoCheck
 * rejects for the shape at hand, or whose workspace does not fit, falls back to the heuristic's
 * first choice. Shapes cuBLASLt cannot take (K = 0) or mixed dtypes run the tiled kernel.
 * Not thread-safe per call beyond what cuBLASLt guarantees for a shared handle (it is).
 */
#include <string.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_internal.h"
#include "core/round.h"

_Static_assert(sizeof(cublasLtMatmulAlgo_t) <= KILN_TACTIC_BYTES,
               "a cublasLtMatmulAlgo_t must fit in kiln_tactic.data");

/* The alignment (bytes) candidates are chosen for; pointers aligned less re-run the heuristic. */
#define CANDIDATE_ALIGNMENT 16u
#define MAX_HEURISTICS 8
#define SKINNY_BASE 1   /* kernel tactic index of the skinny kernel's variant 0 */
#define SKINNY_MAX_M 64 /* rows of x up to which the skinny kernel is a candidate */
_Static_assert(KILN_CUDA_MATMUL_KERNELS == SKINNY_BASE + KILN_CUDA_SKINNY_VARIANTS,
               "kernel tactics: the tiled kernel, then the skinny variants");

typedef struct lt_problem {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, d;
} lt_problem;

static cudaDataType_t lt_type(kiln_dtype dt) {
  return dt == KILN_DTYPE_FP16 ? CUDA_R_16F : dt == KILN_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void lt_problem_destroy(lt_problem *p) {
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->d) cublasLtMatrixLayoutDestroy(p->d);
  memset(p, 0, sizeof *p);
}

/* Descriptors for y[M, N] = x[M, K] W[N, K]^T (+ bias, relu) in one dtype. bias may be NULL
 * even when has_bias (candidates are chosen without pointers). */
static kiln_status lt_problem_create(lt_problem *p, int64_t m, int64_t n, int64_t k,
                                     kiln_dtype dt, int has_bias, const void *bias,
                                     kiln_activation act) {
  kiln_status st = KILN_OK;
  cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  cublasLtEpilogue_t epi;
  cudaDataType_t type = lt_type(dt);
  memset(p, 0, sizeof *p);
  if (act == KILN_ACTIVATION_RELU)
    epi = has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
  else
    epi = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), st, fail);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_t,
                                                        sizeof op_t), st, fail);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_n,
                                                        sizeof op_n), st, fail);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                        sizeof epi), st, fail);
  if (has_bias && bias)
    KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                          &bias, sizeof bias), st, fail);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatrixLayoutCreate(&p->a, type, (uint64_t)k, (uint64_t)n, k), st, fail);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatrixLayoutCreate(&p->b, type, (uint64_t)k, (uint64_t)m, k), st, fail);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatrixLayoutCreate(&p->d, type, (uint64_t)n, (uint64_t)m, n), st, fail);
  return KILN_OK;
fail:
  lt_problem_destroy(p);
  return st;
}

/* Up to `cap` heuristic answers for pointers aligned to `align` bytes. Returns the count (0 when
 * cuBLASLt has none; an error only when the query itself fails). */
static kiln_status lt_heuristics(kiln_cuda_ctx *cu, const lt_problem *p, size_t max_workspace,
                                 uint32_t align, cublasLtMatmulHeuristicResult_t *res, int cap,
                                 int *count) {
  kiln_status st = KILN_OK;
  cublasLtMatmulPreference_t pref = NULL;
  uint64_t ws = max_workspace;
  int n = 0;
  *count = 0;
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulPreferenceCreate(&pref), st, done);
  KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                         st, done);
  static const cublasLtMatmulPreferenceAttributes_t aligns[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; i++)
    KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulPreferenceSetAttribute(pref, aligns[i], &align, sizeof align), st, done);
  {
    /* Split-K partial sums are reduced in fp32 workspace only: the in-place and output-type
     * schemes keep partial sums in the 16-bit output buffer, rounding each one, which breaks
     * kiln's fp32-accumulation contract (seen on an H200: bf16 split-K algorithms off by up to
     * 6 ulps with either scheme). */
    uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    KILN_CUBLAS_CHECK_GOTO(cublasLtMatmulPreferenceSetAttribute(
                               pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reduction,
                               sizeof reduction),
                           st, done);
  }
  {
    cublasStatus_t cs = cublasLtMatmulAlgoGetHeuristic(cu->lt, p->op, p->a, p->b, p->d, p->d, pref,
                                                       cap, res, &n);
    if (cs == CUBLAS_STATUS_NOT_SUPPORTED) n = 0; /* no algorithm for this problem */
    else if (cs != CUBLAS_STATUS_SUCCESS) {
      st = kiln_cublas_status_(cs, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
      goto done;
    }
  }
  for (int i = 0; i < n; i++)
    if (res[i].state == CUBLAS_STATUS_SUCCESS) res[(*count)++] = res[i];
done:
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  return st;
}

/* The heuristic's first algorithm for this problem, through the context's cache (see
 * kiln_cuda_algo_entry). *found is 0 when cuBLASLt has none. */
static kiln_status default_algo(kiln_cuda_ctx *cu, const lt_problem *p, int64_t m, int64_t n, int64_t k,
                                kiln_dtype dt, int has_bias, kiln_activation act, uint32_t align,
                                size_t workspace, cublasLtMatmulAlgo_t *algo, int *found) {
  kiln_status st = KILN_OK;
  pthread_mutex_lock(&cu->algo_lock);
  for (int32_t i = 0; i < KILN_CUDA_ALGO_CACHE; i++) {
    const kiln_cuda_algo_entry *e = &cu->algo_cache[i];
    if (e->used && e->m == m && e->n == n && e->k == k && e->dtype == (int32_t)dt && e->has_bias == has_bias &&
        e->act == (int32_t)act && e->align == align && e->workspace == workspace) {
      *algo = e->algo;
      *found = e->found;
      pthread_mutex_unlock(&cu->algo_lock);
      return KILN_OK;
    }
  }
  cublasLtMatmulHeuristicResult_t res[1];
  int got = 0;
  st = lt_heuristics(cu, p, workspace, align, res, 1, &got);
  if (st == KILN_OK) {
    kiln_cuda_algo_entry *e = &cu->algo_cache[cu->algo_next];
    cu->algo_next = (cu->algo_next + 1) % KILN_CUDA_ALGO_CACHE;
    memset(e, 0, sizeof *e);
    e->m = m, e->n = n, e->k = k, e->dtype = (int32_t)dt, e->has_bias = has_bias, e->act = (int32_t)act;
    e->align = align, e->workspace = workspace, e->used = 1, e->found = got > 0;
    if (got > 0) e->algo = res[0].algo;
    *algo = e->algo;
    *found = e->found;
  }
  pthread_mutex_unlock(&cu->algo_lock);
  return st;
}

static int lt_dtypes_ok(kiln_dtype dt, int has_bias, kiln_dtype bias_dt, kiln_dtype wdt,
                        kiln_dtype ydt) {
  return kiln_dtype_is_float(dt) && wdt == dt && ydt == dt && (!has_bias || bias_dt == dt);
}

int32_t kiln_cuda_matmul_candidates(kiln_cuda_ctx *cu, int64_t m, int64_t n, int64_t k,
                                    kiln_dtype dtype, int32_t has_bias, kiln_activation act,
                                    size_t max_workspace, kiln_tactic *out, int32_t cap) {
  int32_t count = 0;
  if (!out || cap <= 0 || m < 0 || n < 0 || k < 0) return 0;
  if (cu && kiln_dtype_is_float(dtype) && m > 0 && n > 0 && k > 0) {
    cublasLtMatmulHeuristicResult_t res[MAX_HEURISTICS];
    lt_problem p;
    int got = 0, want = cap - KILN_CUDA_MATMUL_KERNELS;
    if (want > MAX_HEURISTICS) want = MAX_HEURISTICS;
    if (want > 0 && lt_problem_create(&p, m, n, k, dtype, has_bias, NULL, act) == KILN_OK) {
      if (lt_heuristics(cu, &p, max_workspace, CANDIDATE_ALIGNMENT, res, want, &got) != KILN_OK)
        got = 0;
      lt_problem_destroy(&p);
    }
    for (int i = 0; i < got; i++) {
      kiln_tactic *t = &out[count++];
      memset(t, 0, sizeof *t);
      t->kind = KILN_TACTIC_CUBLASLT;
      t->index = i;
      t->workspace = res[i].workspaceSize;
      memcpy(t->data, &res[i].algo, sizeof res[i].algo);
    }
  }
  int skinny = cu && cu->info.cc_major >= 8 && m <= SKINNY_MAX_M && kiln_cuda_skinny_fits(dtype, dtype, k, 0);
  for (int32_t i = 0; i < KILN_CUDA_MATMUL_KERNELS && count < cap; i++) {
    if (i >= SKINNY_BASE && !skinny) break;
    kiln_tactic *t = &out[count++];
    memset(t, 0, sizeof *t);
    t->kind = KILN_TACTIC_KERNEL;
    t->index = i;
  }
  return count;
}

int kiln_cuda_matmul_tactic_is_skinny(int32_t op_is_wq, const kiln_tactic *t) {
  if (!t || t->kind != KILN_TACTIC_KERNEL) return 0;
  return op_is_wq ? 1 : t->index >= SKINNY_BASE;
}

size_t kiln_cuda_matmul_ln_bytes(int64_t m, int64_t k, kiln_dtype dtype) {
  return kiln_round_up(kiln_dtype_bytes(dtype, m * k), 256);
}

/* Largest power-of-two alignment (<= 256) shared by the pointers. */
static uint32_t pointer_alignment(const void *a, const void *b, const void *c, const void *d) {
  uintptr_t bits = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d | 256u;
  return (uint32_t)(bits & (~bits + 1u));
}

static kiln_status check_matmul(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                                kiln_activation act, const kiln_tensor *y, int64_t *m, int64_t *n,
                                int64_t *k);
static kiln_status check_tensor(const kiln_tensor *t, const char *what);

/* cuBLASLt path: the stored algorithm when valid, else the heuristic's first choice. */
static kiln_status lt_run(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                          const kiln_tensor *w, const kiln_tensor *b, kiln_activation act,
                          const kiln_tensor *c, kiln_tensor *y, int64_t m, int64_t n, int64_t k,
                          void *workspace, size_t workspace_bytes, void *stream) {
  kiln_status st;
  lt_problem p;
  cublasLtMatmulAlgo_t algo;
  int have_algo = 0;
  const float alpha = 1.0f, beta = c ? 1.0f : 0.0f; /* c: added before the epilogue (no activation) */
  const void *cdata = c ? c->data : y->data;
  uint32_t align = pointer_alignment(x->data, w->data, y->data, b ? b->data : NULL);
  uint32_t c_align = pointer_alignment(cdata, cdata, cdata, cdata);
  if (c_align < align) align = c_align;
  KILN_TRY(lt_problem_create(&p, m, n, k, x->dtype, b != NULL, b ? b->data : NULL, act));
  if (tactic && tactic->kind == KILN_TACTIC_CUBLASLT && align >= CANDIDATE_ALIGNMENT) {
    cublasLtMatmulHeuristicResult_t check;
    memcpy(&algo, tactic->data, sizeof algo);
    memset(&check, 0, sizeof check);
    uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_NONE;
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &reduction,
                                             sizeof reduction, &written) != CUBLAS_STATUS_SUCCESS)
      reduction = CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE; /* unreadable: do not trust it */
    if ((reduction == CUBLASLT_REDUCTION_SCHEME_NONE || reduction == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE) &&
        cublasLtMatmulAlgoCheck(cu->lt, p.op, p.a, p.b, p.d, p.d, &algo, &check) ==
            CUBLAS_STATUS_SUCCESS &&
        check.workspaceSize <= workspace_bytes)
      have_algo = 1;
  }
  if (!have_algo) {
    int found = 0;
    st = default_algo(cu, &p, m, n, k, x->dtype, b != NULL, act, align, workspace ? workspace_bytes : 0, &algo,
                      &found);
    if (st != KILN_OK) goto done;
    if (!found) {
      lt_problem_destroy(&p);
      KILN_TRY(kiln_cuda_matmul_tiled(x, w, b, act, y, m, n, k, stream));
      return c ? kiln_cuda_add(y, c, y, stream) : KILN_OK;
    }
  }
  {
    cublasStatus_t cs = cublasLtMatmul(cu->lt, p.op, &alpha, w->data, p.a, x->data, p.b, &beta,
                                       cdata, p.d, y->data, p.d, &algo, workspace,
                                       workspace ? workspace_bytes : 0, (cudaStream_t)stream);
    if (cs != CUBLAS_STATUS_SUCCESS) {
      st = kiln_cublas_status_(cs, "cublasLtMatmul", __FILE__, __LINE__);
      goto done;
    }
  }
  st = KILN_OK;
  if (act == KILN_ACTIVATION_GELU || act == KILN_ACTIVATION_SILU)
    st = kiln_cuda_activation(y, act, y, stream);
done:
  lt_problem_destroy(&p);
  return st;
}

kiln_status kiln_cuda_matmul(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                             const kiln_tensor *w, const kiln_tensor *b, kiln_activation act,
                             kiln_tensor *y, void *workspace, size_t workspace_bytes,
                             void *stream) {
  return kiln_cuda_matmul_fused(cu, tactic, x, w, b, act, NULL, y, workspace, workspace_bytes, stream);
}

kiln_status kiln_cuda_mm_fuse_check(const kiln_cuda_mm_fuse *f, const kiln_tensor *x, const kiln_tensor *y,
                                    int64_t k, const char *op) {
  char s1[128], s2[128];
  if (!f) return KILN_OK;
  if (!f->gamma != !f->beta)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: the layernorm needs both gamma and beta", op);
  if (f->gamma) {
    KILN_TRY(check_tensor(f->gamma, "gamma"));
    KILN_TRY(check_tensor(f->beta, "beta"));
    if (kiln_dims_count(&f->gamma->shape) != k || kiln_dims_count(&f->beta->shape) != k)
      return kiln_error(KILN_ERR_SHAPE, "%s: gamma and beta must have K = %lld elements", op, (long long)k);
    if (!kiln_dtype_is_float(x->dtype)) return kiln_error(KILN_ERR_UNSUPPORTED, "%s: x must be float", op);
  }
  if (f->residual) {
    KILN_TRY(check_tensor(f->residual, "the residual"));
    if (!kiln_dims_equal(&f->residual->shape, &y->shape))
      return kiln_error(KILN_ERR_SHAPE, "%s: the residual %s must have y's shape %s", op,
                        kiln_dims_str(&f->residual->shape, s1, sizeof s1), kiln_dims_str(&y->shape, s2, sizeof s2));
  }
  return KILN_OK;
}

kiln_status kiln_cuda_mm_ln_prologue(const kiln_tensor *x, const kiln_cuda_mm_fuse *f, void **workspace,
                                     size_t *workspace_bytes, kiln_tensor *xn, void *stream) {
  *xn = *x;
  if (!f || !f->gamma) return KILN_OK;
  int64_t k = x->shape.d[x->shape.rank - 1], m = kiln_dims_count(&x->shape) / (k ? k : 1);
  size_t need = kiln_cuda_matmul_ln_bytes(m, k, x->dtype);
  if (!*workspace || *workspace_bytes < need)
    return kiln_error(KILN_ERR_INVALID_ARG, "matmul with a fused layernorm: %zu bytes of workspace for the "
                      "normalized input, %zu given; rebuild the engine", need, *workspace ? *workspace_bytes : 0);
  *xn = kiln_tensor_contiguous(*workspace, x->dtype, &x->shape);
  *workspace = (char *)*workspace + need;
  *workspace_bytes -= need;
  return kiln_cuda_layernorm(x, f->gamma, f->beta, f->eps, xn, stream);
}

kiln_status kiln_cuda_matmul_fused(kiln_cuda_ctx *cu, const kiln_tactic *tactic, const kiln_tensor *x,
                                   const kiln_tensor *w, const kiln_tensor *b, kiln_activation act,
                                   const kiln_cuda_mm_fuse *fuse, kiln_tensor *y, void *workspace,
                                   size_t workspace_bytes, void *stream) {
  int64_t m = 0, n = 0, k = 0;
  int32_t kind = tactic ? tactic->kind : KILN_TACTIC_DEFAULT;
  KILN_TRY(check_matmul(x, w, b, act, y, &m, &n, &k));
  KILN_TRY(kiln_cuda_mm_fuse_check(fuse, x, y, k, "kiln_cuda_matmul"));
  if (kind != KILN_TACTIC_DEFAULT && kind != KILN_TACTIC_CUBLASLT && kind != KILN_TACTIC_KERNEL)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_cuda_matmul: tactic kind %d is not a matmul tactic; rebuild the engine",
                      (int)kind);
  if (kind == KILN_TACTIC_KERNEL && (tactic->index < 0 || tactic->index >= KILN_CUDA_MATMUL_KERNELS))
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_cuda_matmul: kernel tactic %d does not exist (this kiln has %d); "
                      "rebuild the engine",
                      (int)tactic->index, KILN_CUDA_MATMUL_KERNELS);
  if (m == 0 || n == 0) return KILN_OK;
  if (kind == KILN_TACTIC_KERNEL && tactic->index >= SKINNY_BASE) {
    if (!cu || cu->info.cc_major < 8)
      return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_cuda_matmul: the skinny kernel needs a context on an sm_80+ GPU");
    return kiln_cuda_skinny(tactic->index - SKINNY_BASE, x, w, NULL, 0, b, act, fuse, y, m, n, k, stream);
  }
  kiln_tensor xn;
  KILN_TRY(kiln_cuda_mm_ln_prologue(x, fuse, &workspace, &workspace_bytes, &xn, stream));
  const kiln_tensor *res = fuse ? fuse->residual : NULL;
  int lt_ok = lt_dtypes_ok(x->dtype, b != NULL, b ? b->dtype : x->dtype, w->dtype, y->dtype) &&
              (!res || res->dtype == y->dtype);
  if (kind == KILN_TACTIC_CUBLASLT && !lt_ok)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "kiln_cuda_matmul: the cuBLASLt tactic needs x, W, b, y (and the residual) in one dtype "
                      "(got %s, %s, %s, %s); convert them or use the kernel tactic",
                      kiln_dtype_name(x->dtype), kiln_dtype_name(w->dtype),
                      b ? kiln_dtype_name(b->dtype) : "none", kiln_dtype_name(y->dtype));
  if (kind == KILN_TACTIC_KERNEL || !lt_ok || k == 0) {
    KILN_TRY(kiln_cuda_matmul_tiled(&xn, w, b, act, y, m, n, k, stream));
    return res ? kiln_cuda_add(y, res, y, stream) : KILN_OK;
  }
  if (!cu)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul: cuBLASLt tactics need a context "
                      "(kiln_cuda_ctx_create)");
  int c_in_lt = res && act == KILN_ACTIVATION_NONE;
  KILN_TRY(lt_run(cu, tactic, &xn, w, b, act, c_in_lt ? res : NULL, y, m, n, k, workspace, workspace_bytes, stream));
  return res && !c_in_lt ? kiln_cuda_add(y, res, y, stream) : KILN_OK;
}

static kiln_status check_tensor(const kiln_tensor *t, const char *what) {
  if (!t) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul: %s is NULL", what);
  if (!kiln_dtype_is_float(t->dtype))
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_cuda_matmul: %s has dtype %s; use fp32, fp16 "
                      "or bf16", what, kiln_dtype_name(t->dtype));
  if (!kiln_tensor_is_contiguous(t))
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_cuda_matmul: %s is not contiguous", what);
  if (!t->data && kiln_dims_count(&t->shape) > 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul: %s has no data pointer", what);
  return KILN_OK;
}

static kiln_status check_matmul(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                                kiln_activation act, const kiln_tensor *y, int64_t *m, int64_t *n,
                                int64_t *k) {
  char sx[128], sw[128], sy[128];
  KILN_TRY(check_tensor(x, "x"));
  KILN_TRY(check_tensor(w, "W"));
  KILN_TRY(check_tensor(y, "y"));
  if (b) KILN_TRY(check_tensor(b, "b"));
  if (act < KILN_ACTIVATION_NONE || act > KILN_ACTIVATION_SILU)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_matmul: unknown activation %d", (int)act);
  if (x->shape.rank < 1 || w->shape.rank != 2 || y->shape.rank != x->shape.rank)
    return kiln_error(KILN_ERR_SHAPE, "kiln_cuda_matmul: need x [..., K], W [N, K], y [..., N] "
                      "(got x %s, W %s, y %s)", kiln_dims_str(&x->shape, sx, sizeof sx),
                      kiln_dims_str(&w->shape, sw, sizeof sw), kiln_dims_str(&y->shape, sy, sizeof sy));
  int32_t r = x->shape.rank;
  *k = x->shape.d[r - 1];
  *n = w->shape.d[0];
  *m = 1;
  for (int32_t i = 0; i < r - 1; i++) *m *= x->shape.d[i];
  int ok = w->shape.d[1] == *k && y->shape.d[r - 1] == *n;
  for (int32_t i = 0; ok && i < r - 1; i++) ok = y->shape.d[i] == x->shape.d[i];
  if (!ok)
    return kiln_error(KILN_ERR_SHAPE, "kiln_cuda_matmul: need x [..., K], W [N, K], y [..., N] "
                      "(got x %s, W %s, y %s)", kiln_dims_str(&x->shape, sx, sizeof sx),
                      kiln_dims_str(&w->shape, sw, sizeof sw), kiln_dims_str(&y->shape, sy, sizeof sy));
  if (b && kiln_dims_count(&b->shape) != *n)
    return kiln_error(KILN_ERR_SHAPE, "kiln_cuda_matmul: b must have N = %lld elements",
                      (long long)*n);
  return KILN_OK;
}
