/* src/builder/builder.c - kiln_build(): network -> engine image. The passes live in passes.c,
 * memplan.c and tactics.c; the file format in runtime/engine_format.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "builder/builder_internal.h"
#include "core/error.h"
#include "kiln/builder.h"
#include "net/network_internal.h"
#include "runtime/engine_format.h"

#ifdef KILN_HAVE_CUDA
#include "backends/cuda/cuda_ops.h"
#endif

kiln_build_params kiln_build_default_params(void) {
  kiln_build_params p;
  memset(&p, 0, sizeof p);
#ifdef KILN_HAVE_CUDA
  p.target = KILN_TARGET_CUDA;
#else
  p.target = KILN_TARGET_CPU;
#endif
  p.precision = KILN_DTYPE_FP32;
  p.enable_fusion = 1;
  p.timing_iterations = 10;
  p.max_workspace_bytes = (size_t)32 << 20;
  return p;
}

void kiln_free(void *p) { free(p); }

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Largest workspace any layer needs at any profile point (besides matmul tactics). */
static kiln_status size_workspaces(kiln_graph *g, const kiln_shape_set *s) {
  for (int32_t li = 0; li < g->n_layers; li++) {
    const kiln_layer_def *l = &g->layers[li];
    for (int32_t p = 0; p < s->n_points; p++) {
      const kiln_dims *d = s->dims + (size_t)p * g->n_tensors;
      kiln_dims in[KILN_MAX_LAYER_IO];
      for (int32_t j = 0; j < l->n_in; j++) in[j] = d[l->in[j]];
      size_t ws = 0;
      if (l->op == KILN_OP_PLUGIN) {
        const kiln_plugin_def *pd = &g->plugins[l->p.plugin];
        kiln_plugin_desc din[KILN_MAX_LAYER_IO];
        for (int32_t j = 0; j < l->n_in; j++) din[j].dtype = g->tensors[l->in[j]].dtype, din[j].shape = in[j];
        if (!pd->creator->supports_format(pd->state, g->target, l->n_in, din))
          return kiln_error(KILN_ERR_UNSUPPORTED, "layer %s: plugin %s v%d does not support these inputs on the %s target", l->name,
                            pd->name, pd->version, g->target == KILN_TARGET_CUDA ? "cuda" : "cpu");
        if (pd->creator->workspace_size) ws = pd->creator->workspace_size(pd->state, g->target, l->n_in, din);
      }
#ifdef KILN_HAVE_CUDA
      else if (g->target == KILN_TARGET_CUDA) {
        ws = kiln_cuda_layer_workspace(g, l, in);
      }
#endif
      if (ws > g->workspace_bytes) g->workspace_bytes = ws;
    }
  }
  return KILN_OK;
}

static kiln_status fill_meta(const kiln_build_params *p, kiln_engine_meta *meta) {
  memset(meta, 0, sizeof *meta);
  meta->target = p->target;
  snprintf(meta->kiln_version, sizeof meta->kiln_version, "%s", KILN_VERSION_STRING);
  snprintf(meta->gpu_name, sizeof meta->gpu_name, "cpu");
#ifdef KILN_HAVE_CUDA
  if (p->target == KILN_TARGET_CUDA) {
    kiln_cuda_ctx *cu = NULL;
    KILN_TRY(kiln_cuda_ctx_create(p->device, &cu));
    const kiln_cuda_device_info *info = kiln_cuda_ctx_info(cu);
    meta->cc_major = info->cc_major;
    meta->cc_minor = info->cc_minor;
    meta->cuda_runtime_version = info->runtime_version;
    snprintf(meta->gpu_name, sizeof meta->gpu_name, "%.127s", info->name);
    kiln_cuda_ctx_destroy(cu);
  }
#endif
  return KILN_OK;
}

static void progress(const kiln_build_params *p, const char *stage, int64_t done, int64_t total) {
  if (p->progress) p->progress(stage, done, total, p->progress_user_data);
}

static kiln_status build_graph(const kiln_network *net, const kiln_build_params *p, kiln_graph *g, kiln_build_report *r) {
  kiln_shape_set s = {0};
  KILN_TRY(kiln_graph_clone(kiln_network_graph(net), g));
  /* plugin instances: the network's are not shared; recreate from their serialized bytes */
  for (int32_t i = 0; i < g->n_plugins; i++) {
    kiln_plugin_def *pd = &g->plugins[i];
    KILN_TRY(pd->creator->deserialize(pd->data, pd->size, &pd->state) == KILN_OK
                 ? KILN_OK
                 : kiln_error_context(KILN_ERR_PLUGIN, "plugin %s v%d: ", pd->name, pd->version));
  }
  g->target = p->target;
  progress(p, "checking", 0, 1);
  KILN_TRY(kiln_builder_check_profiles(g));
  KILN_TRY(kiln_builder_infer_all(g, &s)); /* validates every profile before anything else */
  kiln_shape_set_free(&s);
  KILN_TRY(kiln_builder_set_precision(g, p->precision));
  KILN_TRY(kiln_builder_compact(g));
  if (p->enable_fusion) {
    r->num_fused = kiln_builder_fuse(g);
    KILN_TRY(kiln_builder_compact(g));
  }
  r->num_layers = g->n_layers;
  KILN_TRY(kiln_builder_infer_all(g, &s));
  kiln_status st = size_workspaces(g, &s);
  if (st == KILN_OK) st = kiln_builder_choose_tactics(g, &s, p, r);
  if (st == KILN_OK) st = kiln_builder_plan_memory(g, &s, &r->activation_naive_bytes);
  kiln_shape_set_free(&s);
  return st;
}

kiln_status kiln_build(const kiln_network *net, const kiln_build_params *params, void **image, size_t *size,
                       kiln_build_report *report) {
  kiln_build_params p = params ? *params : kiln_build_default_params();
  kiln_build_report r;
  kiln_graph g;
  kiln_engine_meta meta;
  if (!net || !image || !size) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_build: NULL network or output");
  memset(&r, 0, sizeof r);
  kiln_graph_init(&g);
  memset(&meta, 0, sizeof meta);
  double t0 = now_seconds();
  kiln_status st = fill_meta(&p, &meta);
  if (st == KILN_OK) st = build_graph(net, &p, &g, &r);
  void *img = NULL;
  size_t n = 0;
  if (st == KILN_OK) {
    progress(&p, "writing", 0, 1);
    st = kiln_engine_serialize(&g, &meta, &img, &n);
  }
  if (st == KILN_OK) {
    for (int32_t i = 0; i < g.n_tensors; i++)
      if (g.tensors[i].kind == KILN_TENSOR_CONSTANT) r.weight_bytes += g.tensors[i].bytes;
    r.activation_bytes = g.arena_bytes;
    r.workspace_bytes = g.workspace_bytes;
    r.build_seconds = now_seconds() - t0;
    *image = img;
    *size = n;
    if (report) *report = r;
  }
  kiln_graph_free(&g);
  kiln_engine_meta_free(&meta);
  return st;
}

kiln_status kiln_build_to_file(const kiln_network *net, const kiln_build_params *params, const char *path,
                               kiln_build_report *report) {
  void *img = NULL;
  size_t n = 0;
  if (!path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_build_to_file: path is NULL");
  KILN_TRY(kiln_build(net, params, &img, &n, report));
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  kiln_status st = KILN_OK;
  if (!f) st = kiln_error(KILN_ERR_IO, "cannot write %s: check that the folder exists and is writable", tmp);
  if (st == KILN_OK && fwrite(img, 1, n, f) != n) st = kiln_error(KILN_ERR_IO, "writing %s failed (disk full?)", tmp);
  if (f && fclose(f) != 0 && st == KILN_OK) st = kiln_error(KILN_ERR_IO, "writing %s failed (disk full?)", tmp);
  if (st == KILN_OK && rename(tmp, path) != 0) st = kiln_error(KILN_ERR_IO, "cannot rename %s to %s", tmp, path);
  if (st != KILN_OK) remove(tmp);
  free(img);
  return st;
}
