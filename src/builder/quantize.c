/* src/builder/quantize.c - the weight-only quantization pass: every KILN_OP_MATMUL whose weight
 * W[N, K] is a constant that only matmuls read (as their weight) becomes a KILN_OP_MATMUL_WQ
 * reading new constants "<W>.q" (int8 or packed int4 codes) and "<W>.scale" (fp32 scales),
 * quantized from the fp32 values of W (format: src/core/quant.h). Two matmuls sharing W share
 * the quantized copy. W itself is left for kiln_builder_compact() to drop once nothing reads it.
 *
 * Runs before the precision pass, which keeps the scales in fp32. A weight that some other layer
 * reads (an embedding table tied to the output projection), an int4 weight whose K is not a
 * multiple of the group, one with non-finite values, or one whose name matches a keep_float
 * pattern (kiln_build_params) stays float for that matmul, with an INFO log line; the report
 * counts quantized and skipped layers. Not a calibration pass (activations are not quantized).
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder/builder_internal.h"
#include "core/error.h"
#include "core/quant.h"

#define KEEP_PATTERN_MAX 256 /* bytes of one keep_float pattern, its NUL included */

/* A layer other than a matmul reading t as its weight (input 1), or -1. */
static int32_t other_reader(const kiln_graph *g, int32_t t) {
  for (int32_t li = 0; li < g->n_layers; li++) {
    const kiln_layer_def *l = &g->layers[li];
    for (int32_t j = 0; j < l->n_in; j++)
      if (l->in[j] == t && !(l->op == KILN_OP_MATMUL && j == 1)) return li;
  }
  return -1;
}

/* The next pattern of the comma-separated list at *list (may be NULL): its start and length (0
 * for an empty one); *list moves past it and its comma. 0 at the end of the list. */
static int next_pattern(const char **list, const char **start, size_t *len) {
  if (!*list || !**list) return 0;
  *start = *list;
  *len = strcspn(*list, ",");
  *list += *len + ((*list)[*len] == ',');
  return 1;
}

/* The first pattern of the comma-separated list `patterns` (may be NULL) that name matches, copied
 * into out[n] (empty patterns are skipped); 0 when none does. */
static int kept_float(const char *patterns, const char *name, char *out, size_t n) {
  const char *pat;
  size_t len;
  while (next_pattern(&patterns, &pat, &len)) {
    if (len == 0 || len >= n) continue; /* longer ones were rejected up front */
    memcpy(out, pat, len);
    out[len] = '\0';
    if (fnmatch(out, name, 0) == 0) return 1;
  }
  return 0;
}

/* "<base><suffix>", or "<base><suffix>.<i>" for the first i that no tensor uses yet. */
static void unique_name(const kiln_graph *g, const char *base, const char *suffix, char *out, size_t n) {
  snprintf(out, n, "%s%s", base, suffix);
  for (int i = 1; kiln_graph_find_tensor(g, out) >= 0; i++) snprintf(out, n, "%s%s.%d", base, suffix, i);
}

static int32_t add_constant(kiln_graph *g, const char *name, kiln_dtype dtype, const kiln_dims *dims, void *data,
                            size_t bytes) {
  int32_t id = kiln_graph_add_tensor(g, name, KILN_TENSOR_CONSTANT, dtype, dims);
  if (id < 0) {
    free(data);
    return id;
  }
  g->tensors[id].data = data;
  g->tensors[id].bytes = bytes;
  return id;
}

/* Quantize constant w into two new constants; *q and *s get their ids. KILN_ERR_INVALID_ARG
 * (non-finite weights) leaves the graph unchanged. */
static kiln_status quantize_constant(kiln_graph *g, int32_t w, kiln_dtype qdt, int32_t group, int32_t *q, int32_t *s) {
  const kiln_tensor_def *t = &g->tensors[w];
  int64_t n = t->dims.d[0], k = t->dims.d[1];
  size_t qbytes = kiln_dtype_bytes(qdt, n * k), sbytes = (size_t)kiln_quant_scale_count(n, k, group) * sizeof(float);
  float *wf = malloc((size_t)(n * k) * sizeof(float));
  void *qd = malloc(qbytes ? qbytes : 1);
  float *sd = malloc(sbytes ? sbytes : 1);
  kiln_status st = wf && qd && sd ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory quantizing \"%s\"", t->name);
  if (st == KILN_OK) {
    kiln_convert_floats(wf, KILN_DTYPE_FP32, t->data, t->dtype, n * k);
    st = kiln_quantize(wf, n, k, qdt, group, qd, sd);
  }
  free(wf);
  if (st != KILN_OK) {
    free(qd), free(sd);
    return st;
  }
  char qname[512], sname[512];
  unique_name(g, t->name, ".q", qname, sizeof qname);
  unique_name(g, t->name, ".scale", sname, sizeof sname);
  kiln_dims qdims = t->dims, sdims = {group > 0 ? 2 : 1, {n, group > 0 ? k / group : 0}};
  *q = add_constant(g, qname, qdt, &qdims, qd, qbytes); /* may move g->tensors */
  if (*q < 0) {
    free(sd);
    return (kiln_status)*q;
  }
  *s = add_constant(g, sname, KILN_DTYPE_FP32, &sdims, sd, sbytes);
  return *s < 0 ? (kiln_status)*s : KILN_OK;
}

kiln_status kiln_builder_quantize_weights(kiln_graph *g, const kiln_build_params *p, kiln_build_report *r) {
  if (p->weight_only == KILN_WEIGHT_ONLY_NONE) return KILN_OK;
  if (p->weight_only != KILN_WEIGHT_ONLY_INT8 && p->weight_only != KILN_WEIGHT_ONLY_INT4)
    return kiln_error(KILN_ERR_INVALID_ARG, "weight_only %d is not known; use none, int8 or int4", (int)p->weight_only);
  kiln_dtype qdt = p->weight_only == KILN_WEIGHT_ONLY_INT8 ? KILN_DTYPE_INT8 : KILN_DTYPE_INT4;
  int32_t group = qdt == KILN_DTYPE_INT8 ? 0 : p->group_size;
  if (qdt == KILN_DTYPE_INT4 && (group <= 0 || group % 32 != 0))
    return kiln_error(KILN_ERR_INVALID_ARG, "int4 group size %d is not a positive multiple of 32; use 64 or 128", (int)group);
  const char *list = p->keep_float, *pat;
  size_t len;
  while (next_pattern(&list, &pat, &len))
    if (len >= KEEP_PATTERN_MAX)
      return kiln_error(KILN_ERR_INVALID_ARG, "keep-float pattern \"%.40s...\" is longer than %d characters; use a shorter "
                        "pattern with * or ?", pat, KEEP_PATTERN_MAX - 1);
  const char *prec = kiln_dtype_name(p->precision);
  int32_t n0 = g->n_tensors; /* weights are among the tensors that exist now */
  int32_t *done = malloc(((size_t)n0 + 1) * 2 * sizeof *done); /* per weight: ids of its codes and scales */
  if (!done) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  for (int32_t i = 0; i < 2 * n0; i++) done[i] = -1;
  kiln_status st = KILN_OK;
  for (int32_t li = 0; li < g->n_layers && st == KILN_OK; li++) {
    kiln_layer_def *l = &g->layers[li];
    if (l->op != KILN_OP_MATMUL || l->n_in < 2) continue;
    int32_t w = l->in[1];
    const kiln_tensor_def *t = &g->tensors[w];
    int64_t n = t->dims.d[0], k = t->dims.d[1];
    int32_t reader = other_reader(g, w);
    const char *why = NULL;
    char reason[512], pattern[KEEP_PATTERN_MAX];
    if (t->kind != KILN_TENSOR_CONSTANT || !t->data || t->dims.rank != 2 || !kiln_dtype_is_float(t->dtype)) {
      why = "its weight is not a 2-D float constant";
    } else if (n == 0 || k == 0) {
      why = "its weight is empty";
    } else if (reader >= 0) {
      snprintf(reason, sizeof reason, "its weight %s is also read by layer %s (%s)", t->name, g->layers[reader].name,
               kiln_op_name(g->layers[reader].op));
      why = reason;
    } else if (t->is_output) {
      why = "its weight is a network output";
    } else if (group > 0 && k % group != 0) {
      snprintf(reason, sizeof reason, "K = %lld is not a multiple of the int4 group size %d", (long long)k, (int)group);
      why = reason;
    } else if (kept_float(p->keep_float, t->name, pattern, sizeof pattern)) {
      snprintf(reason, sizeof reason, "its weight %s matches the keep-float pattern \"%s\"", t->name, pattern);
      why = reason;
    }
    if (!why && done[2 * w] < 0) {
      st = quantize_constant(g, w, qdt, group, &done[2 * w], &done[2 * w + 1]);
      if (st == KILN_ERR_INVALID_ARG) { /* non-finite weights */
        snprintf(reason, sizeof reason, "%s", kiln_last_error());
        why = reason;
        st = KILN_OK;
      }
      l = &g->layers[li];
    }
    if (st != KILN_OK) break;
    if (why) {
      kiln_log(KILN_LOG_INFO, "layer %s stays %s (not quantized to %s): %s", l->name, prec, kiln_dtype_name(qdt), why);
      r->num_quantize_skipped++;
      continue;
    }
    int32_t x = l->in[0], b = l->n_in > 2 ? l->in[2] : -1;
    l->op = KILN_OP_MATMUL_WQ;
    l->in[0] = x;
    l->in[1] = done[2 * w];
    l->in[2] = done[2 * w + 1];
    l->n_in = 3;
    if (b >= 0) l->in[l->n_in++] = b;
    l->p.group = group;
    r->num_quantized++;
    kiln_log(KILN_LOG_VERBOSE, "layer %s: weight %s [%lld, %lld] quantized to %s (group %d)", l->name,
             g->tensors[w].name, (long long)n, (long long)k, kiln_dtype_name(qdt), (int)group);
  }
  free(done);
  return st;
}
