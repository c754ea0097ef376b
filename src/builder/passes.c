/* src/builder/passes.c - the builder's graph passes: profile checks, precision, fusion,
 * dead-code removal and compaction, shape inference over every profile. */
#include <stdlib.h>
#include <string.h>

#include "builder/builder_internal.h"
#include "core/error.h"

/* kiln_builder_check_profiles with the graph's input ids at hand. */
static kiln_status check_profiles(kiln_graph *g, const int32_t *ids, int32_t n_in) {
  int dynamic = 0;
  int n_out = 0;
  for (int32_t i = 0; i < g->n_tensors; i++) n_out += g->tensors[i].is_output;
  if (!n_out) return kiln_error(KILN_ERR_INVALID_ARG, "the network has no outputs; mark them with kiln_network_mark_output");
  for (int32_t i = 0; i < n_in; i++)
    for (int32_t j = 0; j < g->tensors[ids[i]].dims.rank; j++) dynamic |= g->tensors[ids[i]].dims.d[j] < 0;
  if (g->n_profiles == 0) {
    if (dynamic)
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "the network has dynamic input dims but no optimization profile; add one with "
                        "kiln_network_add_profile and kiln_network_set_profile_dims (or --shapes on the command line)");
    free(g->profiles); /* an empty array from the copy */
    g->profiles = calloc(1, sizeof *g->profiles);
    if (!g->profiles) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    g->n_profiles = g->cap_profiles = 1;
  }
  /* Normalize every profile to one entry per input, in input order. */
  for (int32_t p = 0; p < g->n_profiles; p++) {
    kiln_profile_def *pr = &g->profiles[p], np = {0};
    np.n = n_in;
    np.tensor = calloc((size_t)n_in + 1, sizeof *np.tensor);
    np.min = calloc((size_t)n_in + 1, sizeof *np.min);
    np.opt = calloc((size_t)n_in + 1, sizeof *np.opt);
    np.max = calloc((size_t)n_in + 1, sizeof *np.max);
    if (!np.tensor || !np.min || !np.opt || !np.max) {
      free(np.tensor), free(np.min), free(np.opt), free(np.max);
      return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    }
    kiln_status s = KILN_OK;
    for (int32_t i = 0; i < n_in && s == KILN_OK; i++) {
      const kiln_tensor_def *t = &g->tensors[ids[i]];
      int32_t at = -1;
      for (int32_t k = 0; k < pr->n; k++)
        if (pr->tensor[k] == ids[i]) at = k;
      np.tensor[i] = ids[i];
      if (at >= 0) {
        np.min[i] = pr->min[at], np.opt[i] = pr->opt[at], np.max[i] = pr->max[at];
      } else {
        int has_dyn = 0;
        for (int32_t j = 0; j < t->dims.rank; j++) has_dyn |= t->dims.d[j] < 0;
        if (has_dyn)
          s = kiln_error(KILN_ERR_INVALID_ARG, "profile %d gives no min/opt/max for dynamic input \"%s\"", p, t->name);
        np.min[i] = np.opt[i] = np.max[i] = t->dims;
      }
      if (s == KILN_OK && kiln_dims_count(&np.max[i]) > ((int64_t)1 << 40))
        s = kiln_error(KILN_ERR_UNSUPPORTED, "profile %d: input \"%s\" would hold more than 2^40 elements at its max shape", p,
                       t->name);
    }
    if (s != KILN_OK) {
      free(np.tensor), free(np.min), free(np.opt), free(np.max);
      return s;
    }
    free(pr->tensor), free(pr->min), free(pr->opt), free(pr->max);
    *pr = np;
  }
  return KILN_OK;
}

kiln_status kiln_builder_check_profiles(kiln_graph *g) {
  int32_t n_in = kiln_graph_input_ids(g, NULL, 0);
  int32_t *ids = malloc(((size_t)n_in + 1) * sizeof *ids);
  if (!ids) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  kiln_graph_input_ids(g, ids, n_in);
  kiln_status st = check_profiles(g, ids, n_in);
  free(ids);
  return st;
}

kiln_status kiln_builder_set_precision(kiln_graph *g, kiln_dtype precision) {
  if (precision != KILN_DTYPE_FP32 && precision != KILN_DTYPE_FP16 && precision != KILN_DTYPE_BF16)
    return kiln_error(KILN_ERR_UNSUPPORTED, "precision %s is not supported; use fp32, fp16 or bf16", kiln_dtype_name(precision));
  uint8_t *keep = calloc((size_t)g->n_tensors + 1, 1); /* scales of quantized matmuls stay fp32 */
  if (!keep) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  for (int32_t li = 0; li < g->n_layers; li++)
    if (g->layers[li].op == KILN_OP_MATMUL_WQ && g->layers[li].n_in > 2) keep[g->layers[li].in[2]] = 1;
  for (int32_t i = 0; i < g->n_tensors; i++) {
    kiln_tensor_def *t = &g->tensors[i];
    if (keep[i]) continue;
    if (!kiln_dtype_is_float(t->dtype) || t->dtype == precision) {
      if (kiln_dtype_is_float(t->dtype)) t->dtype = precision;
      continue;
    }
    if (t->kind == KILN_TENSOR_CONSTANT && t->data) {
      int64_t n = kiln_dims_count(&t->dims);
      size_t bytes = kiln_dtype_bytes(precision, n);
      void *d = malloc(bytes ? bytes : 1);
      if (!d) {
        free(keep);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory converting weight \"%s\"", t->name);
      }
      kiln_convert_floats(d, precision, t->data, t->dtype, n);
      free(t->data);
      t->data = d;
      t->bytes = bytes;
    }
    t->dtype = precision;
  }
  free(keep);
  g->precision = precision;
  return KILN_OK;
}

/* Consumers of tensor t: count, and the single consumer when there is one. */
static int32_t consumers(const kiln_graph *g, int32_t t, int32_t *only) {
  int32_t n = 0;
  for (int32_t li = 0; li < g->n_layers; li++)
    for (int32_t j = 0; j < g->layers[li].n_in; j++)
      if (g->layers[li].in[j] == t) {
        n++;
        *only = li;
      }
  return n;
}

/* Remove layer li and renumber the producers of every layer output. */
static void remove_layer(kiln_graph *g, int32_t li) {
  free(g->layers[li].name);
  memmove(&g->layers[li], &g->layers[li + 1], (size_t)(g->n_layers - li - 1) * sizeof g->layers[0]);
  g->n_layers--;
  for (int32_t k = 0; k < g->n_layers; k++)
    for (int32_t j = 0; j < g->layers[k].n_out; j++) g->tensors[g->layers[k].out[j]].producer = k;
}

/* matmul/matmul_wq/conv1d + activation: the activation becomes the producer's epilogue. */
static int fuse_activation(kiln_graph *g) {
  for (int32_t li = 0; li < g->n_layers; li++) {
    kiln_layer_def *l = &g->layers[li];
    if ((l->op != KILN_OP_MATMUL && l->op != KILN_OP_MATMUL_WQ && l->op != KILN_OP_CONV1D) ||
        l->p.activation != KILN_ACTIVATION_NONE)
      continue;
    int32_t t = l->out[0], c = -1;
    if (g->tensors[t].is_output || consumers(g, t, &c) != 1) continue;
    kiln_layer_def *a = &g->layers[c];
    if (a->op != KILN_OP_ACTIVATION) continue;
    l->p.activation = a->p.activation;
    l->out[0] = a->out[0];
    g->tensors[t].producer = -1; /* the matmul's own output is no longer written */
    kiln_log(KILN_LOG_VERBOSE, "fused %s into %s", a->name, l->name);
    remove_layer(g, c);
    return 1;
  }
  return 0;
}

/* add + layernorm -> add_layernorm (keeps the sum as its first output). */
static int fuse_add_layernorm(kiln_graph *g, const kiln_shape_set *s) {
  for (int32_t li = 0; li < g->n_layers; li++) {
    kiln_layer_def *ln = &g->layers[li];
    if (ln->op != KILN_OP_LAYERNORM) continue;
    int32_t x = ln->in[0], ai = g->tensors[x].producer;
    if (ai < 0 || g->layers[ai].op != KILN_OP_ADD) continue;
    kiln_layer_def *add = &g->layers[ai];
    int same = 1; /* both operands of the add have the same shape at every profile point */
    for (int32_t p = 0; p < s->n_points && same; p++) {
      const kiln_dims *d = s->dims + (size_t)p * g->n_tensors;
      same = kiln_dims_equal(&d[add->in[0]], &d[add->in[1]]);
    }
    for (int32_t k = ai + 1; k < li && same; k++) /* the sum moves to li: nobody between may read it */
      for (int32_t j = 0; j < g->layers[k].n_in; j++) same &= g->layers[k].in[j] != add->out[0];
    if (!same) continue;
    kiln_layer_def f = *ln;
    f.op = KILN_OP_ADD_LAYERNORM;
    f.n_in = 4;
    f.in[0] = add->in[0];
    f.in[1] = add->in[1];
    f.in[2] = ln->in[1];
    f.in[3] = ln->in[2];
    f.n_out = 2;
    f.out[0] = add->out[0];
    f.out[1] = ln->out[0];
    kiln_log(KILN_LOG_VERBOSE, "fused %s into %s", add->name, ln->name);
    /* The fused layer takes the layernorm's place (after every producer of a and b). */
    g->layers[li] = f;
    remove_layer(g, ai);
    return 1;
  }
  return 0;
}

static int is_matmul(const kiln_layer_def *l) { return l->op == KILN_OP_MATMUL || l->op == KILN_OP_MATMUL_WQ; }

/* Tensors a and b have the same dims at every profile point. */
static int same_dims(const kiln_graph *g, const kiln_shape_set *s, int32_t a, int32_t b) {
  for (int32_t p = 0; p < s->n_points; p++) {
    const kiln_dims *d = s->dims + (size_t)p * g->n_tensors;
    if (!kiln_dims_equal(&d[a], &d[b])) return 0;
  }
  return 1;
}

/* add(r, matmul(..)) -> matmul with the residual epilogue (KILN_FUSE_RESIDUAL): when the
 * matmul's output feeds only the add, is no network output, and r has the sum's shape (no
 * broadcast). The fused layer takes the add's place (after r's producer). */
static int fuse_residual(kiln_graph *g, const kiln_shape_set *s) {
  for (int32_t ai = 0; ai < g->n_layers; ai++) {
    kiln_layer_def *add = &g->layers[ai];
    if (add->op != KILN_OP_ADD || add->n_in != 2) continue;
    for (int32_t side = 1; side >= 0; side--) {
      int32_t t = add->in[side], r = add->in[1 - side], mi = g->tensors[t].producer, only = -1;
      if (mi < 0 || !is_matmul(&g->layers[mi]) || (g->layers[mi].p.fuse & KILN_FUSE_RESIDUAL)) continue;
      if (g->tensors[t].is_output || consumers(g, t, &only) != 1 || r == t) continue;
      if (g->layers[mi].n_in + 1 > KILN_MAX_LAYER_IO || !same_dims(g, s, r, add->out[0]) ||
          g->tensors[r].dtype != g->tensors[t].dtype)
        continue;
      kiln_layer_def f = g->layers[mi];
      f.in[f.n_in++] = r;
      f.p.fuse |= KILN_FUSE_RESIDUAL;
      f.out[0] = add->out[0];
      g->tensors[t].producer = -1; /* the matmul's own output is no longer written */
      kiln_log(KILN_LOG_VERBOSE, "fused %s into %s (residual)", add->name, f.name);
      free(add->name);
      g->layers[ai] = f;
      g->layers[mi].name = NULL; /* now owned by the fused layer */
      remove_layer(g, mi);
      return 1;
    }
  }
  return 0;
}

/* layernorm -> its one consumer, a matmul reading it as x: the layernorm becomes the matmul's
 * prologue (KILN_FUSE_LN; gamma and beta go after the bias, before a residual). */
static int fuse_layernorm(kiln_graph *g) {
  for (int32_t li = 0; li < g->n_layers; li++) {
    kiln_layer_def *ln = &g->layers[li];
    int32_t t = ln->out[0], ci = -1;
    if (ln->op != KILN_OP_LAYERNORM || ln->n_in != 3 || g->tensors[t].is_output || consumers(g, t, &ci) != 1) continue;
    kiln_layer_def *m = &g->layers[ci];
    kiln_matmul_io io;
    if (!is_matmul(m) || (m->p.fuse & KILN_FUSE_LN) || m->in[0] != t || m->n_in + 2 > KILN_MAX_LAYER_IO ||
        kiln_matmul_io_of(m, &io) != KILN_OK)
      continue;
    int32_t at = io.residual >= 0 ? io.residual : m->n_in; /* gamma, beta go here */
    for (int32_t j = m->n_in - 1; j >= at; j--) m->in[j + 2] = m->in[j];
    m->in[at] = ln->in[1];
    m->in[at + 1] = ln->in[2];
    m->n_in += 2;
    m->in[0] = ln->in[0];
    m->p.eps = ln->p.eps;
    m->p.fuse |= KILN_FUSE_LN;
    g->tensors[t].producer = -1;
    kiln_log(KILN_LOG_VERBOSE, "fused %s into %s (layernorm)", ln->name, m->name);
    remove_layer(g, li);
    return 1;
  }
  return 0;
}

int32_t kiln_builder_fuse(kiln_graph *g) {
  int32_t removed = 0;
  while (fuse_activation(g)) removed++;
  kiln_shape_set s;
  if (kiln_builder_infer_all(g, &s) != KILN_OK) return removed;
  while (fuse_residual(g, &s)) removed++;
  while (fuse_layernorm(g)) removed++;
  while (fuse_add_layernorm(g, &s)) removed++;
  kiln_shape_set_free(&s);
  return removed;
}

kiln_status kiln_builder_compact(kiln_graph *g) {
  int32_t nt = g->n_tensors;
  uint8_t *live = calloc((size_t)nt + 1, 1);
  int32_t *remap = malloc(((size_t)nt + 1) * sizeof *remap);
  if (!live || !remap) {
    free(live), free(remap);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  }
  /* Dead layers: walk backwards from outputs. */
  for (int32_t i = 0; i < nt; i++) live[i] = g->tensors[i].is_output || g->tensors[i].kind == KILN_TENSOR_INPUT;
  for (int32_t li = g->n_layers - 1; li >= 0; li--) {
    kiln_layer_def *l = &g->layers[li];
    int used = 0;
    for (int32_t j = 0; j < l->n_out; j++) used |= live[l->out[j]];
    if (!used) {
      kiln_log(KILN_LOG_VERBOSE, "layer %s does not reach an output: removed", l->name);
      remove_layer(g, li);
      continue;
    }
    for (int32_t j = 0; j < l->n_out; j++) live[l->out[j]] = 1;
    for (int32_t j = 0; j < l->n_in; j++) live[l->in[j]] = 1;
  }
  int32_t k = 0;
  for (int32_t i = 0; i < nt; i++) {
    if (!live[i]) {
      free(g->tensors[i].name);
      if (!g->borrowed_weights) free(g->tensors[i].data);
      remap[i] = -1;
      continue;
    }
    remap[i] = k;
    g->tensors[k++] = g->tensors[i];
  }
  g->n_tensors = k;
  for (int32_t li = 0; li < g->n_layers; li++) {
    kiln_layer_def *l = &g->layers[li];
    for (int32_t j = 0; j < l->n_in; j++) l->in[j] = remap[l->in[j]];
    for (int32_t j = 0; j < l->n_out; j++) {
      l->out[j] = remap[l->out[j]];
      g->tensors[l->out[j]].producer = li;
    }
  }
  for (int32_t p = 0; p < g->n_profiles; p++)
    for (int32_t i = 0; i < g->profiles[p].n; i++) g->profiles[p].tensor[i] = remap[g->profiles[p].tensor[i]];
  free(live);
  free(remap);
  return KILN_OK;
}

void kiln_shape_set_free(kiln_shape_set *s) {
  free(s->dims);
  s->dims = NULL;
  s->n_points = 0;
}

kiln_status kiln_builder_infer_all(const kiln_graph *g, kiln_shape_set *s) {
  int32_t n_points = g->n_profiles * 3;
  s->n_points = 0;
  s->dims = calloc((size_t)n_points * (size_t)g->n_tensors + 1, sizeof *s->dims);
  if (!s->dims) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  for (int32_t p = 0; p < g->n_profiles; p++) {
    const kiln_profile_def *pr = &g->profiles[p];
    const kiln_dims *pts[3] = {pr->min, pr->opt, pr->max};
    static const char *names[3] = {"min", "opt", "max"};
    for (int32_t k = 0; k < 3; k++) {
      kiln_dims *d = s->dims + (size_t)(p * 3 + k) * g->n_tensors;
      kiln_status st = kiln_graph_infer_shapes(g, pts[k], d);
      if (st != KILN_OK) {
        kiln_shape_set_free(s);
        return kiln_error_context(st, "profile %d (%s shapes): ", p, names[k]);
      }
    }
  }
  s->n_points = n_points;
  return KILN_OK;
}
