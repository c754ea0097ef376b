/* src/net/graph.c - building, copying and freeing the internal graph IR (graph.h). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "net/graph.h"

static const char *const op_names[KILN_OP_COUNT_] = {
    "matmul", "add",     "mul",     "activation", "layernorm", "add_layernorm", "softmax",  "embedding",
    "conv1d", "reshape", "transpose", "concat",   "slice",     "attention",     "plugin",
    "kv_attention", "matmul_wq", "quantize_int8"};

const char *kiln_op_name(kiln_op op) {
  if ((int)op < 0 || op >= KILN_OP_COUNT_) return "unknown";
  return op_names[op];
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Grow a dynamic array to hold at least `need` elements. */
static int grow(void **items, int32_t *cap, int32_t need, size_t item_size) {
  if (need <= *cap) return 0;
  int32_t ncap = *cap ? *cap * 2 : 16;
  while (ncap < need) ncap *= 2;
  void *p = realloc(*items, (size_t)ncap * item_size);
  if (!p) return -1;
  memset((char *)p + (size_t)*cap * item_size, 0, (size_t)(ncap - *cap) * item_size);
  *items = p;
  *cap = ncap;
  return 0;
}

void kiln_graph_init(kiln_graph *g) {
  memset(g, 0, sizeof *g);
  g->target = KILN_TARGET_CPU;
  g->precision = KILN_DTYPE_FP32;
}

static void profile_free(kiln_profile_def *p) {
  free(p->tensor);
  free(p->min);
  free(p->opt);
  free(p->max);
}

void kiln_graph_free(kiln_graph *g) {
  if (!g) return;
  for (int32_t i = 0; i < g->n_tensors; i++) {
    free(g->tensors[i].name);
    if (!g->borrowed_weights) free(g->tensors[i].data);
  }
  for (int32_t i = 0; i < g->n_layers; i++) free(g->layers[i].name);
  for (int32_t i = 0; i < g->n_plugins; i++) {
    kiln_plugin_def *p = &g->plugins[i];
    if (p->state && p->creator && p->creator->destroy) p->creator->destroy(p->state);
    free(p->name);
    free(p->data);
  }
  for (int32_t i = 0; i < g->n_profiles; i++) profile_free(&g->profiles[i]);
  free(g->tensors);
  free(g->layers);
  free(g->plugins);
  free(g->profiles);
  kiln_graph_init(g);
}

int32_t kiln_graph_add_tensor(kiln_graph *g, const char *name, kiln_tensor_kind kind,
                              kiln_dtype dtype, const kiln_dims *dims) {
  if (!name || !*name) return kiln_error(KILN_ERR_INVALID_ARG, "a tensor needs a non-empty name");
  if (kiln_graph_find_tensor(g, name) >= 0)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "tensor name \"%s\" is used twice; give each tensor and layer a unique name",
                      name);
  if (grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof *g->tensors))
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory adding tensor \"%s\"", name);
  kiln_tensor_def *t = &g->tensors[g->n_tensors];
  memset(t, 0, sizeof *t);
  t->name = dup_string(name);
  if (!t->name) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory adding tensor \"%s\"", name);
  t->kind = kind;
  t->dtype = dtype;
  if (dims) t->dims = *dims;
  t->producer = -1;
  t->offset = -1;
  return g->n_tensors++;
}

int32_t kiln_graph_add_layer(kiln_graph *g, const char *name, kiln_op op, int32_t n_in,
                             const int32_t *in, const kiln_op_params *p) {
  if (n_in < 0 || n_in > KILN_MAX_LAYER_IO)
    return kiln_error(KILN_ERR_INVALID_ARG, "layer \"%s\" has %d inputs; at most %d are allowed",
                      name ? name : "?", n_in, KILN_MAX_LAYER_IO);
  for (int32_t i = 0; i < n_in; i++)
    if (in[i] < 0 || in[i] >= g->n_tensors)
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "layer \"%s\" input %d is tensor id %d, which does not exist in this "
                        "network (ids come from kiln_network_add_* calls)",
                        name ? name : "?", i, in[i]);
  if (grow((void **)&g->layers, &g->cap_layers, g->n_layers + 1, sizeof *g->layers))
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory adding a layer");
  kiln_layer_def *l = &g->layers[g->n_layers];
  memset(l, 0, sizeof *l);
  l->name = dup_string(name);
  if (!l->name) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory adding a layer");
  l->op = op;
  l->n_in = n_in;
  memcpy(l->in, in, (size_t)n_in * sizeof *in);
  if (p) l->p = *p;
  return g->n_layers++;
}

int32_t kiln_graph_find_tensor(const kiln_graph *g, const char *name) {
  for (int32_t i = 0; i < g->n_tensors; i++)
    if (strcmp(g->tensors[i].name, name) == 0) return i;
  return -1;
}

int32_t kiln_graph_input_ids(const kiln_graph *g, int32_t *ids, int32_t cap) {
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_tensors; i++)
    if (g->tensors[i].kind == KILN_TENSOR_INPUT) {
      if (ids && n < cap) ids[n] = i;
      n++;
    }
  return n;
}

static void *dup_bytes(const void *src, size_t n) {
  void *d = malloc(n ? n : 1);
  if (d && n) memcpy(d, src, n);
  return d;
}

kiln_status kiln_graph_clone(const kiln_graph *src, kiln_graph *dst) {
  kiln_graph g;
  kiln_graph_init(&g);
  g.target = src->target;
  g.precision = src->precision;
  g.arena_bytes = src->arena_bytes;
  g.workspace_bytes = src->workspace_bytes;
  g.tensors = calloc((size_t)src->n_tensors + 1, sizeof *g.tensors);
  g.layers = calloc((size_t)src->n_layers + 1, sizeof *g.layers);
  g.plugins = calloc((size_t)src->n_plugins + 1, sizeof *g.plugins);
  g.profiles = calloc((size_t)src->n_profiles + 1, sizeof *g.profiles);
  if (!g.tensors || !g.layers || !g.plugins || !g.profiles) goto oom;
  g.cap_tensors = src->n_tensors + 1;
  g.cap_layers = src->n_layers + 1;
  g.cap_plugins = src->n_plugins + 1;
  g.cap_profiles = src->n_profiles + 1;
  for (int32_t i = 0; i < src->n_tensors; i++) {
    g.tensors[i] = src->tensors[i];
    g.n_tensors = i + 1;
    g.tensors[i].name = NULL;
    g.tensors[i].data = NULL;
    g.tensors[i].bytes = src->tensors[i].data ? src->tensors[i].bytes : 0;
    if (!(g.tensors[i].name = dup_string(src->tensors[i].name))) goto oom;
    if (src->tensors[i].data && !(g.tensors[i].data = dup_bytes(src->tensors[i].data, src->tensors[i].bytes)))
      goto oom;
  }
  for (int32_t i = 0; i < src->n_layers; i++) {
    g.layers[i] = src->layers[i];
    g.n_layers = i + 1;
    if (!(g.layers[i].name = dup_string(src->layers[i].name))) goto oom;
  }
  for (int32_t i = 0; i < src->n_plugins; i++) {
    const kiln_plugin_def *p = &src->plugins[i];
    g.plugins[i] = *p;
    g.n_plugins = i + 1;
    g.plugins[i].state = NULL; /* instances are created per graph */
    g.plugins[i].data = NULL;
    if (!(g.plugins[i].name = dup_string(p->name))) goto oom;
    if (!(g.plugins[i].data = dup_bytes(p->data, p->size))) goto oom;
  }
  for (int32_t i = 0; i < src->n_profiles; i++) {
    const kiln_profile_def *p = &src->profiles[i];
    kiln_profile_def *q = &g.profiles[i];
    g.n_profiles = i + 1;
    size_t n = (size_t)p->n;
    q->n = p->n;
    q->tensor = dup_bytes(p->tensor, n * sizeof *p->tensor);
    q->min = dup_bytes(p->min, n * sizeof *p->min);
    q->opt = dup_bytes(p->opt, n * sizeof *p->opt);
    q->max = dup_bytes(p->max, n * sizeof *p->max);
    if (!q->tensor || !q->min || !q->opt || !q->max) goto oom;
  }
  *dst = g;
  return KILN_OK;
oom:
  kiln_graph_free(&g);
  return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory copying a network");
}

kiln_status kiln_matmul_io_of(const kiln_layer_def *l, kiln_matmul_io *io) {
  int32_t ln = (l->p.fuse & KILN_FUSE_LN) != 0, res = (l->p.fuse & KILN_FUSE_RESIDUAL) != 0;
  int32_t base = l->op == KILN_OP_MATMUL_WQ ? 3 : 2, extra = 2 * ln + res;
  int32_t bias = l->n_in - base - extra;
  if ((l->op != KILN_OP_MATMUL && l->op != KILN_OP_MATMUL_WQ) || (l->p.fuse & ~(KILN_FUSE_LN | KILN_FUSE_RESIDUAL)) ||
      bias < 0 || bias > 1)
    return kiln_error(KILN_ERR_INVALID_ARG, "layer \"%s\" (%s): %d inputs do not match its fusions (bits %d); rebuild "
                      "the engine", l->name ? l->name : "?", kiln_op_name(l->op), (int)l->n_in, (int)l->p.fuse);
  int32_t i = 0;
  io->x = i++;
  io->w = i++;
  io->scales = l->op == KILN_OP_MATMUL_WQ ? i++ : -1;
  io->bias = bias ? i++ : -1;
  io->gamma = ln ? i++ : -1;
  io->beta = ln ? i++ : -1;
  io->residual = res ? i++ : -1;
  return KILN_OK;
}
