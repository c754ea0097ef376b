/* src/models/whisper/transcribe.c - long-form transcription as openai-whisper's transcribe()
 * does it: the log-mel of the whole file padded with 30 s of zeros, 30 s windows advanced by
 * the last timestamp, the temperature fallback, the no-speech skip, the previous text as the
 * prompt, segments from the timestamp tokens; for several files at once with in-flight
 * batching (kiln_whisper_transcribe_files).
 *
 * Slots: the decoder's rows are split into n_slots window slots of G rows (G: the rows a window
 * needs, dec_rows_needed). Each slot works through files one after the other: a file's windows
 * depend on each other (the next seek and prompt come from the previous window), so a file
 * stays in its slot until its last window, and then the slot takes the next file. Every slot's
 * window is decoded by a dec_task (decode.c); all tasks advance together, one token per step,
 * in one decoder batch; when a slot's window finishes (or falls back to the next temperature)
 * only that slot is re-encoded or re-prompted while the others keep their caches. Each file's
 * result is the same as when it is transcribed alone (the rows of a batch do not mix).
 * The log-mel: on the GPU (mel_cuda.cu) for CUDA engines in a CUDA build, else on the CPU; the
 * whole file's mel is kept in engine memory in the engine precision and windows of it go to the
 * encoder without a host round trip.
 * Not here: word timestamps, clip_timestamps, carry_initial_prompt,
 * hallucination_silence_threshold; the decoding itself (decode.c, beam.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/dtype.h"
#include "kiln/audio.h"
#include "models/whisper/decode_internal.h"
#include "models/whisper/whisper_internal.h"

#ifdef KILN_HAVE_CUDA
#include "models/whisper/mel_cuda.h"
#endif

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


/* ---- slots ----------------------------------------------------------------------------------- */

typedef struct slot {
  int32_t index;            /* slot number: decoder rows index x G .. */
  int64_t file;             /* the file in the slot, -1: none */
  tstate s;                 /* its long-form state */
  void *mel;                /* its log-mel [n_mels x frames] in engine memory, engine precision */
  size_t mel_cap;
  int64_t frames;
  int32_t content, seek, size; /* frames of audio, the window's first frame and its frames */
  int32_t ti;               /* temperature of the fallback being tried */
  dec_task task;
  int has_task;
} slot;

typedef struct sched {
  kiln_whisper *w;
  const kiln_whisper_options *o;
  const kiln_whisper_files *io;
  int32_t n_slots, G, need; /* slots, decoder rows per slot, rows a window needs */
  slot *slots;
  kiln_whisper_kv **kv;     /* [need] KV copies when need > G (one slot) */
  int64_t next_file;
  float *host_mel;          /* CPU front end: fp32 mel, and the engine-precision copy */
  void *host_conv;
  size_t host_cap;
#ifdef KILN_HAVE_CUDA
  kiln_mel_cuda *gpu_mel;   /* GPU front end (CUDA engines), or NULL */
#endif
} sched;

/* Errors after which nothing else can run: the whole call fails. */
static int fatal(kiln_status s) {
  return s == KILN_ERR_OUT_OF_MEMORY || s == KILN_ERR_OUT_OF_DEVICE_MEMORY || s == KILN_ERR_CUDA || s == KILN_ERR_INTERNAL;
}

static void file_clear(slot *sl) {
  if (sl->has_task) dec_task_free(&sl->task);
  sl->has_task = 0;
  free(sl->s.all);
  kiln_whisper_transcript_free(sl->s.t);
  memset(&sl->s, 0, sizeof sl->s);
  sl->file = -1;
}

/* The file's log-mel (its samples plus 30 s of zeros) into the slot's engine memory. */
static kiln_status file_mel(sched *sc, slot *sl, const float *samples, int64_t n) {
  kiln_whisper *w = sc->w;
  int32_t n_mels = kiln_whisper_get_config(w)->n_mels;
  kiln_dtype prec = kiln_whisper_precision(w);
  int64_t frames = kiln_mel_n_frames(n + KILN_WHISPER_CHUNK_SAMPLES);
  size_t count = (size_t)n_mels * (size_t)frames, bytes = count * kiln_dtype_bytes(prec, 1);
  if (bytes > sl->mel_cap) {
    kiln_whisper_engine_free(w, sl->mel);
    sl->mel = NULL, sl->mel_cap = 0;
    KILN_TRY(kiln_whisper_engine_alloc(w, bytes, &sl->mel));
    sl->mel_cap = bytes;
  }
  sl->frames = frames;
  sl->content = (int32_t)(frames - N_FRAMES);
#ifdef KILN_HAVE_CUDA
  if (sc->gpu_mel)
    return kiln_mel_cuda_compute(sc->gpu_mel, samples, n, KILN_WHISPER_CHUNK_SAMPLES, kiln_whisper_stream(w), sl->mel, prec, NULL);
#endif
  if (count > sc->host_cap) {
    free(sc->host_mel), free(sc->host_conv);
    sc->host_mel = malloc(sizeof(float) * count);
    sc->host_conv = malloc(bytes);
    sc->host_cap = sc->host_mel && sc->host_conv ? count : 0;
    if (!sc->host_cap) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for the log-mel");
  }
  KILN_TRY(kiln_mel_compute(samples, n, KILN_WHISPER_CHUNK_SAMPLES, n_mels, sc->host_mel));
  const void *src = sc->host_mel;
  if (prec != KILN_DTYPE_FP32) {
    kiln_convert_floats(sc->host_conv, prec, sc->host_mel, KILN_DTYPE_FP32, (int64_t)count);
    src = sc->host_conv;
  }
  return kiln_whisper_engine_upload(w, sl->mel, src, bytes);
}

/* " " + initial_prompt.strip() as the first tokens of the file's prompt. */
static kiln_status initial_prompt(tstate *s) {
  const char *p = s->o->initial_prompt;
  size_t len = strlen(p), a = 0;
  while (a < len && (p[a] == ' ' || (p[a] >= '\t' && p[a] <= '\r'))) a++;
  while (len > a && (p[len - 1] == ' ' || (p[len - 1] >= '\t' && p[len - 1] <= '\r'))) len--;
  char *text = malloc(len - a + 2);
  if (!text) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  text[0] = ' ';
  memcpy(text + 1, p + a, len - a);
  text[len - a + 1] = '\0';
  int32_t *ids = NULL;
  int64_t n_ids = 0;
  kiln_status st = kiln_tokenizer_encode(s->tok, text, -1, &ids, &n_ids);
  if (st == KILN_OK) st = push_tokens(s, ids, (int32_t)n_ids);
  if (st == KILN_OK) s->n_initial = (int32_t)n_ids;
  kiln_tokenizer_free(ids);
  free(text);
  return st;
}

/* Start file i in the slot: audio, log-mel, language, initial prompt. */
static kiln_status file_start(sched *sc, slot *sl, int64_t i) {
  kiln_whisper *w = sc->w;
  tstate *s = &sl->s;
  memset(s, 0, sizeof *s);
  sl->file = i;
  s->w = w, s->o = sc->o, s->tok = kiln_whisper_tokenizer(w), s->language = sc->o->language, s->rng = sc->o->seed;
  s->eot = kiln_whisper_get_config(w)->eot;
  s->ts_begin = kiln_tokenizer_special(s->tok, KILN_TOKEN_TIMESTAMP_BEGIN);
  s->t = calloc(1, sizeof *s->t);
  if (!s->t) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  float *samples = NULL;
  int64_t n = 0;
  KILN_TRY(sc->io->load(sc->io->user_data, i, &samples, &n));
  kiln_status st = samples && n >= 1 ? KILN_OK : kiln_error(KILN_ERR_INVALID_ARG, "whisper: file %lld has no audio samples", (long long)i);
  if (st == KILN_OK) st = file_mel(sc, sl, samples, n);
  if (sc->io->unload) sc->io->unload(sc->io->user_data, samples);
  if (st == KILN_OK && !s->language) {
    if (!kiln_tokenizer_is_multilingual(s->tok)) {
      s->language = "en";
    } else { /* detect_language(): the first 30 s of the padded mel */
      st = kiln_whisper_encode_slot_frames(w, sl->index, sl->mel, sl->frames, 0, N_FRAMES);
      if (st == KILN_OK) st = dec_detect_row(w, sl->index * sc->G, NULL, &s->language);
    }
  }
  if (st == KILN_OK && sc->o->initial_prompt) st = initial_prompt(s);
  sl->seek = 0;
  return st;
}

/* Decode the slot's encoded window at temperature ti of the fallback. */
static kiln_status task_begin(sched *sc, slot *sl) {
  tstate *s = &sl->s;
  dec_rows r = {sc->w, sl->index * sc->G, 0, sc->G, sc->need > sc->G ? sc->kv : NULL};
  KILN_TRY(dec_task_begin(&sl->task, sc->w, sc->o, s->language, s->all + s->reset_since, s->n_all - s->reset_since,
                          sc->o->temperatures[sl->ti], s->rng, r));
  sl->has_task = 1;
  return KILN_OK;
}

/* The window's decoding is done: the next temperature, or its segments and the next seek
 * (one_window of openai-whisper's loop). */
static kiln_status window_done(sched *sc, slot *sl) {
  tstate *s = &sl->s;
  const kiln_whisper_options *o = sc->o;
  kiln_whisper_decoding *r = NULL;
  kiln_status st = dec_task_result(&sl->task, &r);
  s->rng = sl->task.rng_after;
  dec_task_free(&sl->task);
  sl->has_task = 0;
  if (st != KILN_OK) return st;
  if (sl->ti + 1 < o->n_temperatures && kiln_whisper_needs_fallback(o, r->compression_ratio, r->avg_logprob, r->no_speech_prob)) {
    kiln_whisper_decoding_free(r);
    sl->ti++;
    return task_begin(sc, sl);
  }
  int skip = !isnan(o->no_speech_threshold) && r->no_speech_prob > o->no_speech_threshold;
  if (!isnan(o->logprob_threshold) && r->avg_logprob > o->logprob_threshold) skip = 0;
  if (skip) {
    sl->seek += sl->size;
    kiln_whisper_decoding_free(r);
    return KILN_OK;
  }
  int32_t first = s->t->n_segments, advance = 0;
  st = window_segments(s, r, sl->seek, sl->size, &advance);
  for (int32_t i = first; st == KILN_OK && i < s->t->n_segments; i++)
    st = push_tokens(s, s->t->segments[i].tokens, s->t->segments[i].n_tokens);
  if (st == KILN_OK && (!o->condition_on_previous_text || r->temperature > 0.5)) s->reset_since = s->n_all;
  sl->seek += advance;
  kiln_whisper_decoding_free(r);
  return st;
}

/* The file's last window is done: its transcript goes to the caller. */
static kiln_status file_done(sched *sc, slot *sl) {
  tstate *s = &sl->s;
  KILN_TRY(kiln_tokenizer_decode(s->tok, s->all + s->n_initial, s->n_all - s->n_initial, 0, &s->t->text));
  snprintf(s->t->language, sizeof s->t->language, "%s", s->language ? s->language : "en");
  kiln_whisper_transcript *t = s->t;
  s->t = NULL;
  int64_t i = sl->file;
  file_clear(sl);
  sc->io->done(sc->io->user_data, i, KILN_OK, t);
  return KILN_OK;
}

/* One step of the slot's work between decoder steps: handle a finished window, start the next
 * window, finish the file, start the next file. */
static kiln_status slot_work(sched *sc, slot *sl) {
  if (sl->has_task && sl->task.done) return window_done(sc, sl);
  if (sl->file >= 0 && sl->seek < sl->content) { /* the next window: pad_or_trim(mel[:, seek:seek + size]) */
    sl->size = sl->content - sl->seek < N_FRAMES ? sl->content - sl->seek : N_FRAMES;
    KILN_TRY(kiln_whisper_encode_slot_frames(sc->w, sl->index, sl->mel, sl->frames, sl->seek, sl->size));
    sl->ti = 0;
    return task_begin(sc, sl);
  }
  if (sl->file >= 0) return file_done(sc, sl);
  return file_start(sc, sl, sc->next_file++);
}

/* Work on the slot until its window is decoding or there is no work left for it. A file that
 * fails is reported to the caller and the slot goes on; fatal errors are returned. */
static kiln_status slot_advance(sched *sc, slot *sl) {
  while ((sl->has_task && sl->task.done) || (!sl->has_task && (sl->file >= 0 || sc->next_file < sc->io->n))) {
    kiln_status st = slot_work(sc, sl);
    if (st == KILN_OK) continue;
    if (fatal(st) || sl->file < 0) return st;
    int64_t i = sl->file;
    file_clear(sl);
    sc->io->done(sc->io->user_data, i, st, NULL);
  }
  return KILN_OK;
}

static kiln_status sched_init(sched *sc, kiln_whisper *w, const kiln_whisper_options *o, const kiln_whisper_files *io) {
  memset(sc, 0, sizeof *sc);
  sc->w = w, sc->o = o, sc->io = io;
  int32_t rows = kiln_whisper_max_rows(w), windows = kiln_whisper_max_windows(w);
  int32_t batch = o->batch_size > 0 ? o->batch_size : windows;
  if (batch > windows) batch = windows;
  if ((int64_t)batch > io->n) batch = (int32_t)io->n;
  sc->need = dec_rows_needed(o, o->temperatures, o->n_temperatures);
  sc->G = sc->need < rows ? sc->need : rows;
  sc->n_slots = rows / sc->G < batch ? rows / sc->G : batch;
  if (sc->n_slots < 1) sc->n_slots = 1;
  KILN_TRY(kiln_whisper_slots_reset(w, sc->G));
  sc->slots = calloc((size_t)sc->n_slots, sizeof *sc->slots);
  if (!sc->slots) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  for (int32_t i = 0; i < sc->n_slots; i++) sc->slots[i].index = i, sc->slots[i].file = -1;
  if (sc->need > sc->G) {
    sc->kv = calloc((size_t)sc->need, sizeof *sc->kv);
    if (!sc->kv) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
    for (int32_t j = 0; j < sc->need; j++) KILN_TRY(kiln_whisper_kv_create(w, &sc->kv[j]));
  }
#ifdef KILN_HAVE_CUDA
  if (kiln_whisper_is_cuda(w) && !o->cpu_mel)
    KILN_TRY(kiln_mel_cuda_create(kiln_whisper_get_config(w)->n_mels, kiln_whisper_device(w), &sc->gpu_mel));
#endif
  return KILN_OK;
}

static void sched_free(sched *sc) {
  for (int32_t i = 0; sc->slots && i < sc->n_slots; i++) {
    file_clear(&sc->slots[i]);
    kiln_whisper_engine_free(sc->w, sc->slots[i].mel);
  }
  for (int32_t j = 0; sc->kv && j < sc->need; j++) kiln_whisper_kv_destroy(sc->w, sc->kv[j]);
#ifdef KILN_HAVE_CUDA
  kiln_mel_cuda_destroy(sc->gpu_mel);
#endif
  free(sc->kv), free(sc->slots), free(sc->host_mel), free(sc->host_conv);
}

static kiln_status sched_run(sched *sc) {
  dec_task **tasks = calloc((size_t)sc->n_slots, sizeof *tasks);
  if (!tasks) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory");
  kiln_status st = KILN_OK;
  for (int32_t i = 0; st == KILN_OK && i < sc->n_slots; i++) st = slot_advance(sc, &sc->slots[i]);
  while (st == KILN_OK) {
    int live = 0;
    for (int32_t i = 0; i < sc->n_slots; i++) {
      slot *sl = &sc->slots[i];
      tasks[i] = sl->has_task && !sl->task.done ? &sl->task : NULL;
      live |= tasks[i] != NULL;
    }
    if (!live) break;
    st = dec_step(sc->w, tasks, sc->n_slots, sc->G);
    for (int32_t i = 0; st == KILN_OK && i < sc->n_slots; i++) st = slot_advance(sc, &sc->slots[i]);
  }
  for (int32_t i = 0; st != KILN_OK && i < sc->n_slots; i++) { /* the files in flight fail with it */
    slot *sl = &sc->slots[i];
    if (sl->file < 0) continue;
    int64_t f = sl->file;
    file_clear(sl);
    sc->io->done(sc->io->user_data, f, st, NULL);
  }
  free(tasks);
  return st;
}

static kiln_status check_options(const kiln_whisper_options *o) {
  if (o->n_temperatures < 1 || o->n_temperatures > KILN_WHISPER_MAX_TEMPERATURES)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: %d temperatures; give 1 to %d", o->n_temperatures, KILN_WHISPER_MAX_TEMPERATURES);
  for (int32_t i = 0; i < o->n_temperatures; i++)
    if (!(o->temperatures[i] >= 0))
      return kiln_error(KILN_ERR_INVALID_ARG, "whisper: temperature %g; give temperatures >= 0", o->temperatures[i]);
  if (o->beam_size < 0 || o->beam_size > DEC_MAX_BEAMS || o->best_of > DEC_MAX_ROWS || o->batch_size < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper: beam size %d, best_of %d, batch size %d; give 0..%d, at most %d and >= 0",
                      o->beam_size, o->best_of, o->batch_size, DEC_MAX_BEAMS, DEC_MAX_ROWS);
  return KILN_OK;
}

kiln_status kiln_whisper_transcribe_files(kiln_whisper *w, const kiln_whisper_files *files, const kiln_whisper_options *o) {
  if (!w || !files || !files->load || !files->done || files->n < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_transcribe_files: NULL argument, callback or negative file count");
  kiln_whisper_options opt = o ? *o : kiln_whisper_default_options();
  KILN_TRY(check_options(&opt));
  if (files->n == 0) return KILN_OK;
  sched sc;
  kiln_status st = sched_init(&sc, w, &opt, files);
  if (st == KILN_OK) st = sched_run(&sc);
  sched_free(&sc);
  return st;
}

/* kiln_whisper_transcribe_audio: one file through the same path. */
typedef struct one_file {
  const float *samples;
  int64_t n;
  kiln_status status;
  kiln_whisper_transcript *t;
} one_file;

static kiln_status one_load(void *user, int64_t i, float **samples, int64_t *n) {
  one_file *f = user;
  (void)i;
  *samples = (float *)f->samples, *n = f->n;
  return KILN_OK;
}

static void one_done(void *user, int64_t i, kiln_status s, kiln_whisper_transcript *t) {
  one_file *f = user;
  (void)i;
  f->status = s, f->t = t;
}

kiln_status kiln_whisper_transcribe_audio(kiln_whisper *w, const float *samples, int64_t n, const kiln_whisper_options *o,
                                          kiln_whisper_transcript **out) {
  if (!w || !samples || n < 1 || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_transcribe_audio: NULL or empty argument");
  kiln_whisper_options opt = o ? *o : kiln_whisper_default_options();
  opt.batch_size = 1;
  one_file f = {samples, n, KILN_ERR_INTERNAL, NULL};
  kiln_whisper_files io = {1, one_load, NULL, one_done, &f};
  KILN_TRY(kiln_whisper_transcribe_files(w, &io, &opt));
  if (f.status != KILN_OK) return f.status;
  *out = f.t;
  return KILN_OK;
}
