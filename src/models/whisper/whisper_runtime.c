/* src/models/whisper/whisper_runtime.c - kiln_whisper: loads an engine folder written by
 * kiln_whisper_build(), runs the encoder once per 30 s window and the decoder step by step with
 * a KV cache kept by the host, and decodes greedily (suppressed tokens as openai-whisper applies
 * them at temperature 0 without timestamps).
 *
 * KV cache: per decoder layer a key and a value buffer [rows, H, n_text_ctx, Dh], written in
 * place by the decoder engine at each row's length (w->T); the cross-attention keys/values
 * [max_batch, H, 1500, Dh] stay where the encoder wrote them. With an int8 KV cache (the
 * engines' cache and cross-attention tensors are int8) each of these is codes plus a scale buffer
 * [rows or max_batch, H, n_text_ctx or 1500] in the engine's precision, written by the engines
 * too; copies of cache rows (beam reordering, KV save/load) copy the scales with the codes.
 * Buffers are host memory for CPU engines and device memory (cudaMalloc) for CUDA engines;
 * float tensors are in the engine's precision and converted at the edges (mel in, logits out).
 * Window slots (in-flight batching): kiln_whisper_encode_slot / _encode_slot_frames run the
 * encoder for one window into its slot's cross-attention rows, leaving the other slots and their
 * decoder rows as they are; _encode_slot_frames takes the window from a whole file's log-mel
 * already in engine memory (on the GPU: written there by mel_cuda.cu), so no host round trip.
 * The encoder engine may be loaded with weight streaming (stream_encoder_bytes): its weights in
 * pinned host memory, copied through a ring while it runs; the decoder's stay on the device.
 * Not here: timestamps, temperature fallback, beams, long-form audio (decode.c, beam.c,
 * transcribe.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/pool.h"
#include "core/round.h"
#include "core/rowmath.h"
#include "kiln/engine.h"
#include "kiln/tokenizer.h"
#include "models/whisper/whisper_internal.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"
#include "models/whisper/greedy_cuda.h"
#endif

/* Self-attention caches: 2 per decoder layer (k, v) [rows, H, n_text_ctx, Dh] of codes or
 * floats, and for int8 caches their scales [rows, H, n_text_ctx] (else NULL). */
typedef struct cache_set {
  void **kv, **scale;
} cache_set;

struct kiln_whisper {
  kiln_whisper_config c;
  kiln_engine *enc, *dec;
  size_t enc_ring;    /* the encoder's weight streaming ring (0: its weights are resident) */
  int enc_graphs;     /* the encoder runs of slot 0 replay a captured CUDA graph (run_encoder) */
  kiln_context *ectx, *dctx;
  void *ctx_mem;      /* one block both contexts use (create_contexts) */
  size_t ctx_bytes;
  kiln_tokenizer *tok;
  kiln_dtype prec;
  size_t esz;         /* bytes per float element in the engines */
  int cuda;
  int64_t dh;         /* decoder head size */
  int32_t max_batch;  /* windows the encoder takes at once */
  int32_t rows;       /* decoder rows: max_batch x max_beams */
  int kv8;            /* int8 KV cache (codes + scales) */
  size_t csz;         /* bytes per cached key/value element: 1 for int8, else esz */
  int32_t chunk;      /* most tokens per row in one decoder run */
  void *stream;       /* cudaStream_t for CUDA engines (graphs need one), else NULL */
  void *mel;          /* [max_batch, n_mels, 3000] */
  void *enc_out;      /* [max_batch, 1500, d] */
  void **cross;       /* 2 per decoder layer: k, v [max_batch, H, 1500, Dh] */
  void **cross_scale; /* int8: 2 per decoder layer: k, v scales [max_batch, H, 1500] */
  cache_set cache;    /* 2 per decoder layer: k, v [rows, H, n_text_ctx, Dh], kept in place */
  int32_t *io;        /* engine memory: ids [rows * chunk], positions [rows * chunk], lengths [rows] */
  int32_t *io_host;   /* host staging of io (pinned for CUDA engines) */
  int io_pending;     /* an upload from io_host may still be running */
  void *logits;       /* [rows * chunk, vocab] in the engine precision */
  void *logits_host;  /* host staging of logits rows (pinned for CUDA engines) */
  void *stage;        /* host staging for mel conversions */
  size_t stage_bytes;
  int32_t *T;         /* [rows]: tokens in each row's cache */
  int32_t windows;    /* windows encoded into the cross-attention rows */
  int32_t beams;      /* decoder rows per window in the current decode (cross row = row / beams) */
  int32_t last_first; /* first token (of the last kiln_whisper_decode call) in the logits buffer */
  int32_t last_rows;  /* rows in the logits buffer */
  int32_t host_rows;  /* CUDA: logits rows 0 .. host_rows - 1 of the last run are in logits_host */
  int32_t bound_r0, bound_b, bound_k0, bound_bk; /* what the decoder context is bound to (-1: nothing) */
  float *row;         /* [vocab] fp32: one logits row for greedy decoding */
  int32_t *sup_dev;   /* CUDA: the suppressed tokens, for greedy choices on the GPU */
  int32_t *picks;     /* CUDA: [rows] greedy choices (device) */
  int32_t *picks_host;/* CUDA: [rows] their host copy (pinned) */
  int encoded;
  int32_t device;     /* CUDA device of the engines */
  int32_t decode_threads; /* threads of the host side of a decoding step (load params, resolved) */
  kiln_pool *pool;    /* their pool, started by the first step that needs it (NULL before, or for 1) */
};

/* ---- memory for the engines' tensors --------------------------------------------------------- */

static kiln_status mem_alloc(const kiln_whisper *w, size_t bytes, void **p) {
  *p = NULL;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMalloc(p, bytes + 16) != cudaSuccess)
      return kiln_error(KILN_ERR_OUT_OF_DEVICE_MEMORY, "whisper: cannot allocate %zu bytes on the GPU", bytes);
    return kiln_cuda_poison(*p, bytes + 16, NULL);
  }
#endif
  (void)w;
  *p = calloc(1, bytes + 16);
  if (*p && kiln_poison_enabled()) memset(*p, KILN_POISON_BYTE, bytes + 16);
  return *p ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: cannot allocate %zu bytes", bytes);
}

static void mem_free(const kiln_whisper *w, void *p) {
  if (!p) return;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    cudaFree(p);
    return;
  }
#endif
  (void)w;
  free(p);
}

/* Host staging buffers: pinned for CUDA engines so uploads and downloads are asynchronous. */
static kiln_status host_alloc(const kiln_whisper *w, size_t bytes, void **p) {
  *p = NULL;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMallocHost(p, bytes + 16) != cudaSuccess)
      return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: cannot allocate %zu bytes of pinned host memory", bytes);
    return KILN_OK;
  }
#endif
  (void)w;
  *p = calloc(1, bytes + 16);
  return *p ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: cannot allocate %zu bytes", bytes);
}

static void host_free(const kiln_whisper *w, void *p) {
  if (!p) return;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    cudaFreeHost(p);
    return;
  }
#endif
  (void)w;
  free(p);
}

/* Copies between host and engine memory, in stream order: to_engine host -> engine, else
 * engine -> host (and then the stream is synchronized, so the host may read). */
static kiln_status mem_copy(kiln_whisper *w, void *dst, const void *src, size_t bytes, int to_engine) {
  if (!bytes) return KILN_OK;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    cudaStream_t st = (cudaStream_t)w->stream;
    if (cudaMemcpyAsync(dst, src, bytes, to_engine ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, st) != cudaSuccess ||
        (!to_engine && cudaStreamSynchronize(st) != cudaSuccess))
      return kiln_error(KILN_ERR_CUDA, "whisper: copying %zu bytes %s the GPU failed: %s", bytes, to_engine ? "to" : "from",
                        cudaGetErrorString(cudaGetLastError()));
    if (!to_engine) w->io_pending = 0;
    return KILN_OK;
  }
#endif
  (void)w, (void)to_engine;
  memcpy(dst, src, bytes);
  return KILN_OK;
}

/* Engine memory -> engine memory: height rows of width bytes, pitches apart (stream order). */
static kiln_status copy_2d(const kiln_whisper *w, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                           size_t height) {
  if (!width || !height) return KILN_OK;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice, (cudaStream_t)w->stream) !=
        cudaSuccess)
      return kiln_error(KILN_ERR_CUDA, "whisper: copying a KV cache on the GPU failed: %s", cudaGetErrorString(cudaGetLastError()));
    return KILN_OK;
  }
#endif
  (void)w;
  for (size_t i = 0; i < height; i++) memmove((char *)dst + i * dpitch, (const char *)src + i * spitch, width);
  return KILN_OK;
}

/* One cache row's first T positions of every head, for every layer's k and v (and their scales
 * for int8 caches): from row src_row of src to row dst_row of dst. */
static kiln_status copy_cache(const kiln_whisper *w, const cache_set *dst, int32_t dst_row, const cache_set *src,
                              int32_t src_row, int32_t T) {
  size_t n = (size_t)w->c.n_text_ctx, H = (size_t)w->c.decoder_heads, dh = (size_t)w->dh;
  size_t kpitch = n * dh * w->csz, krow = H * kpitch, spitch = n * w->esz, srow = H * spitch;
  for (int32_t i = 0; i < 2 * w->c.decoder_layers; i++) {
    KILN_TRY(copy_2d(w, (char *)dst->kv[i] + dst_row * krow, kpitch, (const char *)src->kv[i] + src_row * krow, kpitch,
                     (size_t)T * dh * w->csz, H));
    if (w->kv8)
      KILN_TRY(copy_2d(w, (char *)dst->scale[i] + dst_row * srow, spitch, (const char *)src->scale[i] + src_row * srow,
                       spitch, (size_t)T * w->esz, H));
  }
  return KILN_OK;
}

static kiln_status stage_reserve(kiln_whisper *w, size_t bytes) {
  if (bytes <= w->stage_bytes) return KILN_OK;
  void *p = realloc(w->stage, bytes);
  if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory (%zu bytes)", bytes);
  w->stage = p;
  w->stage_bytes = bytes;
  return KILN_OK;
}

/* Sizes of the runtime's own buffers (alloc_buffers and kiln_whisper_memory_plan agree). */
static size_t enc_out_bytes(const kiln_whisper *w) {
  return (size_t)w->max_batch * (size_t)w->c.n_audio_ctx * (size_t)w->c.d_model * w->esz;
}
static size_t cross_bytes(const kiln_whisper *w) { /* one layer's k (or v), every window */
  return (size_t)w->max_batch * (size_t)w->c.n_audio_ctx * (size_t)w->c.d_model * w->csz;
}
static size_t cross_scale_bytes(const kiln_whisper *w) { /* int8: its scales */
  return w->kv8 ? (size_t)w->max_batch * (size_t)w->c.decoder_heads * (size_t)w->c.n_audio_ctx * w->esz : 0;
}
static size_t cache_row_bytes(const kiln_whisper *w) { /* one layer's k (or v), one row */
  return (size_t)w->c.n_text_ctx * (size_t)w->c.d_model * w->csz;
}
static size_t cache_scale_row_bytes(const kiln_whisper *w) { /* int8: its scales */
  return w->kv8 ? (size_t)w->c.decoder_heads * (size_t)w->c.n_text_ctx * w->esz : 0;
}
static size_t io_count(const kiln_whisper *w) { return (size_t)w->rows * (size_t)(2 * w->chunk + 1); }
static size_t logits_bytes(const kiln_whisper *w) {
  return (size_t)w->rows * (size_t)w->chunk * (size_t)w->c.vocab_size * w->esz;
}
static size_t cross_kv_bytes(const kiln_whisper *w) { /* every layer's, k and v */
  return (size_t)2 * (size_t)w->c.decoder_layers * (cross_bytes(w) + cross_scale_bytes(w));
}
static size_t self_kv_bytes(const kiln_whisper *w) { /* every layer's, k and v, every row */
  return (size_t)2 * (size_t)w->c.decoder_layers * (size_t)w->rows * (cache_row_bytes(w) + cache_scale_row_bytes(w));
}
static size_t io_buffer_bytes(const kiln_whisper *w) { /* mel, encoder output, tokens, logits */
  size_t mel = (size_t)w->max_batch * (size_t)w->c.n_mels * 2 * (size_t)w->c.n_audio_ctx * w->esz;
  return mel + enc_out_bytes(w) + io_count(w) * 4 + logits_bytes(w);
}

/* ---- loading --------------------------------------------------------------------------------- */

kiln_whisper_load_params kiln_whisper_default_load_params(void) {
  kiln_whisper_load_params p;
  memset(&p, 0, sizeof p);
  return p;
}

static int32_t manifest_int(const cJSON *m, const char *key, int32_t dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
  return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 4096 ? (int32_t)v->valuedouble : dflt;
}

static kiln_status read_manifest(kiln_whisper *w, const char *dir, char *enc, char *dec, size_t cap) {
  char path[4096];
  kiln_whisper_config *c = &w->c;
  snprintf(path, sizeof path, "%s/%s", dir, KILN_WHISPER_MANIFEST);
  cJSON *m = NULL;
  kiln_status s = kiln_whisper_json_read(path, &m);
  if (s == KILN_ERR_IO)
    return kiln_error(KILN_ERR_IO, "no %s in '%s'; build the engines with `kiln build whisper`", KILN_WHISPER_MANIFEST, dir);
  if (s != KILN_OK) return s;
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(m, "format"), *ver = cJSON_GetObjectItemCaseSensitive(m, "version");
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(m, "encoder"), *d = cJSON_GetObjectItemCaseSensitive(m, "decoder");
  if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, KILN_WHISPER_FORMAT) != 0 || !cJSON_IsString(e) ||
      !cJSON_IsString(d))
    s = kiln_error(KILN_ERR_FORMAT, "%s is not a kiln Whisper manifest; rebuild with `kiln build whisper`", path);
  else if (!cJSON_IsNumber(ver) || ver->valuedouble != KILN_WHISPER_FORMAT_VERSION)
    s = kiln_error(KILN_ERR_VERSION, "%s has manifest version %g; this kiln reads version %d: rebuild the engines", path,
                   cJSON_IsNumber(ver) ? ver->valuedouble : -1.0, KILN_WHISPER_FORMAT_VERSION);
  if (s == KILN_OK) s = kiln_whisper_config_from_json(m, path, c);
  if (s == KILN_OK) s = kiln_whisper_json_ints(m, "suppress_tokens", path, c->suppress, &c->n_suppress);
  if (s == KILN_OK) s = kiln_whisper_json_ints(m, "begin_suppress_tokens", path, c->begin_suppress, &c->n_begin_suppress);
  if (s == KILN_OK) {
    if (c->n_suppress < 0) c->n_suppress = 0;
    if (c->n_begin_suppress < 0) c->n_begin_suppress = 0;
    w->max_batch = manifest_int(m, "max_batch", 1);
    w->rows = w->max_batch * manifest_int(m, "max_beams", 1);
    snprintf(enc, cap, "%s/%s", dir, e->valuestring);
    snprintf(dec, cap, "%s/%s", dir, d->valuestring);
  }
  cJSON_Delete(m);
  return s;
}

/* The dtype of engine tensor `name` (KILN_DTYPE_INVALID when the engine has none). */
static kiln_dtype io_dtype(const kiln_engine *e, const char *name) {
  kiln_io_info info;
  for (int32_t i = 0; i < kiln_engine_num_io(e); i++)
    if (kiln_engine_io(e, i, &info) == KILN_OK && strcmp(info.name, name) == 0) return info.dtype;
  return KILN_DTYPE_INVALID;
}

/* The caches' buffers for `rows` rows (cache_free frees what was allocated, also after an error). */
static kiln_status cache_alloc(const kiln_whisper *w, cache_set *c, int32_t rows) {
  size_t n = (size_t)2 * w->c.decoder_layers;
  c->kv = calloc(n, sizeof(void *));
  c->scale = w->kv8 ? calloc(n, sizeof(void *)) : NULL;
  if (!c->kv || (w->kv8 && !c->scale)) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  for (size_t i = 0; i < n; i++) {
    KILN_TRY(mem_alloc(w, (size_t)rows * cache_row_bytes(w), &c->kv[i]));
    if (w->kv8) KILN_TRY(mem_alloc(w, (size_t)rows * cache_scale_row_bytes(w), &c->scale[i]));
  }
  return KILN_OK;
}

static void cache_free(const kiln_whisper *w, cache_set *c) {
  for (int32_t i = 0; i < 2 * w->c.decoder_layers; i++) {
    if (c->kv) mem_free(w, c->kv[i]);
    if (c->scale) mem_free(w, c->scale[i]);
  }
  free(c->kv), free(c->scale);
  c->kv = c->scale = NULL;
}

static kiln_status alloc_buffers(kiln_whisper *w) {
  const kiln_whisper_config *c = &w->c;
  int32_t L = c->decoder_layers;
  w->cross = calloc((size_t)2 * L, sizeof(void *));
  w->cross_scale = calloc((size_t)2 * L, sizeof(void *));
  w->row = malloc((size_t)c->vocab_size * sizeof(float));
  w->T = calloc((size_t)w->rows, sizeof(int32_t));
  if (!w->cross || !w->cross_scale || !w->row || !w->T) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  KILN_TRY(mem_alloc(w, (size_t)w->max_batch * (size_t)c->n_mels * 2 * (size_t)c->n_audio_ctx * w->esz, &w->mel));
  KILN_TRY(mem_alloc(w, enc_out_bytes(w), &w->enc_out));
  for (int32_t i = 0; i < 2 * L; i++) {
    KILN_TRY(mem_alloc(w, cross_bytes(w), &w->cross[i]));
    if (w->kv8) KILN_TRY(mem_alloc(w, cross_scale_bytes(w), &w->cross_scale[i]));
  }
  KILN_TRY(cache_alloc(w, &w->cache, w->rows));
  KILN_TRY(mem_alloc(w, io_count(w) * 4, (void **)&w->io));
  KILN_TRY(host_alloc(w, io_count(w) * 4, (void **)&w->io_host));
  KILN_TRY(mem_alloc(w, logits_bytes(w), &w->logits));
  KILN_TRY(host_alloc(w, logits_bytes(w), &w->logits_host));
  if (!w->cuda) return KILN_OK;
  KILN_TRY(mem_alloc(w, (size_t)(c->n_suppress + 1) * 4, (void **)&w->sup_dev));
  KILN_TRY(mem_alloc(w, (size_t)w->rows * 4, (void **)&w->picks));
  KILN_TRY(host_alloc(w, (size_t)w->rows * 4, (void **)&w->picks_host));
  KILN_TRY(mem_copy(w, w->sup_dev, c->suppress, (size_t)c->n_suppress * 4, 1));
  return mem_copy(w, w->picks_host, w->picks, 4, 0); /* waits for the upload */
}

/* The encoder's weight streaming ring for stream_encoder_bytes (0: none): AUTO is two encoder
 * layers' share of the engine file (almost all weights), rounded up to whole MiB, at least 1 MiB. */
static kiln_status encoder_ring(const kiln_whisper *w, const char *enc, int64_t asked, size_t *ring) {
  *ring = 0;
  if (asked == 0) return KILN_OK;
  if (asked > 0) return *ring = (size_t)asked, KILN_OK;
  if (asked != KILN_WHISPER_STREAM_AUTO)
    return kiln_error(KILN_ERR_INVALID_ARG, "stream_encoder_bytes is %lld: give 0 (off), a ring size in bytes, or "
                                            "KILN_WHISPER_STREAM_AUTO", (long long)asked);
  struct stat st;
  if (stat(enc, &st) != 0) return kiln_error(KILN_ERR_IO, "cannot read the size of %s", enc);
  size_t mib = (size_t)1 << 20, layers = w->c.encoder_layers > 0 ? (size_t)w->c.encoder_layers : 1;
  size_t bytes = 2 * ((size_t)st.st_size / layers + 1);
  *ring = kiln_round_up(bytes, mib);
  return KILN_OK;
}

static kiln_status shape4(kiln_context *ctx, const char *fmt, int32_t i, int64_t b, int64_t h, int64_t t, int64_t dh) {
  char name[64];
  kiln_dims d = {4, {b, h, t, dh}};
  snprintf(name, sizeof name, fmt, i);
  return kiln_context_set_input_shape(ctx, name, &d);
}

static kiln_status shape3(kiln_context *ctx, const char *fmt, int32_t i, int64_t b, int64_t h, int64_t t) {
  char name[64];
  kiln_dims d = {3, {b, h, t}};
  snprintf(name, sizeof name, fmt, i);
  return kiln_context_set_input_shape(ctx, name, &d);
}

/* Both engines' contexts in one block of the larger one's size: they take turns on w->stream (on
 * the calling thread for CPU engines), and nothing in a context's memory outlives its run. */
static kiln_status create_contexts(kiln_whisper *w) {
  size_t e = kiln_engine_context_bytes(w->enc), d = kiln_engine_context_bytes(w->dec);
  w->ctx_bytes = e > d ? e : d;
  if (w->cuda) {
    KILN_TRY(mem_alloc(w, w->ctx_bytes, &w->ctx_mem)); /* cudaMalloc: aligned as contexts need */
  } else {
    w->ctx_mem = aligned_alloc(256, kiln_round_up(w->ctx_bytes, 256));
    if (!w->ctx_mem) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: cannot allocate %zu bytes", w->ctx_bytes);
  }
  KILN_TRY(kiln_context_create_with_memory(w->enc, 0, w->ctx_mem, w->ctx_bytes, &w->ectx));
  return kiln_context_create_with_memory(w->dec, 0, w->ctx_mem, w->ctx_bytes, &w->dctx);
}

static kiln_status load_parts(kiln_whisper *w, const char *dir, const kiln_whisper_load_params *p) {
  char enc[4096], dec[4096];
  KILN_TRY(read_manifest(w, dir, enc, dec, sizeof enc));
  const int32_t model_ctx = w->c.n_text_ctx;
  if (p->max_text_tokens && (p->max_text_tokens < KILN_WHISPER_MIN_TEXT_TOKENS || p->max_text_tokens > model_ctx))
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: max_text_tokens %d is out of range; give 0 (the model's %d) or %d to %d",
                      p->max_text_tokens, model_ctx, KILN_WHISPER_MIN_TEXT_TOKENS, model_ctx);
  if (p->max_text_tokens) w->c.n_text_ctx = p->max_text_tokens; /* caches, limits and decoding rules follow it */
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.device = p->device;
  KILN_TRY(encoder_ring(w, enc, p->stream_encoder_bytes, &lp.weight_stream_bytes));
  kiln_status s = kiln_engine_load(enc, &lp, &w->enc);
  if (s != KILN_OK && lp.weight_stream_bytes)
    return kiln_error_context(s, "streaming the encoder's weights (a ring of %.1f MiB): ",
                              (double)lp.weight_stream_bytes / 1048576.0);
  KILN_TRY(s);
  w->enc_ring = lp.weight_stream_bytes;
  const char *eg = getenv("KILN_ENCODER_GRAPHS");
  w->enc_graphs = !w->enc_ring && !(eg && strcmp(eg, "0") == 0);
  lp.weight_stream_bytes = 0; /* the decoder's weights stay on the device */
  KILN_TRY(kiln_engine_load(dec, &lp, &w->dec));
  w->prec = kiln_engine_precision(w->enc);
  w->esz = kiln_dtype_bytes(w->prec, 1);
  w->kv8 = io_dtype(w->dec, "cache_k.0") == KILN_DTYPE_INT8; /* the engines say how the KV cache is kept */
  w->csz = w->kv8 ? 1 : w->esz;
  w->cuda = kiln_engine_target(w->enc) == KILN_TARGET_CUDA;
  w->dh = w->c.d_model / w->c.decoder_heads;
  w->chunk = kiln_whisper_max_chunk(w->rows, w->c.n_text_ctx);
  w->beams = 1;
  w->bound_r0 = -1;
  w->device = p->device;
  if (kiln_engine_precision(w->dec) != w->prec || (kiln_engine_target(w->dec) == KILN_TARGET_CUDA) != w->cuda ||
      io_dtype(w->enc, "cross_k.0") != io_dtype(w->dec, "cross_k.0"))
    return kiln_error(KILN_ERR_FORMAT, "%s and %s were built with different settings; rebuild the folder", enc, dec);
#ifdef KILN_HAVE_CUDA
  if (w->cuda && cudaSetDevice(p->device) != cudaSuccess)
    return kiln_error(KILN_ERR_CUDA, "whisper: cannot use CUDA device %d", p->device);
  if (w->cuda && cudaStreamCreateWithFlags((cudaStream_t *)&w->stream, cudaStreamNonBlocking) != cudaSuccess)
    return kiln_error(KILN_ERR_CUDA, "whisper: cannot create a CUDA stream: %s", cudaGetErrorString(cudaGetLastError()));
#endif
  KILN_TRY(create_contexts(w));
  if (w->c.n_text_ctx < model_ctx) {
    kiln_status s = shape4(w->dctx, "cache_k.%d", 0, 1, w->c.decoder_heads, w->c.n_text_ctx, w->dh);
    if (s != KILN_OK)
      return kiln_error_context(s, "max_text_tokens %d: %s takes caches of %d tokens only (built by an older kiln); rebuild "
                                   "the folder with kiln build whisper, or load it with max_text_tokens 0: ",
                                w->c.n_text_ctx, dec, model_ctx);
  }
  KILN_TRY(kiln_tokenizer_load_hf(dir, &w->tok));
  if (kiln_tokenizer_vocab_size(w->tok) != w->c.vocab_size)
    return kiln_error(KILN_ERR_FORMAT, "the tokenizer in '%s' has %d tokens but the model %d; copy the checkpoint's own tokenizer files",
                      dir, kiln_tokenizer_vocab_size(w->tok), w->c.vocab_size);
  return alloc_buffers(w);
}

/* decode_threads: asked (> 0), else KILN_DECODE_THREADS, else min(4, online CPUs - 1), at least 1. */
static kiln_status decode_threads(int32_t asked, int32_t *out) {
  if (asked < 0 || asked > KILN_WHISPER_MAX_DECODE_THREADS)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: decode_threads %d is out of range; give 0 (automatic) to %d", asked,
                      KILN_WHISPER_MAX_DECODE_THREADS);
  const char *env = getenv("KILN_DECODE_THREADS");
  if (asked == 0 && env && *env) {
    char *end = NULL;
    long v = strtol(env, &end, 10);
    if (*end || v < 1 || v > KILN_WHISPER_MAX_DECODE_THREADS)
      return kiln_error(KILN_ERR_INVALID_ARG, "KILN_DECODE_THREADS=\"%s\": give a number of threads from 1 to %d (or unset it)",
                        env, KILN_WHISPER_MAX_DECODE_THREADS);
    asked = (int32_t)v;
  }
  if (asked == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    asked = cpus > 5 ? 4 : cpus > 1 ? (int32_t)cpus - 1 : 1;
  }
  *out = asked;
  return KILN_OK;
}

kiln_status kiln_whisper_load(const char *engine_dir, const kiln_whisper_load_params *params, kiln_whisper **out) {
  if (!engine_dir || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_load: NULL argument");
  kiln_whisper_load_params p = params ? *params : kiln_whisper_default_load_params();
  int32_t threads = 1;
  KILN_TRY(decode_threads(p.decode_threads, &threads));
  kiln_whisper *w = calloc(1, sizeof *w);
  if (!w) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  w->decode_threads = threads;
  kiln_status s = load_parts(w, engine_dir, &p);
  if (s != KILN_OK) {
    kiln_whisper_destroy(w);
    return s;
  }
  *out = w;
  return KILN_OK;
}

void kiln_whisper_destroy(kiln_whisper *w) {
  if (!w) return;
  kiln_pool_destroy(w->pool);
#ifdef KILN_HAVE_CUDA
  if (w->stream) cudaStreamSynchronize((cudaStream_t)w->stream);
#endif
  for (int32_t i = 0; i < 2 * w->c.decoder_layers; i++) {
    if (w->cross) mem_free(w, w->cross[i]);
    if (w->cross_scale) mem_free(w, w->cross_scale[i]);
  }
  cache_free(w, &w->cache);
  mem_free(w, w->mel), mem_free(w, w->enc_out), mem_free(w, w->io), mem_free(w, w->logits);
  host_free(w, w->io_host), host_free(w, w->logits_host), host_free(w, w->picks_host);
  mem_free(w, w->sup_dev), mem_free(w, w->picks);
  free(w->cross), free(w->cross_scale), free(w->stage), free(w->row), free(w->T);
  kiln_context_destroy(w->ectx);
  kiln_context_destroy(w->dctx);
  mem_free(w, w->ctx_mem);
  kiln_engine_destroy(w->enc);
  kiln_engine_destroy(w->dec);
  kiln_tokenizer_destroy(w->tok);
#ifdef KILN_HAVE_CUDA
  if (w->stream) cudaStreamDestroy((cudaStream_t)w->stream);
#endif
  free(w);
}

const kiln_whisper_config *kiln_whisper_get_config(const kiln_whisper *w) { return w ? &w->c : NULL; }

int32_t kiln_whisper_cache_length(const kiln_whisper *w) { return w && w->T ? w->T[0] : 0; }

int32_t kiln_whisper_max_rows(const kiln_whisper *w) { return w ? w->rows : 0; }

int32_t kiln_whisper_max_windows(const kiln_whisper *w) { return w ? w->max_batch : 0; }

int32_t kiln_whisper_decode_threads(const kiln_whisper *w) { return w ? w->decode_threads : 0; }

kiln_status kiln_whisper_decode_pool(kiln_whisper *w, kiln_pool **pool) {
  if (!w->pool && w->decode_threads > 1) KILN_TRY(kiln_pool_create(w->decode_threads, &w->pool));
  *pool = w->pool;
  return KILN_OK;
}

kiln_status kiln_whisper_memory_plan(const kiln_whisper *w, kiln_whisper_memory *m) {
  if (!w || !m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_memory_plan: NULL argument");
  memset(m, 0, sizeof *m);
  if (!w->cuda) return KILN_OK;
  m->encoder_weights = (int64_t)kiln_engine_weight_bytes(w->enc);
  m->encoder_ring = (int64_t)w->enc_ring;
  m->decoder_weights = (int64_t)kiln_engine_weight_bytes(w->dec);
  m->context = (int64_t)w->ctx_bytes;
  m->encoder_context = (int64_t)kiln_engine_context_bytes(w->enc);
  m->decoder_context = (int64_t)kiln_engine_context_bytes(w->dec);
  m->cross_kv = (int64_t)cross_kv_bytes(w);
  m->self_kv = (int64_t)self_kv_bytes(w);
  m->buffers = (int64_t)io_buffer_bytes(w);
  m->total = m->encoder_weights + m->decoder_weights + m->context + m->cross_kv + m->self_kv + m->buffers;
  return KILN_OK;
}

int64_t kiln_whisper_device_bytes(const kiln_whisper *w) {
  kiln_whisper_memory m;
  return w && kiln_whisper_memory_plan(w, &m) == KILN_OK ? m.total : 0;
}

int64_t kiln_whisper_decoder_weight_bytes(const kiln_whisper *w) {
  return w ? (int64_t)kiln_engine_weight_bytes(w->dec) : 0;
}

int64_t kiln_whisper_encoder_ring_bytes(const kiln_whisper *w) { return w ? (int64_t)w->enc_ring : 0; }

/* ---- running --------------------------------------------------------------------------------- */

static kiln_status bind(kiln_context *ctx, const char *fmt, int32_t i, void *p) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  return kiln_context_set_tensor(ctx, name, p);
}


/* Run the encoder on n windows already in engine memory at mel ([n, n_mels, 3000], engine
 * precision) into cross-attention rows (and encoder_out rows) slot .. slot + n - 1. */
static kiln_status run_encoder(kiln_whisper *w, int32_t slot, int32_t n, const void *mel) {
  const kiln_whisper_config *c = &w->c;
  size_t orow = (size_t)c->n_audio_ctx * (size_t)c->d_model * w->esz, crow = (size_t)c->n_audio_ctx * (size_t)c->d_model * w->csz;
  size_t srow = (size_t)c->decoder_heads * (size_t)c->n_audio_ctx * w->esz;
  kiln_dims md = {3, {n, c->n_mels, 2 * c->n_audio_ctx}};
  KILN_TRY(kiln_context_set_input_shape(w->ectx, "mel", &md));
  KILN_TRY(kiln_context_set_tensor(w->ectx, "mel", (void *)mel));
  KILN_TRY(kiln_context_set_tensor(w->ectx, "encoder_out", (char *)w->enc_out + (size_t)slot * orow));
  for (int32_t i = 0; i < c->decoder_layers; i++) {
    KILN_TRY(bind(w->ectx, "cross_k.%d", i, (char *)w->cross[2 * i] + (size_t)slot * crow));
    KILN_TRY(bind(w->ectx, "cross_v.%d", i, (char *)w->cross[2 * i + 1] + (size_t)slot * crow));
    if (!w->kv8) continue;
    KILN_TRY(bind(w->ectx, "cross_k_scale.%d", i, (char *)w->cross_scale[2 * i] + (size_t)slot * srow));
    KILN_TRY(bind(w->ectx, "cross_v_scale.%d", i, (char *)w->cross_scale[2 * i + 1] + (size_t)slot * srow));
  }
  /* The encoder is some 400 launches (a third of them cuBLASLt's, each with its own host work):
   * as a graph its host side is one launch. Runs into slot 0 (whole batches) replay one graph per
   * batch size; other slots (one window at a time) run eagerly rather than capture per slot. A
   * capture that fails turns graphs off for the encoder and the run goes on eagerly. */
  const int graphs = w->cuda && w->enc_graphs && slot == 0;
  if (w->cuda) KILN_TRY(kiln_context_set_cuda_graphs(w->ectx, graphs));
  kiln_status s = kiln_context_enqueue(w->ectx, w->stream);
  if (s == KILN_OK || !graphs) return s;
  kiln_log(KILN_LOG_WARN, "whisper: the encoder could not run as a CUDA graph (%s); running it without", kiln_last_error());
  w->enc_graphs = 0;
  KILN_TRY(kiln_context_set_cuda_graphs(w->ectx, 0));
  return kiln_context_enqueue(w->ectx, w->stream);
}

/* Encode n windows mel [n, n_mels, 3000] (fp32, host) into cross-attention rows 0..n-1; every
 * decoder row's cache is emptied. */
kiln_status kiln_whisper_encode_batch(kiln_whisper *w, const float *mels, int32_t n, float *encoder_out) {
  if (!w || !mels) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_encode: NULL argument");
  const kiln_whisper_config *c = &w->c;
  if (n < 1 || n > w->max_batch)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d windows at once; the engines were built for 1..%d (--max-batch)", n,
                      w->max_batch);
  int64_t n_mel = (int64_t)n * c->n_mels * 2 * c->n_audio_ctx, n_out = (int64_t)n * c->n_audio_ctx * c->d_model;
  KILN_TRY(stage_reserve(w, (size_t)(n_mel > n_out ? n_mel : n_out) * w->esz));
  kiln_convert_floats(w->stage, w->prec, mels, KILN_DTYPE_FP32, n_mel);
  w->encoded = 0;
  KILN_TRY(mem_copy(w, w->mel, w->stage, (size_t)n_mel * w->esz, 1));
  KILN_TRY(run_encoder(w, 0, n, w->mel));
  memset(w->T, 0, (size_t)w->rows * sizeof *w->T);
  w->windows = n;
  w->beams = 1;
  w->encoded = 1;
  if (encoder_out) {
    KILN_TRY(mem_copy(w, w->stage, w->enc_out, (size_t)n_out * w->esz, 0));
    kiln_convert_floats(encoder_out, KILN_DTYPE_FP32, w->stage, w->prec, n_out);
  }
  return KILN_OK;
}

kiln_status kiln_whisper_encode(kiln_whisper *w, const float *mel, float *encoder_out) {
  return kiln_whisper_encode_batch(w, mel, 1, encoder_out);
}

/* ---- window slots (in-flight batching) ------------------------------------------------------- */

kiln_status kiln_whisper_slots_reset(kiln_whisper *w, int32_t beams) {
  if (!w || beams < 1 || beams > w->rows)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d rows per window; the decoder has %d rows (--max-batch x --max-beam)", beams,
                      w ? w->rows : 0);
  memset(w->T, 0, (size_t)w->rows * sizeof *w->T);
  w->windows = 0;
  w->beams = beams;
  w->encoded = 0;
  return KILN_OK;
}

/* The slot's checks and bookkeeping once its cross-attention rows hold a new window. */
static kiln_status slot_check(const kiln_whisper *w, int32_t slot) {
  if (slot < 0 || slot >= w->max_batch || (int64_t)(slot + 1) * w->beams > w->rows)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "whisper: window slot %d does not fit: the engines take %d windows and %d decoder rows (%d per window); "
                      "rebuild with a larger --max-batch or use fewer windows",
                      slot, w->max_batch, w->rows, w->beams);
  return KILN_OK;
}

static void slot_encoded(kiln_whisper *w, int32_t slot) {
  for (int32_t r = slot * w->beams; r < (slot + 1) * w->beams; r++) w->T[r] = 0;
  if (!w->encoded) w->windows = 0;
  if (w->windows < slot + 1) w->windows = slot + 1;
  w->encoded = 1;
}

kiln_status kiln_whisper_encode_slot(kiln_whisper *w, int32_t slot, const float *mel) {
  if (!w || !mel) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_encode_slot: NULL argument");
  KILN_TRY(slot_check(w, slot));
  const kiln_whisper_config *c = &w->c;
  int64_t n_mel = (int64_t)c->n_mels * 2 * c->n_audio_ctx;
  KILN_TRY(stage_reserve(w, (size_t)n_mel * w->esz));
  kiln_convert_floats(w->stage, w->prec, mel, KILN_DTYPE_FP32, n_mel);
  KILN_TRY(mem_copy(w, w->mel, w->stage, (size_t)n_mel * w->esz, 1));
  KILN_TRY(run_encoder(w, slot, 1, w->mel));
  slot_encoded(w, slot);
  return KILN_OK;
}

/* Engine memory rows of height x width bytes (pitch apart) set to zero (stream order). */
static kiln_status zero_2d(const kiln_whisper *w, void *dst, size_t pitch, size_t width, size_t height) {
  if (!width || !height) return KILN_OK;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMemset2DAsync(dst, pitch, 0, width, height, (cudaStream_t)w->stream) != cudaSuccess)
      return kiln_error(KILN_ERR_CUDA, "whisper: clearing a mel window on the GPU failed: %s", cudaGetErrorString(cudaGetLastError()));
    return KILN_OK;
  }
#endif
  (void)w;
  for (size_t i = 0; i < height; i++) memset((char *)dst + i * pitch, 0, width);
  return KILN_OK;
}

kiln_status kiln_whisper_encode_slot_frames(kiln_whisper *w, int32_t slot, const void *mel, int64_t frames, int64_t f0,
                                            int64_t take) {
  if (!w || !mel || f0 < 0 || take < 0 || f0 > frames)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_encode_slot_frames: NULL mel or frames %lld+%lld outside 0..%lld",
                      (long long)f0, (long long)take, (long long)frames);
  KILN_TRY(slot_check(w, slot));
  const kiln_whisper_config *c = &w->c;
  size_t width = (size_t)2 * (size_t)c->n_audio_ctx;
  size_t n = (size_t)(take < frames - f0 ? take : frames - f0);
  if (n > width) n = width;
  /* pad_or_trim(mel[:, f0 : f0 + take]): the window's frames, zeros after */
  KILN_TRY(copy_2d(w, w->mel, width * w->esz, (const char *)mel + (size_t)f0 * w->esz, (size_t)frames * w->esz, n * w->esz,
                   (size_t)c->n_mels));
  KILN_TRY(zero_2d(w, (char *)w->mel + n * w->esz, width * w->esz, (width - n) * w->esz, (size_t)c->n_mels));
  KILN_TRY(run_encoder(w, slot, 1, w->mel));
  slot_encoded(w, slot);
  return KILN_OK;
}

/* Bind the decoder to rows r0 .. r0 + B - 1 (caches from row r0, cross-attention rows from
 * r0 / beams): only when that changes, as binding is a lookup per tensor. */
static kiln_status decoder_bindings(kiln_whisper *w, int32_t r0, int32_t B) {
  const kiln_whisper_config *c = &w->c;
  int32_t k0 = r0 / w->beams, bk = B >= w->beams ? B / w->beams : 1;
  if (w->bound_r0 == r0 && w->bound_b == B && w->bound_k0 == k0 && w->bound_bk == bk) return KILN_OK;
  w->bound_r0 = -1;
  int64_t H = c->decoder_heads;
  size_t crow = (size_t)c->n_audio_ctx * (size_t)c->d_model * w->csz, krow = cache_row_bytes(w);
  size_t csrow = (size_t)H * (size_t)c->n_audio_ctx * w->esz, ksrow = cache_scale_row_bytes(w);
  KILN_TRY(kiln_context_set_tensor(w->dctx, "tokens", w->io));
  KILN_TRY(kiln_context_set_tensor(w->dctx, "positions", w->io + (size_t)w->rows * w->chunk));
  KILN_TRY(kiln_context_set_tensor(w->dctx, "lengths", w->io + (size_t)2 * w->rows * w->chunk));
  KILN_TRY(kiln_context_set_tensor(w->dctx, "logits", w->logits));
  for (int32_t i = 0; i < c->decoder_layers; i++) {
    KILN_TRY(shape4(w->dctx, "cache_k.%d", i, B, H, c->n_text_ctx, w->dh));
    KILN_TRY(shape4(w->dctx, "cache_v.%d", i, B, H, c->n_text_ctx, w->dh));
    KILN_TRY(shape4(w->dctx, "cross_k.%d", i, bk, H, c->n_audio_ctx, w->dh));
    KILN_TRY(shape4(w->dctx, "cross_v.%d", i, bk, H, c->n_audio_ctx, w->dh));
    KILN_TRY(bind(w->dctx, "cache_k.%d", i, (char *)w->cache.kv[2 * i] + (size_t)r0 * krow));
    KILN_TRY(bind(w->dctx, "cache_v.%d", i, (char *)w->cache.kv[2 * i + 1] + (size_t)r0 * krow));
    KILN_TRY(bind(w->dctx, "cross_k.%d", i, (char *)w->cross[2 * i] + (size_t)k0 * crow));
    KILN_TRY(bind(w->dctx, "cross_v.%d", i, (char *)w->cross[2 * i + 1] + (size_t)k0 * crow));
    if (!w->kv8) continue;
    KILN_TRY(shape3(w->dctx, "cache_k_scale.%d", i, B, H, c->n_text_ctx));
    KILN_TRY(shape3(w->dctx, "cache_v_scale.%d", i, B, H, c->n_text_ctx));
    KILN_TRY(shape3(w->dctx, "cross_k_scale.%d", i, bk, H, c->n_audio_ctx));
    KILN_TRY(shape3(w->dctx, "cross_v_scale.%d", i, bk, H, c->n_audio_ctx));
    KILN_TRY(bind(w->dctx, "cache_k_scale.%d", i, (char *)w->cache.scale[2 * i] + (size_t)r0 * ksrow));
    KILN_TRY(bind(w->dctx, "cache_v_scale.%d", i, (char *)w->cache.scale[2 * i + 1] + (size_t)r0 * ksrow));
    KILN_TRY(bind(w->dctx, "cross_k_scale.%d", i, (char *)w->cross_scale[2 * i] + (size_t)k0 * csrow));
    KILN_TRY(bind(w->dctx, "cross_v_scale.%d", i, (char *)w->cross_scale[2 * i + 1] + (size_t)k0 * csrow));
  }
  w->bound_r0 = r0, w->bound_b = B, w->bound_k0 = k0, w->bound_bk = bk;
  return KILN_OK;
}

/* The error for n new tokens that do not fit beside `cached` ones in a row's caches. */
static kiln_status past_cache(const kiln_whisper *w, int32_t n, int32_t cached) {
  return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d new tokens with %d cached exceed the decoder's %d positions (its "
                    "caches' length: max_text_tokens when loaded with one)", n, cached, w->c.n_text_ctx);
}

/* One decoder run: S tokens (tokens[b * S + s]) for each of rows r0 .. r0 + B - 1, appended to
 * their caches; logits [B * S, vocab] stay in w->logits. Single-token runs replay a captured
 * CUDA graph (one per batch size), longer ones run the layers directly. */
static kiln_status run_decoder(kiln_whisper *w, int32_t r0, int32_t B, int32_t S, const int32_t *tokens) {
  const kiln_whisper_config *c = &w->c;
  if (!w->encoded) return kiln_error(KILN_ERR_STATE, "whisper: decode before encode; run kiln_whisper_encode first");
  if (r0 < 0 || B < 1 || r0 + B > w->rows || S < 1 || S > w->chunk || (B > 1 && (r0 % w->beams || B % w->beams)))
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: rows %d..%d x %d tokens do not fit the decoder (%d rows, %d tokens a run)", r0,
                      r0 + B - 1, S, w->rows, w->chunk);
  if ((r0 + B - 1) / w->beams >= w->windows)
    return kiln_error(KILN_ERR_STATE, "whisper: row %d has no encoded window (%d windows, %d rows each)", r0 + B - 1, w->windows,
                      w->beams);
  for (int32_t b = 0; b < B; b++)
    if (S > c->n_text_ctx - w->T[r0 + b])
      return past_cache(w, S, w->T[r0 + b]);
  for (int32_t i = 0; i < B * S; i++)
    if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
      return kiln_error(KILN_ERR_INVALID_ARG, "whisper: token %d is outside the vocabulary (%d)", tokens[i], c->vocab_size);
#ifdef KILN_HAVE_CUDA
  if (w->cuda && w->io_pending && cudaStreamSynchronize((cudaStream_t)w->stream) != cudaSuccess)
    return kiln_error(KILN_ERR_CUDA, "whisper: the GPU failed: %s", cudaGetErrorString(cudaGetLastError()));
#endif
  int32_t *ids = w->io_host, *pos = ids + (size_t)w->rows * w->chunk, *len = ids + (size_t)2 * w->rows * w->chunk;
  memcpy(ids, tokens, (size_t)B * S * sizeof *ids);
  for (int32_t b = 0; b < B; b++) {
    len[b] = w->T[r0 + b];
    for (int32_t s = 0; s < S; s++) pos[b * S + s] = w->T[r0 + b] + s;
  }
  KILN_TRY(decoder_bindings(w, r0, B));
  kiln_dims td = {2, {B, S}}, ld = {1, {B}};
  KILN_TRY(kiln_context_set_input_shape(w->dctx, "tokens", &td));
  KILN_TRY(kiln_context_set_input_shape(w->dctx, "positions", &td));
  KILN_TRY(kiln_context_set_input_shape(w->dctx, "lengths", &ld));
  KILN_TRY(mem_copy(w, w->io, w->io_host, io_count(w) * 4, 1));
  w->io_pending = w->cuda;
  if (w->cuda) KILN_TRY(kiln_context_set_cuda_graphs(w->dctx, S == 1));
  KILN_TRY(kiln_context_enqueue(w->dctx, w->stream));
  for (int32_t b = 0; b < B; b++) w->T[r0 + b] += S;
  w->last_rows = B * S;
  w->host_rows = 0;
  return KILN_OK;
}

/* Logits rows [row0, row0 + rows) of the last decoder run as fp32: converted from the host
 * staging (which mirrors the logits buffer) after a copy of those rows, or without one when
 * fetch_logits brought them already; CPU engines' logits are host memory, converted in place. */
static kiln_status read_logits(kiln_whisper *w, int32_t row0, int32_t rows, float *out) {
  if (row0 < 0 || rows < 0 || row0 + rows > w->last_rows)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: logits rows %d..%d are not in the last decoder run (%d rows)", row0,
                      row0 + rows - 1, w->last_rows);
  size_t v = (size_t)w->c.vocab_size, offset = (size_t)row0 * v * w->esz;
  const char *src = (const char *)w->logits + offset;
  if (w->cuda) {
    if (row0 + rows > w->host_rows) KILN_TRY(mem_copy(w, (char *)w->logits_host + offset, src, (size_t)rows * v * w->esz, 0));
    src = (const char *)w->logits_host + offset;
  }
  kiln_convert_floats(out, KILN_DTYPE_FP32, src, w->prec, (int64_t)rows * (int64_t)v);
  return KILN_OK;
}

/* Logits rows [0, rows) of the last decoder run into the host staging in one copy. */
static kiln_status fetch_logits(kiln_whisper *w, int32_t rows) {
  if (rows < 0 || rows > w->last_rows)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: logits rows 0..%d are not in the last decoder run (%d rows)", rows - 1,
                      w->last_rows);
  if (!w->cuda || rows <= w->host_rows) return KILN_OK;
  KILN_TRY(mem_copy(w, w->logits_host, w->logits, (size_t)rows * (size_t)w->c.vocab_size * w->esz, 0));
  w->host_rows = rows;
  return KILN_OK;
}

/* Row 0 (one window, one sequence): n tokens in chunks of at most w->chunk; logits (may be
 * NULL) receives all n rows. The last chunk's rows stay readable (kiln_whisper_last_logits). */
kiln_status kiln_whisper_decode(kiln_whisper *w, const int32_t *tokens, int32_t n, float *logits) {
  if (!w || !tokens) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_decode: NULL argument");
  if (n < 1 || (w->encoded && n > w->c.n_text_ctx - w->T[0]))
    return past_cache(w, n, w->T[0]);
  w->beams = 1;
  for (int32_t done = 0; done < n;) {
    int32_t m = n - done < w->chunk ? n - done : w->chunk;
    KILN_TRY(run_decoder(w, 0, 1, m, tokens + done));
    if (logits) KILN_TRY(read_logits(w, 0, m, logits + (size_t)done * (size_t)w->c.vocab_size));
    w->last_first = done;
    done += m;
  }
  return KILN_OK;
}

/* ---- batched steps --------------------------------------------------------------------------- */

kiln_status kiln_whisper_set_beams(kiln_whisper *w, int32_t beams) {
  if (!w || beams < 1 || (int64_t)beams * w->windows > w->rows)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d rows per window for %d windows exceed the decoder's %d rows (--max-beam)",
                      beams, w ? w->windows : 0, w ? w->rows : 0);
  w->beams = beams;
  return KILN_OK;
}

kiln_status kiln_whisper_row_decode(kiln_whisper *w, int32_t row, const int32_t *tokens, int32_t n) {
  if (!w || !tokens) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_row_decode: NULL argument");
  for (int32_t done = 0; done < n;) {
    int32_t m = n - done < w->chunk ? n - done : w->chunk;
    KILN_TRY(run_decoder(w, row, 1, m, tokens + done));
    w->last_first = done;
    done += m;
  }
  return KILN_OK;
}

kiln_status kiln_whisper_batch_step(kiln_whisper *w, int32_t rows, const int32_t *tokens, float *logits) {
  if (!w || !tokens) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_batch_step: NULL argument");
  KILN_TRY(run_decoder(w, 0, rows, 1, tokens));
  w->last_first = 0;
  return logits ? read_logits(w, 0, rows, logits) : KILN_OK;
}

kiln_status kiln_whisper_step_fetch(kiln_whisper *w, int32_t rows, const void **host, kiln_dtype *dtype) {
  KILN_TRY(fetch_logits(w, rows));
  *host = w->cuda ? w->logits_host : w->logits;
  *dtype = w->prec;
  return KILN_OK;
}

int32_t kiln_whisper_row_length(const kiln_whisper *w, int32_t row) {
  return w && row >= 0 && row < w->rows ? w->T[row] : 0;
}

void kiln_whisper_row_reset(kiln_whisper *w, int32_t row, int32_t length) {
  if (w && row >= 0 && row < w->rows && length >= 0 && length <= w->T[row]) w->T[row] = length;
}

/* Row dst's cache becomes a copy of row src's (beam search reordering, on the engine's memory).
 * Rows may be the same (nothing to do). The copies are issued in stream order. */
kiln_status kiln_whisper_row_copy(kiln_whisper *w, int32_t dst, int32_t src) {
  if (!w || dst < 0 || src < 0 || dst >= w->rows || src >= w->rows)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: row copy %d <- %d outside 0..%d", dst, src, w ? w->rows - 1 : -1);
  if (dst == src) return KILN_OK;
  KILN_TRY(copy_cache(w, &w->cache, dst, &w->cache, src, w->T[src]));
  w->T[dst] = w->T[src];
  return KILN_OK;
}

/* ---- greedy decoding ------------------------------------------------------------------------- */

kiln_whisper_decode_params kiln_whisper_default_decode_params(void) {
  kiln_whisper_decode_params p;
  memset(&p, 0, sizeof p);
  p.language = "en";
  p.max_new_tokens = 224;
  return p;
}

void kiln_whisper_result_free(kiln_whisper_result *r) {
  if (!r) return;
  free(r->tokens);
  kiln_tokenizer_free(r->text);
  free(r);
}

/* argmax of row after masking the suppressed tokens (the first maximum wins, as torch's);
 * <|endoftext|> too while fewer than min_new tokens were sampled. */
static int32_t pick(const kiln_whisper *w, float *row, int32_t n_sampled, int32_t min_new) {
  const kiln_whisper_config *c = &w->c;
  for (int32_t i = 0; i < c->n_suppress; i++) row[c->suppress[i]] = -INFINITY;
  for (int32_t i = 0; n_sampled == 0 && i < c->n_begin_suppress; i++) row[c->begin_suppress[i]] = -INFINITY;
  if (n_sampled < min_new) row[c->eot] = -INFINITY;
  return (int32_t)kiln_row_argmax(row, c->vocab_size);
}

void kiln_whisper_results_free(kiln_whisper_result **r, int32_t n) {
  for (int32_t i = 0; r && i < n; i++) kiln_whisper_result_free(r[i]);
}

/* Greedy decoding of the n encoded windows together (one row each): each row's prompt alone,
 * then single-token steps over all n rows until every row has finished. */
static kiln_status greedy_batch(kiln_whisper *w, int32_t n, const int32_t *prompt, int32_t n_prompt, int32_t max_new,
                                int32_t min_new, int32_t **seq, int32_t *n_out) {
  int32_t V = w->c.vocab_size, live = n;
  KILN_TRY(kiln_whisper_set_beams(w, 1));
  int32_t *next = malloc((size_t)n * sizeof *next), *done = calloc((size_t)n, sizeof *done);
  float *rows = malloc((size_t)n * (size_t)V * sizeof *rows);
  kiln_status s = next && done && rows ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  for (int32_t b = 0; s == KILN_OK && b < n; b++) {
    n_out[b] = 0;
    s = kiln_whisper_row_decode(w, b, prompt, n_prompt);
    if (s == KILN_OK) s = read_logits(w, w->last_rows - 1, 1, rows + (size_t)b * V);
  }
  int on_gpu = 0; /* after the prompts, CUDA engines choose on the GPU (greedy_cuda.cu) */
  while (s == KILN_OK && live > 0) {
    int32_t sampled = max_new;
    for (int32_t b = 0; b < n; b++) {
      next[b] = w->c.eot;
      if (done[b]) continue;
      int32_t t = on_gpu ? w->picks_host[b] : pick(w, rows + (size_t)b * V, n_out[b], min_new);
      if (t == w->c.eot) {
        done[b] = 1, live--;
        continue;
      }
      seq[b][n_out[b]++] = t;
      next[b] = t;
      if (n_out[b] == max_new || w->T[b] >= w->c.n_text_ctx) done[b] = 1, live--;
      if (!done[b] && n_out[b] < sampled) sampled = n_out[b];
    }
    if (live > 0 && !w->cuda) s = kiln_whisper_batch_step(w, n, next, rows);
#ifdef KILN_HAVE_CUDA
    if (live > 0 && w->cuda) { /* the rows finished still step (their tokens are ignored) */
      s = run_decoder(w, 0, n, 1, next);
      if (s == KILN_OK)
        s = kiln_whisper_cuda_greedy(w->logits, w->prec, n, V, w->sup_dev, w->c.n_suppress,
                                     sampled < min_new ? w->c.eot : -1, w->picks, w->stream);
      if (s == KILN_OK) s = mem_copy(w, w->picks_host, w->picks, (size_t)n * 4, 0);
      on_gpu = 1;
    }
#endif
  }
  free(next), free(done), free(rows);
  return s;
}

kiln_status kiln_whisper_transcribe_batch(kiln_whisper *w, const float *mels, int32_t n,
                                          const kiln_whisper_decode_params *params, kiln_whisper_result **out) {
  if (!w || !mels || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_transcribe: NULL argument");
  kiln_whisper_decode_params p = params ? *params : kiln_whisper_default_decode_params();
  int multi = kiln_tokenizer_is_multilingual(w->tok);
  int32_t prompt[4], n_prompt = 0;
  KILN_TRY(kiln_tokenizer_sot_sequence(w->tok, multi ? (p.language ? p.language : "en") : NULL,
                                       multi ? (p.translate ? KILN_TASK_TRANSLATE : KILN_TASK_TRANSCRIBE) : KILN_TASK_NONE, 0,
                                       prompt, &n_prompt));
  int32_t max_new = p.max_new_tokens > 0 ? p.max_new_tokens : 224;
  if (max_new > w->c.n_text_ctx - n_prompt) max_new = w->c.n_text_ctx - n_prompt;
  KILN_TRY(kiln_whisper_encode_batch(w, mels, n, NULL));
  kiln_whisper_result **r = calloc((size_t)n, sizeof *r);
  int32_t **seq = calloc((size_t)n, sizeof *seq), *n_out = calloc((size_t)n, sizeof *n_out);
  kiln_status s = r && seq && n_out ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  for (int32_t b = 0; s == KILN_OK && b < n; b++) {
    r[b] = calloc(1, sizeof **r);
    seq[b] = malloc(((size_t)max_new + 1) * sizeof **seq);
    if (!r[b] || !seq[b]) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  }
  if (s == KILN_OK) s = greedy_batch(w, n, prompt, n_prompt, max_new, p.min_new_tokens, seq, n_out);
  for (int32_t b = 0; s == KILN_OK && b < n; b++) {
    r[b]->tokens = seq[b], r[b]->n_tokens = n_out[b], seq[b] = NULL;
    s = kiln_tokenizer_decode(w->tok, r[b]->tokens, r[b]->n_tokens, 0, &r[b]->text);
  }
  if (s == KILN_OK) memcpy(out, r, (size_t)n * sizeof *r);
  else kiln_whisper_results_free(r, n);
  for (int32_t b = 0; seq && b < n; b++) free(seq[b]);
  free(r), free(seq), free(n_out);
  return s;
}

kiln_status kiln_whisper_transcribe(kiln_whisper *w, const float *mel, const kiln_whisper_decode_params *params,
                                    kiln_whisper_result **out) {
  return kiln_whisper_transcribe_batch(w, mel, 1, params, out);
}

/* ---- internals for the decoding module (whisper_internal.h) ---------------------------------- */

kiln_tokenizer *kiln_whisper_tokenizer(const kiln_whisper *w) { return w->tok; }

void kiln_whisper_cache_reset(kiln_whisper *w) { w->T[0] = 0; }

/* Row `row` of the last kiln_whisper_decode call: only its last chunk is kept. */
kiln_status kiln_whisper_last_logits(kiln_whisper *w, int32_t row, float *out) {
  if (row < w->last_first)
    return kiln_error(KILN_ERR_STATE, "whisper: logits of token %d of the last decode are gone (only its last %d are kept)", row,
                      w->last_rows);
  return read_logits(w, row - w->last_first, 1, out);
}

struct kiln_whisper_kv {
  cache_set buf; /* one row: the first T positions of each head hold the cache */
  int32_t T;
};

void kiln_whisper_kv_destroy(kiln_whisper *w, kiln_whisper_kv *kv) {
  if (!kv) return;
  cache_free(w, &kv->buf);
  free(kv);
}

kiln_status kiln_whisper_kv_create(kiln_whisper *w, kiln_whisper_kv **out) {
  kiln_whisper_kv *kv = calloc(1, sizeof *kv);
  kiln_status s = kv ? cache_alloc(w, &kv->buf, 1) : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  if (s != KILN_OK) {
    kiln_whisper_kv_destroy(w, kv);
    return s;
  }
  *out = kv;
  return KILN_OK;
}

/* Row `row`'s cache <-> kv->buf, and kv -> kv. */
kiln_status kiln_whisper_kv_save(kiln_whisper *w, int32_t row, kiln_whisper_kv *kv) {
  if (row < 0 || row >= w->rows) return kiln_error(KILN_ERR_INVALID_ARG, "whisper: KV save from row %d of %d", row, w->rows);
  kv->T = w->T[row];
  return copy_cache(w, &kv->buf, 0, &w->cache, row, kv->T);
}

kiln_status kiln_whisper_kv_load(kiln_whisper *w, int32_t row, const kiln_whisper_kv *kv) {
  if (row < 0 || row >= w->rows) return kiln_error(KILN_ERR_INVALID_ARG, "whisper: KV load into row %d of %d", row, w->rows);
  w->T[row] = kv->T;
  return copy_cache(w, &w->cache, row, &kv->buf, 0, kv->T);
}

kiln_status kiln_whisper_kv_copy(kiln_whisper *w, kiln_whisper_kv *dst, const kiln_whisper_kv *src) {
  if (dst == src) return KILN_OK;
  dst->T = src->T;
  return copy_cache(w, &dst->buf, 0, &src->buf, 0, src->T);
}

/* ---- engine memory for the decoding module --------------------------------------------------- */

int kiln_whisper_is_cuda(const kiln_whisper *w) { return w->cuda; }
void *kiln_whisper_stream(const kiln_whisper *w) { return w->stream; }
kiln_dtype kiln_whisper_precision(const kiln_whisper *w) { return w->prec; }
int32_t kiln_whisper_device(const kiln_whisper *w) { return w->device; }
kiln_status kiln_whisper_engine_alloc(kiln_whisper *w, size_t bytes, void **p) { return mem_alloc(w, bytes, p); }
void kiln_whisper_engine_free(kiln_whisper *w, void *p) {
#ifdef KILN_HAVE_CUDA
  if (w->cuda && p && w->stream) cudaStreamSynchronize((cudaStream_t)w->stream); /* no use of p still queued */
#endif
  mem_free(w, p);
}
kiln_status kiln_whisper_engine_upload(kiln_whisper *w, void *dst, const void *src, size_t bytes) {
  return mem_copy(w, dst, src, bytes, 1);
}
