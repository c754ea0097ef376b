/* src/builder/tactics.c - choosing an implementation (tactic) per layer by timing.
 *
 * For a CUDA target, every matmul's candidates (cuBLASLt heuristic algorithms and kiln's own
 * kernels, from the CUDA backend; for a weight-only quantized matmul, kiln's small-M kernels and
 * cuBLASLt on the dequantized weights) and every plugin's tactics are timed at the profile's opt shape
 * on the GPU with random inputs, and each is run once at the min and max shapes; a candidate that
 * fails anywhere is skipped with a log line. Matmuls are timed with cold weights, as a decoding
 * step reads them: the timed calls cycle through copies of the layer's constants (weights,
 * scales, bias, layernorm parameters) that together exceed twice the GPU's L2 cache, so that a
 * small-M tactic that only looks fast with its weights in L2 does not win. The fastest survivor
 * wins. Choices are kept in the timing cache (keyed by GPU, driver, CUDA and kiln version) so rebuilds skip the timing.
 * CPU targets have one implementation per op: nothing to choose.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder/builder_internal.h"
#include "builder/timing_cache.h"
#include "core/error.h"
#include "core/round.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"

#define KILN_MAX_CANDIDATES 20

typedef struct timing_env {
  kiln_cuda_ctx *cu;
  cudaStream_t stream;
  cudaEvent_t start, stop;
  void *workspace;
  size_t workspace_bytes;
  int32_t iterations;
} timing_env;

/* Device buffer of `bytes` filled with uniform random values of dtype (floats in [-1, 1)). */
static kiln_status random_device(void **out, kiln_dtype dtype, int64_t n, uint64_t seed) {
  size_t bytes = kiln_dtype_bytes(dtype, n);
  void *host = malloc(bytes ? bytes : 1);
  if (!host) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  uint64_t x = seed * 2654435761u + 1;
  for (int64_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    float v = (float)((x >> 40) & 0xffffff) / 8388608.0f - 1.0f;
    if (dtype == KILN_DTYPE_FP32) ((float *)host)[i] = v;
    else if (dtype == KILN_DTYPE_FP16) ((uint16_t *)host)[i] = kiln_fp32_to_fp16(v);
    else if (dtype == KILN_DTYPE_BF16) ((uint16_t *)host)[i] = kiln_fp32_to_bf16(v);
    else if (dtype == KILN_DTYPE_INT32) ((int32_t *)host)[i] = (int32_t)((x >> 33) % 7);
  }
  kiln_status s = kiln_cuda_malloc(out, bytes ? bytes : 1);
  if (s == KILN_OK) s = kiln_cuda_memcpy_h2d(*out, host, bytes, NULL);
  free(host);
  return s;
}

static int64_t rows_of(const kiln_dims *d) {
  int64_t m = 1;
  for (int32_t i = 0; i + 1 < d->rank; i++) m *= d->d[i];
  return m;
}

#define MM_MAX_COPIES 16

/* A matmul or matmul_wq layer's operands on the device: x [m_max, K] random, the constants
 * (weights, scales, bias) copied `copies` times (copy c of input j at dev[j] + c * stride[j]),
 * y [m_max, N]. */
typedef struct mm_bufs {
  void *dev[KILN_MAX_LAYER_IO + 1]; /* per input, then y */
  size_t stride[KILN_MAX_LAYER_IO]; /* bytes between copies of a constant input; 0: one copy */
  int32_t copies;
} mm_bufs;

/* Copies of the constants whose bytes together exceed twice the L2 cache (at most MM_MAX_COPIES). */
static int32_t cold_copies(const kiln_graph *g, const kiln_layer_def *l) {
  int dev = 0, l2 = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess)
    l2 = 64 << 20;
  size_t bytes = 0;
  for (int32_t j = 1; j < l->n_in; j++) {
    const kiln_tensor_def *t = &g->tensors[l->in[j]];
    if (t->kind == KILN_TENSOR_CONSTANT && t->data) bytes += kiln_round_up(t->bytes, 256);
  }
  if (!bytes) return 1;
  size_t c = (2 * (size_t)l2 + bytes - 1) / bytes;
  return c < 1 ? 1 : c > MM_MAX_COPIES ? MM_MAX_COPIES : (int32_t)c;
}

static void mm_bufs_free(mm_bufs *b) {
  for (int32_t i = 0; i <= KILN_MAX_LAYER_IO; i++) kiln_cuda_free(b->dev[i]);
  memset(b, 0, sizeof *b);
}

static kiln_status mm_bufs_alloc(const kiln_graph *g, const kiln_layer_def *l, int64_t m_max, mm_bufs *b) {
  const kiln_tensor_def *w = &g->tensors[l->in[1]];
  int64_t n = w->dims.d[0], k = w->dims.d[1];
  kiln_matmul_io io;
  memset(b, 0, sizeof *b);
  KILN_TRY(kiln_matmul_io_of(l, &io));
  b->copies = cold_copies(g, l);
  kiln_status st = random_device(&b->dev[0], g->precision, m_max * k, 1);
  for (int32_t j = 1; j < l->n_in && st == KILN_OK; j++) {
    const kiln_tensor_def *t = &g->tensors[l->in[j]];
    if (j == io.residual) {
      st = random_device(&b->dev[j], t->dtype, m_max * n, 1 + (uint64_t)j);
    } else if (t->kind == KILN_TENSOR_CONSTANT && t->data) {
      b->stride[j] = kiln_round_up(t->bytes ? t->bytes : 1, 256);
      st = kiln_cuda_malloc(&b->dev[j], b->stride[j] * (size_t)b->copies);
      for (int32_t c = 0; c < b->copies && st == KILN_OK; c++)
        st = kiln_cuda_memcpy_h2d((char *)b->dev[j] + b->stride[j] * (size_t)c, t->data, t->bytes, NULL);
    } else {
      st = random_device(&b->dev[j], t->dtype, kiln_dims_count(&t->dims), 1 + (uint64_t)j);
    }
  }
  if (st == KILN_OK) st = kiln_cuda_malloc(&b->dev[KILN_MAX_LAYER_IO], kiln_dtype_bytes(g->precision, m_max * n) + 1);
  if (st != KILN_OK) mm_bufs_free(b);
  return st;
}

/* Point the constant inputs at copy c. */
static void mm_use_copy(const mm_bufs *b, int32_t n_in, kiln_tensor *in, int32_t c) {
  for (int32_t j = 1; j < n_in; j++)
    if (b->stride[j]) in[j].data = (char *)b->dev[j] + b->stride[j] * (size_t)(c % b->copies);
}

/* Run layer l with tactic t for M rows (through the backend's layer dispatch, as the runtime
 * does); time it if `ms` is not NULL, cycling through the constants' copies. */
static kiln_status run_matmul(timing_env *env, const kiln_tactic *t, const kiln_graph *g, const kiln_layer_def *l,
                              const mm_bufs *b, int64_t m, float *ms) {
  const kiln_tensor_def *w = &g->tensors[l->in[1]];
  kiln_layer_def tl = *l;
  kiln_tensor in[KILN_MAX_LAYER_IO], y;
  kiln_dims xd = {2, {m, w->dims.d[1]}}, yd = {2, {m, w->dims.d[0]}};
  kiln_matmul_io io;
  KILN_TRY(kiln_matmul_io_of(l, &io));
  tl.tactic = *t;
  in[0] = kiln_tensor_contiguous(b->dev[0], g->precision, &xd);
  for (int32_t j = 1; j < l->n_in; j++)
    in[j] = kiln_tensor_contiguous(b->dev[j], g->tensors[l->in[j]].dtype, j == io.residual ? &yd : &g->tensors[l->in[j]].dims);
  y = kiln_tensor_contiguous(b->dev[KILN_MAX_LAYER_IO], g->precision, &yd);
  if (!ms) {
    KILN_TRY(kiln_cuda_run_layer(env->cu, g, &tl, in, &y, env->workspace, env->workspace_bytes, env->stream));
    return kiln_cuda_stream_sync(env->stream);
  }
  for (int i = 0; i < 2; i++) {
    mm_use_copy(b, l->n_in, in, i + 1);
    KILN_TRY(kiln_cuda_run_layer(env->cu, g, &tl, in, &y, env->workspace, env->workspace_bytes, env->stream));
  }
  cudaEventRecord(env->start, env->stream);
  for (int32_t i = 0; i < env->iterations; i++) {
    mm_use_copy(b, l->n_in, in, i + 3);
    KILN_TRY(kiln_cuda_run_layer(env->cu, g, &tl, in, &y, env->workspace, env->workspace_bytes, env->stream));
  }
  cudaEventRecord(env->stop, env->stream);
  if (cudaEventSynchronize(env->stop) != cudaSuccess) return kiln_error(KILN_ERR_CUDA, "timing a matmul tactic failed");
  float total = 0;
  cudaEventElapsedTime(&total, env->start, env->stop);
  *ms = total / (float)env->iterations;
  return KILN_OK;
}

static void matmul_key(const kiln_graph *g, const kiln_layer_def *l, int64_t m_opt, char *key, size_t n) {
  const kiln_tensor_def *w = &g->tensors[l->in[1]];
  kiln_matmul_io io;
  int32_t has_bias = kiln_matmul_io_of(l, &io) == KILN_OK && io.bias >= 0;
  int used = snprintf(key, n, "%s|cold|m=%lld|n=%lld|k=%lld|%s|bias=%d|act=%d|fuse=%d", kiln_op_name(l->op),
                      (long long)m_opt, (long long)w->dims.d[0], (long long)w->dims.d[1], kiln_dtype_name(g->precision),
                      has_bias, l->p.activation, l->p.fuse);
  if (l->op == KILN_OP_MATMUL_WQ && used > 0 && (size_t)used < n)
    snprintf(key + used, n - (size_t)used, "|%s|group=%d", kiln_dtype_name(w->dtype), l->p.group);
}

/* matmul and matmul_wq: candidates from the backend, timed at profile 0's opt M, run at the
 * smallest and largest M of every profile. */
static kiln_status choose_matmul(timing_env *env, kiln_graph *g, kiln_layer_def *l, const kiln_shape_set *s,
                                 kiln_timing_cache *cache, kiln_build_report *r, size_t max_ws) {
  int64_t m_min = INT64_MAX, m_max = 0, m_opt = 0;
  for (int32_t p = 0; p < s->n_points; p++) {
    int64_t m = rows_of(&s->dims[(size_t)p * g->n_tensors + l->in[0]]);
    if (m < m_min) m_min = m;
    if (m > m_max) m_max = m;
    if (p == 1) m_opt = m; /* profile 0's opt point */
  }
  char key[256];
  matmul_key(g, l, m_opt, key, sizeof key);
  if (cache && kiln_timing_cache_lookup(cache, key, &l->tactic)) {
    r->tactics_cached++;
    return KILN_OK;
  }
  const kiln_tensor_def *w = &g->tensors[l->in[1]];
  int64_t n = w->dims.d[0], k = w->dims.d[1];
  kiln_tactic cand[KILN_MAX_CANDIDATES];
  int32_t nc;
  kiln_matmul_io io;
  KILN_TRY(kiln_matmul_io_of(l, &io));
  if (l->op == KILN_OP_MATMUL_WQ)
    nc = kiln_cuda_matmul_wq_candidates(env->cu, m_opt ? m_opt : 1, n, k, g->precision, w->dtype, l->p.group,
                                        io.bias >= 0, (kiln_activation)l->p.activation, max_ws, cand,
                                        KILN_MAX_CANDIDATES);
  else
    nc = kiln_cuda_matmul_candidates(env->cu, m_opt ? m_opt : 1, n, k, g->precision, io.bias >= 0,
                                     (kiln_activation)l->p.activation, max_ws, cand, KILN_MAX_CANDIDATES);
  if (nc <= 0 || m_max == 0) { /* nothing to time (or an always-empty layer): the default tactic */
    memset(&l->tactic, 0, sizeof l->tactic);
    return KILN_OK;
  }
  mm_bufs bufs;
  kiln_status st = mm_bufs_alloc(g, l, m_max, &bufs);
  /* the layernorm prologue of the non-skinny tactics takes its own workspace in front */
  size_t ln = io.gamma >= 0 ? kiln_cuda_matmul_ln_bytes(m_max, k, g->precision) : 0;
  timing_env lenv = *env;
  if (st == KILN_OK && ln > 0) {
    lenv.workspace_bytes = env->workspace_bytes + ln;
    st = kiln_cuda_malloc(&lenv.workspace, lenv.workspace_bytes);
    if (st != KILN_OK) lenv.workspace = NULL;
  }
  int32_t best = -1;
  float best_ms = 0;
  for (int32_t i = 0; st == KILN_OK && i < nc; i++) {
    float ms = 0;
    kiln_status e = KILN_OK;
    if (cand[i].workspace > env->workspace_bytes) e = kiln_error(KILN_ERR_UNSUPPORTED, "needs %zu bytes of workspace", cand[i].workspace);
    if (e == KILN_OK && m_opt > 0) e = run_matmul(&lenv, &cand[i], g, l, &bufs, m_opt, &ms);
    if (e == KILN_OK && m_min > 0) e = run_matmul(&lenv, &cand[i], g, l, &bufs, m_min, NULL);
    if (e == KILN_OK) e = run_matmul(&lenv, &cand[i], g, l, &bufs, m_max, NULL);
    r->tactics_timed++;
    if (e != KILN_OK) {
      kiln_log(KILN_LOG_INFO, "layer %s: tactic %d (kind %d) skipped: %s", l->name, i, cand[i].kind, kiln_last_error());
      cudaGetLastError(); /* clear a sticky launch error from the failed candidate */
      continue;
    }
    cand[i].time_ms = ms;
    kiln_log(KILN_LOG_VERBOSE, "layer %s: tactic %d (kind %d) %.4f ms", l->name, i, cand[i].kind, (double)ms);
    if (best < 0 || ms < best_ms) best = i, best_ms = ms;
  }
  mm_bufs_free(&bufs);
  if (ln > 0) kiln_cuda_free(lenv.workspace);
  if (st != KILN_OK) return kiln_error_context(st, "timing layer %s: ", l->name);
  if (best < 0)
    return kiln_error(KILN_ERR_UNSUPPORTED, "layer %s: none of %d matmul tactics ran (see the log lines above; kiln -v)", l->name, nc);
  l->tactic = cand[best];
  if (cache) kiln_timing_cache_insert(cache, key, &l->tactic);
  return KILN_OK;
}

/* Plugins: time each valid tactic at the opt shapes. */
static kiln_status choose_plugin(timing_env *env, kiln_graph *g, kiln_layer_def *l, const kiln_shape_set *s,
                                 kiln_timing_cache *cache, kiln_build_report *r) {
  kiln_plugin_def *pd = &g->plugins[l->p.plugin];
  const kiln_plugin_creator *c = pd->creator;
  int32_t nt = c->num_tactics ? c->num_tactics(pd->state, KILN_TARGET_CUDA) : 1;
  memset(&l->tactic, 0, sizeof l->tactic);
  l->tactic.kind = KILN_TACTIC_PLUGIN;
  if (nt <= 1) return KILN_OK;
  const kiln_dims *opt = &s->dims[(size_t)1 * g->n_tensors];
  kiln_plugin_desc din[KILN_MAX_LAYER_IO];
  char key[512];
  int used = snprintf(key, sizeof key, "plugin|%s|v%d|%s", pd->name, pd->version, kiln_dtype_name(g->precision));
  for (int32_t j = 0; j < l->n_in; j++) {
    char d[96];
    din[j].dtype = g->tensors[l->in[j]].dtype;
    din[j].shape = opt[l->in[j]];
    if (used < (int)sizeof key) used += snprintf(key + used, sizeof key - (size_t)used, "|%s", kiln_dims_str(&din[j].shape, d, sizeof d));
  }
  /* the plugin's serialized fields distinguish e.g. causal from non-causal */
  for (size_t b = 0; b < pd->size && used + 3 < (int)sizeof key; b++)
    used += snprintf(key + used, sizeof key - (size_t)used, "%02x", pd->data[b]);
  kiln_tactic cached;
  if (cache && kiln_timing_cache_lookup(cache, key, &cached) && cached.index < nt) {
    l->tactic = cached;
    r->tactics_cached++;
    return KILN_OK;
  }
  kiln_tensor in[KILN_MAX_LAYER_IO], out[KILN_MAX_LAYER_IO];
  void *bufs[2 * KILN_MAX_LAYER_IO] = {0};
  int32_t nb = 0;
  kiln_status st = KILN_OK;
  for (int32_t j = 0; j < l->n_in && st == KILN_OK; j++) {
    const kiln_tensor_def *t = &g->tensors[l->in[j]];
    st = random_device(&bufs[nb], t->dtype, kiln_dims_count(&opt[l->in[j]]), 10 + (uint64_t)j);
    in[j] = kiln_tensor_contiguous(bufs[nb++], t->dtype, &opt[l->in[j]]);
  }
  for (int32_t j = 0; j < l->n_out && st == KILN_OK; j++) {
    const kiln_tensor_def *t = &g->tensors[l->out[j]];
    st = kiln_cuda_malloc(&bufs[nb], kiln_dtype_bytes(t->dtype, kiln_dims_count(&opt[l->out[j]])) + 1);
    out[j] = kiln_tensor_contiguous(bufs[nb++], t->dtype, &opt[l->out[j]]);
  }
  int32_t best = -1;
  float best_ms = 0;
  for (int32_t i = 0; st == KILN_OK && i < nt; i++) {
    if (c->tactic_valid && !c->tactic_valid(pd->state, KILN_TARGET_CUDA, i, l->n_in, din)) {
      kiln_log(KILN_LOG_INFO, "layer %s: plugin tactic %d rejected by the plugin", l->name, i);
      continue;
    }
    kiln_status e = KILN_OK;
    for (int w = 0; w < 2 && e == KILN_OK; w++)
      e = c->enqueue(pd->state, KILN_TARGET_CUDA, i, l->n_in, in, l->n_out, out, env->workspace, env->stream);
    cudaEventRecord(env->start, env->stream);
    for (int32_t it = 0; it < env->iterations && e == KILN_OK; it++)
      e = c->enqueue(pd->state, KILN_TARGET_CUDA, i, l->n_in, in, l->n_out, out, env->workspace, env->stream);
    cudaEventRecord(env->stop, env->stream);
    if (e == KILN_OK && cudaEventSynchronize(env->stop) != cudaSuccess) e = kiln_error(KILN_ERR_CUDA, "launch failed");
    r->tactics_timed++;
    if (e != KILN_OK) {
      kiln_log(KILN_LOG_INFO, "layer %s: plugin tactic %d skipped: %s", l->name, i, kiln_last_error());
      cudaGetLastError();
      continue;
    }
    float total = 0;
    cudaEventElapsedTime(&total, env->start, env->stop);
    float ms = total / (float)env->iterations;
    kiln_log(KILN_LOG_VERBOSE, "layer %s: plugin tactic %d %.4f ms", l->name, i, (double)ms);
    if (best < 0 || ms < best_ms) best = i, best_ms = ms;
  }
  for (int32_t j = 0; j < nb; j++) kiln_cuda_free(bufs[j]);
  if (st != KILN_OK) return kiln_error_context(st, "timing layer %s: ", l->name);
  if (best < 0) return kiln_error(KILN_ERR_UNSUPPORTED, "layer %s: no tactic of plugin %s ran on this GPU", l->name, pd->name);
  l->tactic.index = best;
  l->tactic.time_ms = best_ms;
  if (cache) kiln_timing_cache_insert(cache, key, &l->tactic);
  return KILN_OK;
}

static kiln_status open_cache(const kiln_build_params *p, kiln_cuda_ctx *cu, kiln_timing_cache **out) {
  *out = NULL;
  if (!p->timing_cache) return KILN_OK;
  const kiln_cuda_device_info *info = kiln_cuda_ctx_info(cu);
  kiln_timing_key key;
  memset(&key, 0, sizeof key);
  snprintf(key.gpu_name, sizeof key.gpu_name, "%.127s", info->name);
  key.cc_major = info->cc_major;
  key.cc_minor = info->cc_minor;
  key.driver_version = info->driver_version;
  key.cuda_runtime_version = info->runtime_version;
  snprintf(key.kiln_version, sizeof key.kiln_version, "%s", KILN_VERSION_STRING);
  return kiln_timing_cache_load(p->timing_cache, &key, out);
}

kiln_status kiln_builder_choose_tactics(kiln_graph *g, const kiln_shape_set *s, const kiln_build_params *p,
                                        kiln_build_report *r) {
  if (g->target != KILN_TARGET_CUDA) return KILN_OK;
  timing_env env;
  memset(&env, 0, sizeof env);
  env.iterations = p->timing_iterations > 0 ? p->timing_iterations : 10;
  KILN_TRY(kiln_cuda_ctx_create(p->device, &env.cu));
  kiln_timing_cache *cache = NULL;
  kiln_status st = open_cache(p, env.cu, &cache);
  if (st == KILN_OK && cudaStreamCreate(&env.stream) != cudaSuccess) st = kiln_error(KILN_ERR_CUDA, "cannot create a CUDA stream");
  if (st == KILN_OK && (cudaEventCreate(&env.start) != cudaSuccess || cudaEventCreate(&env.stop) != cudaSuccess))
    st = kiln_error(KILN_ERR_CUDA, "cannot create CUDA events");
  env.workspace_bytes = p->max_workspace_bytes;
  if (st == KILN_OK) st = kiln_cuda_malloc(&env.workspace, env.workspace_bytes ? env.workspace_bytes : 1);
  for (int32_t li = 0; li < g->n_layers && st == KILN_OK; li++) {
    kiln_layer_def *l = &g->layers[li];
    if (p->progress) p->progress("timing tactics", li, g->n_layers, p->progress_user_data);
    if (l->op == KILN_OP_MATMUL || l->op == KILN_OP_MATMUL_WQ) st = choose_matmul(&env, g, l, s, cache, r, p->max_workspace_bytes);
    else if (l->op == KILN_OP_PLUGIN) st = choose_plugin(&env, g, l, s, cache, r);
    if (st == KILN_OK && l->tactic.workspace > g->workspace_bytes) g->workspace_bytes = l->tactic.workspace;
  }
  if (p->progress && st == KILN_OK) p->progress("timing tactics", g->n_layers, g->n_layers, p->progress_user_data);
  if (st == KILN_OK && cache) {
    if (kiln_timing_cache_save(cache, p->timing_cache) != KILN_OK)
      kiln_log(KILN_LOG_WARN, "could not save the timing cache %s: %s", p->timing_cache, kiln_last_error());
  }
  kiln_timing_cache_destroy(cache);
  kiln_cuda_free(env.workspace);
  if (env.start) cudaEventDestroy(env.start);
  if (env.stop) cudaEventDestroy(env.stop);
  if (env.stream) cudaStreamDestroy(env.stream);
  kiln_cuda_ctx_destroy(env.cu);
  return st;
}

#else /* no CUDA */

kiln_status kiln_builder_choose_tactics(kiln_graph *g, const kiln_shape_set *s, const kiln_build_params *p,
                                        kiln_build_report *r) {
  (void)s, (void)p, (void)r;
  if (g->target == KILN_TARGET_CUDA)
    return kiln_error(KILN_ERR_UNSUPPORTED, "this kiln was built without CUDA; build with the CUDA toolkit installed, or use --target cpu");
  return KILN_OK;
}

#endif
