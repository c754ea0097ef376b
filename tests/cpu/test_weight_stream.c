/* tests/cpu/test_weight_stream.c - weight streaming (kiln_engine_load_params.weight_stream_bytes)
 * against the same engine with its weights resident, outputs compared bit for bit:
 *   - a chain of 8 matmuls and adds where a bias is added by two layers far apart and a weight
 *     matrix is read by two matmuls (both must stay in the ring between their readers), at rings
 *     of the minimum (kiln_engine_stream_min_bytes), the minimum + 256 bytes, one layer more,
 *     half the weights, all of them and twice that; several shapes and runs per context, two
 *     contexts taking turns;
 *   - the weight-only test network (tests/common/test_wq_net.h: a tied embedding table, a shared
 *     projection) in fp32 and with int8 weights, at the minimum ring;
 *   - the schedule's rules checked directly on the engine (ring bytes shared only by constants
 *     whose readers do not overlap, copies wait for the last reader of what they overwrite);
 *   - a ring below the minimum fails to load with the minimum in the message; the memory
 *     figures (no resident weights, the ring counted in the context bytes); CUDA graphs refused;
 *   - a streaming context and a resident one sharing one block of memory
 *     (kiln_context_create_with_memory), their runs enqueued back to back on one stream, and
 *     the arguments that call refuses.
 * KILN_POISON=1 is set: ring bytes become 0xFF (NaN) once their constant's last reader has run.
 * On the CPU the copies are done at once when the schedule allows them, so a schedule that lets
 * a copy overwrite a constant still to be read, or poisons one too early, changes the outputs:
 * the test breaks the schedule on purpose both ways and checks that it notices.
 *
 * tests/gpu/test_weight_stream_gpu.c compiles this file again with WSTREAM_TEST_GPU defined: the
 * same comparisons with CUDA engines (fp32 and fp16; copies on the second stream), without the
 * schedule-breaking part (a race there is not a deterministic failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_wq_net.h"
#include "kiln/kiln.h"
#include "runtime/runtime_internal.h"
#ifdef WSTREAM_TEST_GPU
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"
#define WS_TARGET KILN_TARGET_CUDA
#else
#define WS_TARGET KILN_TARGET_CPU
#endif

#define SN_D 64
#define SN_LAYERS 8
#define SN_MAX_B 8

/* x [B, 64] -> 8 x (matmul + bias), with add(h, shared) after matmuls 1 and 5, the tied weight in
 * matmuls 2 and 6, and a residual add of the previous activation after the other even ones. */
static kiln_network *sn_build(uint64_t seed) {
  kiln_network *net = NULL;
  check_rng r = {seed};
  if (kiln_network_create(&net) != KILN_OK) return NULL;
  int64_t xd[2] = {-1, SN_D}, wd[2] = {SN_D, SN_D}, bd[1] = {SN_D};
  const float a = 0.15f;
  int32_t h = kiln_network_add_input(net, "x", KILN_DTYPE_FP32, 2, xd);
  int32_t tied = wn_const(net, &r, "w.tied", 2, wd, -a, a), shared = wn_const(net, &r, "b.shared", 1, bd, -0.5f, 0.5f);
  int ok = h >= 0 && tied >= 0 && shared >= 0;
  for (int i = 0; i < SN_LAYERS && ok; i++) {
    char wn[32], bn[32], mn[32], an[32];
    snprintf(wn, sizeof wn, "w.%d", i), snprintf(bn, sizeof bn, "b.%d", i);
    snprintf(mn, sizeof mn, "mm.%d", i), snprintf(an, sizeof an, "add.%d", i);
    int32_t w = i == 2 || i == 6 ? tied : wn_const(net, &r, wn, 2, wd, -a, a);
    int32_t m = kiln_network_add_matmul(net, mn, h, w, wn_const(net, &r, bn, 1, bd, -0.1f, 0.1f));
    if (i == 1 || i == 5) m = kiln_network_add_add(net, an, m, shared);
    else if (i % 2 == 0 && i > 0) m = kiln_network_add_add(net, an, m, h);
    ok = m >= 0;
    h = m;
  }
  int32_t p = ok ? kiln_network_add_profile(net) : -1;
  int64_t xmin[2] = {1, SN_D}, xmax[2] = {SN_MAX_B, SN_D};
  if (!ok || p < 0 || kiln_network_mark_output(net, h, "y") != KILN_OK ||
      kiln_network_set_profile_dims(net, p, "x", xmin, xmax, xmax) != KILN_OK) {
    fprintf(stderr, "building the streaming test network failed: %s\n", kiln_last_error());
    kiln_network_destroy(net);
    return NULL;
  }
  return net;
}

/* ---- buffers where the engine wants them ----------------------------------------------------- */

static void *buf_new(size_t bytes) {
#ifdef WSTREAM_TEST_GPU
  void *p = NULL;
  if (kiln_cuda_malloc(&p, bytes + 16) != KILN_OK) return NULL;
  cudaMemset(p, 0xff, bytes + 16); /* NaN: an output the engine does not write shows */
  return p;
#else
  void *p = malloc(bytes + 16);
  if (p) memset(p, 0xff, bytes + 16);
  return p;
#endif
}

static void buf_free(void *p) {
#ifdef WSTREAM_TEST_GPU
  kiln_cuda_free(p);
#else
  free(p);
#endif
}

static void buf_copy(void *dst, const void *src, size_t bytes, int to_buf) {
#ifdef WSTREAM_TEST_GPU
  cudaMemcpy(dst, src, bytes, to_buf ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost);
#else
  (void)to_buf;
  memcpy(dst, src, bytes);
#endif
}

/* ---- running ------------------------------------------------------------------------------- */

#define WS_MAX_IO 4
typedef struct ws_io {
  int n_in, n_out;
  const char *in_name[WS_MAX_IO];
  kiln_dims in_dims[WS_MAX_IO];
  const void *in_host[WS_MAX_IO]; /* in the dtype the engine declares */
  const char *out_name[WS_MAX_IO];
} ws_io;

typedef struct ws_out {
  uint8_t *v[WS_MAX_IO]; /* raw bytes, in the dtype the engine declares */
  size_t bytes[WS_MAX_IO];
} ws_out;

static void ws_out_free(ws_out *o) {
  for (int i = 0; i < WS_MAX_IO; i++) free(o->v[i]);
  memset(o, 0, sizeof *o);
}

static kiln_dtype io_dtype(const kiln_engine *e, const char *name) {
  kiln_io_info info;
  for (int32_t i = 0; i < kiln_engine_num_io(e); i++)
    if (kiln_engine_io(e, i, &info) == KILN_OK && strcmp(info.name, name) == 0) return info.dtype;
  return KILN_DTYPE_INVALID;
}

/* Context c's inputs and outputs bound to fresh buffers (in[], out[]); o->bytes sized. */
static kiln_status bind_ctx(kiln_engine *e, kiln_context *c, const ws_io *io, void **in, void **out, ws_out *o) {
  kiln_status st = KILN_OK;
  memset(o, 0, sizeof *o);
  for (int i = 0; i < io->n_in && st == KILN_OK; i++) {
    size_t bytes = kiln_dtype_bytes(io_dtype(e, io->in_name[i]), kiln_dims_count(&io->in_dims[i]));
    st = kiln_context_set_input_shape(c, io->in_name[i], &io->in_dims[i]);
    if (st == KILN_OK && !(in[i] = buf_new(bytes))) st = KILN_ERR_OUT_OF_MEMORY;
    if (st == KILN_OK) buf_copy(in[i], io->in_host[i], bytes, 1), st = kiln_context_set_tensor(c, io->in_name[i], in[i]);
  }
  for (int i = 0; i < io->n_out && st == KILN_OK; i++) {
    kiln_dims d;
    st = kiln_context_get_shape(c, io->out_name[i], &d);
    o->bytes[i] = kiln_dtype_bytes(io_dtype(e, io->out_name[i]), kiln_dims_count(&d));
    if (st == KILN_OK && (!(out[i] = buf_new(o->bytes[i])) || !(o->v[i] = malloc(o->bytes[i] + 1)))) st = KILN_ERR_OUT_OF_MEMORY;
    if (st == KILN_OK) st = kiln_context_set_tensor(c, io->out_name[i], out[i]);
  }
  return st;
}

static kiln_status sync_stream(void *stream) {
#ifdef WSTREAM_TEST_GPU
  if (cudaStreamSynchronize((cudaStream_t)stream) != cudaSuccess) return KILN_ERR_CUDA;
#else
  (void)stream;
#endif
  return KILN_OK;
}

/* The outputs into o (when st is KILN_OK), and the buffers freed. */
static kiln_status collect(kiln_status st, const ws_io *io, void **in, void **out, ws_out *o) {
  for (int i = 0; i < io->n_out && st == KILN_OK; i++) buf_copy(o->v[i], out[i], o->bytes[i], 0);
  for (int i = 0; i < WS_MAX_IO; i++) buf_free(in[i]), buf_free(out[i]);
  if (st != KILN_OK) ws_out_free(o);
  return st;
}

/* One run of context c on io (fresh buffers); the outputs come back in o. */
static kiln_status run_ctx(kiln_engine *e, kiln_context *c, void *stream, const ws_io *io, ws_out *o) {
  void *in[WS_MAX_IO] = {0}, *out[WS_MAX_IO] = {0};
  kiln_status st = bind_ctx(e, c, io, in, out, o);
  if (st == KILN_OK) st = kiln_context_enqueue(c, stream);
  if (st == KILN_OK) st = sync_stream(stream);
  return collect(st, io, in, out, o);
}

static int out_equal(const ws_out *a, const ws_out *b, int i) {
  return a->v[i] && b->v[i] && a->bytes[i] == b->bytes[i] && memcmp(a->v[i], b->v[i], a->bytes[i]) == 0;
}

static int outs_equal(const ws_out *a, const ws_out *b, int n) {
  for (int i = 0; i < n; i++)
    if (!out_equal(a, b, i)) return 0;
  return 1;
}

/* When output i differs: how much (nmse and the largest difference), to tell a race (a few
 * elements, NaN from the poison) from a kernel that is not deterministic. */
static void report_diff(const kiln_engine *e, const char *name, const ws_out *got, const ws_out *want, int i,
                        const char *what) {
  kiln_dtype dt = io_dtype(e, name);
  int64_t n = (int64_t)(want->bytes[i] / kiln_dtype_bytes(dt, 1));
  if (!got->v[i] || !want->v[i] || got->bytes[i] != want->bytes[i] || n <= 0) return;
  float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
  kiln_convert_floats(a, KILN_DTYPE_FP32, got->v[i], dt, n);
  kiln_convert_floats(b, KILN_DTYPE_FP32, want->v[i], dt, n);
  double worst = 0;
  for (int64_t k = 0; k < n; k++) {
    double d = fabs((double)a[k] - (double)b[k]);
    if (!(d <= worst)) worst = d; /* NaN sticks */
  }
  fprintf(stderr, "%s: output %s differs from the resident engine's: nmse %.3g, largest difference %.3g\n", what, name,
          check_nmse_value(a, b, n), worst);
  free(a), free(b);
}

static void *stream_new(void) {
#ifdef WSTREAM_TEST_GPU
  cudaStream_t s = NULL;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  return s;
#else
  return NULL;
#endif
}

static void stream_free(void *s) {
#ifdef WSTREAM_TEST_GPU
  if (s) cudaStreamDestroy((cudaStream_t)s);
#else
  (void)s;
#endif
}

static kiln_engine *load(const void *img, size_t size, size_t ring) {
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.weight_stream_bytes = ring;
  kiln_engine *e = NULL;
  CHECK_OK(kiln_engine_load_memory(img, size, &lp, &e));
  return e;
}

/* ---- the schedule's rules ------------------------------------------------------------------ */

/* Every constant a layer reads is in the ring, inside it, copied once in the group of its first
 * reader; two constants sharing ring bytes never have overlapping reader spans, and the later
 * one's copy waits for the earlier one's last reader. */
static void check_schedule(const kiln_engine *e) {
  const kiln_graph *g = &e->g;
  const kiln_wstream *ws = &e->ws;
  int32_t *first = malloc(((size_t)g->n_tensors + 1) * sizeof *first), *copies = calloc((size_t)g->n_tensors + 1, sizeof *copies);
  int bad = 0;
  for (int32_t t = 0; t < g->n_tensors; t++) first[t] = -1;
  for (int32_t li = 0; li < g->n_layers; li++)
    for (int32_t j = 0; j < g->layers[li].n_in; j++) {
      int32_t t = g->layers[li].in[j];
      if (g->tensors[t].kind != KILN_TENSOR_CONSTANT) continue;
      if (first[t] < 0) first[t] = li;
      bad += ws->offset[t] < 0 || (size_t)ws->offset[t] % 256 || (size_t)ws->offset[t] + g->tensors[t].bytes > ws->ring_bytes;
      bad += ws->last[t] < li;
    }
  for (int32_t li = 0; li < g->n_layers; li++) {
    bad += ws->wait[li] >= li;
    for (int32_t k = ws->group_start[li]; k < ws->group_start[li + 1]; k++) bad += first[ws->copy[k]] != li, copies[ws->copy[k]]++;
  }
  for (int32_t a = 0; a < g->n_tensors; a++) {
    if (first[a] < 0 || !g->tensors[a].bytes) continue;
    bad += copies[a] != 1;
    for (int32_t b = 0; b < g->n_tensors; b++) {
      if (b == a || first[b] < first[a] || !g->tensors[b].bytes || first[b] < 0) continue;
      size_t a0 = (size_t)ws->offset[a], a1 = a0 + g->tensors[a].bytes, b0 = (size_t)ws->offset[b], b1 = b0 + g->tensors[b].bytes;
      if (a0 >= b1 || b0 >= a1) continue;
      if (first[b] <= ws->last[a] || ws->wait[first[b]] < ws->last[a]) {
        bad++;
        fprintf(stderr, "schedule: %s [%d, %d] and %s [%d, %d] share ring bytes; %s's copy waits for layer %d\n",
                g->tensors[a].name, first[a], ws->last[a], g->tensors[b].name, first[b], ws->last[b], g->tensors[b].name,
                ws->wait[first[b]]);
      }
    }
  }
  CHECK_EQ_INT(bad, 0);
  free(first), free(copies);
}

/* ---- the tests ------------------------------------------------------------------------------ */

static void sn_io(ws_io *io, int64_t b, const void *x) {
  memset(io, 0, sizeof *io);
  io->n_in = 1, io->n_out = 1;
  io->in_name[0] = "x", io->in_dims[0] = (kiln_dims){2, {b, SN_D}}, io->in_host[0] = x;
  io->out_name[0] = "y";
}

/* Streaming at `ring` bytes gives the resident engine's outputs, for 3 shapes, twice each, in
 * two contexts taking turns (the second on its own stream). */
static void check_ring(const void *img, size_t size, kiln_engine *resident, size_t ring, const void *x, const char *what) {
  kiln_engine *e = load(img, size, ring);
  if (!e) return;
  check_schedule(e);
  CHECK_EQ_INT(kiln_engine_weight_bytes(e), 0);
  CHECK_EQ_INT(kiln_engine_context_bytes(e), kiln_engine_context_bytes(resident) + ring);
  CHECK_EQ_INT(kiln_engine_streamed_bytes(e), kiln_engine_weight_bytes(resident));
  kiln_context *c1 = NULL, *c2 = NULL, *r = NULL;
  void *s1 = stream_new(), *s2 = stream_new();
  CHECK_OK(kiln_context_create(e, 0, &c1));
  CHECK_OK(kiln_context_create(e, 0, &c2));
  CHECK_OK(kiln_context_create(resident, 0, &r));
  static const int64_t shapes[] = {3, 1, SN_MAX_B};
  int same = 0, runs = 0;
  for (int i = 0; c1 && c2 && r && i < 3; i++) {
    ws_io io;
    sn_io(&io, shapes[i], x);
    ws_out want = {0}, a = {0}, b = {0}, a2 = {0};
    CHECK_OK(run_ctx(resident, r, s1, &io, &want));
    CHECK_OK(run_ctx(e, c1, s1, &io, &a));
    CHECK_OK(run_ctx(e, c2, s2, &io, &b));
    CHECK_OK(run_ctx(e, c1, s1, &io, &a2));
    same += outs_equal(&a, &want, 1) + outs_equal(&b, &want, 1) + outs_equal(&a2, &want, 1);
    runs += 3;
    if (!outs_equal(&a, &want, 1)) report_diff(e, "y", &a, &want, 0, what);
    if (!outs_equal(&b, &want, 1)) report_diff(e, "y", &b, &want, 0, what);
    if (!outs_equal(&a2, &want, 1)) report_diff(e, "y", &a2, &want, 0, what);
    ws_out_free(&want), ws_out_free(&a), ws_out_free(&b), ws_out_free(&a2);
  }
  fprintf(stderr, "%s: ring %zu bytes (minimum %zu, weights %zu): %d of %d runs bitwise equal to the resident engine\n", what,
          ring, kiln_engine_stream_min_bytes(e), kiln_engine_streamed_bytes(e), same, runs);
  CHECK_EQ_INT(same, 9);
#ifdef WSTREAM_TEST_GPU
  CHECK_STATUS(kiln_context_set_cuda_graphs(c1, 1), KILN_ERR_UNSUPPORTED);
  CHECK_MSG("weight streaming");
#else
  CHECK_STATUS(kiln_context_set_cuda_graphs(c1, 1), KILN_ERR_UNSUPPORTED);
#endif
  kiln_context_destroy(c1), kiln_context_destroy(c2), kiln_context_destroy(r);
  stream_free(s1), stream_free(s2);
  kiln_engine_destroy(e);
}

/* kiln_context_create_with_memory: a streaming context and a resident one of the same graph share
 * memory (the resident one's block starts `ring` bytes in, so its activations lie over the
 * streaming one's ring at the end of its block) and run in turns on one stream, each run enqueued
 * before the one before has finished: the outputs equal those of a context of its own. Then the
 * arguments it refuses. */
static void check_shared(kiln_engine *e, kiln_engine *resident, const void *x, const char *what) {
  size_t be = kiln_engine_context_bytes(e), br = kiln_engine_context_bytes(resident), ring = be - br;
  CHECK(be > br && ring % 256 == 0);
  void *mem = buf_new(be), *s = stream_new();
  kiln_context *ce = NULL, *cr = NULL, *own = NULL, *bad = (kiln_context *)&bad;
  CHECK(mem != NULL);
  CHECK_OK(kiln_context_create_with_memory(e, 0, mem, be, &ce));
  CHECK_OK(kiln_context_create_with_memory(resident, 0, (char *)mem + ring, br, &cr));
  CHECK_OK(kiln_context_create(resident, 0, &own));
  ws_io io[4];
  static const int64_t shapes[] = {SN_MAX_B, 3, 1, SN_MAX_B};
  ws_out want[4], got[4];
  void *in[4][WS_MAX_IO], *out[4][WS_MAX_IO];
  memset(want, 0, sizeof want), memset(got, 0, sizeof got), memset(in, 0, sizeof in), memset(out, 0, sizeof out);
  int same = 0;
  for (int i = 0; i < 4 && ce && cr && own; i++) {
    sn_io(&io[i], shapes[i], x);
    CHECK_OK(run_ctx(resident, own, s, &io[i], &want[i]));
  }
  /* enqueued back to back: streaming, resident, streaming, resident (bindings change between
   * runs, so each context's next run is bound after its enqueue) */
  kiln_status st = KILN_OK;
  for (int i = 0; i < 4 && ce && cr && own && st == KILN_OK; i++) {
    kiln_engine *en = i % 2 ? resident : e;
    kiln_context *c = i % 2 ? cr : ce;
    st = bind_ctx(en, c, &io[i], in[i], out[i], &got[i]);
    if (st == KILN_OK) st = kiln_context_enqueue(c, s);
  }
  CHECK_OK(st);
  st = st == KILN_OK ? sync_stream(s) : st;
  for (int i = 0; i < 4; i++) {
    if (collect(st, &io[i], in[i], out[i], &got[i]) == KILN_OK) same += outs_equal(&got[i], &want[i], 1);
    if (st == KILN_OK && !outs_equal(&got[i], &want[i], 1)) report_diff(e, "y", &got[i], &want[i], 0, what);
    ws_out_free(&want[i]), ws_out_free(&got[i]);
  }
  fprintf(stderr, "%s: shared context memory (%zu bytes): %d of 4 runs bitwise equal\n", what, be, same);
  CHECK_EQ_INT(same, 4);
  CHECK_STATUS(kiln_context_create_with_memory(e, 0, mem, be - 1, &bad), KILN_ERR_INVALID_ARG);
  CHECK_MSG("kiln_engine_context_bytes");
  CHECK_STATUS(kiln_context_create_with_memory(e, 0, (char *)mem + 16, be, &bad), KILN_ERR_INVALID_ARG);
  CHECK_MSG("aligned to 256");
  CHECK_STATUS(kiln_context_create_with_memory(e, 0, NULL, be, &bad), KILN_ERR_INVALID_ARG);
  CHECK(bad == (kiln_context *)&bad);
  kiln_context_destroy(ce), kiln_context_destroy(cr), kiln_context_destroy(own);
  stream_free(s);
  buf_free(mem);
}

#ifndef WSTREAM_TEST_GPU
/* A schedule broken on purpose changes the outputs: (a) a group copied at the start of the run
 * instead of after the layer it waits for overwrites constants still to be read; (b) a shared
 * constant poisoned after its first reader instead of its last. */
static void check_breaking(const void *img, size_t size, kiln_engine *resident, size_t ring, const void *x) {
  kiln_engine *e = load(img, size, ring);
  if (!e) return;
  ws_io io;
  sn_io(&io, 3, x);
  ws_out want = {0}, got = {0};
  kiln_context *c = NULL, *r = NULL;
  CHECK_OK(kiln_context_create(e, 0, &c));
  CHECK_OK(kiln_context_create(resident, 0, &r));
  if (c && r) CHECK_OK(run_ctx(resident, r, NULL, &io, &want));
  int32_t j = -1, t = -1;
  for (int32_t li = 0; li < e->g.n_layers && j < 0; li++)
    if (e->ws.wait[li] >= 0) j = li;
  for (int32_t k = 0; k < e->ws.group_start[e->g.n_layers] && t < 0; k++) {
    int32_t u = e->ws.copy[k];
    for (int32_t li = 0; li < e->ws.last[u]; li++)
      for (int32_t m = 0; m < e->g.layers[li].n_in; m++) t = e->g.layers[li].in[m] == u ? u : t;
  }
  CHECK(j >= 0); /* the ring is small enough that some copy must wait */
  CHECK(t >= 0); /* some constant has two readers */
  if (c && r && j >= 0 && t >= 0) {
    int32_t keep = e->ws.wait[j];
    e->ws.wait[j] = -1;
    CHECK_OK(run_ctx(e, c, NULL, &io, &got));
    CHECK(!outs_equal(&got, &want, 1));
    report_diff(e, "y", &got, &want, 0, "a copy issued too early (expected)");
    ws_out_free(&got);
    e->ws.wait[j] = keep;
    CHECK_OK(run_ctx(e, c, NULL, &io, &got));
    CHECK(outs_equal(&got, &want, 1));
    ws_out_free(&got);
    keep = e->ws.last[t];
    for (int32_t li = 0; li < keep; li++)
      for (int32_t m = 0; m < e->g.layers[li].n_in; m++)
        if (e->g.layers[li].in[m] == t && e->ws.last[t] == keep) e->ws.last[t] = li; /* its first reader */
    CHECK_OK(run_ctx(e, c, NULL, &io, &got));
    CHECK(!outs_equal(&got, &want, 1));
    report_diff(e, "y", &got, &want, 0, "a constant poisoned too early (expected)");
    ws_out_free(&got);
    e->ws.last[t] = keep;
    fprintf(stderr, "breaking the schedule: layer %s's copies at the start, %s poisoned early: both noticed\n",
            e->g.layers[j].name, e->g.tensors[t].name);
  }
  ws_out_free(&want);
  kiln_context_destroy(c), kiln_context_destroy(r);
  kiln_engine_destroy(e);
}
#endif

/* Builds net (then destroys it) for the test's target; *img NULL when that fails. */
static void build_image(kiln_network *net, kiln_dtype precision, kiln_weight_only wo, void **img, size_t *size) {
  kiln_build_params bp = kiln_build_default_params();
  bp.target = WS_TARGET;
  bp.precision = precision;
  bp.weight_only = wo;
  *img = NULL, *size = 0;
  CHECK(net != NULL);
  if (net) CHECK_OK(kiln_build(net, &bp, img, size, NULL));
  kiln_network_destroy(net);
}

static void test_chain(kiln_dtype precision) {
  void *img;
  size_t size;
  build_image(sn_build(11), precision, KILN_WEIGHT_ONLY_NONE, &img, &size);
  kiln_engine *resident = img ? load(img, size, 0) : NULL;
  if (!resident) {
    kiln_free(img);
    return;
  }
  size_t min = kiln_engine_stream_min_bytes(resident), all = kiln_engine_weight_bytes(resident);
  size_t layer = kiln_dtype_bytes(precision, SN_D * SN_D) + 256;
  CHECK(min >= 2 * kiln_dtype_bytes(precision, SN_D * SN_D)); /* the tied weight is kept while the others pass */
  CHECK(min < all / 2);
  CHECK_EQ_INT(min % 256, 0);
  float *x32 = malloc(sizeof(float) * SN_MAX_B * SN_D);
  void *x = malloc(sizeof(float) * SN_MAX_B * SN_D);
  check_rng r = {5};
  check_fill(&r, x32, SN_MAX_B * SN_D, -1, 1);
  kiln_convert_floats(x, precision, x32, KILN_DTYPE_FP32, SN_MAX_B * SN_D);
  char what[64];
  snprintf(what, sizeof what, "chain %s", kiln_dtype_name(precision));
  const size_t rings[] = {min, min + 256, min + layer, all / 2, all, 2 * all};
  for (size_t i = 0; i < sizeof rings / sizeof rings[0]; i++) check_ring(img, size, resident, rings[i], x, what);
  kiln_engine *shared = load(img, size, min);
  if (shared) check_shared(shared, resident, x, what);
  kiln_engine_destroy(shared);

  /* too small: a clear error naming the minimum */
  char need[64];
  snprintf(need, sizeof need, "at least %zu bytes", min);
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  kiln_engine *e = NULL;
  lp.weight_stream_bytes = min - 256;
  CHECK_STATUS(kiln_engine_load_memory(img, size, &lp, &e), KILN_ERR_INVALID_ARG);
  CHECK_MSG(need);
  CHECK_MSG("weight_stream_bytes");
  lp.weight_stream_bytes = 1;
  CHECK_STATUS(kiln_engine_load_memory(img, size, &lp, &e), KILN_ERR_INVALID_ARG);
  CHECK_MSG(need);
  CHECK(e == NULL);
#ifndef WSTREAM_TEST_GPU
  check_breaking(img, size, resident, min, x);
#endif
  free(x32), free(x);
  kiln_engine_destroy(resident);
  kiln_free(img);
}

/* The weight-only test network (shared table and projection) at its minimum ring. */
static void test_wq(kiln_dtype precision, kiln_weight_only wo) {
  void *img;
  size_t size;
  build_image(wn_build(3, 2, 9, 2, 9), precision, wo, &img, &size);
  kiln_engine *resident = img ? load(img, size, 0) : NULL;
  kiln_engine *e = resident ? load(img, size, kiln_engine_stream_min_bytes(resident)) : NULL;
  void *x = NULL;
  int32_t *ids = NULL;
  wn_inputs(2, 9, 17, precision, &x, &ids);
  kiln_context *c = NULL, *r = NULL;
  if (e) check_schedule(e);
  if (e && resident) {
    CHECK_OK(kiln_context_create(e, 0, &c));
    CHECK_OK(kiln_context_create(resident, 0, &r));
  }
  int same = 0;
  void *s = stream_new();
  for (int rep = 0; c && r && rep < 2; rep++) {
    ws_io io;
    memset(&io, 0, sizeof io);
    io.n_in = 2, io.n_out = WN_OUTPUTS;
    io.in_name[0] = "x", io.in_dims[0] = (kiln_dims){3, {2, 9, WN_D}}, io.in_host[0] = x;
    io.in_name[1] = "ids", io.in_dims[1] = (kiln_dims){2, {2, 9}}, io.in_host[1] = ids;
    for (int i = 0; i < WN_OUTPUTS; i++) io.out_name[i] = wn_output_names[i];
    ws_out want = {0}, got = {0};
    CHECK_OK(run_ctx(resident, r, s, &io, &want));
    CHECK_OK(run_ctx(e, c, s, &io, &got));
    same += outs_equal(&got, &want, WN_OUTPUTS);
    for (int i = 0; i < WN_OUTPUTS; i++)
      if (!out_equal(&got, &want, i)) report_diff(e, wn_output_names[i], &got, &want, i, "weight-only network");
    ws_out_free(&want), ws_out_free(&got);
  }
  fprintf(stderr, "weight-only network %s, weights %s: ring %zu of %zu bytes: %d of 2 runs bitwise equal\n",
          kiln_dtype_name(precision), wo == KILN_WEIGHT_ONLY_INT8 ? "int8" : "float",
          e ? kiln_engine_context_bytes(e) - kiln_engine_context_bytes(resident) : 0, e ? kiln_engine_streamed_bytes(e) : 0,
          same);
  CHECK_EQ_INT(same, 2);
  stream_free(s);
  kiln_context_destroy(c), kiln_context_destroy(r);
  kiln_engine_destroy(e), kiln_engine_destroy(resident);
  free(x), free(ids);
  kiln_free(img);
}

int main(void) {
#ifdef WSTREAM_TEST_GPU
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
#endif
  setenv("KILN_POISON", "1", 1);
  test_chain(KILN_DTYPE_FP32);
#ifdef WSTREAM_TEST_GPU
  test_chain(KILN_DTYPE_FP16);
  test_wq(KILN_DTYPE_FP16, KILN_WEIGHT_ONLY_NONE);
  test_wq(KILN_DTYPE_FP16, KILN_WEIGHT_ONLY_INT8);
  test_wq(KILN_DTYPE_BF16, KILN_WEIGHT_ONLY_INT4);
#else
  test_wq(KILN_DTYPE_FP32, KILN_WEIGHT_ONLY_NONE);
  test_wq(KILN_DTYPE_FP32, KILN_WEIGHT_ONLY_INT8);
#endif
  return check_report();
}
