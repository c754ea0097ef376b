/* src/models/whisper/eval_run.c - kiln_eval_run: a loaded Whisper model over a test-set manifest
 * into an evaluation report (kiln/eval.h).
 *
 * What it is: per utterance, audio file -> 16 kHz mono (kiln_audio_load) -> log-mel of the first
 * 30 s (kiln_mel_compute_window); batch_size utterances at a time (at most the engines'
 * max_windows) -> greedy transcripts decoded as one batch (kiln_whisper_transcribe_batch) ->
 * The front ends run on worker threads (params.threads), one batch ahead: while batch k decodes
 * on the calling thread, the workers read and transform batch k + 1 (two mel buffers in turn);
 * each utterance's mel is computed alone, so the results do not depend on the thread count.
 * kiln_eval_report_add_from_manifest in manifest order; a file that cannot be read is reported
 * through the callback and skipped (a batch that cannot be decoded: each of its files). Times
 * the whole chain (RTF = wall / audio seconds, front end included) and sets the report's perf
 * and metrics.
 * What it is not: in-flight batching (a batch waits for its longest transcript; the long-form
 * decoding of kiln transcribe does it), long-form (> 30 s audio is truncated), nor a writer of
 * files (the report writes them).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "kiln/audio.h"
#include "kiln/eval.h"

kiln_eval_run_params kiln_eval_run_default_params(void) {
  kiln_eval_run_params p;
  memset(&p, 0, sizeof p);
  p.decode = kiln_whisper_default_decode_params();
  p.batch_size = 1;
  p.threads = 0;
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
  KILN_TRY(kiln_eval_report_set_metric(report, "frontend_wait_seconds", st->frontend_wait_seconds));
  KILN_TRY(kiln_eval_report_set_metric(report, "tokens", (double)st->tokens));
  return kiln_eval_report_set_metric(report, "batch_size", (double)p->batch_size);
}

/* One utterance of a batch: its front end's outcome (written by a worker thread). */
typedef struct utt {
  int64_t i;
  double seconds, frontend_seconds;
  int truncated;
  kiln_status status;
  char error[256]; /* kiln_last_error() of the worker, which is thread-local */
} utt;

/* A batch's front ends: utterances i0 .. i0 + n - 1 into mels (slot k: utterance i0 + k),
 * taken one at a time by `threads` workers. */
typedef struct fe_batch {
  const kiln_manifest *m;
  int32_t n_mels, n, threads, started;
  int64_t i0;
  float *mels;
  utt *u;
  atomic_int next;
  thrd_t tid[KILN_EVAL_MAX_THREADS];
} fe_batch;

static int fe_worker(void *arg) {
  fe_batch *b = arg;
  for (int k; (k = atomic_fetch_add(&b->next, 1)) < b->n;) {
    utt *u = &b->u[k];
    double t0 = now_s();
    u->i = b->i0 + k;
    u->status = front_end(kiln_manifest_audio(b->m, u->i), b->n_mels,
                          b->mels + (size_t)k * (size_t)b->n_mels * KILN_WHISPER_CHUNK_FRAMES, &u->seconds, &u->truncated);
    if (u->status != KILN_OK) snprintf(u->error, sizeof u->error, "%s", kiln_last_error());
    u->frontend_seconds = now_s() - t0;
  }
  return 0;
}

/* Start the workers on a batch (when a thread cannot start, the ones that did do the work;
 * with none, fe_join does it on the calling thread). */
static void fe_start(fe_batch *b, int64_t i0, int32_t n) {
  b->i0 = i0, b->n = n, b->started = 0;
  atomic_store(&b->next, 0);
  int32_t t = b->threads < n ? b->threads : n;
  for (int32_t j = 0; j < t; j++)
    if (thrd_create(&b->tid[b->started], fe_worker, b) == thrd_success) b->started++;
}

static void fe_join(fe_batch *b) {
  if (b->started == 0) fe_worker(b);
  for (int32_t j = 0; j < b->started; j++) thrd_join(b->tid[j], NULL);
  b->started = 0;
}

/* Batch b (front ends done): the utterances read decoded as one batch (results r), added to the
 * report and passed to the callback in manifest order (the ones that could not be read as
 * failed). */
static kiln_status run_batch(kiln_whisper *w, const kiln_eval_run_params *p, kiln_eval_report *report, fe_batch *b,
                             kiln_whisper_result **r, kiln_eval_run_stats *st) {
  const kiln_manifest *m = b->m;
  int64_t total = kiln_manifest_count(m);
  size_t mel_floats = (size_t)b->n_mels * KILN_WHISPER_CHUNK_FRAMES;
  int32_t nb = 0;
  const utt *u = b->u;
  for (int32_t k = 0; k < b->n; k++) { /* the mels of the ones read to the front, in order */
    st->frontend_seconds += u[k].frontend_seconds;
    if (u[k].status == KILN_ERR_OUT_OF_MEMORY) return kiln_error(u[k].status, "%s", u[k].error);
    if (u[k].status != KILN_OK) continue;
    if (nb != k) memcpy(b->mels + (size_t)nb * mel_floats, b->mels + (size_t)k * mel_floats, mel_floats * sizeof(float));
    nb++;
  }
  kiln_status s = nb > 0 ? kiln_whisper_transcribe_batch(w, b->mels, nb, &p->decode, r) : KILN_OK;
  if (s == KILN_ERR_OUT_OF_MEMORY || s == KILN_ERR_OUT_OF_DEVICE_MEMORY || s == KILN_ERR_CUDA) return s;
  char batch_error[256];
  snprintf(batch_error, sizeof batch_error, "%s", s == KILN_OK ? "" : kiln_last_error());
  for (int32_t k = 0, j = 0; k < b->n; k++) {
    const char *audio = kiln_manifest_audio_raw(m, u[k].i);
    if (u[k].status != KILN_OK || s != KILN_OK) {
      st->failed++;
      notify(p, u[k].i, total, audio, u[k].status != KILN_OK ? u[k].status : s,
             u[k].status != KILN_OK ? u[k].error : batch_error);
      continue;
    }
    const char *text = r[j]->text[0] == ' ' ? r[j]->text + 1 : r[j]->text;
    kiln_status a = kiln_eval_report_add_from_manifest(report, m, u[k].i, text, p->group_keys, p->n_group_keys);
    if (a != KILN_OK) {
      kiln_whisper_results_free(r + j, nb - j);
      return a;
    }
    notify(p, u[k].i, total, audio, KILN_OK, text);
    st->transcribed++;
    st->audio_seconds += u[k].seconds;
    st->truncated += u[k].truncated;
    st->tokens += r[j]->n_tokens;
    kiln_whisper_result_free(r[j++]);
  }
  return KILN_OK;
}

/* Front-end workers: params.threads, or (0) the online CPUs less the one that decodes. */
static int32_t worker_count(int32_t asked) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int32_t t = asked > 0 ? asked : (int32_t)(cpus > 1 ? cpus - 1 : 1);
  return t < KILN_EVAL_MAX_THREADS ? t : KILN_EVAL_MAX_THREADS;
}

/* Utterances in the batch that starts at i. */
static int32_t batch_len(int64_t total, int64_t i, int32_t batch) {
  return total - i < batch ? (int32_t)(total - i) : batch;
}

static kiln_status run_all(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *p,
                           kiln_eval_report *report, int32_t batch, kiln_eval_run_stats *st) {
  int64_t total = kiln_manifest_count(m);
  int32_t n_mels = kiln_whisper_get_config(w)->n_mels, threads = worker_count(p->threads);
  size_t mel_floats = (size_t)batch * (size_t)n_mels * KILN_WHISPER_CHUNK_FRAMES;
  fe_batch fb[2];
  memset(fb, 0, sizeof fb);
  kiln_whisper_result **r = malloc(sizeof *r * (size_t)batch);
  kiln_status s = r ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "kiln_eval_run: out of memory");
  for (int j = 0; j < 2 && s == KILN_OK; j++) {
    fb[j].m = m, fb[j].n_mels = n_mels, fb[j].threads = threads;
    fb[j].mels = malloc(sizeof(float) * mel_floats);
    fb[j].u = calloc((size_t)batch, sizeof *fb[j].u);
    if (!fb[j].mels || !fb[j].u) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "kiln_eval_run: out of memory for the mel spectrograms");
  }
  double t0 = now_s();
  if (s == KILN_OK && total > 0) fe_start(&fb[0], 0, batch_len(total, 0, batch));
  for (int64_t i = 0, j = 0; s == KILN_OK && i < total; i += batch, j ^= 1) {
    double w0 = now_s();
    fe_join(&fb[j]);
    st->frontend_wait_seconds += now_s() - w0;
    if (i + batch < total) fe_start(&fb[j ^ 1], i + batch, batch_len(total, i + batch, batch));
    s = run_batch(w, p, report, &fb[j], r, st);
    st->wall_seconds = now_s() - t0;
  }
  for (int j = 0; j < 2; j++) { /* a run stopped by an error: let the workers of the batch ahead finish */
    if (fb[j].started) fe_join(&fb[j]);
    free(fb[j].mels), free(fb[j].u);
  }
  free(r);
  return s;
}

kiln_status kiln_eval_run(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *params,
                          kiln_eval_report *report, kiln_eval_run_stats *stats) {
  if (!w || !m || !report) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_run: whisper, manifest and report must not be NULL");
  kiln_eval_run_params p = params ? *params : kiln_eval_run_default_params();
  if (p.batch_size < 1 || p.n_group_keys < 0 || (p.n_group_keys > 0 && !p.group_keys) || p.threads < 0)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_eval_run: batch_size must be >= 1, threads >= 0 and group_keys must hold n_group_keys >= 0 names");
  if (p.batch_size > kiln_whisper_max_windows(w)) p.batch_size = kiln_whisper_max_windows(w); /* the engines' max */
  kiln_eval_run_stats st;
  memset(&st, 0, sizeof st);
  kiln_status s = run_all(w, m, &p, report, p.batch_size, &st);
  if (s == KILN_OK) s = finish(w, &p, &st, report);
  if (stats) *stats = st;
  return s;
}
