/* src/runtime/engine_format.c - writing and validating-parsing kiln engine files.
 *
 * The format is documented in engine_format.h. This file turns a kiln_graph + kiln_engine_meta
 * into one image and back, checking everything on the way in. It does not look at the GPU or
 * the plugin registry (the runtime does, on the parsed graph). File mapping is core/file_map.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/bytes.h"
#include "core/error.h"
#include "core/round.h"
#include "runtime/engine_format.h"

#define REBUILD "rebuild the engine with this kiln"

/* Header field offsets (see engine_format.h). */
enum {
  H_MAGIC = 0,
  H_VERSION = 8,
  H_HEADER_SIZE = 12,
  H_FLAGS = 16,
  H_TARGET = 20,
  H_CC_MAJOR = 24,
  H_CC_MINOR = 28,
  H_CUDA = 32,
  H_RESERVED0 = 36,
  H_META_OFF = 40,
  H_META_SIZE = 48,
  H_W_OFF = 56,
  H_W_SIZE = 64,
  H_FILE_SIZE = 72,
  H_META_CRC = 80,
  H_W_CRC = 84,
  H_RESERVED1 = 88,
  H_HEADER_CRC = 124
};

static uint32_t crc_of(const void *p, size_t n) {
  return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), (const Bytef *)p, n);
}

/* ---- graph validation ------------------------------------------------------------------------ */

static kiln_status bad(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static kiln_status bad(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kiln_error(KILN_ERR_FORMAT, "invalid engine: %s; %s", msg, REBUILD);
}

/* Bytes of dtype x dims, SIZE_MAX when the dims are negative or the size overflows. */
static size_t checked_bytes(kiln_dtype dtype, const kiln_dims *d) {
  int64_t n = kiln_dims_count_checked(d);
  if (n < 0 || (uint64_t)n > SIZE_MAX / 8) return SIZE_MAX;
  return kiln_dtype_bytes(dtype, n);
}

static int dims_valid(const kiln_dims *d, int64_t min_dim) {
  if (d->rank < 0 || d->rank > KILN_MAX_DIMS) return 0;
  for (int32_t i = 0; i < d->rank; i++)
    if (d->d[i] < min_dim) return 0;
  return 1;
}

typedef struct name_idx {
  const char *name;
  int32_t index;
} name_idx;

static int cmp_name_idx(const void *a, const void *b) {
  return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

/* Index of a name used twice (the later one), -1 if all unique, -2 when out of memory. */
static int32_t find_duplicate(const char *const *names, size_t stride, int32_t n) {
  if (n < 2) return -1;
  name_idx *v = malloc((size_t)n * sizeof *v);
  if (!v) return -2;
  for (int32_t i = 0; i < n; i++) {
    v[i].name = *(const char *const *)((const char *)names + (size_t)i * stride);
    v[i].index = i;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_name_idx);
  int32_t dup = -1;
  for (int32_t i = 1; i < n && dup < 0; i++)
    if (strcmp(v[i - 1].name, v[i].name) == 0) dup = v[i].index > v[i - 1].index ? v[i].index : v[i - 1].index;
  free(v);
  return dup;
}

static kiln_status check_names(const kiln_graph *g) {
  for (int32_t i = 0; i < g->n_tensors; i++)
    if (!g->tensors[i].name || !g->tensors[i].name[0]) return bad("tensor %d has no name", i);
  for (int32_t i = 0; i < g->n_layers; i++)
    if (!g->layers[i].name || !g->layers[i].name[0]) return bad("layer %d has no name", i);
  int32_t d = g->n_tensors < 2 ? -1
              : find_duplicate((const char *const *)&g->tensors[0].name, sizeof *g->tensors,
                               g->n_tensors);
  if (d == -2) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory checking tensor names");
  if (d >= 0) return bad("tensor name \"%s\" is used twice", g->tensors[d].name);
  d = g->n_layers < 2 ? -1
                      : find_duplicate((const char *const *)&g->layers[0].name, sizeof *g->layers,
                                       g->n_layers);
  if (d == -2) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory checking layer names");
  if (d >= 0) return bad("layer name \"%s\" is used twice", g->layers[d].name);
  return KILN_OK;
}

static kiln_status check_tensor(const kiln_graph *g, int32_t i) {
  const kiln_tensor_def *t = &g->tensors[i];
  const char *n = t->name;
  if ((int)t->kind < KILN_TENSOR_INPUT || t->kind > KILN_TENSOR_ACTIVATION)
    return bad("tensor \"%s\" has unknown kind %d", n, (int)t->kind);
  if ((int)t->dtype <= KILN_DTYPE_INVALID || t->dtype >= KILN_DTYPE_COUNT_)
    return bad("tensor \"%s\" has unknown dtype %d", n, (int)t->dtype);
  if (!dims_valid(&t->dims, t->kind == KILN_TENSOR_CONSTANT ? 0 : -1))
    return bad("tensor \"%s\" has invalid dims (rank %d; ranks are 0..%d, dims >= %d)", n,
               t->dims.rank, KILN_MAX_DIMS, t->kind == KILN_TENSOR_CONSTANT ? 0 : -1);
  if (t->is_output != 0 && t->is_output != 1)
    return bad("tensor \"%s\" has is_output = %d (0 or 1)", n, t->is_output);
  if (t->kind == KILN_TENSOR_ACTIVATION) {
    if (t->producer < 0 || t->producer >= g->n_layers)
      return bad("activation \"%s\" names producer layer %d of %d", n, t->producer, g->n_layers);
    const kiln_layer_def *l = &g->layers[t->producer];
    int found = 0;
    for (int32_t k = 0; k < l->n_out && k < KILN_MAX_LAYER_IO; k++) found |= l->out[k] == i;
    if (!found) return bad("activation \"%s\" is not an output of its producer \"%s\"", n, l->name);
  } else if (t->producer != -1) {
    return bad("input or constant \"%s\" names a producer layer (%d)", n, t->producer);
  }
  if (t->offset < -1 || (t->offset > 0 && (uint64_t)t->offset > g->arena_bytes))
    return bad("tensor \"%s\" has arena offset %lld outside the %zu-byte arena", n,
               (long long)t->offset, g->arena_bytes);
  if (t->kind != KILN_TENSOR_CONSTANT && t->data)
    return bad("tensor \"%s\" is not a constant but carries data", n);
  if (t->kind == KILN_TENSOR_CONSTANT && t->data) {
    size_t want = checked_bytes(t->dtype, &t->dims);
    if (want != t->bytes)
      return bad("constant \"%s\" has %zu bytes of data but its dtype and dims need %zu", n,
                 t->bytes, want);
  }
  return KILN_OK;
}

static kiln_status check_layer_inputs(const kiln_graph *g, int32_t i) {
  const kiln_layer_def *l = &g->layers[i];
  for (int32_t k = 0; k < l->n_in; k++) {
    int32_t t = l->in[k];
    if (t < 0 || t >= g->n_tensors)
      return bad("layer \"%s\" input %d is tensor %d of %d", l->name, k, t, g->n_tensors);
    const kiln_tensor_def *td = &g->tensors[t];
    if (td->kind == KILN_TENSOR_ACTIVATION && !(td->producer >= 0 && td->producer < i))
      return bad("layer \"%s\" reads \"%s\" before the layer that produces it (layers must be "
                 "in topological order)", l->name, td->name);
  }
  return KILN_OK;
}

static kiln_status check_layer(const kiln_graph *g, int32_t i) {
  const kiln_layer_def *l = &g->layers[i];
  if ((int)l->op < 0 || l->op >= KILN_OP_COUNT_)
    return bad("layer \"%s\" has unknown op %d", l->name, (int)l->op);
  if (l->n_in < 0 || l->n_in > KILN_MAX_LAYER_IO || l->n_out < 0 || l->n_out > KILN_MAX_LAYER_IO)
    return bad("layer \"%s\" has %d inputs and %d outputs (0..%d each)", l->name, l->n_in,
               l->n_out, KILN_MAX_LAYER_IO);
  KILN_TRY(check_layer_inputs(g, i));
  for (int32_t k = 0; k < l->n_out; k++) {
    int32_t t = l->out[k];
    if (t < 0 || t >= g->n_tensors)
      return bad("layer \"%s\" output %d is tensor %d of %d", l->name, k, t, g->n_tensors);
    if (g->tensors[t].kind != KILN_TENSOR_ACTIVATION || g->tensors[t].producer != i)
      return bad("layer \"%s\" output \"%s\" is not an activation produced by it", l->name,
                 g->tensors[t].name);
    for (int32_t j = 0; j < k; j++)
      if (l->out[j] == t) return bad("layer \"%s\" lists output \"%s\" twice", l->name, g->tensors[t].name);
  }
  if (l->p.activation < KILN_ACTIVATION_NONE || l->p.activation > KILN_ACTIVATION_SILU)
    return bad("layer \"%s\" has unknown activation %d", l->name, l->p.activation);
  if (l->p.dims.rank < 0 || l->p.dims.rank > KILN_MAX_DIMS)
    return bad("layer \"%s\" has a dims parameter of rank %d", l->name, l->p.dims.rank);
  if (l->p.cache_dtype != 0 && !(l->op == KILN_OP_KV_ATTENTION && l->p.cache_dtype == KILN_DTYPE_INT8))
    return bad("layer \"%s\" has cache dtype %d (only kv_attention layers have one: 0 or int8)", l->name, l->p.cache_dtype);
  if (l->op == KILN_OP_PLUGIN && (l->p.plugin < 0 || l->p.plugin >= g->n_plugins))
    return bad("plugin layer \"%s\" names plugin %d of %d", l->name, l->p.plugin, g->n_plugins);
  if (l->p.fuse && l->op != KILN_OP_MATMUL && l->op != KILN_OP_MATMUL_WQ)
    return bad("layer \"%s\" (%s) has fusion bits %d; only matmuls take them", l->name, kiln_op_name(l->op), l->p.fuse);
  if (l->op == KILN_OP_MATMUL || l->op == KILN_OP_MATMUL_WQ) {
    kiln_matmul_io io;
    if (kiln_matmul_io_of(l, &io) != KILN_OK) return bad("%s", kiln_last_error());
  }
  if (l->tactic.kind < KILN_TACTIC_DEFAULT || l->tactic.kind > KILN_TACTIC_PLUGIN)
    return bad("layer \"%s\" has unknown tactic kind %d", l->name, l->tactic.kind);
  return KILN_OK;
}

static kiln_status check_profile(const kiln_graph *g, int32_t pi) {
  const kiln_profile_def *p = &g->profiles[pi];
  if (p->n < 0 || p->n > g->n_tensors)
    return bad("profile %d lists %d inputs (the graph has %d tensors)", pi, p->n, g->n_tensors);
  if (p->n > 0 && (!p->tensor || !p->min || !p->opt || !p->max))
    return bad("profile %d has no shape arrays", pi);
  for (int32_t k = 0; k < p->n; k++) {
    int32_t t = p->tensor[k];
    if (t < 0 || t >= g->n_tensors || g->tensors[t].kind != KILN_TENSOR_INPUT)
      return bad("profile %d entry %d names tensor %d, which is not a graph input", pi, k, t);
    for (int32_t j = 0; j < k; j++)
      if (p->tensor[j] == t) return bad("profile %d names input \"%s\" twice", pi, g->tensors[t].name);
    int32_t rank = g->tensors[t].dims.rank;
    const kiln_dims *mn = &p->min[k], *op = &p->opt[k], *mx = &p->max[k];
    if (mn->rank != rank || op->rank != rank || mx->rank != rank)
      return bad("profile %d gives input \"%s\" (rank %d) shapes of another rank", pi,
                 g->tensors[t].name, rank);
    for (int32_t d = 0; d < rank; d++)
      if (!(mn->d[d] >= 0 && mn->d[d] <= op->d[d] && op->d[d] <= mx->d[d]))
        return bad("profile %d input \"%s\" dim %d does not satisfy 0 <= min <= opt <= max", pi,
                   g->tensors[t].name, d);
  }
  return KILN_OK;
}

kiln_status kiln_engine_validate_graph(const kiln_graph *g) {
  if (g->n_tensors < 0 || g->n_layers < 0 || g->n_plugins < 0 || g->n_profiles < 0)
    return bad("negative counts");
  if ((int)g->target != KILN_TARGET_CPU && (int)g->target != KILN_TARGET_CUDA)
    return bad("unknown target %d", (int)g->target);
  if ((int)g->precision <= KILN_DTYPE_INVALID || g->precision >= KILN_DTYPE_COUNT_)
    return bad("unknown precision %d", (int)g->precision);
  KILN_TRY(check_names(g));
  for (int32_t i = 0; i < g->n_layers; i++) KILN_TRY(check_layer(g, i));
  for (int32_t i = 0; i < g->n_tensors; i++) KILN_TRY(check_tensor(g, i));
  for (int32_t i = 0; i < g->n_plugins; i++) {
    const kiln_plugin_def *p = &g->plugins[i];
    if (!p->name || !p->name[0]) return bad("plugin %d has no name", i);
    if (p->size && !p->data) return bad("plugin \"%s\" has %zu bytes but no data", p->name, p->size);
  }
  for (int32_t i = 0; i < g->n_profiles; i++) KILN_TRY(check_profile(g, i));
  return KILN_OK;
}

/* ---- writing --------------------------------------------------------------------------------- */

static void write_tensor(kiln_wr *w, const kiln_tensor_def *t, int64_t weight_offset) {
  kiln_wr_str(w, t->name);
  kiln_wr_u32(w, (uint32_t)t->kind);
  kiln_wr_u32(w, (uint32_t)t->dtype);
  kiln_wr_dims(w, &t->dims);
  kiln_wr_i32(w, t->is_output);
  kiln_wr_i32(w, t->producer);
  kiln_wr_i64(w, t->offset);
  kiln_wr_i64(w, weight_offset);
  kiln_wr_u64(w, weight_offset >= 0 ? (uint64_t)t->bytes : 0);
}

static void write_layer(kiln_wr *w, const kiln_layer_def *l) {
  kiln_wr_str(w, l->name);
  kiln_wr_u32(w, (uint32_t)l->op);
  kiln_wr_i32(w, l->n_in);
  for (int32_t k = 0; k < l->n_in; k++) kiln_wr_i32(w, l->in[k]);
  kiln_wr_i32(w, l->n_out);
  for (int32_t k = 0; k < l->n_out; k++) kiln_wr_i32(w, l->out[k]);
  const kiln_op_params *p = &l->p;
  kiln_wr_i32(w, p->activation);
  kiln_wr_f32(w, p->eps);
  kiln_wr_f32(w, p->scale);
  kiln_wr_i32(w, p->causal);
  kiln_wr_i32(w, p->stride);
  kiln_wr_i32(w, p->axis);
  kiln_wr_i64(w, p->start);
  kiln_wr_i64(w, p->end);
  kiln_wr_dims(w, &p->dims);
  kiln_wr_i32(w, p->plugin);
  kiln_wr_i32(w, p->heads);
  kiln_wr_i32(w, p->group);
  kiln_wr_i32(w, p->fuse);
  kiln_wr_i32(w, p->cache_dtype);
  kiln_wr_i32(w, l->tactic.kind);
  kiln_wr_i32(w, l->tactic.index);
  kiln_wr_f32(w, l->tactic.time_ms);
  kiln_wr_u64(w, (uint64_t)l->tactic.workspace);
  kiln_wr_bytes(w, l->tactic.data, KILN_TACTIC_BYTES);
}

static void write_meta(kiln_wr *w, const kiln_graph *g, const kiln_engine_meta *meta,
                       const int64_t *woff) {
  kiln_wr_str(w, meta->kiln_version);
  kiln_wr_str(w, meta->gpu_name);
  kiln_wr_u32(w, meta->kernel_manifest ? 1 : 0);
  if (meta->kernel_manifest) kiln_wr_str(w, meta->kernel_manifest);
  kiln_wr_u32(w, (uint32_t)g->precision);
  kiln_wr_u64(w, g->arena_bytes);
  kiln_wr_u64(w, g->workspace_bytes);
  kiln_wr_u32(w, (uint32_t)g->n_tensors);
  for (int32_t i = 0; i < g->n_tensors; i++) write_tensor(w, &g->tensors[i], woff[i]);
  kiln_wr_u32(w, (uint32_t)g->n_layers);
  for (int32_t i = 0; i < g->n_layers; i++) write_layer(w, &g->layers[i]);
  kiln_wr_u32(w, (uint32_t)g->n_plugins);
  for (int32_t i = 0; i < g->n_plugins; i++) {
    const kiln_plugin_def *p = &g->plugins[i];
    kiln_wr_str(w, p->name);
    kiln_wr_i32(w, p->version);
    kiln_wr_u64(w, p->size);
    kiln_wr_bytes(w, p->data, p->size);
  }
  kiln_wr_u32(w, (uint32_t)g->n_profiles);
  for (int32_t i = 0; i < g->n_profiles; i++) {
    const kiln_profile_def *p = &g->profiles[i];
    kiln_wr_i32(w, p->n);
    for (int32_t k = 0; k < p->n; k++) {
      kiln_wr_i32(w, p->tensor[k]);
      kiln_wr_dims(w, &p->min[k]);
      kiln_wr_dims(w, &p->opt[k]);
      kiln_wr_dims(w, &p->max[k]);
    }
  }
}

static void write_header(uint8_t *h, const kiln_engine_meta *meta, size_t meta_size,
                         size_t w_off, size_t w_size) {
  memset(h, 0, KILN_ENGINE_HEADER_BYTES);
  memcpy(h + H_MAGIC, KILN_ENGINE_MAGIC, 8);
  kiln_store_u32(h + H_VERSION, KILN_ENGINE_FORMAT_VERSION);
  kiln_store_u32(h + H_HEADER_SIZE, KILN_ENGINE_HEADER_BYTES);
  kiln_store_u32(h + H_FLAGS, 0);
  kiln_store_u32(h + H_TARGET, (uint32_t)meta->target);
  kiln_store_u32(h + H_CC_MAJOR, (uint32_t)meta->cc_major);
  kiln_store_u32(h + H_CC_MINOR, (uint32_t)meta->cc_minor);
  kiln_store_u32(h + H_CUDA, (uint32_t)meta->cuda_runtime_version);
  kiln_store_u64(h + H_META_OFF, KILN_ENGINE_HEADER_BYTES);
  kiln_store_u64(h + H_META_SIZE, meta_size);
  kiln_store_u64(h + H_W_OFF, w_off);
  kiln_store_u64(h + H_W_SIZE, w_size);
  kiln_store_u64(h + H_FILE_SIZE, w_off + w_size);
  kiln_store_u32(h + H_META_CRC, crc_of(h + KILN_ENGINE_HEADER_BYTES, meta_size));
  kiln_store_u32(h + H_W_CRC, crc_of(h + w_off, w_size));
  kiln_store_u32(h + H_HEADER_CRC, crc_of(h, H_HEADER_CRC));
}

static kiln_status check_meta_strings(const kiln_engine_meta *meta) {
  if (memchr(meta->gpu_name, 0, sizeof meta->gpu_name) == NULL ||
      memchr(meta->kiln_version, 0, sizeof meta->kiln_version) == NULL)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "engine meta strings (gpu_name, kiln_version) must be NUL-terminated");
  if ((int)meta->target != KILN_TARGET_CPU && (int)meta->target != KILN_TARGET_CUDA)
    return kiln_error(KILN_ERR_INVALID_ARG, "engine meta has unknown target %d", (int)meta->target);
  return KILN_OK;
}

kiln_status kiln_engine_serialize(const kiln_graph *g, const kiln_engine_meta *meta, void **image,
                                  size_t *size) {
  if (!g || !meta || !image || !size)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_engine_serialize: NULL argument");
  KILN_TRY(check_meta_strings(meta));
  if (g->target != meta->target)
    return kiln_error(KILN_ERR_INVALID_ARG, "the graph's target (%d) and the meta's (%d) differ",
                      (int)g->target, (int)meta->target);
  kiln_status s = kiln_engine_validate_graph(g);
  if (s != KILN_OK)
    return kiln_error_context(s == KILN_ERR_FORMAT ? KILN_ERR_INTERNAL : s,
                              "cannot write the engine (a bug in the builder: please report it): ");
  int64_t *woff = malloc(((size_t)g->n_tensors + 1) * sizeof *woff);
  if (!woff) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing the engine");
  size_t w_size = 0; /* weight offsets relative to the weights section */
  for (int32_t i = 0; i < g->n_tensors; i++) {
    const kiln_tensor_def *t = &g->tensors[i];
    woff[i] = -1;
    if (t->kind != KILN_TENSOR_CONSTANT || !t->data) continue;
    w_size = kiln_round_up(w_size, KILN_ENGINE_WEIGHT_ALIGN);
    woff[i] = (int64_t)w_size;
    w_size += t->bytes;
  }
  kiln_wr w;
  kiln_wr_init(&w);
  kiln_wr_zeros(&w, KILN_ENGINE_HEADER_BYTES);
  write_meta(&w, g, meta, woff);
  size_t meta_size = w.len - KILN_ENGINE_HEADER_BYTES;
  kiln_wr_align(&w, KILN_ENGINE_WEIGHT_ALIGN);
  size_t w_off = w.len;
  for (int32_t i = 0; i < g->n_tensors; i++) {
    if (woff[i] < 0) continue;
    kiln_wr_zeros(&w, w_off + (size_t)woff[i] - w.len);
    kiln_wr_bytes(&w, g->tensors[i].data, g->tensors[i].bytes);
  }
  free(woff);
  if (w.failed) {
    kiln_wr_free(&w);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing the engine image");
  }
  write_header(w.buf, meta, meta_size, w_off, w.len - w_off);
  *image = w.buf;
  *size = w.len;
  return KILN_OK;
}

/* ---- reading --------------------------------------------------------------------------------- */

typedef struct sections {
  const uint8_t *meta, *weights;
  size_t meta_size, w_off, w_size;
} sections;

static kiln_status check_size_fields(const uint8_t *h, size_t size, sections *sec) {
  uint64_t meta_off = kiln_load_u64(h + H_META_OFF), meta_size = kiln_load_u64(h + H_META_SIZE);
  uint64_t w_off = kiln_load_u64(h + H_W_OFF), w_size = kiln_load_u64(h + H_W_SIZE);
  uint64_t file_size = kiln_load_u64(h + H_FILE_SIZE);
  if (size < file_size)
    return kiln_error(KILN_ERR_FORMAT,
                      "the file is truncated (%zu of %llu bytes); copy it again or rebuild the "
                      "engine", size, (unsigned long long)file_size);
  if (size > file_size)
    return kiln_error(KILN_ERR_FORMAT,
                      "the file has %llu bytes after the engine's end (%zu bytes, the header says "
                      "%llu): it was damaged or appended to; copy it again or rebuild the engine",
                      (unsigned long long)(size - file_size), size, (unsigned long long)file_size);
  if (meta_off != KILN_ENGINE_HEADER_BYTES || meta_size > size - meta_off ||
      w_off % KILN_ENGINE_WEIGHT_ALIGN != 0 || w_off < meta_off + meta_size || w_off > size ||
      w_size != size - w_off)
    return kiln_error(KILN_ERR_FORMAT,
                      "the file is damaged: its section table is inconsistent (metadata at %llu, "
                      "%llu bytes; weights at %llu, %llu bytes; file %zu bytes); %s",
                      (unsigned long long)meta_off, (unsigned long long)meta_size,
                      (unsigned long long)w_off, (unsigned long long)w_size, size, REBUILD);
  sec->meta = h + meta_off;
  sec->meta_size = (size_t)meta_size;
  sec->weights = h + w_off;
  sec->w_off = (size_t)w_off;
  sec->w_size = (size_t)w_size;
  return KILN_OK;
}

static kiln_status check_header(const uint8_t *h, size_t size, sections *sec) {
  if (size < 8 || memcmp(h, KILN_ENGINE_MAGIC, 8) != 0)
    return kiln_error(KILN_ERR_FORMAT,
                      "not a kiln engine file (%zu bytes, no \"KILNENG1\" magic); pass an engine "
                      "written by `kiln build`", size);
  if (size < KILN_ENGINE_HEADER_BYTES)
    return kiln_error(KILN_ERR_FORMAT,
                      "the file is truncated (%zu of at least %u bytes); copy it again or rebuild",
                      size, KILN_ENGINE_HEADER_BYTES);
  uint32_t version = kiln_load_u32(h + H_VERSION);
  if (version != KILN_ENGINE_FORMAT_VERSION)
    return kiln_error(KILN_ERR_VERSION,
                      "engine format version %u is %s than this kiln's (%u); %s", version,
                      version < KILN_ENGINE_FORMAT_VERSION ? "older" : "newer",
                      KILN_ENGINE_FORMAT_VERSION, REBUILD);
  if (kiln_load_u32(h + H_HEADER_CRC) != crc_of(h, H_HEADER_CRC))
    return kiln_error(KILN_ERR_FORMAT,
                      "the file is damaged: checksum mismatch in the header; copy it again or "
                      "rebuild the engine");
  if (kiln_load_u32(h + H_HEADER_SIZE) != KILN_ENGINE_HEADER_BYTES || kiln_load_u32(h + H_FLAGS) != 0)
    return kiln_error(KILN_ERR_VERSION,
                      "the engine header has size %u and flags 0x%x that this kiln does not know; %s",
                      kiln_load_u32(h + H_HEADER_SIZE), kiln_load_u32(h + H_FLAGS), REBUILD);
  uint32_t target = kiln_load_u32(h + H_TARGET);
  if (target != KILN_TARGET_CPU && target != KILN_TARGET_CUDA)
    return kiln_error(KILN_ERR_FORMAT, "the engine names unknown target %u; %s", target, REBUILD);
  KILN_TRY(check_size_fields(h, size, sec));
  if (kiln_load_u32(h + H_META_CRC) != crc_of(sec->meta, sec->meta_size))
    return kiln_error(KILN_ERR_FORMAT,
                      "the file is damaged: checksum mismatch in the metadata section; copy it "
                      "again or rebuild the engine");
  if (kiln_load_u32(h + H_W_CRC) != crc_of(sec->weights, sec->w_size))
    return kiln_error(KILN_ERR_FORMAT,
                      "the file is damaged: checksum mismatch in the weights section; copy it "
                      "again or rebuild the engine");
  return KILN_OK;
}

/* Parsing state: what is being read, for the message when a read fails. */
typedef struct parser {
  kiln_rd r;
  const char *what;
  int32_t index;
  const sections *sec;
  int borrow;
} parser;

static kiln_status short_read(const parser *ps) {
  return kiln_error(KILN_ERR_FORMAT,
                    "invalid engine: the metadata section is malformed at byte %zu (reading %s %d: "
                    "a length, count or rank runs past the end or is invalid); %s",
                    ps->r.pos, ps->what, ps->index, REBUILD);
}

static kiln_status read_weights(parser *ps, kiln_tensor_def *t, int64_t off, uint64_t bytes) {
  if (off == -1 && bytes == 0) return KILN_OK;
  if (t->kind != KILN_TENSOR_CONSTANT)
    return bad("tensor \"%s\" is not a constant but has weight data", t->name);
  const sections *sec = ps->sec;
  if (off < 0 || (uint64_t)off > sec->w_size || bytes > sec->w_size - (uint64_t)off ||
      off % KILN_ENGINE_WEIGHT_ALIGN != 0)
    return bad("constant \"%s\" has weights at %lld (+%llu bytes), outside the %zu-byte weights "
               "section or not %u-byte aligned", t->name, (long long)off,
               (unsigned long long)bytes, sec->w_size, KILN_ENGINE_WEIGHT_ALIGN);
  const uint8_t *src = sec->weights + off;
  t->bytes = (size_t)bytes;
  if (ps->borrow) {
    t->data = (void *)(uintptr_t)src;
    return KILN_OK;
  }
  t->data = malloc(bytes ? (size_t)bytes : 1);
  if (!t->data)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading constant \"%s\" (%llu bytes)",
                      t->name, (unsigned long long)bytes);
  if (bytes) memcpy(t->data, src, (size_t)bytes);
  return KILN_OK;
}

static kiln_status read_tensor(parser *ps, kiln_tensor_def *t) {
  kiln_rd *r = &ps->r;
  uint32_t kind = 0, dtype = 0;
  int64_t woff = -1;
  uint64_t wbytes = 0;
  kiln_rd_str(r, &t->name, 1u << 20);
  kiln_rd_u32(r, &kind);
  kiln_rd_u32(r, &dtype);
  kiln_rd_dims(r, &t->dims);
  kiln_rd_i32(r, &t->is_output);
  kiln_rd_i32(r, &t->producer);
  kiln_rd_i64(r, &t->offset);
  kiln_rd_i64(r, &woff);
  kiln_rd_u64(r, &wbytes);
  if (r->failed) return short_read(ps);
  if (kind > KILN_TENSOR_ACTIVATION) return bad("tensor \"%s\" has unknown kind %u", t->name, kind);
  if (dtype <= KILN_DTYPE_INVALID || dtype >= KILN_DTYPE_COUNT_)
    return bad("tensor \"%s\" has unknown dtype %u", t->name, dtype);
  t->kind = (kiln_tensor_kind)kind;
  t->dtype = (kiln_dtype)dtype;
  return read_weights(ps, t, woff, wbytes);
}

static kiln_status read_io(parser *ps, int32_t *n, int32_t *ids) {
  if (kiln_rd_i32(&ps->r, n)) return short_read(ps);
  if (*n < 0 || *n > KILN_MAX_LAYER_IO)
    return bad("layer %d has %d inputs or outputs (0..%d)", ps->index, *n, KILN_MAX_LAYER_IO);
  for (int32_t k = 0; k < *n; k++) kiln_rd_i32(&ps->r, &ids[k]);
  return ps->r.failed ? short_read(ps) : KILN_OK;
}

static kiln_status read_layer(parser *ps, kiln_layer_def *l) {
  kiln_rd *r = &ps->r;
  uint32_t op = 0;
  uint64_t ws = 0;
  kiln_rd_str(r, &l->name, 1u << 20);
  kiln_rd_u32(r, &op);
  if (r->failed) return short_read(ps);
  if (op >= KILN_OP_COUNT_) return bad("layer \"%s\" has unknown op %u", l->name, op);
  l->op = (kiln_op)op;
  KILN_TRY(read_io(ps, &l->n_in, l->in));
  KILN_TRY(read_io(ps, &l->n_out, l->out));
  kiln_op_params *p = &l->p;
  kiln_rd_i32(r, &p->activation);
  kiln_rd_f32(r, &p->eps);
  kiln_rd_f32(r, &p->scale);
  kiln_rd_i32(r, &p->causal);
  kiln_rd_i32(r, &p->stride);
  kiln_rd_i32(r, &p->axis);
  kiln_rd_i64(r, &p->start);
  kiln_rd_i64(r, &p->end);
  kiln_rd_dims(r, &p->dims);
  kiln_rd_i32(r, &p->plugin);
  kiln_rd_i32(r, &p->heads);
  kiln_rd_i32(r, &p->group);
  kiln_rd_i32(r, &p->fuse);
  kiln_rd_i32(r, &p->cache_dtype);
  kiln_rd_i32(r, &l->tactic.kind);
  kiln_rd_i32(r, &l->tactic.index);
  kiln_rd_f32(r, &l->tactic.time_ms);
  kiln_rd_u64(r, &ws);
  kiln_rd_bytes(r, l->tactic.data, KILN_TACTIC_BYTES);
  if (r->failed) return short_read(ps);
  if (ws > SIZE_MAX) return bad("layer \"%s\" has an impossible workspace size", l->name);
  l->tactic.workspace = (size_t)ws;
  return KILN_OK;
}

static kiln_status read_plugin(parser *ps, kiln_plugin_def *p) {
  kiln_rd *r = &ps->r;
  uint64_t n = 0;
  const uint8_t *src;
  kiln_rd_str(r, &p->name, 1u << 16);
  kiln_rd_i32(r, &p->version);
  kiln_rd_u64(r, &n);
  if (r->failed || n > kiln_rd_left(r) || kiln_rd_view(r, &src, (size_t)n)) return short_read(ps);
  p->data = malloc(n ? (size_t)n : 1);
  if (!p->data) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading plugin state");
  if (n) memcpy(p->data, src, (size_t)n);
  p->size = (size_t)n;
  return KILN_OK;
}

/* Smallest encoding of one profile entry: i32 id + three rank-0 dims. */
#define PROFILE_ENTRY_MIN_BYTES 16

static kiln_status read_profile(parser *ps, kiln_profile_def *p) {
  kiln_rd *r = &ps->r;
  uint32_t n = 0;
  if (kiln_rd_count(r, &n, PROFILE_ENTRY_MIN_BYTES) || n > INT32_MAX) return short_read(ps);
  p->n = (int32_t)n;
  p->tensor = calloc((size_t)n + 1, sizeof *p->tensor);
  p->min = calloc((size_t)n + 1, sizeof *p->min);
  p->opt = calloc((size_t)n + 1, sizeof *p->opt);
  p->max = calloc((size_t)n + 1, sizeof *p->max);
  if (!p->tensor || !p->min || !p->opt || !p->max)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading a profile");
  for (uint32_t k = 0; k < n; k++) {
    kiln_rd_i32(r, &p->tensor[k]);
    kiln_rd_dims(r, &p->min[k]);
    kiln_rd_dims(r, &p->opt[k]);
    kiln_rd_dims(r, &p->max[k]);
  }
  return r->failed ? short_read(ps) : KILN_OK;
}

/* Read a count, allocate count zeroed items (+1 so a count of 0 still allocates). */
static kiln_status read_array(parser *ps, const char *what, size_t min_item, size_t item_size,
                              void **items, int32_t *n) {
  uint32_t count = 0;
  ps->what = what;
  ps->index = -1;
  if (kiln_rd_count(&ps->r, &count, min_item) || count > INT32_MAX) return short_read(ps);
  *items = calloc((size_t)count + 1, item_size);
  if (!*items) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading %u %ss", count, what);
  *n = (int32_t)count;
  return KILN_OK;
}

/* Minimum encoded sizes of one item (strings empty, ranks 0, no IO). */
#define TENSOR_MIN_BYTES (4 + 4 + 4 + 4 + 4 + 4 + 8 + 8 + 8)
#define LAYER_MIN_BYTES (4 + 4 + 4 + 4 + 4 * 6 + 16 + 4 + 4 + 4 * 3 + 8 + KILN_TACTIC_BYTES)
#define PLUGIN_MIN_BYTES (4 + 4 + 8)
#define PROFILE_MIN_BYTES 4

static kiln_status read_graph(parser *ps, kiln_graph *g) {
  kiln_rd *r = &ps->r;
  uint32_t precision = 0;
  uint64_t arena = 0, ws = 0;
  kiln_rd_u32(r, &precision);
  kiln_rd_u64(r, &arena);
  kiln_rd_u64(r, &ws);
  if (r->failed) return short_read(ps);
  if (precision <= KILN_DTYPE_INVALID || precision >= KILN_DTYPE_COUNT_ || arena > SIZE_MAX || ws > SIZE_MAX)
    return bad("unknown precision %u or impossible arena/workspace sizes", precision);
  g->precision = (kiln_dtype)precision;
  g->arena_bytes = (size_t)arena;
  g->workspace_bytes = (size_t)ws;
  g->borrowed_weights = ps->borrow ? 1 : 0;
  KILN_TRY(read_array(ps, "tensor", TENSOR_MIN_BYTES, sizeof *g->tensors, (void **)&g->tensors, &g->n_tensors));
  g->cap_tensors = g->n_tensors + 1;
  for (ps->index = 0; ps->index < g->n_tensors; ps->index++) {
    g->tensors[ps->index].producer = -1;
    KILN_TRY(read_tensor(ps, &g->tensors[ps->index]));
  }
  KILN_TRY(read_array(ps, "layer", LAYER_MIN_BYTES, sizeof *g->layers, (void **)&g->layers, &g->n_layers));
  g->cap_layers = g->n_layers + 1;
  for (ps->index = 0; ps->index < g->n_layers; ps->index++) KILN_TRY(read_layer(ps, &g->layers[ps->index]));
  KILN_TRY(read_array(ps, "plugin", PLUGIN_MIN_BYTES, sizeof *g->plugins, (void **)&g->plugins, &g->n_plugins));
  g->cap_plugins = g->n_plugins + 1;
  for (ps->index = 0; ps->index < g->n_plugins; ps->index++) KILN_TRY(read_plugin(ps, &g->plugins[ps->index]));
  KILN_TRY(read_array(ps, "profile", PROFILE_MIN_BYTES, sizeof *g->profiles, (void **)&g->profiles, &g->n_profiles));
  g->cap_profiles = g->n_profiles + 1;
  for (ps->index = 0; ps->index < g->n_profiles; ps->index++) KILN_TRY(read_profile(ps, &g->profiles[ps->index]));
  if (kiln_rd_left(r) != 0)
    return bad("the metadata section has %zu unread bytes at its end", kiln_rd_left(r));
  return KILN_OK;
}

static kiln_status read_meta_strings(parser *ps, kiln_engine_meta *m) {
  char *version = NULL, *gpu = NULL;
  uint32_t has_manifest = 0;
  ps->what = "engine description";
  ps->index = 0;
  kiln_rd_str(&ps->r, &version, sizeof m->kiln_version - 1);
  kiln_rd_str(&ps->r, &gpu, sizeof m->gpu_name - 1);
  kiln_rd_u32(&ps->r, &has_manifest);
  if (!ps->r.failed && has_manifest > 1) ps->r.failed = 1;
  if (!ps->r.failed && has_manifest) kiln_rd_str(&ps->r, &m->kernel_manifest, SIZE_MAX);
  if (!ps->r.failed) {
    memcpy(m->kiln_version, version, strlen(version) + 1);
    memcpy(m->gpu_name, gpu, strlen(gpu) + 1);
  }
  free(version);
  free(gpu);
  return ps->r.failed ? short_read(ps) : KILN_OK;
}

kiln_status kiln_engine_parse(const void *image, size_t size, int borrow_weights, kiln_graph *g,
                              kiln_engine_meta *meta) {
  if ((!image && size) || !g || !meta)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_engine_parse: NULL argument");
  const uint8_t *h = image ? image : (const uint8_t *)"";
  sections sec;
  KILN_TRY(check_header(h, size, &sec));
  kiln_engine_meta m;
  memset(&m, 0, sizeof m);
  m.target = (kiln_target)kiln_load_u32(h + H_TARGET);
  m.cc_major = (int32_t)kiln_load_u32(h + H_CC_MAJOR);
  m.cc_minor = (int32_t)kiln_load_u32(h + H_CC_MINOR);
  m.cuda_runtime_version = (int32_t)kiln_load_u32(h + H_CUDA);
  parser ps = {.sec = &sec, .borrow = borrow_weights ? 1 : 0};
  kiln_rd_init(&ps.r, sec.meta, sec.meta_size);
  kiln_graph gr;
  kiln_graph_init(&gr);
  gr.target = m.target;
  kiln_status s = read_meta_strings(&ps, &m);
  if (s == KILN_OK) s = read_graph(&ps, &gr);
  if (s == KILN_OK) s = kiln_engine_validate_graph(&gr);
  if (s != KILN_OK) {
    kiln_graph_free(&gr);
    kiln_engine_meta_free(&m);
    return s;
  }
  *g = gr;
  *meta = m;
  return KILN_OK;
}

void kiln_engine_meta_free(kiln_engine_meta *meta) {
  if (!meta) return;
  free(meta->kernel_manifest);
  meta->kernel_manifest = NULL;
}
