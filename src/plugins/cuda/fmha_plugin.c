/* src/plugins/cuda/fmha_plugin.c - the "fmha" plugin: forward fused multi-head attention
 * through the ahead-of-time Triton kernel kernels/triton/fmha.py (fields, layouts and tactics
 * are described in fmha_plugin.h).
 *
 * What it is not: a CPU implementation (the CPU path is the attention layer of the CPU backend)
 * or an fp32 kernel (build the network in fp16 or bf16). Serialized form (16-byte header then
 * fields, host byte order): "KFMH" magic, u32 format version 1, then int32 num_heads, head_size,
 * float scale, int32 causal, layout code, max_seqlen_q.
 */
#include "plugins/cuda/fmha_plugin.h"

#ifdef KILN_HAVE_TRITON_KERNELS

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "backends/cuda/cuda_ops.h"
#include "core/error.h"
#include "kiln_triton_kernels.h"

enum { LAYOUT_BHSD = 0, LAYOUT_BSHD = 1, LAYOUT_QKV = 2, LAYOUT_VARLEN = 3 };
static const char *const layout_names[] = {"bhsd", "bshd", "qkv", "varlen"};
#define N_LAYOUTS ((int32_t)(sizeof layout_names / sizeof layout_names[0]))

#define FMHA_MAGIC "KFMH"
#define FMHA_FORMAT 1u
#define FMHA_MAX_TACTICS 24

typedef struct fmha_state {
  int32_t num_heads, head_size;
  float scale;
  int32_t causal, layout, max_seqlen_q;
} fmha_state;

static const kiln_plugin_field *field(int32_t n, const kiln_plugin_field *f, const char *name,
                                      kiln_plugin_field_type type) {
  for (int32_t i = 0; f && i < n; i++)
    if (f[i].name && strcmp(f[i].name, name) == 0 && f[i].type == type && f[i].count >= 1 &&
        f[i].data)
      return &f[i];
  return NULL;
}

static kiln_status validate(const fmha_state *s) {
  if (s->num_heads <= 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: num_heads must be > 0 (got %d)", s->num_heads);
  if (s->head_size != 32 && s->head_size != 64 && s->head_size != 80 && s->head_size != 96 &&
      s->head_size != 128)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "fmha: head_size %d is not compiled; use 32, 64, 80, 96 or 128", s->head_size);
  if (!isfinite(s->scale) || s->scale <= 0.0f)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: scale must be finite and > 0 (got %g)",
                      (double)s->scale);
  if (s->causal != 0 && s->causal != 1)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: causal must be 0 or 1 (got %d)", s->causal);
  if (s->layout < 0 || s->layout >= N_LAYOUTS)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: unknown layout code %d", s->layout);
  if (s->max_seqlen_q < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: max_seqlen_q must be >= 0");
  return KILN_OK;
}

static kiln_status finish(const fmha_state *tmp, void **state) {
  KILN_TRY(validate(tmp));
  fmha_state *s = malloc(sizeof *s);
  if (!s) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "fmha: out of memory");
  *s = *tmp;
  *state = s;
  return KILN_OK;
}

static kiln_status fmha_create(int32_t n, const kiln_plugin_field *f, void **state) {
  if (!state) return kiln_error(KILN_ERR_INVALID_ARG, "fmha: state is NULL");
  const kiln_plugin_field *h = field(n, f, "num_heads", KILN_PLUGIN_FIELD_INT32);
  const kiln_plugin_field *d = field(n, f, "head_size", KILN_PLUGIN_FIELD_INT32);
  const kiln_plugin_field *sc = field(n, f, "scale", KILN_PLUGIN_FIELD_FLOAT32);
  const kiln_plugin_field *c = field(n, f, "causal", KILN_PLUGIN_FIELD_INT32);
  const kiln_plugin_field *l = field(n, f, "layout", KILN_PLUGIN_FIELD_STRING);
  const kiln_plugin_field *mq = field(n, f, "max_seqlen_q", KILN_PLUGIN_FIELD_INT32);
  if (!h || !d)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "fmha: fields num_heads and head_size (int32) are required");
  fmha_state s = {0};
  s.num_heads = *(const int32_t *)h->data;
  s.head_size = *(const int32_t *)d->data;
  s.scale = sc ? *(const float *)sc->data : 1.0f / sqrtf((float)(s.head_size > 0 ? s.head_size : 1));
  s.causal = c ? *(const int32_t *)c->data : 0;
  s.layout = LAYOUT_BHSD;
  if (l) {
    s.layout = -1;
    for (int32_t i = 0; i < N_LAYOUTS; i++)
      if ((size_t)l->count == strlen(layout_names[i]) &&
          memcmp(l->data, layout_names[i], (size_t)l->count) == 0)
        s.layout = i;
    if (s.layout < 0)
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "fmha: layout \"%.*s\" unknown; use bhsd, bshd, qkv or varlen",
                        (int)(l->count < 32 ? l->count : 32), (const char *)l->data);
  }
  s.max_seqlen_q = mq ? *(const int32_t *)mq->data : 0;
  return finish(&s, state);
}

static kiln_status fmha_serialize(const void *state, void *buf, size_t *size) {
  const fmha_state *s = state;
  if (!s || !size) return kiln_error(KILN_ERR_INVALID_ARG, "fmha: serialize needs state and size");
  const size_t need = 8 + 6 * 4;
  if (!buf) {
    *size = need;
    return KILN_OK;
  }
  if (*size < need)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: serialize needs %zu bytes (got %zu)", need, *size);
  unsigned char *p = buf;
  uint32_t version = FMHA_FORMAT;
  memcpy(p, FMHA_MAGIC, 4);
  memcpy(p + 4, &version, 4);
  memcpy(p + 8, &s->num_heads, 4);
  memcpy(p + 12, &s->head_size, 4);
  memcpy(p + 16, &s->scale, 4);
  memcpy(p + 20, &s->causal, 4);
  memcpy(p + 24, &s->layout, 4);
  memcpy(p + 28, &s->max_seqlen_q, 4);
  *size = need;
  return KILN_OK;
}

static kiln_status fmha_deserialize(const void *data, size_t size, void **state) {
  const unsigned char *p = data;
  if (!p || !state || size != 32 || memcmp(p, FMHA_MAGIC, 4) != 0)
    return kiln_error(KILN_ERR_FORMAT,
                      "fmha: serialized plugin data is damaged (%zu bytes); rebuild the engine", size);
  uint32_t version;
  memcpy(&version, p + 4, 4);
  if (version != FMHA_FORMAT)
    return kiln_error(KILN_ERR_VERSION,
                      "fmha: serialized format %u, this kiln reads %u; rebuild the engine", version,
                      FMHA_FORMAT);
  fmha_state s;
  memcpy(&s.num_heads, p + 8, 4);
  memcpy(&s.head_size, p + 12, 4);
  memcpy(&s.scale, p + 16, 4);
  memcpy(&s.causal, p + 20, 4);
  memcpy(&s.layout, p + 24, 4);
  memcpy(&s.max_seqlen_q, p + 28, 4);
  return finish(&s, state);
}

static void fmha_destroy(void *state) { free(state); }

static int32_t n_inputs(const fmha_state *s) {
  return s->layout == LAYOUT_QKV ? 1 : s->layout == LAYOUT_VARLEN ? 5 : 3;
}

static kiln_status shape_error(const fmha_state *s, const char *what) {
  return kiln_error(KILN_ERR_SHAPE, "fmha (layout %s, H=%d, D=%d): %s", layout_names[s->layout],
                    s->num_heads, s->head_size, what);
}

/* Check dims for the layout; writes the output shape. */
static kiln_status check_shapes(const fmha_state *s, int32_t n_in, const kiln_plugin_desc *in,
                                kiln_dims *out) {
  if (n_in != n_inputs(s)) return shape_error(s, "wrong number of inputs");
  const int64_t H = s->num_heads, D = s->head_size;
  const kiln_dims *q = &in[0].shape;
  if (s->layout == LAYOUT_QKV) {
    if (q->rank != 5 || q->d[2] != 3 || q->d[3] != H || q->d[4] != D)
      return shape_error(s, "qkv must be [B, S, 3, H, D]");
    *out = (kiln_dims){4, {q->d[0], q->d[1], H, D}};
    return KILN_OK;
  }
  const kiln_dims *k = &in[1].shape, *v = &in[2].shape;
  if (!kiln_dims_equal(k, v)) return shape_error(s, "k and v shapes differ");
  if (s->layout == LAYOUT_VARLEN) {
    if (q->rank != 3 || k->rank != 3 || q->d[1] != H || q->d[2] != D || k->d[1] != H ||
        k->d[2] != D)
      return shape_error(s, "q must be [Tq, H, D] and k, v [Tk, H, D]");
    if (in[3].shape.rank != 1 || in[4].shape.rank != 1 || in[3].shape.d[0] < 1 ||
        in[3].shape.d[0] != in[4].shape.d[0])
      return shape_error(s, "cu_seqlens_q and cu_seqlens_k must both be [B + 1]");
    *out = *q;
    return KILN_OK;
  }
  int hd = s->layout == LAYOUT_BHSD ? 1 : 2; /* position of the heads dim */
  if (q->rank != 4 || k->rank != 4 || q->d[hd] != H || k->d[hd] != H || q->d[3] != D ||
      k->d[3] != D || q->d[0] != k->d[0])
    return shape_error(s, s->layout == LAYOUT_BHSD ? "q must be [B, H, Sq, D] and k, v [B, H, Skv, D]"
                                                   : "q must be [B, Sq, H, D] and k, v [B, Skv, H, D]");
  *out = *q;
  return KILN_OK;
}

static kiln_status fmha_output_shapes(const void *state, int32_t n_in, const kiln_plugin_desc *in,
                                      int32_t n_out, kiln_plugin_desc *out) {
  const fmha_state *s = state;
  if (!s || !in || !out || n_out != 1)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: one output expected (got %d)", n_out);
  kiln_dims shape;
  KILN_TRY(check_shapes(s, n_in, in, &shape));
  out[0].dtype = in[0].dtype;
  out[0].shape = shape;
  return KILN_OK;
}

static int32_t fmha_supports_format(const void *state, kiln_target target, int32_t n_in,
                                    const kiln_plugin_desc *in) {
  const fmha_state *s = state;
  if (s && target == KILN_TARGET_CPU) /* the oracle path (kiln run --verify): [B, H, S, D] only */
    return s->layout == LAYOUT_BHSD && n_in == 3 && kiln_dtype_is_float(in[0].dtype);
  if (!s || target != KILN_TARGET_CUDA || n_in != n_inputs(s)) return 0;
  kiln_dtype dt = in[0].dtype;
  if (dt != KILN_DTYPE_FP16 && dt != KILN_DTYPE_BF16) return 0;
  int32_t n_float = s->layout == LAYOUT_VARLEN ? 3 : n_in;
  for (int32_t i = 0; i < n_float; i++)
    if (in[i].dtype != dt) return 0;
  for (int32_t i = n_float; i < n_in; i++)
    if (in[i].dtype != KILN_DTYPE_INT32) return 0;
  return 1;
}

/* The kernel families: plain loads (every arch), TMA loads of K and V (sm_90 and newer), the
 * Gluon kernel that keeps its warpgroup MMAs in flight (sm_90 only; TMA as well), and the
 * persistent, warp-specialized Gluon kernel (sm_90 only; a grid of about one program per SM, Q
 * through TMA too). */
enum { FAMILY_PLAIN, FAMILY_TMA, FAMILY_WGMMA, FAMILY_WS, N_FAMILIES };

static const kiln_triton_kernel *kernel_for(kiln_dtype dt, int family) {
  const int bf16 = dt == KILN_DTYPE_BF16;
  if (family == FAMILY_WS) return bf16 ? &kiln_triton_fmha_fwd_ws_bf16_kernel : &kiln_triton_fmha_fwd_ws_fp16_kernel;
  if (family == FAMILY_WGMMA)
    return bf16 ? &kiln_triton_fmha_fwd_wgmma_bf16_kernel : &kiln_triton_fmha_fwd_wgmma_fp16_kernel;
  if (family == FAMILY_TMA) return bf16 ? &kiln_triton_fmha_fwd_tma_bf16_kernel : &kiln_triton_fmha_fwd_tma_fp16_kernel;
  return bf16 ? &kiln_triton_fmha_fwd_bf16_kernel : &kiln_triton_fmha_fwd_fp16_kernel;
}

/* A tactic: a variant of one of the kernels. */
typedef struct fmha_tactic {
  const kiln_triton_kernel *kernel;
  int32_t variant;
  int family;
} fmha_tactic;

/* The tactics for this head size and dtype, in order: the plain kernel's variants compiled for
 * the head size, then the TMA kernel's, then the two Gluon kernels' (each family appended after
 * the others, so engines built before it keep their tactics); returns the count. */
static int32_t tactic_list(const fmha_state *s, kiln_dtype dt, fmha_tactic out[FMHA_MAX_TACTICS]) {
  int32_t n = 0;
  for (int f = 0; f < N_FAMILIES; f++) {
    const kiln_triton_kernel *k = kernel_for(dt, f);
    for (int32_t v = 0; v < k->n_variants && n < FMHA_MAX_TACTICS; v++)
      if (kiln_triton_constexpr(k, v, "HEAD_DIM", -1) == s->head_size) out[n++] = (fmha_tactic){k, v, f};
  }
  return n;
}

static int32_t fmha_num_tactics(const void *state, kiln_target target) {
  fmha_tactic t[FMHA_MAX_TACTICS];
  if (!state || target != KILN_TARGET_CUDA) return 1;
  return tactic_list(state, KILN_DTYPE_FP16, t);
}

static int32_t fmha_tactic_valid(const void *state, kiln_target target, int32_t tactic,
                                 int32_t n_in, const kiln_plugin_desc *in) {
  fmha_tactic t[FMHA_MAX_TACTICS];
  if (!state || target != KILN_TARGET_CUDA || n_in < 1 || !in) return 0;
  int32_t n = tactic_list(state, in[0].dtype, t);
  if (tactic < 0 || tactic >= n) {
    kiln_log(KILN_LOG_INFO, "fmha: tactic %d does not exist (%d tactics)", tactic, n);
    return 0;
  }
  if (kiln_triton_check(t[tactic].kernel, t[tactic].variant, NULL, NULL) != KILN_OK) {
    kiln_log(KILN_LOG_INFO, "fmha: tactic %d rejected: %s", tactic, kiln_last_error());
    return 0;
  }
  return 1;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The arguments both kernels share; strides are [b, h, s] in elements. */
typedef struct fmha_args {
  void *q, *k, *v, *o, *cu_q, *cu_k;
  int64_t qs[3], ks[3], vs[3], os[3];
  int64_t batch, q_rows, kv_rows; /* rows: Sq and Skv, or the packed tokens' totals (varlen) */
  int32_t sq, skv, varlen;
} fmha_args;

/* Q, K or V (rows of them) as the TMA and Gluon kernels' [B, H, S, D] descriptor (varlen:
 * [1, H, total, D]). */
static kiln_triton_tensor bhsd_desc(const fmha_state *s, const fmha_args *a, void *base, const int64_t st[3],
                                    int64_t rows) {
  kiln_triton_tensor t = {base, 4, {a->varlen ? 1 : a->batch, s->num_heads, rows, s->head_size},
                          {a->varlen ? st[2] * rows : st[0], st[1], st[2], 1}};
  return t;
}

/* The TMA and Gluon kernels' launchers take the same arguments, as do the plain kernel's two. */
typedef kiln_status (*desc_launcher)(void *, int32_t, uint32_t, uint32_t, uint32_t, void *, void *,
                                     const kiln_triton_tensor *, const kiln_triton_tensor *, void *, void *, int64_t,
                                     int64_t, int64_t, int64_t, int64_t, int64_t, int32_t, int32_t, int32_t, float,
                                     int32_t, int32_t);
typedef kiln_status (*ptr_launcher)(void *, int32_t, uint32_t, uint32_t, uint32_t, void *, void *, void *, void *,
                                    void *, void *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, int64_t, int32_t, int32_t, int32_t, float,
                                    int32_t, int32_t);

/* Launches tactic t on a grid of (gx, gy) programs (the persistent kernel: gx). */
static kiln_status launch(const fmha_tactic *t, void *stream, uint32_t gx, uint32_t gy, const fmha_state *s,
                          const fmha_args *a) {
  const int64_t *qs = a->qs, *ks = a->ks, *vs = a->vs, *os = a->os;
  const int bf16 = t->kernel == kernel_for(KILN_DTYPE_BF16, t->family);
  if (t->family == FAMILY_WS) {
    kiln_triton_tensor qd = bhsd_desc(s, a, a->q, qs, a->q_rows), kd = bhsd_desc(s, a, a->k, ks, a->kv_rows),
                       vd = bhsd_desc(s, a, a->v, vs, a->kv_rows);
    return (bf16 ? kiln_triton_fmha_fwd_ws_bf16 : kiln_triton_fmha_fwd_ws_fp16)(
        stream, t->variant, gx, 1, 1, &qd, a->o, &kd, &vd, a->cu_q, a->cu_k, os[0], os[1], os[2],
        (int32_t)a->batch, s->num_heads, a->sq, a->skv, s->scale, s->causal, a->varlen);
  }
  if (t->family != FAMILY_PLAIN) {
    desc_launcher fn = t->family == FAMILY_WGMMA
                           ? (bf16 ? kiln_triton_fmha_fwd_wgmma_bf16 : kiln_triton_fmha_fwd_wgmma_fp16)
                           : (bf16 ? kiln_triton_fmha_fwd_tma_bf16 : kiln_triton_fmha_fwd_tma_fp16);
    kiln_triton_tensor kd = bhsd_desc(s, a, a->k, ks, a->kv_rows), vd = bhsd_desc(s, a, a->v, vs, a->kv_rows);
    return fn(stream, t->variant, gx, gy, 1, a->q, a->o, &kd, &vd, a->cu_q, a->cu_k, qs[0], qs[1], qs[2], os[0],
              os[1], os[2], s->num_heads, a->sq, a->skv, s->scale, s->causal, a->varlen);
  }
  ptr_launcher fn = bf16 ? kiln_triton_fmha_fwd_bf16 : kiln_triton_fmha_fwd_fp16;
  return fn(stream, t->variant, gx, gy, 1, a->q, a->k, a->v, a->o, a->cu_q, a->cu_k, qs[0], qs[1], qs[2], ks[0], ks[1],
            ks[2], vs[0], vs[1], vs[2], os[0], os[1], os[2], s->num_heads, a->sq, a->skv, s->scale, s->causal,
            a->varlen);
}

static kiln_status fmha_enqueue(void *state, kiln_target target, int32_t tactic, int32_t n_in,
                                const kiln_tensor *in, int32_t n_out, kiln_tensor *out,
                                void *workspace, void *stream) {
  const fmha_state *s = state;
  if (!s || !in || !out || n_out != 1)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: enqueue needs state, inputs and one output");
  if (target == KILN_TARGET_CPU) { /* the CPU backend's attention is the reference */
    if (s->layout != LAYOUT_BHSD || n_in != 3)
      return kiln_error(KILN_ERR_UNSUPPORTED, "fmha on the CPU takes the bhsd layout only; use the attention layer");
    return kiln_cpu_attention(&in[0], &in[1], &in[2], s->scale, s->causal, &out[0]);
  }
  if (target != KILN_TARGET_CUDA)
    return kiln_error(KILN_ERR_UNSUPPORTED, "fmha runs on CUDA or (as a reference) the CPU");
  if (n_in != n_inputs(s)) return shape_error(s, "wrong number of inputs");
  kiln_plugin_desc desc[5];
  for (int32_t i = 0; i < n_in; i++) desc[i] = (kiln_plugin_desc){in[i].dtype, in[i].shape};
  if (!fmha_supports_format(s, target, n_in, desc))
    return kiln_error(KILN_ERR_UNSUPPORTED, "fmha: inputs must all be fp16 or all bf16 (cu_seqlens int32)");
  kiln_dims oshape;
  KILN_TRY(check_shapes(s, n_in, desc, &oshape));
  if (!kiln_dims_equal(&oshape, &out[0].shape) || out[0].dtype != in[0].dtype)
    return shape_error(s, "output shape or dtype does not match the inputs");
  fmha_tactic tl[FMHA_MAX_TACTICS];
  int32_t nt = tactic_list(s, in[0].dtype, tl);
  if (tactic < 0 || tactic >= nt)
    return kiln_error(KILN_ERR_INVALID_ARG, "fmha: tactic %d out of range (0..%d)", tactic, nt - 1);
  fmha_tactic t = tl[tactic];

  /* Strides (elements) for [b, h, s]; the head dim must be contiguous. */
  const kiln_tensor *q = &in[0], *kk = &in[0], *v = &in[0], *o = &out[0];
  fmha_args a = {.q = q->data, .o = o->data};
  int64_t *qs = a.qs, *ks = a.ks, *vs = a.vs, *os = a.os;
  int64_t Sq, Skv;
  const size_t esz = 2; /* fp16 and bf16 */
  if (s->layout == LAYOUT_QKV) {
    const int64_t *st = q->strides; /* [B, S, 3, H, D] */
    if (st[4] != 1) return shape_error(s, "the head dim of qkv must be contiguous");
    a.batch = q->shape.d[0], Sq = Skv = q->shape.d[1];
    qs[0] = ks[0] = vs[0] = st[0];
    qs[1] = ks[1] = vs[1] = st[3];
    qs[2] = ks[2] = vs[2] = st[1];
    a.k = (char *)a.q + (size_t)st[2] * esz;
    a.v = (char *)a.q + (size_t)(2 * st[2]) * esz;
    os[0] = o->strides[0], os[1] = o->strides[2], os[2] = o->strides[1]; /* [B, S, H, D] */
    a.q_rows = Sq, a.kv_rows = Skv;
  } else {
    kk = &in[1], v = &in[2];
    a.k = kk->data, a.v = v->data;
    if (q->strides[q->shape.rank - 1] != 1 || kk->strides[kk->shape.rank - 1] != 1 ||
        v->strides[v->shape.rank - 1] != 1 || o->strides[o->shape.rank - 1] != 1)
      return shape_error(s, "the head dim of every tensor must be contiguous");
    const kiln_tensor *t4[4] = {q, kk, v, o};
    int64_t *dst[4] = {qs, ks, vs, os};
    for (int i = 0; i < 4; i++) {
      const int64_t *st = t4[i]->strides;
      if (s->layout == LAYOUT_BHSD) dst[i][0] = st[0], dst[i][1] = st[1], dst[i][2] = st[2];
      else if (s->layout == LAYOUT_BSHD) dst[i][0] = st[0], dst[i][1] = st[2], dst[i][2] = st[1];
      else dst[i][0] = 0, dst[i][1] = st[1], dst[i][2] = st[0]; /* varlen [T, H, D] */
    }
    if (s->layout == LAYOUT_VARLEN) {
      a.batch = in[3].shape.d[0] - 1;
      Sq = s->max_seqlen_q > 0 ? s->max_seqlen_q : q->shape.d[0];
      Skv = 0; /* read from cu_seqlens_k */
      a.varlen = 1;
      a.cu_q = in[3].data, a.cu_k = in[4].data;
      a.q_rows = q->shape.d[0], a.kv_rows = kk->shape.d[0];
    } else {
      int sd = s->layout == LAYOUT_BHSD ? 2 : 1;
      a.batch = q->shape.d[0], Sq = q->shape.d[sd], Skv = kk->shape.d[sd];
      a.q_rows = Sq, a.kv_rows = Skv;
    }
  }
  if (Sq > 2147483647 || Skv > 2147483647 || a.kv_rows > 2147483647)
    return shape_error(s, "sequence lengths must fit in int32");
  a.sq = (int32_t)Sq, a.skv = (int32_t)Skv;
  if (t.family != FAMILY_PLAIN && (a.kv_rows < 1 || a.q_rows < 1))
    t = tl[0]; /* no keys or no queries: a descriptor cannot be empty; the plain kernel copes */
  int64_t gx, gy = a.batch * s->num_heads;
  if (t.family == FAMILY_WS) { /* persistent: min(tiles, SMs * PER_SM) programs walk the tiles */
    int major = 0, sms = 0;
    kiln_cuda_current_device(&major, &sms);
    const int64_t tiles = cdiv(Sq, 64 * kiln_triton_constexpr(t.kernel, t.variant, "NC", 1)) * gy;
    const int64_t cap = (int64_t)(sms > 0 ? sms : 1) * kiln_triton_constexpr(t.kernel, t.variant, "PER_SM", 1);
    if (tiles > 2147483647) return shape_error(s, "too many query tiles for the persistent kernel (split the batch)");
    gx = tiles < cap ? tiles : cap;
    gy = 1;
  } else {
    gx = cdiv(Sq, kiln_triton_constexpr(t.kernel, t.variant, "BLOCK_M", 64));
    if (gy > 65535) return shape_error(s, "batch * heads must be <= 65535 (split the batch)");
  }
  if (gx == 0 || gy == 0) return KILN_OK;
  (void)workspace;
  return launch(&t, stream, (uint32_t)gx, (uint32_t)gy, s, &a);
}

static const kiln_plugin_creator fmha_creator = {
    .abi_version = KILN_PLUGIN_ABI_VERSION,
    .name = "fmha",
    .version = 1,
    .num_outputs = 1,
    .create = fmha_create,
    .deserialize = fmha_deserialize,
    .serialize = fmha_serialize,
    .destroy = fmha_destroy,
    .output_shapes = fmha_output_shapes,
    .supports_format = fmha_supports_format,
    .workspace_size = NULL,
    .num_tactics = fmha_num_tactics,
    .tactic_valid = fmha_tactic_valid,
    .enqueue = fmha_enqueue,
};

const kiln_plugin_creator *kiln_fmha_plugin_creator(void) { return &fmha_creator; }

#else
typedef int kiln_fmha_plugin_not_built; /* built only with the Triton kernels */
#endif
