/* src/models/whisper/eval_run.c - kiln_eval_run: a loaded Whisper model over a test-set manifest
 * into an evaluation report (kiln/eval.h).
 *
 * What it is: per utterance, audio file -> 16 kHz mono (kiln_audio_load) -> log-mel of the first
 * 30 s (kiln_mel_compute_window); batch_size utterances at a time (at most the engines'
 * max_windows) -> greedy transcripts decoded as one batch (kiln_whisper_transcribe_batch) ->
 * kiln_eval_report_add_from_manifest in manifest order; a file that cannot be read is reported
 * through the callback and skipped (a batch that cannot be decoded: each of its files). Times
 * the whole chain (RTF = wall / audio seconds, front end included) and sets the report's perf
 * and metrics.
 * What it is not: in-flight batching (a batch waits for its longest transcript; the long-form
 * decoding of kiln transcribe does it), long-form (> 30 s audio is truncated), nor a writer of
 * files (the report writes them).
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

/* One utterance of a batch. */
typedef struct utt {
  int64_t i;
  double seconds;
  int truncated;
} utt;

/* Utterances i0 .. i0 + n - 1: their front ends into mels, then the ones read decoded as one
 * batch (results r) and added to the report in order. */
static kiln_status run_batch(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *p, kiln_eval_report *report,
                             int64_t i0, int32_t n, float *mels, utt *u, kiln_whisper_result **r, kiln_eval_run_stats *st) {
  int64_t total = kiln_manifest_count(m);
  int32_t n_mels = kiln_whisper_get_config(w)->n_mels, nb = 0;
  for (int32_t k = 0; k < n; k++) {
    double t0 = now_s();
    kiln_status s = front_end(kiln_manifest_audio(m, i0 + k), n_mels, mels + (size_t)nb * n_mels * KILN_WHISPER_CHUNK_FRAMES,
                              &u[nb].seconds, &u[nb].truncated);
    st->frontend_seconds += now_s() - t0;
    if (s == KILN_ERR_OUT_OF_MEMORY) return s;
    if (s == KILN_OK) {
      u[nb++].i = i0 + k;
      continue;
    }
    st->failed++;
    notify(p, i0 + k, total, kiln_manifest_audio_raw(m, i0 + k), s, kiln_last_error());
  }
  if (nb == 0) return KILN_OK;
  kiln_status s = kiln_whisper_transcribe_batch(w, mels, nb, &p->decode, r);
  if (s == KILN_ERR_OUT_OF_MEMORY || s == KILN_ERR_OUT_OF_DEVICE_MEMORY || s == KILN_ERR_CUDA) return s;
  for (int32_t k = 0; s != KILN_OK && k < nb; k++) {
    st->failed++;
    notify(p, u[k].i, total, kiln_manifest_audio_raw(m, u[k].i), s, kiln_last_error());
  }
  for (int32_t k = 0; s == KILN_OK && k < nb; k++) {
    const char *text = r[k]->text[0] == ' ' ? r[k]->text + 1 : r[k]->text;
    kiln_status a = kiln_eval_report_add_from_manifest(report, m, u[k].i, text, p->group_keys, p->n_group_keys);
    if (a != KILN_OK) {
      kiln_whisper_results_free(r + k, nb - k);
      return a;
    }
    notify(p, u[k].i, total, kiln_manifest_audio_raw(m, u[k].i), KILN_OK, text);
    st->transcribed++;
    st->audio_seconds += u[k].seconds;
    st->truncated += u[k].truncated;
    st->tokens += r[k]->n_tokens;
    kiln_whisper_result_free(r[k]);
  }
  return KILN_OK;
}

static kiln_status run_all(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *p,
                           kiln_eval_report *report, int32_t batch, kiln_eval_run_stats *st) {
  int64_t total = kiln_manifest_count(m);
  float *mels = malloc(sizeof(float) * (size_t)batch * (size_t)kiln_whisper_get_config(w)->n_mels * KILN_WHISPER_CHUNK_FRAMES);
  utt *u = malloc(sizeof *u * (size_t)batch);
  kiln_whisper_result **r = malloc(sizeof *r * (size_t)batch);
  kiln_status s = mels && u && r ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "kiln_eval_run: out of memory for the mel spectrograms");
  double t0 = now_s();
  for (int64_t i = 0; s == KILN_OK && i < total; i += batch) {
    s = run_batch(w, m, p, report, i, total - i < batch ? (int32_t)(total - i) : batch, mels, u, r, st);
    st->wall_seconds = now_s() - t0;
  }
  free(mels), free(u), free(r);
  return s;
}

kiln_status kiln_eval_run(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *params,
                          kiln_eval_report *report, kiln_eval_run_stats *stats) {
  if (!w || !m || !report) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_run: whisper, manifest and report must not be NULL");
  kiln_eval_run_params p = params ? *params : kiln_eval_run_default_params();
  if (p.batch_size < 1 || p.n_group_keys < 0 || (p.n_group_keys > 0 && !p.group_keys))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_run: batch_size must be >= 1 and group_keys must hold n_group_keys >= 0 names");
  if (p.batch_size > kiln_whisper_max_windows(w)) p.batch_size = kiln_whisper_max_windows(w); /* the engines' max */
  kiln_eval_run_stats st;
  memset(&st, 0, sizeof st);
  kiln_status s = run_all(w, m, &p, report, p.batch_size, &st);
  if (s == KILN_OK) s = finish(w, &p, &st, report);
  if (stats) *stats = st;
  return s;
}
