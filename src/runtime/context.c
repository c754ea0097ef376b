/* src/runtime/context.c - execution contexts: input shapes, bindings, activation memory, and
 * running the layers on the engine's backend (optionally through a captured CUDA graph), with
 * weight streaming: the copies of the constants into the context's ring, ahead of the layers, in
 * the order the engine's schedule allows (runtime_internal.h, wstream.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cpu/cpu_ops.h"
#include "core/error.h"
#include "core/round.h"
#include "runtime/runtime_internal.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"
#endif

#define KILN_CONTEXT_GRAPHS 8

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

struct kiln_context {
  kiln_engine *e;
  int32_t profile;
  kiln_dims *input_dims;  /* per engine input (engine input order) */
  kiln_dims *dims;        /* per tensor, for the current input shapes */
  int32_t dims_valid;
  void **bound;           /* per tensor: user pointer for inputs/outputs */
  void *mem;              /* the block holding arena, workspace and ring (kiln_context_layout) */
  int32_t own_mem;        /* mem is the context's (else the caller's: kiln_context_create_with_memory) */
  void *arena;
  void *workspace;
  int32_t use_graphs;
  /* weight streaming (engine ws.ring_bytes > 0) */
  void *ring;             /* ws.ring_bytes of device memory (host memory for a CPU engine) */
  int32_t ws_next;        /* during a run: the next group of copies to issue */
  int32_t ws_poison;      /* KILN_POISON: a constant's ring bytes become 0xFF after its last reader */
#ifdef KILN_HAVE_CUDA
  cudaStream_t ws_stream; /* the copies */
  cudaEvent_t *ws_copied; /* per layer: its group was copied (recorded on ws_stream) */
  cudaEvent_t *ws_done;   /* per layer a group waits for: the layer ran (on the run's stream) */
  cudaEvent_t ws_end;     /* the previous run's last layer ran: the next run's copies wait for it */
  cudaEvent_t ws_start;   /* shared memory: the work enqueued before a run is done (its copies wait) */
  int32_t ws_ran;         /* ws_end was recorded */
#endif
  /* KILN_PROFILE=1 in the environment: each layer is synchronized and timed; the totals per op
   * kind are logged (warning level, so they show by default) when the context is destroyed. */
  int32_t prof_on;
  double prof_ms[KILN_OP_COUNT_];
  int64_t prof_calls[KILN_OP_COUNT_];
#ifdef KILN_HAVE_CUDA
  /* Captured graphs, one per input shapes + bindings + stream seen (a decoder keeps one per
   * batch size); the least recently used one is replaced when all are taken. */
  struct ctx_graph {
    cudaGraphExec_t exec;
    kiln_dims *dims;      /* input dims it was captured with */
    void **bound;         /* bindings it was captured with */
    void *stream;
    uint64_t used;
  } graphs[KILN_CONTEXT_GRAPHS];
  uint64_t graph_clock;
#endif
};

#ifdef KILN_HAVE_CUDA
/* The copy stream and the events of weight streaming. */
static kiln_status ws_cuda_setup(kiln_context *c) {
  const kiln_wstream *ws = &c->e->ws;
  int32_t nl = c->e->g.n_layers;
  c->ws_copied = calloc((size_t)nl + 1, sizeof *c->ws_copied);
  c->ws_done = calloc((size_t)nl + 1, sizeof *c->ws_done);
  if (!c->ws_copied || !c->ws_done) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  cudaError_t err = cudaStreamCreateWithFlags(&c->ws_stream, cudaStreamNonBlocking);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&c->ws_end, cudaEventDisableTiming);
  if (err == cudaSuccess && !c->own_mem) err = cudaEventCreateWithFlags(&c->ws_start, cudaEventDisableTiming);
  for (int32_t li = 0; li < nl && err == cudaSuccess; li++) {
    if (ws->group_start[li + 1] > ws->group_start[li]) err = cudaEventCreateWithFlags(&c->ws_copied[li], cudaEventDisableTiming);
    if (err == cudaSuccess && ws->signals[li]) err = cudaEventCreateWithFlags(&c->ws_done[li], cudaEventDisableTiming);
  }
  if (err != cudaSuccess)
    return kiln_error(KILN_ERR_CUDA, "weight streaming: cannot create the copy stream and its events: %s", cudaGetErrorString(err));
  return KILN_OK;
}

static void ws_cuda_destroy(kiln_context *c) {
  if (c->ws_stream) cudaStreamSynchronize(c->ws_stream);
  for (int32_t li = 0; li < c->e->g.n_layers; li++) {
    if (c->ws_copied && c->ws_copied[li]) cudaEventDestroy(c->ws_copied[li]);
    if (c->ws_done && c->ws_done[li]) cudaEventDestroy(c->ws_done[li]);
  }
  if (c->ws_end) cudaEventDestroy(c->ws_end);
  if (c->ws_start) cudaEventDestroy(c->ws_start);
  if (c->ws_stream) cudaStreamDestroy(c->ws_stream);
  free(c->ws_copied), free(c->ws_done);
}
#endif

/* The context's block (its own unless c->mem is the caller's), carved into arena, workspace and
 * ring; poisoned with KILN_POISON. */
static kiln_status alloc_memory(kiln_context *c) {
  kiln_context_layout l = kiln_context_layout_of(c->e);
  size_t ring = c->e->ws.ring_bytes;
  int cuda = c->e->exec != KILN_TARGET_CPU;
  c->ws_poison = ring && kiln_poison_enabled();
  if (!c->mem) {
    c->own_mem = 1;
    if (!cuda) {
      c->mem = aligned_alloc(KILN_CONTEXT_ALIGN, kiln_round_up(l.bytes, KILN_CONTEXT_ALIGN));
      if (!c->mem) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of activations", l.bytes);
    } else {
#ifdef KILN_HAVE_CUDA
      KILN_TRY(kiln_cuda_malloc(&c->mem, l.bytes));
#endif
    }
  }
  c->arena = c->mem;
  c->workspace = (char *)c->mem + l.workspace;
  c->ring = ring ? (char *)c->mem + l.ring : NULL;
  if (!cuda) {
    if (kiln_poison_enabled()) memset(c->mem, KILN_POISON_BYTE, l.bytes);
    return KILN_OK;
  }
#ifdef KILN_HAVE_CUDA
  if (kiln_poison_enabled()) { /* done before any stream (the ring's copy stream too) writes there */
    KILN_TRY(kiln_cuda_poison(c->mem, l.bytes, NULL));
    KILN_TRY(kiln_cuda_stream_sync(NULL));
  }
  if (ring) KILN_TRY(ws_cuda_setup(c));
  return KILN_OK;
#else
  return kiln_error(KILN_ERR_INTERNAL, "CUDA context without CUDA");
#endif
}

static void log_profile(const kiln_context *c) {
  double total = 0;
  for (int32_t op = 0; op < KILN_OP_COUNT_; op++) total += c->prof_ms[op];
  kiln_log(KILN_LOG_WARN, "profile (KILN_PROFILE): %.3f ms in layers", total);
  for (int32_t op = 0; op < KILN_OP_COUNT_; op++)
    if (c->prof_calls[op])
      kiln_log(KILN_LOG_WARN, "profile: %-14s %8lld calls %10.3f ms (%5.1f%%)", kiln_op_name((kiln_op)op),
               (long long)c->prof_calls[op], c->prof_ms[op], total > 0 ? 100.0 * c->prof_ms[op] / total : 0.0);
}

void kiln_context_destroy(kiln_context *c) {
  if (!c) return;
  if (c->prof_on) log_profile(c);
  if (c->e && c->e->exec == KILN_TARGET_CPU) {
    if (c->own_mem) free(c->mem);
  }
#ifdef KILN_HAVE_CUDA
  else {
    for (int i = 0; i < KILN_CONTEXT_GRAPHS; i++)
      if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
    ws_cuda_destroy(c); /* waits for the copies before the ring goes */
    if (c->own_mem) kiln_cuda_free(c->mem);
  }
  for (int i = 0; i < KILN_CONTEXT_GRAPHS; i++) {
    free(c->graphs[i].dims);
    free(c->graphs[i].bound);
  }
#endif
  free(c->input_dims);
  free(c->dims);
  free(c->bound);
  free(c);
}

static kiln_status context_create(kiln_engine *e, int32_t profile, void *memory, kiln_context **out) {
  if (e->g.n_layers > 0 && !e->weights)
    return kiln_error(KILN_ERR_STATE, "this engine was loaded for inspection only (skip_device_check); load it again to run it");
  if (profile < 0 || profile >= e->g.n_profiles)
    return kiln_error(KILN_ERR_INVALID_ARG, "profile %d does not exist (the engine has %d profiles)", profile, e->g.n_profiles);
  kiln_context *c = calloc(1, sizeof *c);
  if (!c) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  c->e = e;
  c->profile = profile;
  c->mem = memory;
  const char *prof = getenv("KILN_PROFILE");
  c->prof_on = prof && *prof && strcmp(prof, "0") != 0;
  size_t nt = (size_t)e->g.n_tensors + 1;
  c->input_dims = calloc((size_t)e->n_inputs + 1, sizeof *c->input_dims);
  c->dims = calloc(nt, sizeof *c->dims);
  c->bound = calloc(nt, sizeof *c->bound);
#ifdef KILN_HAVE_CUDA
  for (int i = 0; i < KILN_CONTEXT_GRAPHS; i++) {
    c->graphs[i].dims = calloc((size_t)e->n_inputs + 1, sizeof *c->graphs[i].dims);
    c->graphs[i].bound = calloc(nt, sizeof *c->graphs[i].bound);
    if (!c->graphs[i].dims || !c->graphs[i].bound) {
      kiln_context_destroy(c);
      return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    }
  }
#endif
  if (!c->input_dims || !c->dims || !c->bound) {
    kiln_context_destroy(c);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  }
  const kiln_profile_def *p = &e->g.profiles[profile];
  for (int32_t i = 0; i < e->n_inputs; i++) c->input_dims[i] = p->opt[i]; /* profile inputs are in input order */
  kiln_status s = alloc_memory(c);
  if (s != KILN_OK) {
    kiln_context_destroy(c);
    return s;
  }
  *out = c;
  return KILN_OK;
}

kiln_status kiln_context_create(kiln_engine *e, int32_t profile, kiln_context **out) {
  if (!e || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_context_create: NULL engine or output");
  return context_create(e, profile, NULL, out);
}

kiln_status kiln_context_create_with_memory(kiln_engine *e, int32_t profile, void *memory, size_t bytes,
                                            kiln_context **out) {
  if (!e || !out || !memory)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_context_create_with_memory: NULL engine, memory or output");
  size_t need = kiln_engine_context_bytes(e);
  if (bytes < need)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_context_create_with_memory: %zu bytes given, the context needs %zu "
                      "(kiln_engine_context_bytes)", bytes, need);
  if ((uintptr_t)memory % KILN_CONTEXT_ALIGN)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_context_create_with_memory: the memory must be aligned to %d bytes",
                      KILN_CONTEXT_ALIGN);
  return context_create(e, profile, memory, out);
}

static int32_t find_io(const kiln_context *c, const char *name) {
  for (int32_t i = 0; i < c->e->n_io; i++)
    if (strcmp(c->e->g.tensors[c->e->io[i]].name, name) == 0) return i;
  return -1;
}

kiln_status kiln_context_set_input_shape(kiln_context *c, const char *name, const kiln_dims *dims) {
  char a[128], b[128], m[128];
  if (!c || !name || !dims) return kiln_error(KILN_ERR_INVALID_ARG, "set_input_shape: NULL argument");
  int32_t i = find_io(c, name);
  if (i < 0 || i >= c->e->n_inputs) return kiln_error(KILN_ERR_NOT_FOUND, "\"%s\" is not an input of this engine", name);
  const kiln_profile_def *p = &c->e->g.profiles[c->profile];
  int ok = dims->rank == p->min[i].rank;
  for (int32_t j = 0; ok && j < dims->rank; j++) ok = p->min[i].d[j] <= dims->d[j] && dims->d[j] <= p->max[i].d[j];
  if (!ok)
    return kiln_error(KILN_ERR_SHAPE, "input \"%s\": shape %s is outside profile %d (min %s, max %s); rebuild with a wider profile",
                      name, kiln_dims_str(dims, a, sizeof a), c->profile, kiln_dims_str(&p->min[i], b, sizeof b),
                      kiln_dims_str(&p->max[i], m, sizeof m));
  if (!kiln_dims_equal(&c->input_dims[i], dims)) {
    c->input_dims[i] = *dims;
    c->dims_valid = 0;
  }
  return KILN_OK;
}

static kiln_status update_dims(kiln_context *c) {
  if (c->dims_valid) return KILN_OK;
  KILN_TRY(kiln_graph_infer_shapes(&c->e->g, c->input_dims, c->dims));
  c->dims_valid = 1;
  return KILN_OK;
}

kiln_status kiln_context_get_shape(kiln_context *c, const char *name, kiln_dims *dims) {
  if (!c || !name || !dims) return kiln_error(KILN_ERR_INVALID_ARG, "get_shape: NULL argument");
  int32_t i = find_io(c, name);
  if (i < 0) return kiln_error(KILN_ERR_NOT_FOUND, "\"%s\" is not an input or output of this engine", name);
  KILN_TRY(update_dims(c));
  *dims = c->dims[c->e->io[i]];
  return KILN_OK;
}

kiln_status kiln_context_set_tensor(kiln_context *c, const char *name, void *data) {
  if (!c || !name) return kiln_error(KILN_ERR_INVALID_ARG, "set_tensor: NULL argument");
  int32_t i = find_io(c, name);
  if (i < 0) return kiln_error(KILN_ERR_NOT_FOUND, "\"%s\" is not an input or output of this engine", name);
  c->bound[c->e->io[i]] = data;
  return KILN_OK;
}

kiln_status kiln_context_set_cuda_graphs(kiln_context *c, int32_t enable) {
  if (!c) return kiln_error(KILN_ERR_INVALID_ARG, "context is NULL");
  if (enable && c->e->exec != KILN_TARGET_CUDA)
    return kiln_error(KILN_ERR_UNSUPPORTED, "CUDA graphs need a CUDA engine");
  if (enable && c->e->ws.ring_bytes)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "CUDA graphs are not available with weight streaming (its copies run on a second stream, "
                      "ordered by events across runs); load the engine with weight_stream_bytes 0 to use graphs");
  c->use_graphs = enable ? 1 : 0;
  return KILN_OK;
}

/* Where tensor t lives for this run. */
static void *tensor_data(kiln_context *c, int32_t t) {
  const kiln_tensor_def *d = &c->e->g.tensors[t];
  if (d->kind == KILN_TENSOR_CONSTANT)
    return c->ring && c->e->ws.offset[t] >= 0 ? (char *)c->ring + c->e->ws.offset[t] : c->e->weights[t];
  if (d->kind == KILN_TENSOR_INPUT || d->is_output) return c->bound[t];
  return (char *)c->arena + d->offset;
}

#ifdef KILN_HAVE_CUDA
static kiln_status ws_cuda_error(cudaError_t err, const char *what) {
  return kiln_error(KILN_ERR_CUDA, "weight streaming: %s failed: %s", what, cudaGetErrorString(err));
}
#endif

/* Weight streaming, before layer li is enqueued: issue every group of copies whose ring space is
 * free once the layers enqueued so far have run (its wait layer is before li), in layer order, so
 * copies run ahead as far as the ring allows; then make li wait for its own group. On the CPU a
 * copy is a memcpy done at once, the earliest moment the GPU's could run. */
static kiln_status ws_before(kiln_context *c, int32_t li, void *stream) {
  const kiln_wstream *ws = &c->e->ws;
  const kiln_graph *g = &c->e->g;
  int cuda = c->e->exec == KILN_TARGET_CUDA;
#ifdef KILN_HAVE_CUDA
  cudaError_t err = cudaSuccess;
  if (li == 0 && cuda && c->ws_ran && (err = cudaStreamWaitEvent(c->ws_stream, c->ws_end, 0)) != cudaSuccess)
    return ws_cuda_error(err, "waiting for the previous run");
  if (li == 0 && cuda && !c->own_mem && /* another context may be using the ring's bytes until then */
      ((err = cudaEventRecord(c->ws_start, (cudaStream_t)stream)) != cudaSuccess ||
       (err = cudaStreamWaitEvent(c->ws_stream, c->ws_start, 0)) != cudaSuccess))
    return ws_cuda_error(err, "waiting for the work before the run");
#endif
  if (li == 0) c->ws_next = 0;
  while (c->ws_next < g->n_layers && ws->wait[c->ws_next] < li) {
    int32_t j = c->ws_next++, k0 = ws->group_start[j], k1 = ws->group_start[j + 1];
    if (k0 == k1) continue;
    if (!cuda) {
      for (int32_t k = k0; k < k1; k++)
        memcpy((char *)c->ring + ws->offset[ws->copy[k]], c->e->weights[ws->copy[k]], g->tensors[ws->copy[k]].bytes);
      continue;
    }
#ifdef KILN_HAVE_CUDA
    if (ws->wait[j] >= 0) err = cudaStreamWaitEvent(c->ws_stream, c->ws_done[ws->wait[j]], 0);
    for (int32_t k = k0; k < k1 && err == cudaSuccess; k++) {
      int32_t t = ws->copy[k];
      err = cudaMemcpyAsync((char *)c->ring + ws->offset[t], c->e->weights[t], g->tensors[t].bytes,
                            cudaMemcpyHostToDevice, c->ws_stream);
    }
    if (err == cudaSuccess) err = cudaEventRecord(c->ws_copied[j], c->ws_stream);
    if (err != cudaSuccess) return ws_cuda_error(err, "copying weights into the ring");
#endif
  }
#ifdef KILN_HAVE_CUDA
  if (cuda && ws->group_start[li + 1] > ws->group_start[li] &&
      (err = cudaStreamWaitEvent((cudaStream_t)stream, c->ws_copied[li], 0)) != cudaSuccess)
    return ws_cuda_error(err, "waiting for the weight copies");
#else
  (void)stream;
#endif
  return KILN_OK;
}

/* Weight streaming, after layer li is enqueued: with KILN_POISON the ring bytes of the constants
 * it read last become 0xFF (so a layer reading a constant the schedule let go reads NaN); then,
 * when a group waits for li, the event that says it ran. */
static kiln_status ws_after(kiln_context *c, int32_t li, void *stream) {
  const kiln_wstream *ws = &c->e->ws;
  const kiln_layer_def *l = &c->e->g.layers[li];
  int cuda = c->e->exec == KILN_TARGET_CUDA;
  for (int32_t j = 0; c->ws_poison && j < l->n_in; j++) {
    int32_t t = l->in[j];
    size_t bytes = c->e->g.tensors[t].bytes;
    if (ws->offset[t] < 0 || ws->last[t] != li || !bytes) continue;
    if (!cuda) {
      memset((char *)c->ring + ws->offset[t], KILN_POISON_BYTE, bytes);
      continue;
    }
#ifdef KILN_HAVE_CUDA
    cudaError_t err = cudaMemsetAsync((char *)c->ring + ws->offset[t], KILN_POISON_BYTE, bytes, (cudaStream_t)stream);
    if (err != cudaSuccess) return ws_cuda_error(err, "KILN_POISON: cudaMemsetAsync");
#endif
  }
#ifdef KILN_HAVE_CUDA
  cudaError_t err;
  if (cuda && ws->signals[li] && (err = cudaEventRecord(c->ws_done[li], (cudaStream_t)stream)) != cudaSuccess)
    return ws_cuda_error(err, "recording a layer's event");
#else
  (void)stream;
#endif
  return KILN_OK;
}

/* Weight streaming, when a run ends (also after an error): the next run's copies wait for what
 * this one enqueued. */
static kiln_status ws_finish(kiln_context *c, void *stream) {
  (void)c, (void)stream;
#ifdef KILN_HAVE_CUDA
  if (c->e->exec == KILN_TARGET_CUDA) {
    cudaError_t err = cudaEventRecord(c->ws_end, (cudaStream_t)stream);
    if (err != cudaSuccess) return ws_cuda_error(err, "recording the end of a run");
    c->ws_ran = 1;
  }
#endif
  return KILN_OK;
}

/* Layer li's tensors for this run (kiln_cuda_layer_io for chains too). */
static void layer_tensors(void *user, int32_t li, kiln_tensor *in, kiln_tensor *out) {
  kiln_context *c = user;
  const kiln_graph *g = &c->e->g;
  const kiln_layer_def *l = &g->layers[li];
  for (int32_t j = 0; j < l->n_in; j++)
    in[j] = kiln_tensor_contiguous(tensor_data(c, l->in[j]), g->tensors[l->in[j]].dtype, &c->dims[l->in[j]]);
  for (int32_t j = 0; j < l->n_out; j++)
    out[j] = kiln_tensor_contiguous(tensor_data(c, l->out[j]), g->tensors[l->out[j]].dtype, &c->dims[l->out[j]]);
}

static kiln_status run_each_layer(kiln_context *c, void *stream) {
  const kiln_graph *g = &c->e->g;
  for (int32_t li = 0; li < g->n_layers; li++) {
#ifdef KILN_HAVE_CUDA
    /* a run of decoding-step layers as one persistent kernel (not while weights stream or
     * layers are timed one by one) */
    if (c->e->exec == KILN_TARGET_CUDA && !c->ring && !c->prof_on) {
      int32_t ran = 0;
      KILN_TRY(kiln_cuda_run_chain(c->e->cuda, g, li, layer_tensors, c, c->workspace, g->workspace_bytes, stream, &ran));
      if (ran > 0) {
        li += ran - 1;
        continue;
      }
    }
#endif
    if (c->ring) KILN_TRY(ws_before(c, li, stream));
    const kiln_layer_def *l = &g->layers[li];
    kiln_tensor in[KILN_MAX_LAYER_IO], out[KILN_MAX_LAYER_IO];
    layer_tensors(c, li, in, out);
    kiln_status s;
    double t0 = c->prof_on ? now_ms() : 0;
    if (c->e->exec == KILN_TARGET_CPU) {
      s = kiln_cpu_run_layer(g, l, in, out, c->workspace, g->workspace_bytes);
    } else {
#ifdef KILN_HAVE_CUDA
      s = kiln_cuda_run_layer(c->e->cuda, g, l, in, out, c->workspace, g->workspace_bytes, stream);
#else
      s = kiln_error(KILN_ERR_INTERNAL, "CUDA engine without CUDA");
#endif
    }
    if (s != KILN_OK) return kiln_error_context(s, "layer %s (%s): ", l->name, kiln_op_name(l->op));
    if (c->ring) KILN_TRY(ws_after(c, li, stream));
    if (c->prof_on) {
#ifdef KILN_HAVE_CUDA
      if (c->e->exec == KILN_TARGET_CUDA) cudaStreamSynchronize((cudaStream_t)stream);
#endif
      c->prof_ms[l->op] += now_ms() - t0;
      c->prof_calls[l->op]++;
    }
  }
  (void)stream;
  return KILN_OK;
}

static kiln_status run_layers(kiln_context *c, void *stream) {
  if (!c->ring) return run_each_layer(c, stream);
  kiln_status s = run_each_layer(c, stream), s_end = ws_finish(c, stream);
  return s != KILN_OK ? s : s_end;
}

static kiln_status check_bindings(kiln_context *c) {
  for (int32_t i = 0; i < c->e->n_io; i++) {
    int32_t t = c->e->io[i];
    if (!c->bound[t] && kiln_dims_count(&c->dims[t]) > 0)
      return kiln_error(KILN_ERR_STATE, "%s \"%s\" has no buffer; call kiln_context_set_tensor first",
                        i < c->e->n_inputs ? "input" : "output", c->e->g.tensors[t].name);
  }
  return KILN_OK;
}

#ifdef KILN_HAVE_CUDA
static int graph_matches(const kiln_context *c, const struct ctx_graph *g, void *stream) {
  if (!g->exec || g->stream != stream) return 0;
  for (int32_t i = 0; i < c->e->n_inputs; i++)
    if (!kiln_dims_equal(&g->dims[i], &c->input_dims[i])) return 0;
  return memcmp(g->bound, c->bound, (size_t)c->e->g.n_tensors * sizeof *c->bound) == 0;
}

/* Capture the layers into slot g (its previous graph, if any, is dropped). */
static kiln_status capture(kiln_context *c, struct ctx_graph *g, void *stream) {
  cudaStream_t s = (cudaStream_t)stream;
  if (g->exec) cudaGraphExecDestroy(g->exec);
  g->exec = NULL;
  cudaGraph_t graph;
  if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
    return kiln_error(KILN_ERR_CUDA, "cannot start capturing a CUDA graph: %s", cudaGetErrorString(cudaGetLastError()));
  kiln_status st = run_layers(c, stream);
  cudaError_t e = cudaStreamEndCapture(s, &graph);
  if (st != KILN_OK) {
    if (e == cudaSuccess) cudaGraphDestroy(graph);
    return st;
  }
  if (e != cudaSuccess) return kiln_error(KILN_ERR_CUDA, "capturing a CUDA graph failed: %s", cudaGetErrorString(e));
  e = cudaGraphInstantiate(&g->exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    g->exec = NULL;
    return kiln_error(KILN_ERR_CUDA, "instantiating a CUDA graph failed: %s", cudaGetErrorString(e));
  }
  memcpy(g->dims, c->input_dims, (size_t)c->e->n_inputs * sizeof *c->input_dims);
  memcpy(g->bound, c->bound, (size_t)c->e->g.n_tensors * sizeof *c->bound);
  g->stream = stream;
  return KILN_OK;
}

static kiln_status enqueue_graph(kiln_context *c, void *stream) {
  if (!stream) return kiln_error(KILN_ERR_INVALID_ARG, "CUDA graphs need a stream other than the default stream; pass one to kiln_context_enqueue");
  struct ctx_graph *g = NULL, *lru = &c->graphs[0];
  for (int i = 0; i < KILN_CONTEXT_GRAPHS && !g; i++) {
    if (graph_matches(c, &c->graphs[i], stream)) g = &c->graphs[i];
    else if (c->graphs[i].used < lru->used) lru = &c->graphs[i];
  }
  if (!g) {
    g = lru;
    KILN_TRY(capture(c, g, stream));
  }
  g->used = ++c->graph_clock;
  cudaError_t e = cudaGraphLaunch(g->exec, (cudaStream_t)stream);
  if (e != cudaSuccess) return kiln_error(KILN_ERR_CUDA, "launching the CUDA graph failed: %s", cudaGetErrorString(e));
  return KILN_OK;
}
#endif

kiln_status kiln_context_enqueue(kiln_context *c, void *stream) {
  if (!c) return kiln_error(KILN_ERR_INVALID_ARG, "context is NULL");
  KILN_TRY(update_dims(c));
  KILN_TRY(check_bindings(c));
#ifdef KILN_HAVE_CUDA
  if (c->use_graphs && !c->prof_on) return enqueue_graph(c, stream); /* profiling synchronizes per layer */
#endif
  return run_layers(c, stream);
}
