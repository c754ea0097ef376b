/* src/models/whisper/eval_run.c - kiln_eval_run: a loaded Whisper model over a test-set manifest
 * into an evaluation report (kiln/eval.h).
 *
 * What it is: per utterance, audio file -> 16 kHz mono (kiln_audio_load) -> log-mel of the first
 * 30 s (kiln_mel_compute_window) -> greedy transcript (kiln_whisper_transcribe) ->
 * kiln_eval_report_add_from_manifest; a file that cannot be read or decoded is reported through
 * the callback and skipped. Times the whole chain (RTF = wall / audio seconds, front end
 * included) and sets the report's perf and metrics.
 * What it is not: batched (the runtime decodes one window at a time), long-form (> 30 s audio is
 * truncated, as kiln transcribe does), nor a writer of files (the report writes them).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/error.h"
#include "kiln/audio.h"
#include "kiln/eval.h"

kiln_eval_run_params kiln_eval_run_default_params(void) {
  kiln_eval_run_params p;
  memset(&p, 0, sizeof p);
  p.decode = kiln_whisper_default_decode_params();
  p.batch_size = 1;
  return p;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The process's peak resident set in bytes (Linux reports ru_maxrss in KiB), -1 when unknown. */
static int64_t peak_host_bytes(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return (int64_t)ru.ru_maxrss * 1024;
}

/* Audio file -> mel [n_mels x 3000]; *seconds receives the audio length, *truncated 1 past 30 s. */
static kiln_status front_end(const char *path, int32_t n_mels, float *mel, double *seconds, int *truncated) {
  float *pcm = NULL;
  int64_t n = 0;
  KILN_TRY(kiln_audio_load(path, KILN_WHISPER_SAMPLE_RATE, &pcm, &n));
  kiln_status s = kiln_mel_compute_window(pcm, n, n_mels, mel);
  kiln_audio_free(pcm);
  if (s != KILN_OK) return s;
  *seconds = (double)n / KILN_WHISPER_SAMPLE_RATE;
  *truncated = n > KILN_WHISPER_CHUNK_SAMPLES;
  return KILN_OK;
}

/* One utterance: transcribe it into *result (NULL on error). Errors of the utterance itself. */
static kiln_status transcribe_one(kiln_whisper *w, const char *path, const kiln_eval_run_params *p, float *mel,
                                  kiln_eval_run_stats *st, kiln_whisper_result **result) {
  double t0 = now_s(), seconds = 0;
  int truncated = 0;
  kiln_status s = front_end(path, kiln_whisper_get_config(w)->n_mels, mel, &seconds, &truncated);
  st->frontend_seconds += now_s() - t0;
  if (s != KILN_OK) return s;
  KILN_TRY(kiln_whisper_transcribe(w, mel, &p->decode, result));
  st->audio_seconds += seconds;
  st->truncated += truncated;
  st->tokens += (*result)->n_tokens;
  return KILN_OK;
}

static void notify(const kiln_eval_run_params *p, int64_t i, int64_t total, const char *audio, kiln_status s,
                   const char *text) {
  if (p->on_utterance) p->on_utterance(i, total, audio, s, text, p->user_data);
}

static kiln_status finish(kiln_whisper *w, const kiln_eval_run_params *p, const kiln_eval_run_stats *st,
                          kiln_eval_report *report) {
  kiln_eval_perf perf = kiln_eval_default_perf();
  perf.audio_seconds = st->audio_seconds;
  perf.wall_seconds = st->wall_seconds;
  perf.peak_host_bytes = peak_host_bytes();
  perf.peak_device_bytes = kiln_whisper_device_bytes(w);
  KILN_TRY(kiln_eval_report_set_perf(report, &perf));
  KILN_TRY(kiln_eval_report_set_metric(report, "failed_utterances", (double)st->failed));
  KILN_TRY(kiln_eval_report_set_metric(report, "truncated_utterances", (double)st->truncated));
  KILN_TRY(kiln_eval_report_set_metric(report, "frontend_seconds", st->frontend_seconds));
  KILN_TRY(kiln_eval_report_set_metric(report, "tokens", (double)st->tokens));
  return kiln_eval_report_set_metric(report, "batch_size", (double)p->batch_size);
}

static kiln_status run_all(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *p,
                           kiln_eval_report *report, float *mel, kiln_eval_run_stats *st) {
  int64_t total = kiln_manifest_count(m);
  double t0 = now_s();
  for (int64_t i = 0; i < total; i++) {
    const char *id = kiln_manifest_audio_raw(m, i);
    kiln_whisper_result *r = NULL;
    kiln_status s = transcribe_one(w, kiln_manifest_audio(m, i), p, mel, st, &r);
    if (s == KILN_ERR_OUT_OF_MEMORY || s == KILN_ERR_OUT_OF_DEVICE_MEMORY || s == KILN_ERR_CUDA) return s;
    if (s != KILN_OK) {
      st->failed++;
      notify(p, i, total, id, s, kiln_last_error());
      continue;
    }
    const char *text = r->text[0] == ' ' ? r->text + 1 : r->text;
    s = kiln_eval_report_add_from_manifest(report, m, i, text, p->group_keys, p->n_group_keys);
    if (s == KILN_OK) notify(p, i, total, id, KILN_OK, text);
    kiln_whisper_result_free(r);
    if (s != KILN_OK) return s;
    st->transcribed++;
    st->wall_seconds = now_s() - t0;
  }
  st->wall_seconds = now_s() - t0;
  return KILN_OK;
}

kiln_status kiln_eval_run(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *params,
                          kiln_eval_report *report, kiln_eval_run_stats *stats) {
  if (!w || !m || !report) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_run: whisper, manifest and report must not be NULL");
  kiln_eval_run_params p = params ? *params : kiln_eval_run_default_params();
  if (p.batch_size < 1 || p.n_group_keys < 0 || (p.n_group_keys > 0 && !p.group_keys))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_run: batch_size must be >= 1 and group_keys must hold n_group_keys >= 0 names");
  float *mel = malloc(sizeof(float) * (size_t)kiln_whisper_get_config(w)->n_mels * KILN_WHISPER_CHUNK_FRAMES);
  if (!mel) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "kiln_eval_run: out of memory for the mel spectrogram");
  kiln_eval_run_stats st;
  memset(&st, 0, sizeof st);
  kiln_status s = run_all(w, m, &p, report, mel, &st);
  free(mel);
  if (s == KILN_OK) s = finish(w, &p, &st, report);
  if (stats) *stats = st;
  return s;
}
