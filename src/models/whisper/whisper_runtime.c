/* src/models/whisper/whisper_runtime.c - kiln_whisper: loads an engine folder written by
 * kiln_whisper_build(), runs the encoder once per 30 s window and the decoder step by step with
 * a KV cache kept by the host, and decodes greedily (suppressed tokens as openai-whisper applies
 * them at temperature 0 without timestamps).
 *
 * KV cache: per decoder layer two buffers [1, H, n_text_ctx, Dh] for keys and two for values.
 * A step binds the ones holding the past (T tokens) as past_k/past_v and the others as
 * present_k/present_v (the engine writes past + new there), then swaps them: no copies on the
 * host. The cross-attention keys/values stay where the encoder wrote them.
 * Buffers are host memory for CPU engines and device memory (cudaMalloc) for CUDA engines;
 * float tensors are in the engine's precision and converted at the edges (mel in, logits out).
 * Not here: batching several windows, timestamps, temperature fallback, long-form audio.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/engine.h"
#include "kiln/tokenizer.h"
#include "models/whisper/whisper_internal.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>
#endif

struct kiln_whisper {
  kiln_whisper_config c;
  kiln_engine *enc, *dec;
  kiln_context *ectx, *dctx;
  kiln_tokenizer *tok;
  kiln_dtype prec;
  size_t esz;         /* bytes per float element in the engines */
  int cuda;
  int64_t dh;         /* decoder head size */
  void *mel;          /* [n_mels, 3000] */
  void *enc_out;      /* [1500, d] */
  void **cross;       /* 2 per decoder layer: k, v [H, 1500, Dh] */
  void **past, **present; /* 2 per decoder layer: k, v [H, n_text_ctx, Dh] */
  void *ids, *pos;    /* int32 [n_text_ctx] */
  void *logits;       /* [logits_rows, vocab] */
  int32_t logits_rows;
  void *stage;        /* host staging for conversions */
  size_t stage_bytes;
  float *row;         /* [vocab] fp32: the last logits row for greedy decoding */
  int32_t T;          /* tokens in the cache */
  int encoded;
};

/* ---- memory for the engines' tensors --------------------------------------------------------- */

static kiln_status mem_alloc(const kiln_whisper *w, size_t bytes, void **p) {
  *p = NULL;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMalloc(p, bytes + 16) != cudaSuccess)
      return kiln_error(KILN_ERR_OUT_OF_DEVICE_MEMORY, "whisper: cannot allocate %zu bytes on the GPU", bytes);
    return KILN_OK;
  }
#endif
  (void)w;
  *p = calloc(1, bytes + 16);
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

/* to_engine: host -> engine buffer; otherwise engine buffer -> host. */
static kiln_status mem_copy(const kiln_whisper *w, void *dst, const void *src, size_t bytes, int to_engine) {
  if (!bytes) return KILN_OK;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMemcpy(dst, src, bytes, to_engine ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost) != cudaSuccess)
      return kiln_error(KILN_ERR_CUDA, "whisper: copying %zu bytes %s the GPU failed", bytes, to_engine ? "to" : "from");
    return KILN_OK;
  }
#endif
  (void)w, (void)to_engine;
  memcpy(dst, src, bytes);
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

/* ---- loading --------------------------------------------------------------------------------- */

kiln_whisper_load_params kiln_whisper_default_load_params(void) {
  kiln_whisper_load_params p;
  memset(&p, 0, sizeof p);
  return p;
}

static kiln_status read_manifest(const char *dir, kiln_whisper_config *c, char *enc, char *dec, size_t cap) {
  char path[4096];
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
    snprintf(enc, cap, "%s/%s", dir, e->valuestring);
    snprintf(dec, cap, "%s/%s", dir, d->valuestring);
  }
  cJSON_Delete(m);
  return s;
}

static kiln_status alloc_buffers(kiln_whisper *w) {
  const kiln_whisper_config *c = &w->c;
  int32_t L = c->decoder_layers;
  size_t cross = (size_t)c->n_audio_ctx * (size_t)c->d_model * w->esz;
  size_t kv = (size_t)c->n_text_ctx * (size_t)c->d_model * w->esz;
  w->cross = calloc((size_t)2 * L, sizeof(void *));
  w->past = calloc((size_t)2 * L, sizeof(void *));
  w->present = calloc((size_t)2 * L, sizeof(void *));
  w->row = malloc((size_t)c->vocab_size * sizeof(float));
  if (!w->cross || !w->past || !w->present || !w->row) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  KILN_TRY(mem_alloc(w, (size_t)c->n_mels * 2 * c->n_audio_ctx * w->esz, &w->mel));
  KILN_TRY(mem_alloc(w, cross, &w->enc_out));
  for (int32_t i = 0; i < 2 * L; i++) {
    KILN_TRY(mem_alloc(w, cross, &w->cross[i]));
    KILN_TRY(mem_alloc(w, kv, &w->past[i]));
    KILN_TRY(mem_alloc(w, kv, &w->present[i]));
  }
  KILN_TRY(mem_alloc(w, (size_t)c->n_text_ctx * 4, &w->ids));
  return mem_alloc(w, (size_t)c->n_text_ctx * 4, &w->pos);
}

static kiln_status load_parts(kiln_whisper *w, const char *dir, const kiln_whisper_load_params *p) {
  char enc[4096], dec[4096];
  KILN_TRY(read_manifest(dir, &w->c, enc, dec, sizeof enc));
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.device = p->device;
  KILN_TRY(kiln_engine_load(enc, &lp, &w->enc));
  KILN_TRY(kiln_engine_load(dec, &lp, &w->dec));
  w->prec = kiln_engine_precision(w->enc);
  w->esz = kiln_dtype_bytes(w->prec, 1);
  w->cuda = kiln_engine_target(w->enc) == KILN_TARGET_CUDA;
  w->dh = w->c.d_model / w->c.decoder_heads;
  if (kiln_engine_precision(w->dec) != w->prec || (kiln_engine_target(w->dec) == KILN_TARGET_CUDA) != w->cuda)
    return kiln_error(KILN_ERR_FORMAT, "%s and %s were built with different settings; rebuild the folder", enc, dec);
#ifdef KILN_HAVE_CUDA
  if (w->cuda && cudaSetDevice(p->device) != cudaSuccess)
    return kiln_error(KILN_ERR_CUDA, "whisper: cannot use CUDA device %d", p->device);
#endif
  KILN_TRY(kiln_context_create(w->enc, 0, &w->ectx));
  KILN_TRY(kiln_context_create(w->dec, 0, &w->dctx));
  KILN_TRY(kiln_tokenizer_load_hf(dir, &w->tok));
  if (kiln_tokenizer_vocab_size(w->tok) != w->c.vocab_size)
    return kiln_error(KILN_ERR_FORMAT, "the tokenizer in '%s' has %d tokens but the model %d; copy the checkpoint's own tokenizer files",
                      dir, kiln_tokenizer_vocab_size(w->tok), w->c.vocab_size);
  return alloc_buffers(w);
}

kiln_status kiln_whisper_load(const char *engine_dir, const kiln_whisper_load_params *params, kiln_whisper **out) {
  if (!engine_dir || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_load: NULL argument");
  kiln_whisper_load_params p = params ? *params : kiln_whisper_default_load_params();
  kiln_whisper *w = calloc(1, sizeof *w);
  if (!w) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
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
  for (int32_t i = 0; i < 2 * w->c.decoder_layers; i++) {
    if (w->cross) mem_free(w, w->cross[i]);
    if (w->past) mem_free(w, w->past[i]);
    if (w->present) mem_free(w, w->present[i]);
  }
  mem_free(w, w->mel), mem_free(w, w->enc_out), mem_free(w, w->ids), mem_free(w, w->pos), mem_free(w, w->logits);
  free(w->cross), free(w->past), free(w->present), free(w->stage), free(w->row);
  kiln_context_destroy(w->ectx);
  kiln_context_destroy(w->dctx);
  kiln_engine_destroy(w->enc);
  kiln_engine_destroy(w->dec);
  kiln_tokenizer_destroy(w->tok);
  free(w);
}

const kiln_whisper_config *kiln_whisper_get_config(const kiln_whisper *w) { return w ? &w->c : NULL; }

int32_t kiln_whisper_cache_length(const kiln_whisper *w) { return w ? w->T : 0; }

int64_t kiln_whisper_device_bytes(const kiln_whisper *w) {
  if (!w || !w->cuda) return 0;
  const kiln_whisper_config *c = &w->c;
  size_t engines = kiln_engine_weight_bytes(w->enc) + kiln_engine_context_bytes(w->enc) +
                   kiln_engine_weight_bytes(w->dec) + kiln_engine_context_bytes(w->dec);
  size_t cross = (size_t)c->n_audio_ctx * (size_t)c->d_model * w->esz; /* as alloc_buffers */
  size_t kv = (size_t)c->n_text_ctx * (size_t)c->d_model * w->esz;
  size_t bufs = (size_t)c->n_mels * 2 * c->n_audio_ctx * w->esz + cross + (size_t)2 * c->decoder_layers * (cross + 2 * kv) +
                (size_t)2 * c->n_text_ctx * 4 + (size_t)w->logits_rows * (size_t)c->vocab_size * w->esz;
  return (int64_t)(engines + bufs);
}

/* ---- running --------------------------------------------------------------------------------- */

static kiln_status bind(kiln_context *ctx, const char *fmt, int32_t i, void *p) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  return kiln_context_set_tensor(ctx, name, p);
}

static kiln_status shape4(kiln_context *ctx, const char *fmt, int32_t i, int64_t h, int64_t t, int64_t dh) {
  char name[64];
  kiln_dims d = {4, {1, h, t, dh}};
  snprintf(name, sizeof name, fmt, i);
  return kiln_context_set_input_shape(ctx, name, &d);
}

kiln_status kiln_whisper_encode(kiln_whisper *w, const float *mel, float *encoder_out) {
  if (!w || !mel) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_encode: NULL argument");
  const kiln_whisper_config *c = &w->c;
  int64_t n_mel = (int64_t)c->n_mels * 2 * c->n_audio_ctx, n_out = (int64_t)c->n_audio_ctx * c->d_model;
  kiln_dims md = {3, {1, c->n_mels, 2 * c->n_audio_ctx}};
  KILN_TRY(stage_reserve(w, (size_t)(n_mel > n_out ? n_mel : n_out) * w->esz));
  kiln_convert_floats(w->stage, w->prec, mel, KILN_DTYPE_FP32, n_mel);
  KILN_TRY(mem_copy(w, w->mel, w->stage, (size_t)n_mel * w->esz, 1));
  w->encoded = 0;
  KILN_TRY(kiln_context_set_input_shape(w->ectx, "mel", &md));
  KILN_TRY(kiln_context_set_tensor(w->ectx, "mel", w->mel));
  KILN_TRY(kiln_context_set_tensor(w->ectx, "encoder_out", w->enc_out));
  for (int32_t i = 0; i < c->decoder_layers; i++) {
    KILN_TRY(bind(w->ectx, "cross_k.%d", i, w->cross[2 * i]));
    KILN_TRY(bind(w->ectx, "cross_v.%d", i, w->cross[2 * i + 1]));
  }
  KILN_TRY(kiln_context_enqueue(w->ectx, NULL));
  w->T = 0;
  w->encoded = 1;
  if (encoder_out) {
    KILN_TRY(mem_copy(w, w->stage, w->enc_out, (size_t)n_out * w->esz, 0));
    kiln_convert_floats(encoder_out, KILN_DTYPE_FP32, w->stage, w->prec, n_out);
  }
  return KILN_OK;
}

static kiln_status decoder_bindings(kiln_whisper *w, int32_t n) {
  const kiln_whisper_config *c = &w->c;
  int64_t H = c->decoder_heads;
  kiln_dims td = {2, {1, n}}, pd = {1, {n}};
  KILN_TRY(kiln_context_set_input_shape(w->dctx, "tokens", &td));
  KILN_TRY(kiln_context_set_input_shape(w->dctx, "positions", &pd));
  KILN_TRY(kiln_context_set_tensor(w->dctx, "tokens", w->ids));
  KILN_TRY(kiln_context_set_tensor(w->dctx, "positions", w->pos));
  KILN_TRY(kiln_context_set_tensor(w->dctx, "logits", w->logits));
  for (int32_t i = 0; i < c->decoder_layers; i++) {
    KILN_TRY(shape4(w->dctx, "past_k.%d", i, H, w->T, w->dh));
    KILN_TRY(shape4(w->dctx, "past_v.%d", i, H, w->T, w->dh));
    KILN_TRY(shape4(w->dctx, "cross_k.%d", i, H, c->n_audio_ctx, w->dh));
    KILN_TRY(shape4(w->dctx, "cross_v.%d", i, H, c->n_audio_ctx, w->dh));
    KILN_TRY(bind(w->dctx, "past_k.%d", i, w->past[2 * i]));
    KILN_TRY(bind(w->dctx, "past_v.%d", i, w->past[2 * i + 1]));
    KILN_TRY(bind(w->dctx, "present_k.%d", i, w->present[2 * i]));
    KILN_TRY(bind(w->dctx, "present_v.%d", i, w->present[2 * i + 1]));
    KILN_TRY(bind(w->dctx, "cross_k.%d", i, w->cross[2 * i]));
    KILN_TRY(bind(w->dctx, "cross_v.%d", i, w->cross[2 * i + 1]));
  }
  return KILN_OK;
}

/* One decoder run over n new tokens; logits stay in w->logits ([n, vocab], engine precision). */
static kiln_status step(kiln_whisper *w, const int32_t *tokens, int32_t n) {
  const kiln_whisper_config *c = &w->c;
  if (!w->encoded) return kiln_error(KILN_ERR_STATE, "whisper: decode before encode; run kiln_whisper_encode first");
  if (n < 1 || n > c->n_text_ctx - w->T)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d new tokens with %d cached exceed the decoder's %d positions", n, w->T,
                      c->n_text_ctx);
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
      return kiln_error(KILN_ERR_INVALID_ARG, "whisper: token %d is outside the vocabulary (%d)", tokens[i], c->vocab_size);
  if (n > w->logits_rows) {
    mem_free(w, w->logits);
    w->logits = NULL;
    w->logits_rows = 0;
    KILN_TRY(mem_alloc(w, (size_t)n * (size_t)c->vocab_size * w->esz, &w->logits));
    w->logits_rows = n;
  }
  KILN_TRY(stage_reserve(w, (size_t)n * 4));
  int32_t *pos = w->stage;
  for (int32_t i = 0; i < n; i++) pos[i] = w->T + i;
  KILN_TRY(mem_copy(w, w->pos, pos, (size_t)n * 4, 1));
  KILN_TRY(mem_copy(w, w->ids, tokens, (size_t)n * 4, 1));
  KILN_TRY(decoder_bindings(w, n));
  KILN_TRY(kiln_context_enqueue(w->dctx, NULL));
  void **t = w->past;
  w->past = w->present;
  w->present = t;
  w->T += n;
  return KILN_OK;
}

/* Logits rows [row0, row0 + rows) of the last step as fp32. */
static kiln_status read_logits(kiln_whisper *w, int32_t row0, int32_t rows, float *out) {
  size_t v = (size_t)w->c.vocab_size, bytes = (size_t)rows * v * w->esz;
  KILN_TRY(stage_reserve(w, bytes));
  KILN_TRY(mem_copy(w, w->stage, (char *)w->logits + (size_t)row0 * v * w->esz, bytes, 0));
  kiln_convert_floats(out, KILN_DTYPE_FP32, w->stage, w->prec, (int64_t)rows * (int64_t)v);
  return KILN_OK;
}

kiln_status kiln_whisper_decode(kiln_whisper *w, const int32_t *tokens, int32_t n, float *logits) {
  if (!w || !tokens) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_decode: NULL argument");
  KILN_TRY(step(w, tokens, n));
  return logits ? read_logits(w, 0, n, logits) : KILN_OK;
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

/* argmax of row after masking the suppressed tokens (the first maximum wins, as torch's). */
static int32_t pick(const kiln_whisper *w, float *row, int first) {
  const kiln_whisper_config *c = &w->c;
  for (int32_t i = 0; i < c->n_suppress; i++) row[c->suppress[i]] = -INFINITY;
  for (int32_t i = 0; first && i < c->n_begin_suppress; i++) row[c->begin_suppress[i]] = -INFINITY;
  int32_t best = 0;
  for (int32_t i = 1; i < c->vocab_size; i++)
    if (row[i] > row[best]) best = i;
  return best;
}

static kiln_status greedy(kiln_whisper *w, const int32_t *prompt, int32_t n_prompt, int32_t max_new, int32_t *out,
                          int32_t *n_out) {
  int32_t n = 0;
  KILN_TRY(step(w, prompt, n_prompt));
  KILN_TRY(read_logits(w, n_prompt - 1, 1, w->row));
  while (n < max_new) {
    int32_t t = pick(w, w->row, n == 0);
    if (t == w->c.eot) break;
    out[n++] = t;
    if (n == max_new || w->T >= w->c.n_text_ctx) break;
    KILN_TRY(step(w, &t, 1));
    KILN_TRY(read_logits(w, 0, 1, w->row));
  }
  *n_out = n;
  return KILN_OK;
}

kiln_status kiln_whisper_transcribe(kiln_whisper *w, const float *mel, const kiln_whisper_decode_params *params,
                                    kiln_whisper_result **out) {
  if (!w || !mel || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_transcribe: NULL argument");
  kiln_whisper_decode_params p = params ? *params : kiln_whisper_default_decode_params();
  int multi = kiln_tokenizer_is_multilingual(w->tok);
  int32_t prompt[4], n_prompt = 0;
  KILN_TRY(kiln_tokenizer_sot_sequence(w->tok, multi ? (p.language ? p.language : "en") : NULL,
                                       multi ? (p.translate ? KILN_TASK_TRANSLATE : KILN_TASK_TRANSCRIBE) : KILN_TASK_NONE, 0,
                                       prompt, &n_prompt));
  int32_t max_new = p.max_new_tokens > 0 ? p.max_new_tokens : 224;
  if (max_new > w->c.n_text_ctx - n_prompt) max_new = w->c.n_text_ctx - n_prompt;
  kiln_whisper_result *r = calloc(1, sizeof *r);
  int32_t *tokens = malloc(((size_t)max_new + 1) * sizeof *tokens);
  kiln_status s = r && tokens ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  if (s == KILN_OK) s = kiln_whisper_encode(w, mel, NULL);
  if (s == KILN_OK) s = greedy(w, prompt, n_prompt, max_new, tokens, &r->n_tokens);
  if (s == KILN_OK) s = kiln_tokenizer_decode(w->tok, tokens, r->n_tokens, 0, &r->text);
  if (s != KILN_OK) {
    free(tokens);
    free(r);
    return s;
  }
  r->tokens = tokens;
  *out = r;
  return KILN_OK;
}

/* ---- internals for the decoding module (whisper_internal.h) ---------------------------------- */

kiln_tokenizer *kiln_whisper_tokenizer(const kiln_whisper *w) { return w->tok; }

void kiln_whisper_cache_reset(kiln_whisper *w) { w->T = 0; }

kiln_status kiln_whisper_last_logits(kiln_whisper *w, int32_t row, float *out) { return read_logits(w, row, 1, out); }

struct kiln_whisper_kv {
  void **buf; /* 2 per decoder layer: k, v [H, n_text_ctx, Dh] (the first H * T * Dh hold the cache) */
  int32_t T;
};

static kiln_status dev_copy(const kiln_whisper *w, void *dst, const void *src, size_t bytes) {
  if (!bytes) return KILN_OK;
#ifdef KILN_HAVE_CUDA
  if (w->cuda) {
    if (cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice) != cudaSuccess)
      return kiln_error(KILN_ERR_CUDA, "whisper: copying %zu bytes on the GPU failed", bytes);
    return KILN_OK;
  }
#endif
  (void)w;
  memcpy(dst, src, bytes);
  return KILN_OK;
}

void kiln_whisper_kv_destroy(kiln_whisper *w, kiln_whisper_kv *kv) {
  if (!kv) return;
  for (int32_t i = 0; kv->buf && i < 2 * w->c.decoder_layers; i++) mem_free(w, kv->buf[i]);
  free(kv->buf);
  free(kv);
}

kiln_status kiln_whisper_kv_create(kiln_whisper *w, kiln_whisper_kv **out) {
  kiln_whisper_kv *kv = calloc(1, sizeof *kv);
  if (kv) kv->buf = calloc((size_t)2 * w->c.decoder_layers, sizeof(void *));
  kiln_status s = kv && kv->buf ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  size_t bytes = (size_t)w->c.n_text_ctx * (size_t)w->c.d_model * w->esz;
  for (int32_t i = 0; s == KILN_OK && i < 2 * w->c.decoder_layers; i++) s = mem_alloc(w, bytes, &kv->buf[i]);
  if (s != KILN_OK) {
    kiln_whisper_kv_destroy(w, kv);
    return s;
  }
  *out = kv;
  return KILN_OK;
}

/* The cache of T tokens is [1, H, T, Dh] contiguous: its first H * T * Dh elements. */
kiln_status kiln_whisper_kv_save(kiln_whisper *w, kiln_whisper_kv *kv) {
  size_t bytes = (size_t)w->T * (size_t)w->c.d_model * w->esz;
  for (int32_t i = 0; i < 2 * w->c.decoder_layers; i++) KILN_TRY(dev_copy(w, kv->buf[i], w->past[i], bytes));
  kv->T = w->T;
  return KILN_OK;
}

kiln_status kiln_whisper_kv_load(kiln_whisper *w, const kiln_whisper_kv *kv) {
  size_t bytes = (size_t)kv->T * (size_t)w->c.d_model * w->esz;
  for (int32_t i = 0; i < 2 * w->c.decoder_layers; i++) KILN_TRY(dev_copy(w, w->past[i], kv->buf[i], bytes));
  w->T = kv->T;
  return KILN_OK;
}
