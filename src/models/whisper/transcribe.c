/* src/models/whisper/transcribe.c - long-form transcription as openai-whisper's transcribe()
 * does it: the log-mel of the whole file padded with 30 s of zeros, 30 s windows advanced by
 * the last timestamp, the temperature fallback, the no-speech skip, the previous text as the
 * prompt, segments from the timestamp tokens. Not here: word timestamps, clip_timestamps,
 * carry_initial_prompt, hallucination_silence_threshold; the decoding itself (decode.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/audio.h"
#include "models/whisper/decode_internal.h"
#include "models/whisper/whisper_internal.h"

#define N_FRAMES KILN_WHISPER_CHUNK_FRAMES
#define INPUT_STRIDE 2 /* mel frames per encoder position */

void kiln_whisper_transcript_free(kiln_whisper_transcript *t) {
  if (!t) return;
  for (int32_t i = 0; i < t->n_segments; i++) {
    kiln_tokenizer_free(t->segments[i].text);
    free(t->segments[i].tokens);
  }
  free(t->segments);
  kiln_tokenizer_free(t->text);
  free(t);
}

typedef struct tstate {
  kiln_whisper *w;
  const kiln_whisper_options *o;
  kiln_tokenizer *tok;
  const char *language;
  int32_t eot, ts_begin;
  int32_t *all, n_all, cap_all; /* all_tokens: the initial prompt, then every segment's tokens */
  int32_t n_initial, reset_since;
  kiln_whisper_transcript *t;
  int32_t cap_seg;
  uint64_t rng;
} tstate;

static kiln_status push_tokens(tstate *s, const int32_t *tok, int32_t n) {
  if (s->n_all + n > s->cap_all) {
    int32_t cap = (s->n_all + n) * 2 + 64;
    int32_t *p = realloc(s->all, sizeof(int32_t) * (size_t)cap);
    if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
    s->all = p, s->cap_all = cap;
  }
  if (n) memcpy(s->all + s->n_all, tok, sizeof(int32_t) * (size_t)n);
  s->n_all += n;
  return KILN_OK;
}

/* new_segment(): text of the tokens below <|endoftext|>; emptied when instantaneous or blank. */
static kiln_status add_segment(tstate *s, int32_t seek, double start, double end, const int32_t *tok, int32_t n,
                               const kiln_whisper_decoding *r) {
  kiln_whisper_transcript *t = s->t;
  if (t->n_segments == s->cap_seg) {
    int32_t cap = s->cap_seg * 2 + 8;
    kiln_whisper_segment *p = realloc(t->segments, sizeof *p * (size_t)cap);
    if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
    t->segments = p, s->cap_seg = cap;
  }
  kiln_whisper_segment *g = &t->segments[t->n_segments];
  memset(g, 0, sizeof *g);
  g->tokens = malloc(sizeof(int32_t) * ((size_t)n + 1));
  if (!g->tokens) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  int32_t m = 0;
  for (int32_t i = 0; i < n; i++)
    if (tok[i] < s->eot) g->tokens[m++] = tok[i];
  kiln_status st = kiln_tokenizer_decode(s->tok, g->tokens, m, 0, &g->text);
  if (st != KILN_OK) return free(g->tokens), st;
  memcpy(g->tokens, tok, sizeof(int32_t) * (size_t)n);
  g->n_tokens = n;
  g->id = t->n_segments, g->seek = seek, g->start = start, g->end = end;
  g->temperature = r->temperature, g->avg_logprob = r->avg_logprob;
  g->compression_ratio = r->compression_ratio, g->no_speech_prob = r->no_speech_prob;
  int blank = 1;
  for (const char *c = g->text; *c && blank; c++) blank = *c == ' ' || (*c >= '\t' && *c <= '\r');
  if (start == end || blank) {
    g->text[0] = '\0';
    g->n_tokens = 0;
  }
  t->n_segments++;
  return KILN_OK;
}

/* decode_with_fallback(): the window is encoded already. */
static kiln_status decode_with_fallback(tstate *s, kiln_whisper_decoding **out) {
  kiln_whisper_decoding *r = NULL;
  const int32_t *prompt = s->all + s->reset_since;
  int32_t n_prompt = s->n_all - s->reset_since;
  for (int32_t i = 0; i < s->o->n_temperatures; i++) {
    kiln_whisper_decoding_free(r);
    r = NULL;
    KILN_TRY(dec_decode_encoded(s->w, prompt, n_prompt, s->o->temperatures[i], s->o, s->language, &s->rng, &r));
    if (!kiln_whisper_needs_fallback(s->o, r->compression_ratio, r->avg_logprob, r->no_speech_prob)) break;
  }
  *out = r;
  return KILN_OK;
}

/* Segments of one decoded window; returns the frames to advance. */
static kiln_status window_segments(tstate *s, const kiln_whisper_decoding *r, int32_t seek, int32_t segment_size,
                                   int32_t *advance) {
  const int32_t *tok = r->tokens, tb = s->ts_begin;
  int32_t n = r->n_tokens;
  double time_offset = (double)(seek * KILN_WHISPER_HOP_LENGTH) / KILN_WHISPER_SAMPLE_RATE;
  double precision = (double)(INPUT_STRIDE * KILN_WHISPER_HOP_LENGTH) / KILN_WHISPER_SAMPLE_RATE;
  int single_ending = n >= 2 && tok[n - 2] < tb && tok[n - 1] >= tb;
  if (n == 1 && tok[0] >= tb) single_ending = 0; /* [-2:] of one token is [True] */
  int32_t last = 0, consecutive = 0;
  for (int32_t i = 1; i < n; i++) {
    if (!(tok[i - 1] >= tb && tok[i] >= tb)) continue;
    consecutive = 1;
    KILN_TRY(add_segment(s, seek, time_offset + (tok[last] - tb) * precision, time_offset + (tok[i - 1] - tb) * precision,
                         tok + last, i - last, r));
    last = i;
  }
  if (consecutive) {
    if (single_ending) {
      KILN_TRY(add_segment(s, seek, time_offset + (tok[last] - tb) * precision, time_offset + (tok[n - 1] - tb) * precision,
                           tok + last, n - last, r));
      *advance = segment_size;
    } else {
      *advance = (tok[last - 1] - tb) * INPUT_STRIDE;
    }
    return KILN_OK;
  }
  double duration = (double)(segment_size * KILN_WHISPER_HOP_LENGTH) / KILN_WHISPER_SAMPLE_RATE;
  int32_t last_ts = -1;
  for (int32_t i = 0; i < n; i++)
    if (tok[i] >= tb) last_ts = tok[i];
  if (last_ts >= 0 && last_ts != tb) duration = (last_ts - tb) * precision;
  KILN_TRY(add_segment(s, seek, time_offset, time_offset + duration, tok, n, r));
  *advance = segment_size;
  return KILN_OK;
}

/* One window at seek: mel_all [n_mels x frames]. */
static kiln_status one_window(tstate *s, const float *mel_all, int64_t frames, int32_t content, float *mel, int32_t *seek) {
  int32_t n_mels = kiln_whisper_get_config(s->w)->n_mels;
  int32_t size = content - *seek < N_FRAMES ? content - *seek : N_FRAMES;
  for (int32_t m = 0; m < n_mels; m++) { /* pad_or_trim(mel[:, seek:seek + size]): zeros after */
    memcpy(mel + (size_t)m * N_FRAMES, mel_all + (size_t)m * (size_t)frames + *seek, sizeof(float) * (size_t)size);
    memset(mel + (size_t)m * N_FRAMES + size, 0, sizeof(float) * (size_t)(N_FRAMES - size));
  }
  KILN_TRY(kiln_whisper_encode(s->w, mel, NULL));
  kiln_whisper_decoding *r = NULL;
  KILN_TRY(decode_with_fallback(s, &r));
  const kiln_whisper_options *o = s->o;
  int skip = !isnan(o->no_speech_threshold) && r->no_speech_prob > o->no_speech_threshold;
  if (!isnan(o->logprob_threshold) && r->avg_logprob > o->logprob_threshold) skip = 0;
  if (skip) {
    *seek += size;
    kiln_whisper_decoding_free(r);
    return KILN_OK;
  }
  int32_t first = s->t->n_segments, advance = 0;
  kiln_status st = window_segments(s, r, *seek, size, &advance);
  for (int32_t i = first; st == KILN_OK && i < s->t->n_segments; i++)
    st = push_tokens(s, s->t->segments[i].tokens, s->t->segments[i].n_tokens);
  if (st == KILN_OK && (!o->condition_on_previous_text || r->temperature > 0.5)) s->reset_since = s->n_all;
  *seek += advance;
  kiln_whisper_decoding_free(r);
  return st;
}

static kiln_status run(tstate *s, const float *samples, int64_t n) {
  const kiln_whisper_config *c = kiln_whisper_get_config(s->w);
  int64_t frames = kiln_mel_n_frames(n + KILN_WHISPER_CHUNK_SAMPLES);
  int32_t content = (int32_t)(frames - N_FRAMES), seek = 0;
  float *mel_all = malloc(sizeof(float) * (size_t)c->n_mels * (size_t)frames);
  float *mel = malloc(sizeof(float) * (size_t)c->n_mels * N_FRAMES);
  kiln_status st = mel_all && mel ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for the log-mel");
  if (st == KILN_OK) st = kiln_mel_compute(samples, n, KILN_WHISPER_CHUNK_SAMPLES, c->n_mels, mel_all);
  if (st == KILN_OK && !s->language) {
    if (!kiln_tokenizer_is_multilingual(s->tok)) {
      s->language = "en";
    } else {
      for (int32_t m = 0; m < c->n_mels; m++)
        memcpy(mel + (size_t)m * N_FRAMES, mel_all + (size_t)m * (size_t)frames, sizeof(float) * N_FRAMES);
      st = kiln_whisper_detect_language(s->w, mel, NULL, &s->language);
    }
  }
  if (st == KILN_OK && s->o->initial_prompt) {
    size_t len = strlen(s->o->initial_prompt), a = 0;
    while (a < len && (s->o->initial_prompt[a] == ' ' || (s->o->initial_prompt[a] >= '\t' && s->o->initial_prompt[a] <= '\r'))) a++;
    while (len > a && (s->o->initial_prompt[len - 1] == ' ' || (s->o->initial_prompt[len - 1] >= '\t' && s->o->initial_prompt[len - 1] <= '\r'))) len--;
    char *p = malloc(len - a + 2);
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    if (!p) st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
    if (st == KILN_OK) { /* " " + initial_prompt.strip() */
      p[0] = ' ';
      memcpy(p + 1, s->o->initial_prompt + a, len - a);
      p[len - a + 1] = '\0';
      st = kiln_tokenizer_encode(s->tok, p, -1, &ids, &n_ids);
    }
    if (st == KILN_OK) st = push_tokens(s, ids, (int32_t)n_ids);
    s->n_initial = (int32_t)n_ids;
    kiln_tokenizer_free(ids);
    free(p);
  }
  while (st == KILN_OK && seek < content) st = one_window(s, mel_all, frames, content, mel, &seek);
  free(mel_all);
  free(mel);
  return st;
}

kiln_status kiln_whisper_transcribe_audio(kiln_whisper *w, const float *samples, int64_t n, const kiln_whisper_options *o,
                                          kiln_whisper_transcript **out) {
  if (!w || !samples || n < 1 || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_transcribe_audio: NULL or empty argument");
  kiln_whisper_options opt = o ? *o : kiln_whisper_default_options();
  if (opt.n_temperatures < 1 || opt.n_temperatures > KILN_WHISPER_MAX_TEMPERATURES)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d temperatures; give 1 to %d", opt.n_temperatures, KILN_WHISPER_MAX_TEMPERATURES);
  tstate s;
  memset(&s, 0, sizeof s);
  s.w = w, s.o = &opt, s.tok = kiln_whisper_tokenizer(w), s.language = opt.language, s.rng = opt.seed;
  s.eot = kiln_whisper_get_config(w)->eot;
  s.ts_begin = kiln_tokenizer_special(s.tok, KILN_TOKEN_TIMESTAMP_BEGIN);
  s.t = calloc(1, sizeof *s.t);
  kiln_status st = s.t ? run(&s, samples, n) : kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  if (st == KILN_OK)
    st = kiln_tokenizer_decode(s.tok, s.all + s.n_initial, s.n_all - s.n_initial, 0, &s.t->text);
  if (st == KILN_OK) snprintf(s.t->language, sizeof s.t->language, "%s", s.language ? s.language : "en");
  free(s.all);
  if (st != KILN_OK) {
    kiln_whisper_transcript_free(s.t);
    return st;
  }
  *out = s.t;
  return KILN_OK;
}
