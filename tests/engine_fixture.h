/* tests/engine_fixture.h - a small graph that uses every op kind, every constant dtype, a plugin
 * with state bytes, two profiles and tactics, for the engine-format test and the engine fuzz
 * target's seed. Header-only (static functions); not a model: shapes only need to be valid for
 * the engine format's checks, not for shape inference.
 */
#ifndef KILN_TESTS_ENGINE_FIXTURE_H
#define KILN_TESTS_ENGINE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/graph.h"
#include "runtime/engine_format.h"

/* xorshift64*: deterministic pseudo-random bytes. */
static inline uint64_t fixture_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static inline int32_t fixture_const(kiln_graph *g, const char *name, kiln_dtype dt, int32_t rank,
                                    const int64_t *d, uint64_t *rng) {
  kiln_dims dims = {.rank = rank};
  for (int32_t i = 0; i < rank; i++) dims.d[i] = d[i];
  int32_t id = kiln_graph_add_tensor(g, name, KILN_TENSOR_CONSTANT, dt, &dims);
  if (id < 0) return id;
  kiln_tensor_def *t = &g->tensors[id];
  t->bytes = kiln_dtype_bytes(dt, kiln_dims_count(&dims));
  t->data = malloc(t->bytes ? t->bytes : 1);
  for (size_t i = 0; i < t->bytes; i++) ((uint8_t *)t->data)[i] = (uint8_t)fixture_next(rng);
  return id;
}

/* A layer with n_out activation outputs named "<name>_o<k>" of rank 2 [-1, 8]. Returns the
 * first output id. */
static inline int32_t fixture_layer(kiln_graph *g, const char *name, kiln_op op, int32_t n_in,
                                    const int32_t *in, int32_t n_out, uint64_t *rng) {
  kiln_op_params p;
  memset(&p, 0, sizeof p);
  p.activation = (int32_t)(fixture_next(rng) % 4);
  p.eps = 1e-5f * (float)(1 + fixture_next(rng) % 7);
  p.scale = 0.125f;
  p.causal = (int32_t)(fixture_next(rng) % 2);
  p.stride = 1 + (int32_t)(fixture_next(rng) % 2);
  p.axis = -1;
  p.start = 1;
  p.end = -2;
  p.dims.rank = 3;
  p.dims.d[0] = 0;
  p.dims.d[1] = -1;
  p.dims.d[2] = 4;
  p.plugin = 0; /* the fixture has one plugin */
  p.heads = 1 + (int32_t)(fixture_next(rng) % 8);
  p.group = 64 * (int32_t)(fixture_next(rng) % 3);
  int32_t li = kiln_graph_add_layer(g, name, op, n_in, in, &p);
  if (li < 0) return li;
  int32_t first = -1;
  for (int32_t k = 0; k < n_out; k++) {
    char tn[64];
    snprintf(tn, sizeof tn, "%s_o%d", name, k);
    kiln_dims d = {.rank = 2, .d = {-1, 8}};
    int32_t t = kiln_graph_add_tensor(g, tn, KILN_TENSOR_ACTIVATION, KILN_DTYPE_FP32, &d);
    if (t < 0) return t;
    g->tensors[t].producer = li;
    g->tensors[t].offset = (int64_t)(fixture_next(rng) % 64) * 256;
    g->layers[li].out[k] = t;
    if (first < 0) first = t;
  }
  kiln_layer_def *l = &g->layers[li];
  l->n_out = n_out;
  l->tactic.kind = (int32_t)(fixture_next(rng) % 4);
  l->tactic.index = (int32_t)(fixture_next(rng) % 100);
  l->tactic.time_ms = 0.001f * (float)(fixture_next(rng) % 1000);
  l->tactic.workspace = (size_t)(fixture_next(rng) % 4096);
  for (int i = 0; i < KILN_TACTIC_BYTES; i++) l->tactic.data[i] = (uint8_t)fixture_next(rng);
  return first;
}

static inline void fixture_profile(kiln_graph *g, int32_t x, int32_t ids, int64_t scale) {
  kiln_profile_def *p = &g->profiles[g->n_profiles++];
  p->n = 2;
  p->tensor = malloc(2 * sizeof *p->tensor);
  p->min = calloc(2, sizeof *p->min);
  p->opt = calloc(2, sizeof *p->opt);
  p->max = calloc(2, sizeof *p->max);
  p->tensor[0] = x;
  p->tensor[1] = ids;
  p->min[0] = (kiln_dims){.rank = 2, .d = {1, 8}};
  p->opt[0] = (kiln_dims){.rank = 2, .d = {4 * scale, 8}};
  p->max[0] = (kiln_dims){.rank = 2, .d = {16 * scale, 8}};
  p->min[1] = (kiln_dims){.rank = 1, .d = {0}};
  p->opt[1] = (kiln_dims){.rank = 1, .d = {3 * scale}};
  p->max[1] = (kiln_dims){.rank = 1, .d = {9 * scale}};
}

/* Build the fixture into g (initialized by the caller). Returns 0 on success. */
static inline int fixture_graph(kiln_graph *g, uint64_t seed) {
  uint64_t rng = seed | 1;
  kiln_dims xd = {.rank = 2, .d = {-1, 8}}, idd = {.rank = 1, .d = {-1}};
  int32_t x = kiln_graph_add_tensor(g, "x", KILN_TENSOR_INPUT, KILN_DTYPE_FP32, &xd);
  int32_t ids = kiln_graph_add_tensor(g, "ids", KILN_TENSOR_INPUT, KILN_DTYPE_INT32, &idd);
  int32_t w = fixture_const(g, "w_fp32", KILN_DTYPE_FP32, 2, (int64_t[]){8, 8}, &rng);
  int32_t b = fixture_const(g, "b_fp16", KILN_DTYPE_FP16, 1, (int64_t[]){8}, &rng);
  int32_t gm = fixture_const(g, "g_bf16", KILN_DTYPE_BF16, 1, (int64_t[]){8}, &rng);
  int32_t bt = fixture_const(g, "b_int8", KILN_DTYPE_INT8, 1, (int64_t[]){8}, &rng);
  int32_t q4 = fixture_const(g, "q_int4", KILN_DTYPE_INT4, 2, (int64_t[]){3, 5}, &rng);
  int32_t tb = fixture_const(g, "t_int32", KILN_DTYPE_INT32, 2, (int64_t[]){10, 8}, &rng);
  int32_t i64 = fixture_const(g, "s_int64", KILN_DTYPE_INT64, 1, (int64_t[]){3}, &rng);
  int32_t sc = fixture_const(g, "scalar", KILN_DTYPE_FP32, 0, NULL, &rng);
  int32_t em = fixture_const(g, "empty", KILN_DTYPE_FP16, 2, (int64_t[]){0, 8}, &rng);
  if (x < 0 || ids < 0 || w < 0 || b < 0 || gm < 0 || bt < 0 || q4 < 0 || tb < 0 || i64 < 0 ||
      sc < 0 || em < 0)
    return -1;
  kiln_plugin_def *pl = calloc(1, sizeof *pl);
  if (!pl) return -1;
  pl->name = malloc(16);
  strcpy(pl->name, "fmha");
  pl->version = 2;
  pl->size = 37;
  pl->data = malloc(pl->size);
  for (size_t i = 0; i < pl->size; i++) pl->data[i] = (uint8_t)fixture_next(&rng);
  g->plugins = pl;
  g->n_plugins = g->cap_plugins = 1;
  int32_t m = fixture_layer(g, "mm", KILN_OP_MATMUL, 3, (int32_t[]){x, w, b}, 1, &rng);
  int32_t a = fixture_layer(g, "add", KILN_OP_ADD, 2, (int32_t[]){m, x}, 1, &rng);
  int32_t mu = fixture_layer(g, "mul", KILN_OP_MUL, 2, (int32_t[]){a, m}, 1, &rng);
  int32_t ac = fixture_layer(g, "act", KILN_OP_ACTIVATION, 1, (int32_t[]){mu}, 1, &rng);
  int32_t ln = fixture_layer(g, "ln", KILN_OP_LAYERNORM, 3, (int32_t[]){ac, gm, bt}, 1, &rng);
  int32_t al = fixture_layer(g, "addln", KILN_OP_ADD_LAYERNORM, 4, (int32_t[]){ln, a, gm, bt}, 2, &rng);
  int32_t sm = fixture_layer(g, "sm", KILN_OP_SOFTMAX, 1, (int32_t[]){al + 1}, 1, &rng);
  int32_t e = fixture_layer(g, "emb", KILN_OP_EMBEDDING, 2, (int32_t[]){tb, ids}, 1, &rng);
  int32_t cv = fixture_layer(g, "conv", KILN_OP_CONV1D, 3, (int32_t[]){e, q4, b}, 1, &rng);
  int32_t rs = fixture_layer(g, "resh", KILN_OP_RESHAPE, 1, (int32_t[]){cv}, 1, &rng);
  int32_t tr = fixture_layer(g, "tran", KILN_OP_TRANSPOSE, 1, (int32_t[]){rs}, 1, &rng);
  int32_t cc = fixture_layer(g, "cat", KILN_OP_CONCAT, 3, (int32_t[]){tr, sm, al}, 1, &rng);
  int32_t sl = fixture_layer(g, "slice", KILN_OP_SLICE, 1, (int32_t[]){cc}, 1, &rng);
  int32_t at = fixture_layer(g, "attn", KILN_OP_ATTENTION, 3, (int32_t[]){sl, sl, i64}, 1, &rng);
  int32_t kva = fixture_layer(g, "kvattn", KILN_OP_KV_ATTENTION, 3, (int32_t[]){sl, sl, at}, 1, &rng);
  if (kva >= 0) g->layers[g->n_layers - 1].p.cache_dtype = KILN_DTYPE_INT8;
  int32_t wq = fixture_layer(g, "mmwq", KILN_OP_MATMUL_WQ, 3, (int32_t[]){kva, w, b}, 1, &rng);
  int32_t qz = fixture_layer(g, "quant", KILN_OP_QUANTIZE_INT8, 1, (int32_t[]){wq}, 2, &rng);
  int32_t pg = fixture_layer(g, "plug", KILN_OP_PLUGIN, 3, (int32_t[]){qz + 1, sc, em}, 2, &rng);
  /* the plugin layer stays last: the format test edits it */
  if (kva < 0 || wq < 0 || qz < 0 || m < 0 || a < 0 || mu < 0 || ac < 0 || ln < 0 || al < 0 || sm < 0 || e < 0 || cv < 0 ||
      rs < 0 || tr < 0 || cc < 0 || sl < 0 || at < 0 || pg < 0)
    return -1;
  g->tensors[pg].is_output = 1;
  g->tensors[pg + 1].is_output = 1;
  g->tensors[pg].offset = -1;
  g->profiles = calloc(2, sizeof *g->profiles);
  if (!g->profiles) return -1;
  g->cap_profiles = 2;
  fixture_profile(g, x, ids, 1);
  fixture_profile(g, x, ids, 4);
  g->target = KILN_TARGET_CUDA;
  g->precision = KILN_DTYPE_FP16;
  g->arena_bytes = 64 * 256;
  g->workspace_bytes = 4096;
  return 0;
}

static inline void fixture_meta(kiln_engine_meta *m) {
  memset(m, 0, sizeof *m);
  m->target = KILN_TARGET_CUDA;
  m->cc_major = 9;
  m->cc_minor = 0;
  m->cuda_runtime_version = 13000;
  strcpy(m->gpu_name, "NVIDIA H100 80GB HBM3");
  strcpy(m->kiln_version, "0.1.0");
  const char *manifest = "{\"kernels\": [{\"name\": \"fmha_fwd\", \"sm\": 90}]}";
  m->kernel_manifest = malloc(strlen(manifest) + 1);
  strcpy(m->kernel_manifest, manifest);
}

#endif /* KILN_TESTS_ENGINE_FIXTURE_H */
