/* src/runtime/engine.c - loading an engine file: parse and validate (engine_format.c), check the
 * target GPU, instantiate plugins from the registry, and place the weights on the device, or,
 * with weight streaming, keep them in (pinned) host memory and plan how contexts stream them
 * (wstream.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/round.h"
#include "kiln/builder.h"
#include "runtime/runtime_internal.h"

#ifdef KILN_HAVE_CUDA
#include "backends/cuda/cuda_ops.h"
#endif

kiln_engine_load_params kiln_engine_default_load_params(void) {
  kiln_engine_load_params p;
  memset(&p, 0, sizeof p);
  return p;
}

void kiln_engine_destroy(kiln_engine *e) {
  if (!e) return;
  kiln_graph_free(&e->g); /* destroys plugin instances; weights are borrowed */
  kiln_engine_meta_free(&e->meta);
#ifdef KILN_HAVE_CUDA
  if (e->device_weights) kiln_cuda_free(e->device_weights);
  if (e->host_weights) kiln_cuda_host_free(e->host_weights);
  if (e->cuda) kiln_cuda_ctx_destroy(e->cuda);
#endif
  kiln_wstream_free(&e->ws);
  free(e->weights);
  free(e->io);
  if (e->map_handle) kiln_file_unmap(e->map_handle);
  free(e->owned_image);
  free(e);
}

static kiln_status check_device(kiln_engine *e, const kiln_engine_load_params *p) {
  if (e->exec == KILN_TARGET_CPU) return KILN_OK;
#ifdef KILN_HAVE_CUDA
  kiln_cuda_ctx *cu = NULL;
  kiln_status s = kiln_cuda_ctx_create(p->device, &cu);
  if (s != KILN_OK)
    return kiln_error_context(s, "this engine runs on a GPU (built for %s, sm_%d%d): ", e->meta.gpu_name, e->meta.cc_major,
                              e->meta.cc_minor);
  e->cuda = cu;
  const kiln_cuda_device_info *info = kiln_cuda_ctx_info(cu);
  if (info->cc_major != e->meta.cc_major || info->cc_minor != e->meta.cc_minor)
    return kiln_error(KILN_ERR_WRONG_DEVICE,
                      "the engine was built for sm_%d%d (%s) but GPU %d is sm_%d%d (%s); rebuild the engine on this GPU "
                      "(kiln build ... on this machine)",
                      e->meta.cc_major, e->meta.cc_minor, e->meta.gpu_name, p->device, info->cc_major, info->cc_minor,
                      info->name);
  return KILN_OK;
#else
  (void)p;
  return kiln_error(KILN_ERR_UNSUPPORTED,
                    "this engine was built for a GPU (%s, sm_%d%d) but this kiln has no CUDA backend; rebuild kiln with "
                    "the CUDA toolkit, or build the engine with --target cpu",
                    e->meta.gpu_name, e->meta.cc_major, e->meta.cc_minor);
#endif
}

static kiln_status load_plugins(kiln_engine *e, kiln_plugin_registry *reg) {
  for (int32_t i = 0; i < e->g.n_plugins; i++) {
    kiln_plugin_def *pd = &e->g.plugins[i];
    pd->creator = kiln_plugin_registry_find(reg, pd->name, pd->version);
    if (!pd->creator)
      return kiln_error(KILN_ERR_PLUGIN,
                        "plugin \"%s\" version %d is not registered; load the library that provides it (kiln run --plugins "
                        "LIB.so, or kiln_plugin_registry_load) before loading this engine",
                        pd->name, pd->version);
    kiln_status s = pd->creator->deserialize(pd->data, pd->size, &pd->state);
    if (s != KILN_OK)
      return kiln_error_context(s, "plugin \"%s\" v%d could not read its data from the engine: ", pd->name, pd->version);
  }
  return KILN_OK;
}

/* Weight streaming: the schedule for a ring of `ring` bytes, and the constants where contexts copy
 * them from: in place for a CPU engine (the image), in pinned host memory for a CUDA engine (so
 * copies are asynchronous). No device memory is held for them. */
static kiln_status stream_weights(kiln_engine *e, size_t ring) {
  KILN_TRY(kiln_wstream_plan(&e->g, ring, &e->ws));
  e->weight_bytes = 0;
  if (e->exec == KILN_TARGET_CPU) {
    for (int32_t i = 0; i < e->g.n_tensors; i++)
      if (e->g.tensors[i].kind == KILN_TENSOR_CONSTANT) e->weights[i] = e->g.tensors[i].data;
    return KILN_OK;
  }
#ifdef KILN_HAVE_CUDA
  size_t total = 0;
  for (int32_t i = 0; i < e->g.n_tensors; i++)
    if (e->g.tensors[i].kind == KILN_TENSOR_CONSTANT) total += kiln_round_up(e->g.tensors[i].bytes, 256);
  kiln_status s = kiln_cuda_host_alloc(&e->host_weights, total ? total : 1);
  if (s != KILN_OK)
    return kiln_error_context(s, "weight streaming: cannot pin %zu bytes of host memory for the weights: ", total);
  size_t off = 0;
  for (int32_t i = 0; i < e->g.n_tensors; i++) {
    const kiln_tensor_def *t = &e->g.tensors[i];
    if (t->kind != KILN_TENSOR_CONSTANT) continue;
    e->weights[i] = (char *)e->host_weights + off;
    if (t->bytes) memcpy(e->weights[i], t->data, t->bytes);
    off += kiln_round_up(t->bytes, 256);
  }
  return KILN_OK;
#else
  return kiln_error(KILN_ERR_INTERNAL, "CUDA engine without CUDA");
#endif
}

static kiln_status place_weights(kiln_engine *e, size_t stream_bytes) {
  e->weights = calloc((size_t)e->g.n_tensors + 1, sizeof *e->weights);
  if (!e->weights) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  if (stream_bytes) return stream_weights(e, stream_bytes);
  size_t total = 0;
  for (int32_t i = 0; i < e->g.n_tensors; i++)
    if (e->g.tensors[i].kind == KILN_TENSOR_CONSTANT) total += kiln_round_up(e->g.tensors[i].bytes, 256);
  e->weight_bytes = total;
  if (e->exec == KILN_TARGET_CPU) {
    for (int32_t i = 0; i < e->g.n_tensors; i++)
      if (e->g.tensors[i].kind == KILN_TENSOR_CONSTANT) e->weights[i] = e->g.tensors[i].data;
    return KILN_OK;
  }
#ifdef KILN_HAVE_CUDA
  KILN_TRY(kiln_cuda_malloc(&e->device_weights, total ? total : 1));
  size_t off = 0;
  for (int32_t i = 0; i < e->g.n_tensors; i++) {
    const kiln_tensor_def *t = &e->g.tensors[i];
    if (t->kind != KILN_TENSOR_CONSTANT) continue;
    e->weights[i] = (char *)e->device_weights + off;
    KILN_TRY(kiln_cuda_memcpy_h2d(e->weights[i], t->data, t->bytes, NULL));
    off += kiln_round_up(t->bytes, 256);
  }
  return kiln_cuda_stream_sync(NULL);
#else
  return kiln_error(KILN_ERR_INTERNAL, "CUDA engine without CUDA");
#endif
}

static kiln_status index_io(kiln_engine *e) {
  e->io = calloc((size_t)e->g.n_tensors + 1, sizeof *e->io);
  if (!e->io) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  for (int32_t i = 0; i < e->g.n_tensors; i++)
    if (e->g.tensors[i].kind == KILN_TENSOR_INPUT) e->io[e->n_io++] = i;
  e->n_inputs = e->n_io;
  for (int32_t i = 0; i < e->g.n_tensors; i++)
    if (e->g.tensors[i].is_output) e->io[e->n_io++] = i;
  return KILN_OK;
}

static kiln_status finish_load(kiln_engine *e, const kiln_engine_load_params *p) {
  KILN_TRY(kiln_engine_parse(e->image, e->image_size, 1, &e->g, &e->meta));
  KILN_TRY(index_io(e));
  e->exec = p->run_on_cpu ? KILN_TARGET_CPU : e->meta.target;
  if (p->skip_device_check) return KILN_OK;
  e->device = p->device;
  KILN_TRY(check_device(e, p));
  KILN_TRY(load_plugins(e, p->plugins ? p->plugins : kiln_plugin_registry_default()));
  return place_weights(e, p->weight_stream_bytes);
}

kiln_status kiln_engine_load(const char *path, const kiln_engine_load_params *params, kiln_engine **out) {
  kiln_engine_load_params p = params ? *params : kiln_engine_default_load_params();
  if (!path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_engine_load: NULL path or output");
  kiln_engine *e = calloc(1, sizeof *e);
  if (!e) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  kiln_graph_init(&e->g);
  kiln_status s = kiln_file_map(path, &e->image, &e->image_size, &e->map_handle);
  if (s == KILN_OK) s = finish_load(e, &p);
  if (s != KILN_OK) {
    kiln_engine_destroy(e);
    return kiln_error_context(s, "loading engine %s: ", path);
  }
  *out = e;
  return KILN_OK;
}

kiln_status kiln_engine_load_memory(const void *image, size_t size, const kiln_engine_load_params *params,
                                    kiln_engine **out) {
  kiln_engine_load_params p = params ? *params : kiln_engine_default_load_params();
  if (!image || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_engine_load_memory: NULL image or output");
  kiln_engine *e = calloc(1, sizeof *e);
  if (!e) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  kiln_graph_init(&e->g);
  e->owned_image = malloc(size ? size : 1);
  if (!e->owned_image) {
    free(e);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory copying an engine image of %zu bytes", size);
  }
  memcpy(e->owned_image, image, size);
  e->image = e->owned_image;
  e->image_size = size;
  kiln_status s = finish_load(e, &p);
  if (s != KILN_OK) {
    kiln_engine_destroy(e);
    return s;
  }
  *out = e;
  return KILN_OK;
}

kiln_target kiln_engine_target(const kiln_engine *e) { return e->meta.target; }
kiln_dtype kiln_engine_precision(const kiln_engine *e) { return e->g.precision; }
int32_t kiln_engine_num_io(const kiln_engine *e) { return e->n_io; }
int32_t kiln_engine_num_profiles(const kiln_engine *e) { return e->g.n_profiles; }
size_t kiln_engine_weight_bytes(const kiln_engine *e) { return e->weight_bytes; }
kiln_context_layout kiln_context_layout_of(const kiln_engine *e) {
  kiln_context_layout l;
  l.workspace = kiln_round_up(e->g.arena_bytes, KILN_CONTEXT_ALIGN);
  l.ring = kiln_round_up(l.workspace + e->g.workspace_bytes, KILN_CONTEXT_ALIGN);
  l.bytes = l.ring + e->ws.ring_bytes;
  if (l.bytes == 0) l.bytes = 1;
  return l;
}

size_t kiln_engine_context_bytes(const kiln_engine *e) { return e ? kiln_context_layout_of(e).bytes : 0; }
size_t kiln_engine_streamed_bytes(const kiln_engine *e) { return e ? e->ws.streamed_bytes : 0; }
size_t kiln_engine_stream_min_bytes(const kiln_engine *e) { return e ? kiln_wstream_min_bytes(&e->g) : 0; }

kiln_status kiln_engine_io(const kiln_engine *e, int32_t index, kiln_io_info *info) {
  if (!e || !info || index < 0 || index >= e->n_io)
    return kiln_error(KILN_ERR_INVALID_ARG, "engine I/O index %d out of range (the engine has %d)", index, e ? e->n_io : 0);
  const kiln_tensor_def *t = &e->g.tensors[e->io[index]];
  info->name = t->name;
  info->is_input = index < e->n_inputs;
  info->dtype = t->dtype;
  info->dims = t->dims;
  if (info->is_input) return KILN_OK;
  /* outputs: inferred at profile 0's min and max shapes; -1 where they differ */
  const kiln_profile_def *p = &e->g.profiles[0];
  kiln_dims *dmin = calloc((size_t)e->g.n_tensors * 2 + 1, sizeof *dmin);
  if (!dmin) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  kiln_dims *dmax = dmin + e->g.n_tensors;
  kiln_status s = kiln_graph_infer_shapes(&e->g, p->min, dmin);
  if (s == KILN_OK) s = kiln_graph_infer_shapes(&e->g, p->max, dmax);
  if (s == KILN_OK) {
    int32_t id = e->io[index];
    info->dims = dmin[id];
    for (int32_t j = 0; j < info->dims.rank; j++)
      if (dmin[id].d[j] != dmax[id].d[j]) info->dims.d[j] = -1;
  }
  free(dmin);
  return s;
}

kiln_status kiln_engine_profile_dims(const kiln_engine *e, int32_t profile, const char *name, kiln_dims *min,
                                     kiln_dims *opt, kiln_dims *max) {
  if (!e || !name || profile < 0 || profile >= e->g.n_profiles)
    return kiln_error(KILN_ERR_INVALID_ARG, "profile %d does not exist (the engine has %d)", profile, e ? e->g.n_profiles : 0);
  const kiln_profile_def *p = &e->g.profiles[profile];
  for (int32_t i = 0; i < p->n; i++)
    if (strcmp(e->g.tensors[p->tensor[i]].name, name) == 0) {
      if (min) *min = p->min[i];
      if (opt) *opt = p->opt[i];
      if (max) *max = p->max[i];
      return KILN_OK;
    }
  return kiln_error(KILN_ERR_NOT_FOUND, "\"%s\" is not an input of this engine", name);
}
