/* tests/model/test_whisper_batch.c - batched openai-whisper decoding with the real Whisper base
 * model on the CPU backend (fp32): the beams and best_of samples as decoder rows, and
 * kiln_whisper_transcribe_files decoding the windows of several files together (in-flight
 * batching, one file per window slot).
 *
 * Two engine folders: "rows" (--max-batch 3 --max-beam 5: 15 decoder rows, so beam search and
 * best_of run as rows and three windows go together) and "one" (one decoder row: beams and
 * samples take turns through it with KV copies, the path tests/model/test_whisper_decode.c
 * checks against openai-whisper). Checked:
 *   - kiln_whisper_encode_slot: encoding slot 1 leaves slot 0's window and cache alone, and a
 *     window decodes the same in either slot;
 *   - one window, beam 5 with timestamps and sampled best_of 3: the same tokens and text from
 *     both engines (rows vs KV copies), log-probabilities within 1e-4;
 *   - kiln_whisper_transcribe_files (rows engine) at --batch-size 1 and 3: with the defaults
 *     (greedy, fallback, language detection) over jfk.flac, the 69 s longform.flac (three
 *     windows), a 1 s test-set file, jfk.flac again and a missing file; with beam 5, and with a
 *     forced temperature fallback (sampling with best_of 3, re-decoding just that slot), over two
 *     test-set files and a missing one: per file, the txt/srt/vtt/tsv outputs are byte-identical
 *     and the JSON identical but for the log-probabilities' last digits (the CPU BLAS rounds a
 *     row differently with the batch's row count: within 1e-4), the missing file fails alone,
 *     the same file twice gives the same text, and the long file's text is openai-whisper's.
 * Exits 77 (skipped) when models/whisper-base has not been fetched. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_whisper_base.h"
#include "common/test_json.h"
#include "common/test_whisper_files.h"
#include "kiln/audio.h"
#include "kiln/kiln.h"
#include "kiln/whisper.h"
#include "models/whisper/whisper_internal.h"

#define JFK KILN_SOURCE_DIR "/examples/audio/jfk.flac"
#define LONG KILN_SOURCE_DIR "/tests/data/longform.flac"
#define SHORT KILN_SOURCE_DIR "/tests/data/testset-mini/audio/0003_flite_kal.flac"
#define MEDIUM KILN_SOURCE_DIR "/tests/data/testset-mini/audio/0002_festival_cmu_us_slt_arctic_hts.flac"
#define REFS KILN_SOURCE_DIR "/tests/data/decode_refs/"
#define ROWS_ENGINES "whisper_batch_engines_rows"
#define ONE_ENGINES "whisper_batch_engines_one"

/* ---- kiln_whisper_transcribe_files with files on disk ---------------------------------------- */

/* The files (the last one missing) with o at --batch-size batch. */
static void run_files(kiln_whisper *w, const kiln_whisper_options *o, int32_t batch, const char *const *paths, int n, files_run *r) {
  files_run_start(w, o, batch, paths, n, r);
  for (int i = 0; i + 1 < n; i++) CHECK_OK(r->status[i]);
  CHECK(r->status[n - 1] == KILN_ERR_IO && r->t[n - 1] == NULL); /* the missing file fails alone */
}

/* The JSON writer's output: identical but for the log-probabilities, which carry the CPU BLAS's
 * rounding (OpenBLAS's GEMM rounds a row differently with the number of rows). */
static void same_json(const char *x, const char *y) {
  cJSON *a = cJSON_Parse(x), *b = cJSON_Parse(y);
  CHECK(a && b);
  CHECK(cJSON_Compare(cJSON_GetObjectItem(a, "text"), cJSON_GetObjectItem(b, "text"), 1));
  CHECK(cJSON_Compare(cJSON_GetObjectItem(a, "language"), cJSON_GetObjectItem(b, "language"), 1));
  const cJSON *sa = cJSON_GetObjectItem(a, "segments"), *sb = cJSON_GetObjectItem(b, "segments");
  CHECK_EQ_INT(cJSON_GetArraySize(sa), cJSON_GetArraySize(sb));
  for (int i = 0; i < cJSON_GetArraySize(sa) && i < cJSON_GetArraySize(sb); i++) {
    const cJSON *p = cJSON_GetArrayItem(sa, i), *q = cJSON_GetArrayItem(sb, i);
    static const char *exact[] = {"id", "seek", "start", "end", "text", "tokens", "temperature", "compression_ratio"};
    for (size_t k = 0; k < sizeof exact / sizeof *exact; k++)
      CHECK(cJSON_Compare(cJSON_GetObjectItem(p, exact[k]), cJSON_GetObjectItem(q, exact[k]), 1));
    CHECK_NEAR(num(p, "avg_logprob"), num(q, "avg_logprob"), 1e-4);
    CHECK_NEAR(num(p, "no_speech_prob"), num(q, "no_speech_prob"), 1e-4);
  }
  cJSON_Delete(a), cJSON_Delete(b);
}

/* Every writer's output of every file: byte-identical (JSON: see same_json). */
static void same_outputs(const files_run *a, const files_run *b, const char *what) {
  for (int i = 0; i < a->n; i++) {
    if (!a->t[i] || !b->t[i]) {
      CHECK(a->t[i] == b->t[i]);
      continue;
    }
    CHECK_EQ_STR(a->t[i]->language, b->t[i]->language);
    for (int f = 0; f < KILN_WHISPER_FORMAT_COUNT; f++) {
      char *x = NULL, *y = NULL;
      CHECK_OK(kiln_whisper_transcript_format(a->t[i], (kiln_whisper_format)f, &x));
      CHECK_OK(kiln_whisper_transcript_format(b->t[i], (kiln_whisper_format)f, &y));
      if (x && y && f == KILN_WHISPER_FORMAT_JSON) same_json(x, y);
      else if (x && y && strcmp(x, y) != 0)
        fprintf(stderr, "%s: file %d, %s output differs:\n%s\n--- vs ---\n%s\n", what, i,
                kiln_whisper_format_name((kiln_whisper_format)f), x, y);
      CHECK(x && y && (f == KILN_WHISPER_FORMAT_JSON || strcmp(x, y) == 0));
      free(x), free(y);
    }
  }
}

/* --batch-size 1 and 3: the same outputs; every segment decoded at temperature T. */
static void files_case(kiln_whisper *w, const kiln_whisper_options *o, const char *const *paths, int n, double T,
                       const char *what) {
  files_run r1, r3;
  run_files(w, o, 1, paths, n, &r1);
  run_files(w, o, 3, paths, n, &r3);
  same_outputs(&r1, &r3, what);
  for (int i = 0; i + 1 < n; i++)
    for (int32_t k = 0; r3.t[i] && k < r3.t[i]->n_segments; k++) CHECK(r3.t[i]->segments[k].temperature == T);
  for (int i = 0; i + 1 < n; i++)
    fprintf(stderr, "%s: file %d: %s\n", what, i, r3.t[i] ? r3.t[i]->text : "(failed)");
  files_run_free(&r1), files_run_free(&r3);
}

static void files_tests(kiln_whisper *w) {
  /* the defaults (greedy, fallback to best_of 5, language detected per file): five files through
   * three slots, the long one's three windows in one slot while the others pass through */
  static const char *const all[] = {JFK, LONG, SHORT, JFK, "no/such/file.flac"};
  static const char *const two[] = {SHORT, MEDIUM, "no/such/file.flac"};
  kiln_whisper_options o = kiln_whisper_default_options();
  files_run r;
  run_files(w, &o, 3, all, 5, &r);
  char *ref = read_text(REFS "whisper_base_decode.json");
  cJSON *j = ref ? cJSON_Parse(ref) : NULL;
  const cJSON *lt = j ? cJSON_GetObjectItem(cJSON_GetObjectItem(j, "long_transcribe"), "text") : NULL;
  CHECK(cJSON_IsString(lt));
  if (cJSON_IsString(lt) && r.t[1]) CHECK_EQ_STR(r.t[1]->text, lt->valuestring); /* openai-whisper's */
  if (r.t[0] && r.t[3]) CHECK_EQ_STR(r.t[0]->text, r.t[3]->text);                 /* the same file twice */
  files_run one;
  run_files(w, &o, 1, all, 5, &one);
  same_outputs(&one, &r, "defaults");
  files_run_free(&r), files_run_free(&one);
  cJSON_Delete(j), free(ref);
  o.language = "en";
  o.beam_size = 5;
  files_case(w, &o, two, 3, 0.0, "beam 5");
  /* every window falls back (no average log-probability passes 0) to sampling with best_of 3 at
   * T = 0.5: the slot re-decodes its window while the other goes on */
  o = kiln_whisper_default_options();
  o.language = "en";
  o.best_of = 3;
  o.logprob_threshold = 0.0;
  o.no_speech_threshold = NAN;
  o.n_temperatures = 2;
  o.temperatures[0] = 0.0, o.temperatures[1] = 0.5;
  o.sample_len = 32;
  o.seed = 11;
  files_case(w, &o, two, 3, 0.5, "fallback");
}

/* ---- one window -------------------------------------------------------------------------------- */

static void same_decoding(const kiln_whisper_decoding *a, const kiln_whisper_decoding *b, const char *what) {
  if (!a || !b) {
    CHECK(0);
    return;
  }
  CHECK_EQ_INT(a->n_tokens, b->n_tokens);
  CHECK(a->n_tokens == b->n_tokens && memcmp(a->tokens, b->tokens, sizeof(int32_t) * (size_t)a->n_tokens) == 0);
  CHECK_EQ_STR(a->text, b->text);
  CHECK_NEAR(a->avg_logprob, b->avg_logprob, 1e-4); /* the BLAS's rounding: see same_json */
  CHECK_NEAR(a->no_speech_prob, b->no_speech_prob, 1e-4);
  fprintf(stderr, "%s: %s (%.6f)\n", what, a->text, a->avg_logprob);
}

static void window_tests(kiln_whisper *rows, kiln_whisper *one, const float *mel) {
  kiln_whisper_options o = kiln_whisper_default_options();
  o.language = "en";
  o.beam_size = 5;
  kiln_whisper_decoding *a = NULL, *b = NULL;
  CHECK_OK(kiln_whisper_decode_window(rows, mel, NULL, 0, 0.0, &o, &a));
  CHECK_OK(kiln_whisper_decode_window(one, mel, NULL, 0, 0.0, &o, &b));
  same_decoding(a, b, "beam 5 ts");
  kiln_whisper_decoding_free(a), kiln_whisper_decoding_free(b), a = b = NULL;
  o = kiln_whisper_default_options();
  o.language = "en", o.best_of = 3, o.seed = 7;
  CHECK_OK(kiln_whisper_decode_window(rows, mel, NULL, 0, 0.5, &o, &a));
  CHECK_OK(kiln_whisper_decode_window(one, mel, NULL, 0, 0.5, &o, &b));
  same_decoding(a, b, "best of 3, T 0.5");
  if (a) CHECK(strstr(a->text, "ask not what your country can do for you") != NULL);
  kiln_whisper_decoding_free(a), kiln_whisper_decoding_free(b);
}

/* kiln_whisper_encode_slot: slot 1's encode leaves slot 0 alone; either slot decodes alike. */
static void slot_tests(kiln_whisper *w, const float *mel, const float *other) {
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int32_t sot[3] = {c->sot, c->sot + 1, kiln_tokenizer_special(kiln_whisper_tokenizer(w), KILN_TOKEN_TRANSCRIBE)};
  size_t V = (size_t)c->vocab_size;
  float *ref = malloc(sizeof(float) * V), *got = malloc(sizeof(float) * V);
  if (!ref || !got) abort();
  CHECK_OK(kiln_whisper_slots_reset(w, 1));
  CHECK_OK(kiln_whisper_encode_slot(w, 0, mel));
  CHECK_OK(kiln_whisper_row_decode(w, 0, sot, 2));
  CHECK_OK(kiln_whisper_row_decode(w, 0, sot + 2, 1));
  CHECK_OK(kiln_whisper_last_logits(w, 0, ref));
  /* again, with slot 1 encoded between the two halves of row 0's prompt (the same runs: the
   * BLAS's rounding depends on the rows of a run) */
  CHECK_OK(kiln_whisper_encode_slot(w, 0, mel));
  CHECK_OK(kiln_whisper_row_decode(w, 0, sot, 2));
  CHECK_OK(kiln_whisper_encode_slot(w, 1, other));
  CHECK_EQ_INT(kiln_whisper_row_length(w, 0), 2);
  CHECK_OK(kiln_whisper_row_decode(w, 0, sot + 2, 1));
  CHECK_OK(kiln_whisper_last_logits(w, 0, got));
  CHECK(memcmp(ref, got, sizeof(float) * V) == 0);
  /* the window in slot 1 */
  CHECK_OK(kiln_whisper_encode_slot(w, 1, mel));
  CHECK_OK(kiln_whisper_row_decode(w, 1, sot, 2));
  CHECK_OK(kiln_whisper_row_decode(w, 1, sot + 2, 1));
  CHECK_OK(kiln_whisper_last_logits(w, 0, got));
  CHECK(memcmp(ref, got, sizeof(float) * V) == 0);
  CHECK_STATUS(kiln_whisper_encode_slot(w, kiln_whisper_max_windows(w), mel), KILN_ERR_INVALID_ARG);
  free(ref), free(got);
}

static kiln_whisper *build_load(const char *dir, int32_t max_batch, int32_t max_beams) {
  return whisper_base_build_load(dir, max_batch, max_beams, KILN_DTYPE_INVALID);
}

int main(void) {
  WHISPER_BASE_REQUIRE();
  kiln_whisper *rows = build_load(ROWS_ENGINES, 3, 5), *one = build_load(ONE_ENGINES, 1, 1);
  if (rows) CHECK_EQ_INT(kiln_whisper_max_rows(rows), 15);
  float *pcm = NULL, *pcm2 = NULL;
  int64_t n = 0, n2 = 0;
  CHECK_OK(kiln_audio_load(JFK, 16000, &pcm, &n));
  CHECK_OK(kiln_audio_load(SHORT, 16000, &pcm2, &n2));
  float *mel = malloc(80 * 3000 * sizeof *mel), *mel2 = malloc(80 * 3000 * sizeof *mel2);
  if (!mel || !mel2) abort();
  if (pcm && pcm2) {
    CHECK_OK(kiln_mel_compute_window(pcm, n, 80, mel));
    CHECK_OK(kiln_mel_compute_window(pcm2, n2, 80, mel2));
  }
  if (rows && one && pcm && pcm2) {
    slot_tests(rows, mel, mel2);
    window_tests(rows, one, mel);
    files_tests(rows);
  }
  free(mel), free(mel2);
  kiln_audio_free(pcm), kiln_audio_free(pcm2);
  kiln_whisper_destroy(rows), kiln_whisper_destroy(one);
  int rc = check_report();
  fprintf(stderr, "test_whisper_batch: %s\n", rc ? "FAILED" : "all checks passed");
  return rc;
}
