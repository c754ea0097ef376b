/* src/net/shape.c - shape inference: output dims of every layer from its input dims.
 *
 * One piece of code serves the builder (every profile's min/opt/max) and the runtime (the shapes
 * a context is given). Errors name the layer and say which dims disagree.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "net/graph.h"

static const char *dstr(const kiln_dims *d, char *buf, size_t n) { return kiln_dims_str(d, buf, n); }

#define SHAPE_ERR(l, ...) layer_error((l), __VA_ARGS__)

static kiln_status layer_error(const kiln_layer_def *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static kiln_status layer_error(const kiln_layer_def *l, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kiln_error(KILN_ERR_SHAPE, "layer \"%s\" (%s): %s", l->name ? l->name : "?",
                    kiln_op_name(l->op), msg);
}

/* MATMUL: in x[..., K], W[N, K], optional b[N]; out [..., N].
 * MATMUL_WQ: in x[..., K], Wq[N, K] (int8 or int4 codes), scales [N] when params.group is 0,
 * else [N, K / group] (group must divide K), optional b[N]; out [..., N]. Codes, packing and
 * the dequantization are described in src/core/quant.h; the scales are fp32 and the bias is in
 * the engine's precision (the backends check dtypes).
 * Both: with KILN_FUSE_LN gamma[K], beta[K] follow; with KILN_FUSE_RESIDUAL the last input has
 * the output's shape (graph.h). */
static kiln_status infer_matmul(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in,
                                kiln_dims *out) {
  char a[96], b[96];
  kiln_matmul_io io;
  if (kiln_matmul_io_of(l, &io) != KILN_OK)
    return SHAPE_ERR(l, "takes x, W%s, an optional bias%s%s; got %d inputs",
                     l->op == KILN_OP_MATMUL_WQ ? ", scales" : "", (l->p.fuse & KILN_FUSE_LN) ? ", gamma, beta" : "",
                     (l->p.fuse & KILN_FUSE_RESIDUAL) ? ", the residual" : "", l->n_in);
  const kiln_dims *x = &in[io.x], *w = &in[io.w];
  if (x->rank < 1) return SHAPE_ERR(l, "input must have rank >= 1");
  if (w->rank != 2) return SHAPE_ERR(l, "weight must be [N, K], got %s", dstr(w, a, sizeof a));
  int64_t n = w->d[0], k = w->d[1];
  if (x->d[x->rank - 1] != k)
    return SHAPE_ERR(l, "input %s has K = %lld but weight %s has K = %lld", dstr(x, a, sizeof a),
                     (long long)x->d[x->rank - 1], dstr(w, b, sizeof b), (long long)k);
  if (io.bias >= 0 && (in[io.bias].rank != 1 || in[io.bias].d[0] != n))
    return SHAPE_ERR(l, "bias must be [%lld], got %s", (long long)n, dstr(&in[io.bias], a, sizeof a));
  if (io.gamma >= 0 && (in[io.gamma].rank != 1 || in[io.gamma].d[0] != k || in[io.beta].rank != 1 ||
                        in[io.beta].d[0] != k))
    return SHAPE_ERR(l, "layernorm gamma and beta must be [%lld], got %s and %s", (long long)k,
                     dstr(&in[io.gamma], a, sizeof a), dstr(&in[io.beta], b, sizeof b));
  out[0] = *x;
  out[0].d[x->rank - 1] = n;
  if (io.residual >= 0 && !kiln_dims_equal(&in[io.residual], &out[0]))
    return SHAPE_ERR(l, "residual %s must have the output's shape %s", dstr(&in[io.residual], a, sizeof a),
                     dstr(&out[0], b, sizeof b));
  if (l->op != KILN_OP_MATMUL_WQ) return KILN_OK;
  kiln_dtype qdt = g->tensors[l->in[io.w]].dtype;
  if (qdt != KILN_DTYPE_INT8 && qdt != KILN_DTYPE_INT4)
    return SHAPE_ERR(l, "weights must be int8 or int4, got %s", kiln_dtype_name(qdt));
  int32_t group = l->p.group;
  if (group < 0 || (group > 0 && k % group != 0))
    return SHAPE_ERR(l, "group %d must be 0 or divide K = %lld", group, (long long)k);
  const kiln_dims *s = &in[io.scales];
  int ok = group == 0 ? (s->rank == 1 && s->d[0] == n) : (s->rank == 2 && s->d[0] == n && s->d[1] == k / group);
  if (!ok && group == 0)
    return SHAPE_ERR(l, "scales must be [%lld] (one per row, group 0), got %s", (long long)n, dstr(s, a, sizeof a));
  if (!ok)
    return SHAPE_ERR(l, "scales must be [%lld, %lld] (group %d), got %s", (long long)n, (long long)(k / group), group,
                     dstr(s, a, sizeof a));
  return KILN_OK;
}

/* b equals a or is a suffix of a */
static kiln_status infer_broadcast(const kiln_layer_def *l, const kiln_dims *a, const kiln_dims *b,
                                   kiln_dims *out) {
  char s1[96], s2[96];
  if (b->rank > a->rank) goto bad;
  for (int32_t i = 0; i < b->rank; i++)
    if (b->d[b->rank - 1 - i] != a->d[a->rank - 1 - i]) goto bad;
  *out = *a;
  return KILN_OK;
bad:
  return SHAPE_ERR(l, "second input %s must equal the first %s or be a suffix of it",
                   dstr(b, s2, sizeof s2), dstr(a, s1, sizeof s1));
}

static kiln_status check_vec(const kiln_layer_def *l, const kiln_dims *v, int64_t n, const char *what) {
  char s[96];
  if (v->rank != 1 || v->d[0] != n)
    return SHAPE_ERR(l, "%s must be [%lld], got %s", what, (long long)n, dstr(v, s, sizeof s));
  return KILN_OK;
}

static kiln_status infer_layernorm(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  const kiln_dims *x = &in[0];
  int32_t base = l->op == KILN_OP_ADD_LAYERNORM ? 2 : 1;
  if (x->rank < 1) return SHAPE_ERR(l, "input must have rank >= 1");
  if (l->op == KILN_OP_ADD_LAYERNORM && !kiln_dims_equal(&in[0], &in[1])) {
    char a[96], b[96];
    return SHAPE_ERR(l, "residual inputs differ: %s vs %s", dstr(&in[0], a, sizeof a),
                     dstr(&in[1], b, sizeof b));
  }
  int64_t n = x->d[x->rank - 1];
  KILN_TRY(check_vec(l, &in[base], n, "gamma"));
  KILN_TRY(check_vec(l, &in[base + 1], n, "beta"));
  out[0] = *x;
  if (l->op == KILN_OP_ADD_LAYERNORM) out[1] = *x;
  return KILN_OK;
}

static kiln_status infer_embedding(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  char s[96];
  const kiln_dims *table = &in[0], *ids = &in[1];
  if (table->rank != 2) return SHAPE_ERR(l, "table must be [V, N], got %s", dstr(table, s, sizeof s));
  if (ids->rank + 1 > KILN_MAX_DIMS) return SHAPE_ERR(l, "ids have too many dims");
  out[0] = *ids;
  out[0].rank = ids->rank + 1;
  out[0].d[ids->rank] = table->d[1];
  return KILN_OK;
}

static kiln_status infer_conv1d(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  char a[96], b[96];
  const kiln_dims *x = &in[0], *w = &in[1];
  if (x->rank != 3) return SHAPE_ERR(l, "input must be [B, Cin, T], got %s", dstr(x, a, sizeof a));
  if (w->rank != 3 || w->d[2] != 3 || w->d[1] != x->d[1])
    return SHAPE_ERR(l, "weight must be [Cout, %lld, 3], got %s (input %s)", (long long)x->d[1],
                     dstr(w, b, sizeof b), dstr(x, a, sizeof a));
  if (l->p.stride != 1 && l->p.stride != 2) return SHAPE_ERR(l, "stride must be 1 or 2, got %d", l->p.stride);
  if (l->n_in == 3) KILN_TRY(check_vec(l, &in[2], w->d[0], "bias"));
  out[0].rank = 3;
  out[0].d[0] = x->d[0];
  out[0].d[1] = w->d[0];
  out[0].d[2] = x->d[2] == 0 ? 0 : (x->d[2] + 2 - 3) / l->p.stride + 1;
  return KILN_OK;
}

static kiln_status infer_reshape(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  char a[96], b[96];
  const kiln_dims *x = &in[0], *spec = &l->p.dims;
  int32_t infer_at = -1;
  int64_t known = 1;
  out[0].rank = spec->rank;
  for (int32_t i = 0; i < spec->rank; i++) {
    int64_t d = spec->d[i];
    if (d == 0) {
      if (i >= x->rank) return SHAPE_ERR(l, "0 at position %d copies a dim the input %s lacks", i, dstr(x, a, sizeof a));
      d = x->d[i];
    } else if (d == -1) {
      if (infer_at >= 0) return SHAPE_ERR(l, "at most one -1 in the target shape");
      infer_at = i;
      continue;
    } else if (d < 0) {
      return SHAPE_ERR(l, "target dim %d is %lld; use >= 0, or -1 once", i, (long long)d);
    }
    out[0].d[i] = d;
    known *= d;
  }
  int64_t total = kiln_dims_count(x);
  if (infer_at >= 0) {
    if (known == 0) return SHAPE_ERR(l, "cannot infer -1 when other target dims multiply to 0");
    if (total % known) return SHAPE_ERR(l, "cannot reshape %s to %s", dstr(x, a, sizeof a), dstr(spec, b, sizeof b));
    out[0].d[infer_at] = total / known;
  } else if (known != total) {
    return SHAPE_ERR(l, "cannot reshape %s (%lld elements) to %s", dstr(x, a, sizeof a),
                     (long long)total, dstr(spec, b, sizeof b));
  }
  return KILN_OK;
}

static kiln_status infer_transpose(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  const kiln_dims *x = &in[0], *perm = &l->p.dims;
  int seen[KILN_MAX_DIMS] = {0};
  if (perm->rank != x->rank) return SHAPE_ERR(l, "permutation has %d entries for a rank-%d input", perm->rank, x->rank);
  out[0].rank = x->rank;
  for (int32_t i = 0; i < x->rank; i++) {
    int64_t p = perm->d[i];
    if (p < 0 || p >= x->rank || seen[p]) return SHAPE_ERR(l, "invalid permutation entry %lld", (long long)p);
    seen[p] = 1;
    out[0].d[i] = x->d[p];
  }
  return KILN_OK;
}

static kiln_status infer_concat(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  char a[96], b[96];
  int32_t axis = l->p.axis;
  if (l->n_in < 1) return SHAPE_ERR(l, "needs at least one input");
  if (axis < 0) axis += in[0].rank;
  if (axis < 0 || axis >= in[0].rank) return SHAPE_ERR(l, "axis %d out of range for rank %d", l->p.axis, in[0].rank);
  out[0] = in[0];
  for (int32_t i = 1; i < l->n_in; i++) {
    if (in[i].rank != in[0].rank) goto bad;
    for (int32_t j = 0; j < in[0].rank; j++)
      if (j != axis && in[i].d[j] != in[0].d[j]) goto bad;
    out[0].d[axis] += in[i].d[axis];
    continue;
  bad:
    return SHAPE_ERR(l, "input %d %s does not match input 0 %s outside axis %d", i,
                     dstr(&in[i], a, sizeof a), dstr(&in[0], b, sizeof b), axis);
  }
  return KILN_OK;
}

kiln_status kiln_slice_bounds(const kiln_layer_def *l, const kiln_dims *x, int32_t *axis, int64_t *start,
                              int64_t *end) {
  int32_t ax = l->p.axis < 0 ? l->p.axis + x->rank : l->p.axis;
  if (ax < 0 || ax >= x->rank) return SHAPE_ERR(l, "axis %d out of range for rank %d", l->p.axis, x->rank);
  int64_t d = x->d[ax], s = l->p.start, e = l->p.end;
  if (s < 0) s += d;
  if (e < 0) e += d;
  if (s < 0) s = 0;
  if (e > d) e = d;
  if (s > d) s = d;
  if (e < s) e = s;
  *axis = ax;
  *start = s;
  *end = e;
  return KILN_OK;
}

static kiln_status infer_attention(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  char a[96], b[96], c[96];
  const kiln_dims *q = &in[0], *k = &in[1], *v = &in[2];
  if (q->rank != 4 || k->rank != 4 || v->rank != 4) goto bad;
  if (q->d[0] != k->d[0] || q->d[1] != k->d[1] || q->d[3] != k->d[3] || !kiln_dims_equal(k, v)) goto bad;
  out[0] = *q;
  return KILN_OK;
bad:
  return SHAPE_ERR(l, "expects q [B, H, Sq, D], k and v [B, H, Skv, D]; got q %s, k %s, v %s",
                   dstr(q, a, sizeof a), dstr(k, b, sizeof b), dstr(v, c, sizeof c));
}

/* The int8 caches of a KV_ATTENTION layer (cache_dtype INT8): caches int8, scales [rows, H, T]
 * (the caches' first three dims), float. */
static kiln_status check_kv_int8(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in) {
  char a[96], b[96];
  int32_t ks = l->n_in - 2;
  const kiln_dims *k = &in[1];
  if (g->tensors[l->in[1]].dtype != KILN_DTYPE_INT8 || g->tensors[l->in[2]].dtype != KILN_DTYPE_INT8)
    return SHAPE_ERR(l, "has int8 caches, but its caches are %s and %s", kiln_dtype_name(g->tensors[l->in[1]].dtype),
                     kiln_dtype_name(g->tensors[l->in[2]].dtype));
  for (int32_t i = ks; i < ks + 2; i++) {
    const kiln_dims *s = &in[i];
    int ok = kiln_dtype_is_float(g->tensors[l->in[i]].dtype) && s->rank == 3;
    for (int32_t j = 0; ok && j < 3; j++) ok = s->d[j] == k->d[j];
    if (!ok)
      return SHAPE_ERR(l, "expects float scales [%lld, %lld, %lld] for caches %s; got %s %s", (long long)k->d[0],
                       (long long)k->d[1], (long long)k->d[2], dstr(k, a, sizeof a),
                       kiln_dtype_name(g->tensors[l->in[i]].dtype), dstr(s, b, sizeof b));
  }
  return KILN_OK;
}

/* KV_ATTENTION (network.h: kiln_network_add_cached_self_attention / _cross_attention, and their
 * _int8 forms).
 * causal = 1: in qkv [B, S, 3HD], cache_k, cache_v [Bc >= B, H, Tmax, D], lengths [B] int32;
 * causal = 0: in q [B, S, HD], k, v [Bk, H, A, D] with B % Bk == 0. Out [B, S, HD].
 * cache_dtype INT8: the caches are int8 and two more inputs follow, k_scale and v_scale
 * [Bc or Bk, H, Tmax or A] float (check_kv_int8). */
static kiln_status infer_kv_attention(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in,
                                      kiln_dims *out) {
  char a[96], b[96], c[96];
  int32_t self = l->p.causal != 0, heads = l->p.heads, q8 = l->p.cache_dtype == KILN_DTYPE_INT8;
  int32_t n_in = (self ? 4 : 3) + (q8 ? 2 : 0);
  const kiln_dims *q = &in[0], *k = &in[1], *v = &in[2];
  if (l->p.cache_dtype != 0 && !q8)
    return SHAPE_ERR(l, "has cache dtype %d; caches are float (0) or int8 (%d)", l->p.cache_dtype, KILN_DTYPE_INT8);
  if (l->n_in != n_in) return SHAPE_ERR(l, "takes %d inputs, has %d", n_in, l->n_in);
  if (heads < 1) return SHAPE_ERR(l, "heads must be >= 1 (got %d)", heads);
  if (q->rank != 3 || k->rank != 4 || !kiln_dims_equal(k, v) || k->d[1] != heads) goto bad;
  if (q8) KILN_TRY(check_kv_int8(g, l, in));
  int64_t hd = heads * k->d[3];
  if (q->d[2] != (self ? 3 : 1) * hd) goto bad;
  if (self) {
    const kiln_dims *len = &in[3];
    if (k->d[0] < q->d[0] || len->rank != 1 || len->d[0] != q->d[0] || g->tensors[l->in[3]].dtype != KILN_DTYPE_INT32)
      goto bad;
    if (q->d[1] > k->d[2]) return SHAPE_ERR(l, "%lld new tokens do not fit a cache of %lld", (long long)q->d[1], (long long)k->d[2]);
  } else if (k->d[0] < 1 || q->d[0] % k->d[0] != 0) {
    goto bad;
  }
  out[0] = *q;
  out[0].d[2] = hd;
  return KILN_OK;
bad:
  if (self)
    return SHAPE_ERR(l, "expects qkv [B, S, 3*%d*D], caches [Bc >= B, %d, T, D], lengths [B] int32; got qkv %s, caches %s and %s",
                     heads, heads, dstr(q, a, sizeof a), dstr(k, b, sizeof b), dstr(v, c, sizeof c));
  return SHAPE_ERR(l, "expects q [B, S, %d*D], k and v [Bk, %d, A, D] with B a multiple of Bk; got q %s, k %s, v %s", heads,
                   heads, dstr(q, a, sizeof a), dstr(k, b, sizeof b), dstr(v, c, sizeof c));
}

/* QUANTIZE_INT8: x [..., D] -> codes [..., D], scales [...]. */
static kiln_status infer_quantize(const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  if (l->n_in != 1 || l->n_out != 2) return SHAPE_ERR(l, "takes 1 input and makes 2 outputs (has %d and %d)", l->n_in, l->n_out);
  if (in[0].rank < 1) return SHAPE_ERR(l, "needs a tensor of rank >= 1 (rows of its last dim)");
  out[0] = in[0];
  out[1] = in[0];
  out[1].rank--;
  out[1].d[out[1].rank] = 0;
  return KILN_OK;
}

static kiln_status infer_plugin(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in,
                                kiln_dims *out) {
  kiln_plugin_desc din[KILN_MAX_LAYER_IO], dout[KILN_MAX_LAYER_IO];
  if (l->p.plugin < 0 || l->p.plugin >= g->n_plugins) return SHAPE_ERR(l, "plugin index out of range");
  const kiln_plugin_def *p = &g->plugins[l->p.plugin];
  if (!p->creator || !p->state)
    return kiln_error(KILN_ERR_PLUGIN, "layer \"%s\": plugin \"%s\" v%d is not instantiated", l->name,
                      p->name, p->version);
  for (int32_t i = 0; i < l->n_in; i++) {
    din[i].dtype = g->tensors[l->in[i]].dtype;
    din[i].shape = in[i];
  }
  memset(dout, 0, sizeof dout);
  kiln_status s = p->creator->output_shapes(p->state, l->n_in, din, l->n_out, dout);
  if (s != KILN_OK)
    return kiln_error_context(s, "layer \"%s\" (plugin %s v%d): ", l->name, p->name, p->version);
  for (int32_t i = 0; i < l->n_out; i++) out[i] = dout[i].shape;
  return KILN_OK;
}

kiln_status kiln_layer_infer(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in, kiln_dims *out) {
  switch (l->op) {
    case KILN_OP_MATMUL: return infer_matmul(g, l, in, out);
    case KILN_OP_ADD:
    case KILN_OP_MUL: return infer_broadcast(l, &in[0], &in[1], &out[0]);
    case KILN_OP_ACTIVATION:
    case KILN_OP_SOFTMAX:
      out[0] = in[0];
      return KILN_OK;
    case KILN_OP_LAYERNORM:
    case KILN_OP_ADD_LAYERNORM: return infer_layernorm(l, in, out);
    case KILN_OP_EMBEDDING: return infer_embedding(l, in, out);
    case KILN_OP_CONV1D: return infer_conv1d(l, in, out);
    case KILN_OP_RESHAPE: return infer_reshape(l, in, out);
    case KILN_OP_TRANSPOSE: return infer_transpose(l, in, out);
    case KILN_OP_CONCAT: return infer_concat(l, in, out);
    case KILN_OP_SLICE: {
      int32_t axis;
      int64_t s, e;
      KILN_TRY(kiln_slice_bounds(l, &in[0], &axis, &s, &e));
      out[0] = in[0];
      out[0].d[axis] = e - s;
      return KILN_OK;
    }
    case KILN_OP_ATTENTION: return infer_attention(l, in, out);
    case KILN_OP_PLUGIN: return infer_plugin(g, l, in, out);
    case KILN_OP_KV_ATTENTION: return infer_kv_attention(g, l, in, out);
    case KILN_OP_MATMUL_WQ: return infer_matmul(g, l, in, out);
    case KILN_OP_QUANTIZE_INT8: return infer_quantize(l, in, out);
    default: return SHAPE_ERR(l, "unknown op %d", (int)l->op);
  }
}

kiln_status kiln_graph_infer_shapes(const kiln_graph *g, const kiln_dims *input_dims, kiln_dims *dims) {
  int32_t k = 0;
  for (int32_t i = 0; i < g->n_tensors; i++) {
    const kiln_tensor_def *t = &g->tensors[i];
    if (t->kind == KILN_TENSOR_INPUT) {
      const kiln_dims *d = &input_dims[k++];
      char a[96], b[96];
      int ok = d->rank == t->dims.rank;
      for (int32_t j = 0; ok && j < d->rank; j++)
        if (d->d[j] < 0 || (t->dims.d[j] >= 0 && t->dims.d[j] != d->d[j])) ok = 0;
      if (!ok)
        return kiln_error(KILN_ERR_SHAPE, "input \"%s\" was given shape %s, which does not fit its declared dims %s",
                          t->name, dstr(d, a, sizeof a), dstr(&t->dims, b, sizeof b));
      dims[i] = *d;
    } else if (t->kind == KILN_TENSOR_CONSTANT) {
      dims[i] = t->dims;
    }
  }
  for (int32_t li = 0; li < g->n_layers; li++) {
    const kiln_layer_def *l = &g->layers[li];
    kiln_dims in[KILN_MAX_LAYER_IO], out[KILN_MAX_LAYER_IO];
    memset(out, 0, sizeof out);
    for (int32_t j = 0; j < l->n_in; j++) in[j] = dims[l->in[j]];
    KILN_TRY(kiln_layer_infer(g, l, in, out));
    for (int32_t j = 0; j < l->n_out; j++) dims[l->out[j]] = out[j];
  }
  return KILN_OK;
}
