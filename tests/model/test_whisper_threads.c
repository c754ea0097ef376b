/* tests/model/test_whisper_threads.c - the host side of the decoding steps on several threads
 * (kiln_whisper_load_params.decode_threads) changes nothing: the real Whisper base model on the
 * CPU backend (fp32, engines with 3 windows x 3 rows), loaded twice, with 1 decode thread and
 * with 4 (through KILN_DECODE_THREADS), decodes the same things to the same bits:
 *   - kiln_whisper_transcribe_files at --batch-size 3 over three files (jfk.flac and two test-set
 *     files): greedy with timestamps; beam search (3 beams per window: 9 rows a step); a forced
 *     temperature fallback to sampling (best_of 3 at T 0.5, seed 11);
 *   - kiln_whisper_decode_window with more rows than the engines have (the rows take turns
 *     through KV copies): best_of 12 at T 0.5, and beam search with 10 beams;
 * per file, every segment's tokens, times, text, temperature and log-probabilities identical
 * (compared with ==, not within a tolerance), per window the tokens and the sums of
 * log-probabilities. Also: an explicit decode_threads wins over KILN_DECODE_THREADS, and bad
 * counts (parameter or environment) are refused with a message. tests/unit/test_decode_threads.c
 * checks the same without a model on many pool sizes. Exits 77 (skipped) when models/whisper-base
 * has not been fetched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_whisper_base.h"
#include "common/test_whisper_files.h"
#include "kiln/audio.h"
#include "kiln/kiln.h"
#include "kiln/whisper.h"

#define JFK KILN_SOURCE_DIR "/examples/audio/jfk.flac"
#define SHORT KILN_SOURCE_DIR "/tests/data/testset-mini/audio/0003_flite_kal.flac"
#define MEDIUM KILN_SOURCE_DIR "/tests/data/testset-mini/audio/0002_festival_cmu_us_slt_arctic_hts.flac"
#define ENGINES "whisper_threads_engines"
#define N_FILES 3

static void run_files(kiln_whisper *w, const kiln_whisper_options *o, const char *const *paths, files_run *r) {
  files_run_start(w, o, 3, paths, N_FILES, r);
  for (int i = 0; i < N_FILES; i++) CHECK_OK(r->status[i]);
}

/* Two transcripts, bit for bit; returns the segments' tokens compared. */
static int32_t same_transcript(const kiln_whisper_transcript *a, const kiln_whisper_transcript *b, const char *what) {
  if (!a || !b) {
    CHECK(0);
    return 0;
  }
  CHECK_EQ_STR(a->text, b->text);
  CHECK_EQ_STR(a->language, b->language);
  CHECK_EQ_INT(a->n_segments, b->n_segments);
  int32_t tokens = 0, bad = 0;
  for (int32_t k = 0; k < a->n_segments && k < b->n_segments; k++) {
    const kiln_whisper_segment *x = &a->segments[k], *y = &b->segments[k];
    bad += x->seek != y->seek || x->start != y->start || x->end != y->end || strcmp(x->text, y->text) != 0;
    bad += x->temperature != y->temperature || x->avg_logprob != y->avg_logprob;
    bad += x->compression_ratio != y->compression_ratio || x->no_speech_prob != y->no_speech_prob;
    bad += x->n_tokens != y->n_tokens ||
           memcmp(x->tokens, y->tokens, sizeof(int32_t) * (size_t)(x->n_tokens < y->n_tokens ? x->n_tokens : y->n_tokens)) != 0;
    tokens += x->n_tokens;
  }
  if (bad) fprintf(stderr, "%s: %d segment fields differ between 1 and 4 decode threads\n", what, bad);
  CHECK_EQ_INT(bad, 0);
  return tokens;
}

static void files_case(kiln_whisper *one, kiln_whisper *four, const kiln_whisper_options *o, double T, const char *what) {
  static const char *const paths[N_FILES] = {JFK, SHORT, MEDIUM};
  files_run a, b;
  run_files(one, o, paths, &a);
  run_files(four, o, paths, &b);
  int32_t tokens = 0;
  for (int i = 0; i < N_FILES; i++) {
    tokens += same_transcript(a.t[i], b.t[i], what);
    for (int32_t k = 0; b.t[i] && k < b.t[i]->n_segments; k++) CHECK(b.t[i]->segments[k].temperature == T);
  }
  fprintf(stderr, "%s: %d tokens the same; jfk: %s\n", what, tokens, b.t[0] ? b.t[0]->text : "(failed)");
  CHECK(tokens > 20);
  files_run_free(&a), files_run_free(&b);
}

static void window_case(kiln_whisper *one, kiln_whisper *four, const float *mel, double T, const kiln_whisper_options *o,
                        const char *what) {
  kiln_whisper_decoding *a = NULL, *b = NULL;
  CHECK_OK(kiln_whisper_decode_window(one, mel, NULL, 0, T, o, &a));
  CHECK_OK(kiln_whisper_decode_window(four, mel, NULL, 0, T, o, &b));
  if (!a || !b) {
    CHECK(0);
  } else {
    CHECK_EQ_INT(a->n_tokens, b->n_tokens);
    CHECK(a->n_tokens == b->n_tokens && memcmp(a->tokens, b->tokens, sizeof(int32_t) * (size_t)a->n_tokens) == 0);
    CHECK_EQ_STR(a->text, b->text);
    CHECK(a->sum_logprob == b->sum_logprob);
    CHECK(a->no_speech_prob == b->no_speech_prob);
    CHECK(a->n_tokens > 5);
    fprintf(stderr, "%s: %d tokens the same: %s (%.9g)\n", what, b->n_tokens, b->text, b->sum_logprob);
  }
  kiln_whisper_decoding_free(a), kiln_whisper_decoding_free(b);
}

/* Thread counts: the parameter, the environment, and bad values of each. */
static void count_checks(kiln_whisper *one, kiln_whisper *four) {
  CHECK_EQ_INT(kiln_whisper_decode_threads(one), 1);  /* the parameter wins over the environment */
  CHECK_EQ_INT(kiln_whisper_decode_threads(four), 4); /* KILN_DECODE_THREADS */
  kiln_whisper_load_params lp = kiln_whisper_default_load_params();
  kiln_whisper *w = NULL;
  lp.decode_threads = KILN_WHISPER_MAX_DECODE_THREADS + 1;
  CHECK_STATUS(kiln_whisper_load(ENGINES, &lp, &w), KILN_ERR_INVALID_ARG);
  CHECK_MSG("decode_threads");
  lp.decode_threads = -1;
  CHECK_STATUS(kiln_whisper_load(ENGINES, &lp, &w), KILN_ERR_INVALID_ARG);
  setenv("KILN_DECODE_THREADS", "four", 1);
  CHECK_STATUS(kiln_whisper_load(ENGINES, NULL, &w), KILN_ERR_INVALID_ARG);
  CHECK_MSG("KILN_DECODE_THREADS");
  setenv("KILN_DECODE_THREADS", "0", 1);
  CHECK_STATUS(kiln_whisper_load(ENGINES, NULL, &w), KILN_ERR_INVALID_ARG);
  CHECK(w == NULL);
  unsetenv("KILN_DECODE_THREADS");
}

int main(void) {
  WHISPER_BASE_REQUIRE();
  kiln_whisper *built = whisper_base_build_load(ENGINES, 3, 3, KILN_DTYPE_INVALID);
  kiln_whisper_destroy(built);
  kiln_whisper *one = NULL, *four = NULL;
  setenv("KILN_DECODE_THREADS", "4", 1);
  kiln_whisper_load_params lp = kiln_whisper_default_load_params();
  lp.decode_threads = 1;
  CHECK_OK(kiln_whisper_load(ENGINES, &lp, &one));
  CHECK_OK(kiln_whisper_load(ENGINES, NULL, &four));
  unsetenv("KILN_DECODE_THREADS");
  float *pcm = NULL, *mel = malloc(80 * 3000 * sizeof *mel);
  int64_t n = 0;
  if (!mel) abort();
  CHECK_OK(kiln_audio_load(JFK, 16000, &pcm, &n));
  if (pcm) CHECK_OK(kiln_mel_compute_window(pcm, n, 80, mel));
  if (one && four && pcm) {
    count_checks(one, four);
    kiln_whisper_options o = kiln_whisper_default_options();
    o.language = "en";
    files_case(one, four, &o, 0.0, "greedy, timestamps");
    o.beam_size = 3;
    files_case(one, four, &o, 0.0, "beam 3, timestamps");
    /* every window falls back (no average log-probability passes 0) to sampling at T = 0.5 */
    o = kiln_whisper_default_options();
    o.language = "en", o.best_of = 3, o.logprob_threshold = 0.0, o.no_speech_threshold = NAN;
    o.n_temperatures = 2, o.temperatures[0] = 0.0, o.temperatures[1] = 0.5;
    o.sample_len = 32, o.seed = 11;
    files_case(one, four, &o, 0.5, "fallback to best_of 3");
    /* more rows than the engines' 9: KV copies take turns */
    o = kiln_whisper_default_options();
    o.language = "en", o.best_of = 12, o.sample_len = 24, o.seed = 5;
    window_case(one, four, mel, 0.5, &o, "best_of 12 (KV copies)");
    o = kiln_whisper_default_options();
    o.language = "en", o.beam_size = 10, o.sample_len = 24;
    window_case(one, four, mel, 0.0, &o, "beam 10 (KV copies)");
  }
  free(mel);
  kiln_audio_free(pcm);
  kiln_whisper_destroy(one), kiln_whisper_destroy(four);
  int rc = check_report();
  fprintf(stderr, "test_whisper_threads: %s\n", rc ? "FAILED" : "all checks passed");
  return rc;
}
