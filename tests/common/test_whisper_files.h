/* tests/common/test_whisper_files.h - kiln_whisper_transcribe_files over audio files on disk in
 * the model tests: the callbacks (kiln_audio_load at 16 kHz; every done() call recorded), each
 * file's outcome, and their cleanup. Header-only; include after check.h. */
#ifndef KILN_TESTS_TEST_WHISPER_FILES_H
#define KILN_TESTS_TEST_WHISPER_FILES_H

#include <string.h>

#include "kiln/audio.h"
#include "kiln/whisper.h"

#define FILES_RUN_MAX 8

typedef struct files_run {
  const char *const *paths;
  int n;
  kiln_status status[FILES_RUN_MAX];
  kiln_whisper_transcript *t[FILES_RUN_MAX]; /* NULL for a file that failed */
  int calls[FILES_RUN_MAX];                   /* done() calls per file */
} files_run;

static inline kiln_status files_run_load(void *user, int64_t i, float **samples, int64_t *n) {
  files_run *r = user;
  return kiln_audio_load(r->paths[i], 16000, samples, n);
}

static inline void files_run_unload(void *user, float *samples) {
  (void)user;
  kiln_audio_free(samples);
}

static inline void files_run_done(void *user, int64_t i, kiln_status s, kiln_whisper_transcript *t) {
  files_run *r = user;
  r->calls[i]++;
  r->status[i] = s;
  r->t[i] = t;
}

/* paths[0 .. n - 1] (n <= FILES_RUN_MAX) with options o at --batch-size batch into r: the call
 * checked to succeed and done() to come once per file (each file's status is the caller's to
 * check). */
static inline void files_run_start(kiln_whisper *w, const kiln_whisper_options *o, int32_t batch, const char *const *paths,
                                   int n, files_run *r) {
  memset(r, 0, sizeof *r);
  r->paths = paths, r->n = n;
  kiln_whisper_options opt = *o;
  opt.batch_size = batch;
  kiln_whisper_files io = {n, files_run_load, files_run_unload, files_run_done, r};
  CHECK_OK(kiln_whisper_transcribe_files(w, &io, &opt));
  for (int i = 0; i < n; i++) CHECK_EQ_INT(r->calls[i], 1);
}

static inline void files_run_free(files_run *r) {
  for (int i = 0; i < r->n; i++) kiln_whisper_transcript_free(r->t[i]);
}

#endif
