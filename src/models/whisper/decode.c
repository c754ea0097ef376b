/* src/models/whisper/decode.c - decoding of one 30 s window as openai-whisper's decoding.py does
 * it: the logit filters (SuppressBlank, SuppressTokens, ApplyTimestampRules), greedy decoding and
 * seeded sampling with best_of (GreedyDecoder + MaximumLikelihoodRanker: the samples are decoder
 * rows stepped together), the no-speech probability, language detection, the fallback rule of
 * transcribe(), and the task/step machinery (decode_internal.h) that advances the windows of
 * several slots as one batch. Not here: beam search's rules (beam.c), the long-form loop and
 * the slot scheduling (transcribe.c), the output writers (writers.c).
 * Sums of log-probabilities are kept in float as openai-whisper's float32 tensors keep them; the
 * row reductions (max, argmax, logsumexp) are core/rowmath.c's vectorized ones. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "core/pool.h"
#include "core/rowmath.h"
#include "kiln/tokenizer.h"
#include "models/whisper/decode_internal.h"
#include "models/whisper/whisper_internal.h"

kiln_whisper_options kiln_whisper_default_options(void) {
  kiln_whisper_options o;
  memset(&o, 0, sizeof o);
  static const double t[] = {0.0, 0.2, 0.4, 0.6, 0.8, 1.0};
  o.n_temperatures = 6;
  memcpy(o.temperatures, t, sizeof t);
  o.best_of = 5;
  o.patience = 1.0;
  o.length_penalty = -1.0;
  o.compression_ratio_threshold = 2.4;
  o.logprob_threshold = -1.0;
  o.no_speech_threshold = 0.6;
  o.condition_on_previous_text = 1;
  o.max_initial_timestamp = 1.0;
  o.suppress_blank = 1;
  o.sample_len = 224;
  return o;
}

void kiln_whisper_decoding_free(kiln_whisper_decoding *d) {
  if (!d) return;
  free(d->tokens);
  kiln_tokenizer_free(d->text);
  free(d);
}

/* ---- the fallback rule ----------------------------------------------------------------------- */

double kiln_whisper_compression_ratio(const char *text) {
  size_t n = text ? strlen(text) : 0;
  uLongf cap = compressBound((uLong)n);
  Bytef *buf = malloc(cap ? cap : 1);
  if (!buf || compress(buf, &cap, (const Bytef *)(text ? text : ""), (uLong)n) != Z_OK) {
    free(buf);
    return 0.0;
  }
  free(buf);
  return (double)n / (double)cap;
}

int kiln_whisper_needs_fallback(const kiln_whisper_options *o, double compression_ratio, double avg_logprob,
                                double no_speech_prob) {
  int fallback = 0;
  if (!isnan(o->compression_ratio_threshold) && compression_ratio > o->compression_ratio_threshold) fallback = 1;
  if (!isnan(o->logprob_threshold) && avg_logprob < o->logprob_threshold) fallback = 1;
  if (!isnan(o->no_speech_threshold) && no_speech_prob > o->no_speech_threshold && !isnan(o->logprob_threshold) &&
      avg_logprob < o->logprob_threshold)
    fallback = 0; /* silence */
  return fallback;
}

/* ---- row arithmetic -------------------------------------------------------------------------- */

static void mask(float *row, int32_t from, int32_t to) {
  for (int32_t i = from; i < to; i++) row[i] = -INFINITY;
}

double dec_logsumexp(const float *row, int32_t from, int32_t to) {
  return kiln_row_logsumexp(row + from, to > from ? to - from : 0, NULL);
}

static double uniform(uint64_t *state) { /* splitmix64 -> [0, 1) */
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Categorical(logits = row / T).sample() */
static int32_t sample(const float *row, int32_t n, double T, uint64_t *rng) {
  float m = -INFINITY;
  for (int32_t i = 0; i < n; i++) m = row[i] / (float)T > m ? row[i] / (float)T : m;
  double total = 0;
  for (int32_t i = 0; i < n; i++) total += exp((double)(row[i] / (float)T) - m);
  double u = uniform(rng) * total, acc = 0;
  int32_t last = 0;
  for (int32_t i = 0; i < n; i++) {
    double p = exp((double)(row[i] / (float)T) - m);
    if (p <= 0) continue;
    last = i;
    acc += p;
    if (u < acc) return i;
  }
  return last;
}

/* ---- the logit filters ----------------------------------------------------------------------- */

static void timestamp_rules(const dec_ctx *d, float *row, const int32_t *toks, int32_t n) {
  int32_t V = d->vocab, tb = d->ts_begin;
  if (d->no_ts >= 0) row[d->no_ts] = -INFINITY;
  const int32_t *seq = toks + d->sample_begin;
  int32_t m = n - d->sample_begin, last = -1;
  int last_ts = m >= 1 && seq[m - 1] >= tb, pen_ts = m < 2 || seq[m - 2] >= tb;
  if (last_ts) {
    if (pen_ts) mask(row, tb, V); /* has to be text */
    else mask(row, 0, d->eot);    /* cannot be text */
  }
  for (int32_t i = 0; i < m; i++)
    if (seq[i] >= tb) last = seq[i];
  if (last >= 0) mask(row, tb, last_ts && !pen_ts ? last : last + 1); /* non-decreasing, non-empty */
  if (n == d->sample_begin) {
    mask(row, 0, tb);
    if (d->max_initial >= 0 && tb + d->max_initial + 1 < V) mask(row, tb + d->max_initial + 1, V);
  }
  double ts = dec_logsumexp(row, tb, V);
  float text = kiln_row_max(row, tb);
  if (ts > (double)text) mask(row, 0, tb);
}

void dec_apply_filters(const dec_ctx *d, float *row, const int32_t *toks, int32_t n) {
  if (d->o->suppress_blank && n == d->sample_begin) {
    if (d->blank >= 0) row[d->blank] = -INFINITY;
    row[d->eot] = -INFINITY;
  }
  for (int32_t i = 0; i < d->n_suppress; i++) row[d->suppress[i]] = -INFINITY;
  if (d->timestamps) timestamp_rules(d, row, toks, n);
}

/* ---- setup ----------------------------------------------------------------------------------- */

void dec_ctx_free(dec_ctx *d) {
  free(d->init);
  d->init = NULL;
}

static kiln_status sot_sequence(dec_ctx *d, const char *language, int32_t *sot, int32_t *n) {
  int multi = kiln_tokenizer_is_multilingual(d->tok);
  kiln_task task = !multi ? KILN_TASK_NONE : d->o->translate ? KILN_TASK_TRANSLATE : KILN_TASK_TRANSCRIBE;
  return kiln_tokenizer_sot_sequence(d->tok, multi ? (language ? language : "en") : NULL, task, d->timestamps, sot, n);
}

kiln_status dec_ctx_init(dec_ctx *d, kiln_whisper *w, const kiln_whisper_options *o, const char *language,
                         const int32_t *prompt, int32_t n_prompt) {
  memset(d, 0, sizeof *d);
  d->w = w, d->o = o, d->tok = kiln_whisper_tokenizer(w);
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  d->vocab = c->vocab_size, d->n_ctx = c->n_text_ctx, d->eot = c->eot, d->sot = c->sot;
  d->ts_begin = kiln_tokenizer_special(d->tok, KILN_TOKEN_TIMESTAMP_BEGIN);
  d->no_ts = kiln_tokenizer_special(d->tok, KILN_TOKEN_NO_TIMESTAMPS);
  d->no_speech = kiln_tokenizer_special(d->tok, KILN_TOKEN_NO_SPEECH);
  d->timestamps = !o->without_timestamps && d->ts_begin > 0;
  d->sample_len = o->sample_len > 0 ? o->sample_len : c->n_text_ctx / 2;
  /* max_initial_timestamp / (30 s / n_audio_ctx), rounded as Python's round() */
  d->max_initial = o->max_initial_timestamp > 0 ? (int32_t)nearbyint(o->max_initial_timestamp / (30.0 / c->n_audio_ctx)) : -1;
  int32_t *ids = NULL;
  int64_t n_ids = 0;
  KILN_TRY(kiln_tokenizer_encode(d->tok, " ", 1, &ids, &n_ids));
  d->blank = n_ids == 1 ? ids[0] : -1;
  kiln_tokenizer_free(ids);
  d->n_suppress = 0;
  for (int32_t i = 0; i < c->n_suppress && d->n_suppress < DEC_MAX_SUPPRESS; i++) d->suppress[d->n_suppress++] = c->suppress[i];
  static const kiln_special_token extra[] = {KILN_TOKEN_TRANSCRIBE, KILN_TOKEN_TRANSLATE, KILN_TOKEN_SOT,
                                             KILN_TOKEN_PREV, KILN_TOKEN_SOT_LM, KILN_TOKEN_NO_SPEECH};
  for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) {
    int32_t id = kiln_tokenizer_special(d->tok, extra[i]);
    if (id >= 0 && d->n_suppress < DEC_MAX_SUPPRESS) d->suppress[d->n_suppress++] = id;
  }
  int32_t sot[4], n_sot = 0, keep = n_prompt > d->n_ctx / 2 - 1 ? d->n_ctx / 2 - 1 : n_prompt;
  KILN_TRY(sot_sequence(d, language, sot, &n_sot));
  d->init = malloc(sizeof(int32_t) * ((size_t)d->n_ctx + 2));
  if (!d->init) return dec_ctx_free(d), kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  if (prompt && keep > 0) {
    d->init[d->n_init++] = kiln_tokenizer_special(d->tok, KILN_TOKEN_PREV);
    memcpy(d->init + d->n_init, prompt + n_prompt - keep, sizeof(int32_t) * (size_t)keep);
    d->n_init += keep;
  }
  d->sot_index = d->n_init;
  memcpy(d->init + d->n_init, sot, sizeof(int32_t) * (size_t)n_sot);
  d->n_init += n_sot;
  d->sample_begin = d->n_init;
  return KILN_OK;
}

/* Sampled tokens: from sample_begin to the first <|endoftext|> (or the end). */
int32_t dec_sampled_length(const dec_ctx *d, const int32_t *seq, int32_t n) {
  int32_t k = d->sample_begin;
  while (k < n && seq[k] != d->eot) k++;
  return k - d->sample_begin;
}

double dec_rank_score(const kiln_whisper_options *o, double sum, int32_t length) {
  double penalty = o->length_penalty < 0 ? (double)length : pow((5.0 + length) / 6.0, o->length_penalty);
  return sum / penalty;
}

kiln_status dec_fill_result(dec_ctx *d, const int32_t *seq, int32_t n, float sum, double T, double no_speech,
                               const char *language, kiln_whisper_decoding **out) {
  int32_t len = dec_sampled_length(d, seq, n);
  kiln_whisper_decoding *r = calloc(1, sizeof *r);
  if (r) r->tokens = malloc(sizeof(int32_t) * ((size_t)len + 1));
  if (!r || !r->tokens) return kiln_whisper_decoding_free(r), kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  memcpy(r->tokens, seq + d->sample_begin, sizeof(int32_t) * (size_t)len);
  r->n_tokens = len;
  char *text = NULL;
  kiln_status s = kiln_tokenizer_decode(d->tok, r->tokens, len, 0, &text);
  if (s != KILN_OK) return kiln_whisper_decoding_free(r), s;
  size_t a = 0, b = strlen(text);
  while (a < b && (text[a] == ' ' || (text[a] >= '\t' && text[a] <= '\r'))) a++;
  while (b > a && (text[b - 1] == ' ' || (text[b - 1] >= '\t' && text[b - 1] <= '\r'))) b--;
  memmove(text, text + a, b - a);
  text[b - a] = '\0';
  r->text = text;
  snprintf(r->language, sizeof r->language, "%s", language ? language : "en");
  r->temperature = T;
  r->sum_logprob = sum;
  r->avg_logprob = (double)sum / (len + 1);
  r->no_speech_prob = no_speech;
  r->compression_ratio = kiln_whisper_compression_ratio(text);
  *out = r;
  return KILN_OK;
}


/* ---- storage rows ---------------------------------------------------------------------------- */

int32_t dec_rows_needed(const kiln_whisper_options *o, const double *temperatures, int32_t n_temperatures) {
  int32_t need = 1;
  for (int32_t i = 0; i < n_temperatures; i++) {
    if (temperatures[i] == 0 && o->beam_size > need) need = o->beam_size;
    if (temperatures[i] > 0 && o->best_of > need) need = o->best_of;
  }
  return need;
}

kiln_status dec_rows_copy(dec_rows *r, int32_t dst, int32_t src) {
  if (r->kv) return kiln_whisper_kv_copy(r->w, r->kv[dst], r->kv[src]);
  return kiln_whisper_row_copy(r->w, r->first + dst, r->first + src);
}

/* The decoder row a task's prompt is decoded into: its first row, or row 0 for KV-copy rows. */
static int32_t prompt_row(const dec_rows *r) { return r->kv ? 0 : r->first; }

/* Decode the initial tokens into the prompt row: the no-speech probability from the
 * <|startoftranscript|> row, the last row's logits into storage row 0's logits; then storage
 * rows 0 .. count - 1 hold the prompt's cache. */
static kiln_status decode_prompt(dec_task *t, int32_t count) {
  dec_ctx *d = &t->d;
  int32_t p = prompt_row(&t->r);
  /* up to <|startoftranscript|> first when its row is needed: the decoder keeps only the rows of
   * a call's last chunk */
  int32_t first = d->no_speech >= 0 ? d->sot_index + 1 : d->n_init;
  kiln_whisper_row_reset(d->w, p, 0);
  KILN_TRY(kiln_whisper_row_decode(d->w, p, d->init, first));
  t->no_speech = NAN;
  if (d->no_speech >= 0) {
    KILN_TRY(kiln_whisper_last_logits(d->w, first - 1, t->logits));
    t->no_speech = exp((double)t->logits[d->no_speech] - dec_logsumexp(t->logits, 0, d->vocab));
  }
  if (first < d->n_init) {
    KILN_TRY(kiln_whisper_row_decode(d->w, p, d->init + first, d->n_init - first));
    KILN_TRY(kiln_whisper_last_logits(d->w, d->n_init - first - 1, t->logits));
  } else {
    KILN_TRY(kiln_whisper_last_logits(d->w, first - 1, t->logits));
  }
  for (int32_t j = 0; j < count; j++) {
    if (t->r.kv) KILN_TRY(kiln_whisper_kv_save(d->w, p, t->r.kv[j]));
    else KILN_TRY(kiln_whisper_row_copy(d->w, t->r.first + j, p));
  }
  return KILN_OK;
}

/* ---- tasks: greedy decoding and sampling ----------------------------------------------------- */

#define GOLDEN 0x9E3779B97F4A7C15ull

void dec_task_free(dec_task *t) {
  if (t->beam) dec_beam_free(t);
  free(t->next), free(t->logits), free(t->seq), free(t->len), free(t->sum), free(t->rng);
  t->next = NULL, t->logits = NULL, t->seq = NULL, t->len = NULL, t->sum = NULL, t->rng = NULL;
  dec_ctx_free(&t->d);
}

kiln_status dec_task_begin(dec_task *t, kiln_whisper *w, const kiln_whisper_options *o, const char *language,
                           const int32_t *prompt, int32_t n_prompt, double T, uint64_t rng, dec_rows r) {
  memset(t, 0, sizeof *t);
  int beam = T == 0 && o->beam_size > 0;
  if (beam && o->beam_size > DEC_MAX_BEAMS)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: beam size %d is above %d", o->beam_size, DEC_MAX_BEAMS);
  if (!beam && T > 0 && o->best_of > DEC_MAX_ROWS)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: best_of %d is above %d", o->best_of, DEC_MAX_ROWS);
  KILN_TRY(dec_ctx_init(&t->d, w, o, language, prompt, n_prompt));
  dec_ctx *d = &t->d;
  t->T = T, t->language = language, t->r = r;
  t->n = beam ? o->beam_size : T > 0 && o->best_of > 1 ? o->best_of : 1;
  t->r.n = t->n;
  t->rng_after = rng;
  size_t n = (size_t)t->n, stride = (size_t)d->n_ctx + 2;
  kiln_status s = KILN_OK;
  if (!t->r.kv && t->n > r.phys)
    s = kiln_error(KILN_ERR_INTERNAL, "whisper: a window needs %d decoder rows but has %d", t->n, r.phys);
  t->next = malloc(n * sizeof *t->next);
  t->logits = malloc(n * (size_t)d->vocab * sizeof *t->logits);
  if (s == KILN_OK && !beam) {
    t->seq = malloc(n * stride * sizeof *t->seq);
    t->len = malloc(n * sizeof *t->len);
    t->sum = calloc(n, sizeof *t->sum);
    t->rng = malloc(n * sizeof *t->rng);
    if (!t->seq || !t->len || !t->sum || !t->rng) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  }
  if (s == KILN_OK && (!t->next || !t->logits)) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  if (s == KILN_OK) s = decode_prompt(t, beam ? 1 : t->n);
  if (s == KILN_OK && beam) s = dec_beam_begin(t);
  for (int32_t j = 0; s == KILN_OK && !beam && j < t->n; j++) {
    /* the samples: one splitmix64 stream each, 2^32 draws apart (sample 0 continues the
     * caller's generator as one sequential decode would) */
    t->rng[j] = rng + (uint64_t)j * (GOLDEN << 32);
    memcpy(t->seq + (size_t)j * stride, d->init, sizeof(int32_t) * (size_t)d->n_init);
    t->len[j] = d->n_init;
    t->next[j] = 0;
    if (j > 0) memcpy(t->logits + (size_t)j * d->vocab, t->logits, sizeof(float) * (size_t)d->vocab);
  }
  if (s == KILN_OK) s = dec_task_choose(t);
  if (s != KILN_OK) dec_task_free(t);
  return s;
}

/* One live sample's step: filters, choice, log-probability (openai-whisper's GreedyDecoder does
 * the best_of sequences one after the other; each depends only on its own row and generator). */
static void sample_row(dec_task *t, int32_t j) {
  dec_ctx *d = &t->d;
  size_t stride = (size_t)d->n_ctx + 2;
  float *row = t->logits + (size_t)j * d->vocab;
  int32_t *seq = t->seq + (size_t)j * stride, n = t->len[j];
  dec_apply_filters(d, row, seq, n);
  int64_t best = 0;
  double lse = kiln_row_logsumexp(row, d->vocab, t->T == 0 ? &best : NULL);
  int32_t tok = t->T == 0 ? (int32_t)best : sample(row, d->vocab, t->T, &t->rng[j]);
  t->sum[j] += (float)((double)row[tok] - lse);
  seq[n++] = tok;
  t->len[j] = n;
  t->next[j] = tok == d->eot || n > d->n_ctx || t->step + 1 == d->sample_len ? -1 : tok;
}

/* After every live sample's step: done when none is live. */
static void finish_samples(dec_task *t) {
  int live = 0;
  for (int32_t j = 0; j < t->n; j++) live |= t->next[j] >= 0;
  t->step++;
  if (live) return;
  t->done = 1;
  t->rng_after = t->n == 1 ? t->rng[0] : t->rng_after + (uint64_t)t->n * (GOLDEN << 32);
}

int32_t dec_task_rows(const dec_task *t, int32_t *rows) {
  if (t->done) return 0;
  if (t->beam) return dec_beam_rows(t, rows);
  int32_t n = 0;
  for (int32_t j = 0; j < t->n; j++)
    if (t->next[j] >= 0) rows[n++] = j;
  return n;
}

void dec_task_row(dec_task *t, int32_t row) {
  if (t->beam) dec_beam_row(t, row);
  else sample_row(t, row);
}

kiln_status dec_task_finish(dec_task *t) {
  if (t->done) return KILN_OK;
  if (t->beam) return dec_beam_finish(t);
  finish_samples(t);
  return KILN_OK;
}

kiln_status dec_task_choose(dec_task *t) {
  if (t->done) return KILN_OK;
  int32_t rows[DEC_MAX_ROWS];
  int32_t n = dec_task_rows(t, rows);
  for (int32_t i = 0; i < n; i++) dec_task_row(t, rows[i]);
  return dec_task_finish(t);
}

kiln_status dec_task_result(dec_task *t, kiln_whisper_decoding **out) {
  if (!t->done) return kiln_error(KILN_ERR_INTERNAL, "whisper: a window's decoding is not finished");
  if (t->beam) return dec_beam_result(t, out);
  dec_ctx *d = &t->d;
  size_t stride = (size_t)d->n_ctx + 2;
  int32_t best = 0;
  double best_score = -INFINITY;
  for (int32_t j = 0; j < t->n; j++) {
    const int32_t *seq = t->seq + (size_t)j * stride;
    double score = dec_rank_score(d->o, t->sum[j], dec_sampled_length(d, seq, t->len[j]));
    if (j == 0 || score > best_score) best = j, best_score = score; /* np.argmax: the first maximum */
  }
  return dec_fill_result(d, t->seq + (size_t)best * stride, t->len[best], t->sum[best], t->T, t->no_speech, t->language, out);
}

/* ---- the step -------------------------------------------------------------------------------- */

/* The host side of a step as a list of (task, storage row) items for kiln_pool_run. */
typedef struct step_item {
  dec_task *t;
  int32_t row;
} step_item;

typedef struct step_job {
  const step_item *items;
  const char *logits; /* [rows, vocab] in dtype, or NULL */
  kiln_dtype dtype;
  size_t row_bytes;
} step_job;

static void step_item_run(void *user, int32_t i) {
  const step_job *job = user;
  dec_task *t = job->items[i].t;
  int32_t row = job->items[i].row, V = t->d.vocab;
  if (job->logits)
    kiln_convert_floats(t->logits + (size_t)row * V, KILN_DTYPE_FP32,
                        job->logits + (size_t)(t->r.first + row) * job->row_bytes, job->dtype, V);
  dec_task_row(t, row);
}

kiln_status dec_choose_step(kiln_pool *pool, dec_task *const *tasks, int32_t n_slots, const void *logits,
                            kiln_dtype dtype, int32_t rows_per_thread) {
  int32_t total = 0, V = 0;
  for (int32_t s = 0; s < n_slots; s++)
    if (tasks[s] && !tasks[s]->done) total += tasks[s]->n, V = tasks[s]->d.vocab;
  if (total == 0) return KILN_OK;
  step_item *items = malloc(sizeof *items * (size_t)total);
  if (!items) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for a decoding step");
  int32_t n = 0, rows[DEC_MAX_ROWS];
  for (int32_t s = 0; s < n_slots; s++) {
    dec_task *t = tasks[s];
    int32_t k = t && !t->done ? dec_task_rows(t, rows) : 0;
    for (int32_t i = 0; i < k; i++) items[n].t = t, items[n++].row = rows[i];
  }
  step_job job = {items, logits, dtype, kiln_dtype_bytes(dtype, V)};
  /* a thread for every DEC_ROWS_PER_THREAD rows: a row takes about 25 us (AVX2; 51865 tokens),
   * about what waking a worker takes, so one row alone stays on the calling thread */
  kiln_pool_run(pool, n, n / (rows_per_thread > 0 ? rows_per_thread : DEC_ROWS_PER_THREAD), step_item_run, &job);
  free(items);
  kiln_status st = KILN_OK;
  for (int32_t s = 0; st == KILN_OK && s < n_slots; s++) /* in slot order: beam search copies rows */
    if (tasks[s]) st = dec_task_finish(tasks[s]);
  return st;
}

/* A task with KV-copy rows: its live rows in turns of G decoder rows (rows 0 .. G - 1). */
static kiln_status step_kv(kiln_whisper *w, dec_task *t, int32_t G, int32_t *tokens, float *logits) {
  int32_t V = t->d.vocab, eot = t->d.eot, live[DEC_MAX_ROWS], n_live = 0;
  for (int32_t j = 0; j < t->n && n_live < DEC_MAX_ROWS; j++)
    if (t->next[j] >= 0) live[n_live++] = j;
  for (int32_t i0 = 0; i0 < n_live; i0 += G) {
    int32_t c = n_live - i0 < G ? n_live - i0 : G;
    for (int32_t q = 0; q < G; q++) {
      if (q < c) KILN_TRY(kiln_whisper_kv_load(w, q, t->r.kv[live[i0 + q]]));
      else kiln_whisper_row_reset(w, q, 0);
      tokens[q] = q < c ? t->next[live[i0 + q]] : eot;
    }
    KILN_TRY(kiln_whisper_batch_step(w, G, tokens, logits));
    for (int32_t q = 0; q < c; q++) {
      memcpy(t->logits + (size_t)live[i0 + q] * V, logits + (size_t)q * V, sizeof(float) * (size_t)V);
      KILN_TRY(kiln_whisper_kv_save(w, q, t->r.kv[live[i0 + q]]));
    }
  }
  return KILN_OK;
}

/* A task's rows up to its last live one (0 for no task or a finished one). */
static int32_t live_rows(const dec_task *t) {
  int32_t n = 0;
  for (int32_t j = 0; t && !t->done && j < t->n; j++)
    if (t->next[j] >= 0) n = j + 1;
  return n;
}

kiln_status dec_step(kiln_whisper *w, dec_task *const *tasks, int32_t n_slots, int32_t G) {
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int32_t V = c->vocab_size, slots = 0;
  for (int32_t s = 0; s < n_slots; s++)
    if (tasks[s] && !tasks[s]->done) slots = s + 1;
  if (slots == 0) return KILN_OK;
  kiln_pool *pool = NULL;
  KILN_TRY(kiln_whisper_decode_pool(w, &pool));
  int32_t R = slots * G, kv = tasks[0] && !tasks[0]->done && tasks[0]->r.kv;
  int32_t *tokens = malloc(sizeof(int32_t) * (size_t)R);
  float *logits = kv ? malloc(sizeof(float) * (size_t)R * (size_t)V) : NULL;
  kiln_status st = tokens && (logits || !kv) ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for a decoding step");
  if (st == KILN_OK && kv) {
    st = step_kv(w, tasks[0], G, tokens, logits);
    if (st == KILN_OK) st = dec_choose_step(pool, tasks, 1, NULL, KILN_DTYPE_FP32, 0);
  } else if (st == KILN_OK) {
    for (int32_t r = 0; r < R; r++) tokens[r] = -1;
    for (int32_t s = 0; s < slots; s++) {
      const dec_task *t = tasks[s];
      for (int32_t j = 0; t && !t->done && j < t->n; j++) tokens[t->r.first + j] = t->next[j];
    }
    for (int32_t r = 0; r < R; r++)
      if (tokens[r] < 0) { /* an idle row: a dummy token over an empty cache */
        tokens[r] = c->eot;
        kiln_whisper_row_reset(w, r, 0);
      }
    st = kiln_whisper_batch_step(w, R, tokens, NULL);
    int32_t end = 0; /* the logits rows up to the last live one, in one copy */
    for (int32_t s = 0; s < slots; s++)
      if (live_rows(tasks[s]) > 0) end = tasks[s]->r.first + live_rows(tasks[s]);
    const void *host = NULL;
    kiln_dtype dtype = KILN_DTYPE_FP32;
    if (st == KILN_OK) st = kiln_whisper_step_fetch(w, end, &host, &dtype);
    if (st == KILN_OK) st = dec_choose_step(pool, tasks, slots, host, dtype, 0);
  }
  free(tokens), free(logits);
  return st;
}

/* ---- one window: public entry points --------------------------------------------------------- */

/* Decode the window encoded in slot 0 at temperature T, with as many rows as it needs (KV copies
 * when the engines have fewer rows). */
static kiln_status decode_encoded(kiln_whisper *w, const int32_t *prompt, int32_t n_prompt, double T,
                                  const kiln_whisper_options *o, const char *language, uint64_t *rng,
                                  kiln_whisper_decoding **out) {
  int32_t need = dec_rows_needed(o, &T, 1), rows = kiln_whisper_max_rows(w);
  int32_t G = need < rows ? need : rows;
  KILN_TRY(kiln_whisper_set_beams(w, G));
  dec_rows r = {w, 0, 0, G, NULL};
  kiln_status s = KILN_OK;
  if (need > G) {
    r.kv = calloc((size_t)need, sizeof *r.kv);
    if (!r.kv) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
    for (int32_t j = 0; s == KILN_OK && j < need; j++) s = kiln_whisper_kv_create(w, &r.kv[j]);
  }
  dec_task t;
  if (s == KILN_OK) s = dec_task_begin(&t, w, o, language, prompt, n_prompt, T, *rng, r);
  if (s == KILN_OK) {
    dec_task *tp = &t;
    while (s == KILN_OK && !t.done) s = dec_step(w, &tp, 1, G);
    if (s == KILN_OK) s = dec_task_result(&t, out);
    if (s == KILN_OK) *rng = t.rng_after;
    dec_task_free(&t);
  }
  for (int32_t j = 0; r.kv && j < need; j++) kiln_whisper_kv_destroy(w, r.kv[j]);
  free(r.kv);
  return s;
}

kiln_status kiln_whisper_decode_window(kiln_whisper *w, const float *mel, const int32_t *prompt, int32_t n_prompt,
                                       double temperature, const kiln_whisper_options *o, kiln_whisper_decoding **out) {
  if (!w || !mel || !out || (n_prompt > 0 && !prompt) || temperature < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_decode_window: NULL argument or negative temperature");
  kiln_whisper_options opt = o ? *o : kiln_whisper_default_options();
  uint64_t rng = opt.seed;
  const char *language = opt.language;
  KILN_TRY(kiln_whisper_encode(w, mel, NULL));
  if (!language && kiln_tokenizer_is_multilingual(kiln_whisper_tokenizer(w))) KILN_TRY(dec_detect_row(w, 0, NULL, &language));
  return decode_encoded(w, prompt, n_prompt, temperature, &opt, language, &rng, out);
}

kiln_status dec_detect_row(kiln_whisper *w, int32_t row, float *probs, const char **code) {
  kiln_tokenizer *tok = kiln_whisper_tokenizer(w);
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int32_t nl = kiln_tokenizer_num_languages(tok), sot = c->sot;
  if (!kiln_tokenizer_is_multilingual(tok) || nl <= 0)
    return kiln_error(KILN_ERR_UNSUPPORTED, "whisper: this model is English-only and has no language tokens; give no language");
  float *row_logits = malloc(sizeof(float) * (size_t)c->vocab_size);
  if (!row_logits) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  kiln_whisper_row_reset(w, row, 0);
  kiln_status s = kiln_whisper_row_decode(w, row, &sot, 1);
  if (s == KILN_OK) s = kiln_whisper_last_logits(w, 0, row_logits);
  if (s == KILN_OK) { /* language tokens follow <|startoftranscript|> */
    double lse = dec_logsumexp(row_logits, sot + 1, sot + 1 + nl);
    int32_t best = sot + 1 + (int32_t)kiln_row_argmax(row_logits + sot + 1, nl);
    for (int32_t i = 0; probs && i < nl; i++) probs[i] = (float)exp((double)row_logits[sot + 1 + i] - lse);
    *code = kiln_tokenizer_language_code(tok, best);
  }
  free(row_logits);
  return s;
}

kiln_status kiln_whisper_detect_language(kiln_whisper *w, const float *mel, float *probs, const char **code) {
  if (!w || !mel || !code) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_detect_language: NULL argument");
  KILN_TRY(kiln_whisper_encode(w, mel, NULL));
  return dec_detect_row(w, 0, probs, code);
}
