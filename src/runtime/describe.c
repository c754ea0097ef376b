/* src/runtime/describe.c - kiln_engine_describe(): the text `kiln inspect` prints. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/builder.h"
#include "runtime/runtime_internal.h"

typedef struct text {
  char *s;
  size_t n, cap;
  int oom;
} text;

static void put(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void put(text *t, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    if (t->oom) return;
    va_start(ap, fmt);
    int k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (t->s && t->n + (size_t)k < t->cap) {
      t->n += (size_t)k;
      return;
    }
    size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)k;
    char *p = realloc(t->s, cap);
    if (!p) {
      t->oom = 1;
      return;
    }
    t->s = p;
    t->cap = cap;
  }
}

static const char *activation_name(int32_t a) {
  static const char *names[] = {"", "+gelu", "+relu", "+silu"};
  return a >= 0 && a < 4 ? names[a] : "+?";
}

static void describe_tactic(text *t, const kiln_layer_def *l) {
  switch (l->tactic.kind) {
    case KILN_TACTIC_CUBLASLT:
      put(t, "cublasLt algo #%d", l->tactic.index);
      break;
    case KILN_TACTIC_KERNEL:
      put(t, "kiln kernel %d", l->tactic.index);
      break;
    case KILN_TACTIC_PLUGIN:
      put(t, "plugin tactic %d", l->tactic.index);
      break;
    default:
      put(t, "default");
  }
  if (l->tactic.time_ms > 0) put(t, " (%.4f ms at opt)", (double)l->tactic.time_ms);
  if (l->tactic.workspace) put(t, " ws %zu B", l->tactic.workspace);
}

kiln_status kiln_engine_describe(const kiln_engine *e, char **out) {
  text t = {0};
  char a[128], b[128], c[128];
  const kiln_graph *g = &e->g;
  if (!e || !out) return kiln_error(KILN_ERR_INVALID_ARG, "describe: NULL argument");
  put(&t, "engine: kiln %s, target %s", e->meta.kiln_version, e->meta.target == KILN_TARGET_CUDA ? "cuda" : "cpu");
  if (e->meta.target == KILN_TARGET_CUDA)
    put(&t, " (%s, sm_%d%d, CUDA runtime %d)", e->meta.gpu_name, e->meta.cc_major, e->meta.cc_minor, e->meta.cuda_runtime_version);
  put(&t, ", precision %s, %zu bytes\n", kiln_dtype_name(g->precision), e->image_size);
  put(&t, "\ninputs and outputs:\n");
  for (int32_t i = 0; i < e->n_io; i++) {
    const kiln_tensor_def *d = &g->tensors[e->io[i]];
    put(&t, "  %-6s %-24s %-5s %s\n", i < e->n_inputs ? "input" : "output", d->name, kiln_dtype_name(d->dtype),
        i < e->n_inputs ? kiln_dims_str(&d->dims, a, sizeof a) : "");
  }
  put(&t, "\nprofiles:\n");
  for (int32_t p = 0; p < g->n_profiles; p++)
    for (int32_t i = 0; i < g->profiles[p].n; i++)
      put(&t, "  %d %-24s min %s opt %s max %s\n", p, g->tensors[g->profiles[p].tensor[i]].name,
          kiln_dims_str(&g->profiles[p].min[i], a, sizeof a), kiln_dims_str(&g->profiles[p].opt[i], b, sizeof b),
          kiln_dims_str(&g->profiles[p].max[i], c, sizeof c));
  put(&t, "\nlayers (%d):\n", g->n_layers);
  for (int32_t li = 0; li < g->n_layers; li++) {
    const kiln_layer_def *l = &g->layers[li];
    put(&t, "  %3d %-28s %s%s%s%s", li, l->name, (l->p.fuse & KILN_FUSE_LN) ? "layernorm+" : "", kiln_op_name(l->op),
        (l->op == KILN_OP_MATMUL || l->op == KILN_OP_MATMUL_WQ || l->op == KILN_OP_CONV1D) ? activation_name(l->p.activation)
                                                                                         : "",
        (l->p.fuse & KILN_FUSE_RESIDUAL) ? "+residual" : "");
    if (l->op == KILN_OP_MATMUL_WQ && l->n_in > 1) {
      if (l->p.group > 0) put(&t, " [%s, group %d]", kiln_dtype_name(g->tensors[l->in[1]].dtype), l->p.group);
      else put(&t, " [%s, per row]", kiln_dtype_name(g->tensors[l->in[1]].dtype));
    }
    if (l->op == KILN_OP_PLUGIN) put(&t, " [%s v%d]", g->plugins[l->p.plugin].name, g->plugins[l->p.plugin].version);
    if (l->op == KILN_OP_KV_ATTENTION && l->p.cache_dtype == KILN_DTYPE_INT8) put(&t, " [int8 cache]");
    put(&t, "  in:");
    for (int32_t j = 0; j < l->n_in; j++) put(&t, " %s", g->tensors[l->in[j]].name);
    put(&t, "  tactic: ");
    describe_tactic(&t, l);
    put(&t, "\n");
  }
  size_t weights = 0;
  for (int32_t i = 0; i < g->n_tensors; i++)
    if (g->tensors[i].kind == KILN_TENSOR_CONSTANT) weights += g->tensors[i].bytes;
  put(&t, "\nmemory plan: weights %zu B, activation arena %zu B per context, workspace %zu B\n", weights, g->arena_bytes,
      g->workspace_bytes);
  for (int32_t i = 0; i < g->n_tensors; i++)
    if (g->tensors[i].offset >= 0) put(&t, "  %-32s offset %lld\n", g->tensors[i].name, (long long)g->tensors[i].offset);
  if (g->n_plugins) {
    put(&t, "\nplugins:\n");
    for (int32_t i = 0; i < g->n_plugins; i++)
      put(&t, "  %s v%d (%zu bytes of data)\n", g->plugins[i].name, g->plugins[i].version, g->plugins[i].size);
  }
  if (e->meta.kernel_manifest) put(&t, "\nkernels (Triton manifest):\n%s\n", e->meta.kernel_manifest);
  if (t.oom) {
    free(t.s);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory describing the engine");
  }
  *out = t.s;
  return KILN_OK;
}
