/* src/models/whisper/decode.c - decoding of one 30 s window as openai-whisper's decoding.py does
 * it: the logit filters (SuppressBlank, SuppressTokens, ApplyTimestampRules), greedy decoding and
 * seeded sampling with best_of (GreedyDecoder + MaximumLikelihoodRanker), beam search
 * (BeamSearchDecoder: beams run one after the other, each with its own copy of the KV cache),
 * the no-speech probability, language detection, and the fallback rule of transcribe().
 * Not here: the long-form loop (transcribe.c) and the output writers (writers.c).
 * Sums of log-probabilities are kept in float as openai-whisper's float32 tensors keep them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
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
  float m = -INFINITY;
  for (int32_t i = from; i < to; i++) m = row[i] > m ? row[i] : m;
  if (m == -INFINITY) return -INFINITY;
  double s = 0;
  for (int32_t i = from; i < to; i++) s += exp((double)row[i] - m);
  return m + log(s);
}

static int32_t argmax(const float *row, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; i++)
    if (row[i] > row[best]) best = i;
  return best;
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
  float text = -INFINITY;
  for (int32_t i = 0; i < tb; i++) text = row[i] > text ? row[i] : text;
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
  free(d->row);
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
  d->row = malloc(sizeof(float) * (size_t)d->vocab);
  if (!d->init || !d->row) return dec_ctx_free(d), kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
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

/* Run the initial tokens: no-speech probability from the <|startoftranscript|> row, the last row
 * into d->row. */
kiln_status dec_first_step(dec_ctx *d, double *no_speech) {
  /* up to <|startoftranscript|> first when its row is needed: the decoder keeps only the rows of
   * a call's last chunk */
  int32_t first = d->no_speech >= 0 ? d->sot_index + 1 : d->n_init;
  kiln_whisper_cache_reset(d->w);
  KILN_TRY(kiln_whisper_decode(d->w, d->init, first, NULL));
  *no_speech = NAN;
  if (d->no_speech >= 0) {
    KILN_TRY(kiln_whisper_last_logits(d->w, first - 1, d->row));
    *no_speech = exp((double)d->row[d->no_speech] - dec_logsumexp(d->row, 0, d->vocab));
  }
  if (first == d->n_init) return kiln_whisper_last_logits(d->w, first - 1, d->row);
  KILN_TRY(kiln_whisper_decode(d->w, d->init + first, d->n_init - first, NULL));
  return kiln_whisper_last_logits(d->w, d->n_init - first - 1, d->row);
}

/* ---- greedy decoding and sampling ------------------------------------------------------------ */

/* One sequence: seq [n_ctx + 2] receives the initial and sampled tokens, *n their count; the
 * sum of the sampled tokens' log-probabilities (<|endoftext|>'s included) in *sum. */
static kiln_status run_one(dec_ctx *d, double T, uint64_t *rng, int32_t *seq, int32_t *n_seq, float *sum,
                           double *no_speech) {
  KILN_TRY(dec_first_step(d, no_speech));
  memcpy(seq, d->init, sizeof(int32_t) * (size_t)d->n_init);
  int32_t n = d->n_init;
  float s = 0;
  for (int32_t i = 0; i < d->sample_len; i++) {
    dec_apply_filters(d, d->row, seq, n);
    int32_t t = T == 0 ? argmax(d->row, d->vocab) : sample(d->row, d->vocab, T, rng);
    s += (float)((double)d->row[t] - dec_logsumexp(d->row, 0, d->vocab));
    seq[n++] = t;
    if (t == d->eot || n > d->n_ctx) break;
    KILN_TRY(kiln_whisper_decode(d->w, &t, 1, NULL));
    KILN_TRY(kiln_whisper_last_logits(d->w, 0, d->row));
  }
  *n_seq = n;
  *sum = s;
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

static kiln_status run_sampling(dec_ctx *d, double T, uint64_t *rng, const char *language, kiln_whisper_decoding **out) {
  int32_t groups = T > 0 && d->o->best_of > 1 ? d->o->best_of : 1;
  int32_t *seq = malloc(sizeof(int32_t) * ((size_t)d->n_ctx + 2) * 2), n = 0, best_n = 0;
  if (!seq) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  int32_t *best = seq + d->n_ctx + 2;
  float sum = 0, best_sum = 0;
  double no_speech = NAN, best_score = -INFINITY;
  kiln_status s = KILN_OK;
  for (int32_t g = 0; g < groups && s == KILN_OK; g++) {
    s = run_one(d, T, rng, seq, &n, &sum, &no_speech);
    double score = dec_rank_score(d->o, sum, dec_sampled_length(d, seq, n));
    if (s == KILN_OK && (g == 0 || score > best_score)) { /* np.argmax: the first maximum */
      best_score = score, best_sum = sum, best_n = n;
      memcpy(best, seq, sizeof(int32_t) * (size_t)n);
    }
  }
  if (s == KILN_OK) s = dec_fill_result(d, best, best_n, best_sum, T, no_speech, language, out);
  free(seq);
  return s;
}

/* ---- public entry points --------------------------------------------------------------------- */

kiln_status dec_decode_encoded(kiln_whisper *w, const int32_t *prompt, int32_t n_prompt, double T,
                               const kiln_whisper_options *o, const char *language, uint64_t *rng,
                               kiln_whisper_decoding **out) {
  dec_ctx d;
  KILN_TRY(dec_ctx_init(&d, w, o, language, prompt, n_prompt));
  kiln_status s = T == 0 && o->beam_size > 0 ? dec_beam_search(&d, language, out) : run_sampling(&d, T, rng, language, out);
  dec_ctx_free(&d);
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
  if (!language && kiln_tokenizer_is_multilingual(kiln_whisper_tokenizer(w))) KILN_TRY(dec_detect_encoded(w, NULL, &language));
  return dec_decode_encoded(w, prompt, n_prompt, temperature, &opt, language, &rng, out);
}

kiln_status dec_detect_encoded(kiln_whisper *w, float *probs, const char **code) {
  kiln_tokenizer *tok = kiln_whisper_tokenizer(w);
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int32_t nl = kiln_tokenizer_num_languages(tok), sot = c->sot;
  if (!kiln_tokenizer_is_multilingual(tok) || nl <= 0)
    return kiln_error(KILN_ERR_UNSUPPORTED, "whisper: this model is English-only and has no language tokens; give no language");
  float *row = malloc(sizeof(float) * (size_t)c->vocab_size);
  if (!row) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  kiln_whisper_cache_reset(w);
  kiln_status s = kiln_whisper_decode(w, &sot, 1, NULL);
  if (s == KILN_OK) s = kiln_whisper_last_logits(w, 0, row);
  if (s == KILN_OK) { /* language tokens follow <|startoftranscript|> */
    double lse = dec_logsumexp(row, sot + 1, sot + 1 + nl);
    int32_t best = sot + 1 + argmax(row + sot + 1, nl);
    for (int32_t i = 0; probs && i < nl; i++) probs[i] = (float)exp((double)row[sot + 1 + i] - lse);
    *code = kiln_tokenizer_language_code(tok, best);
  }
  free(row);
  return s;
}

kiln_status kiln_whisper_detect_language(kiln_whisper *w, const float *mel, float *probs, const char **code) {
  if (!w || !mel || !code) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_detect_language: NULL argument");
  KILN_TRY(kiln_whisper_encode(w, mel, NULL));
  return dec_detect_encoded(w, probs, code);
}
