/* tests/model/test_whisper_decode.c - openai-whisper's decoding with the real Whisper base model
 * on the CPU backend (fp32), against openai-whisper run on the same weights
 * (tests/data/decode_refs/, written by tools/make_decode_refs.py): timestamp decoding of one
 * window, beam search (5), language detection, transcribe() of jfk.flac (timestamps, beam 5, an
 * initial prompt) and of the ~70 s tests/data/longform.flac (three windows seeked by the last
 * timestamp, conditioned on the previous text), and the writers' output for it. Tokens and
 * timestamps must be identical; log-probabilities close. A sampled decode (T = 0.5, best_of 3)
 * is only checked for sanity: kiln's sampler is not PyTorch's. Exits 77 (skipped) when
 * models/whisper-base has not been fetched. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_whisper_base.h"
#include "common/test_json.h"
#include "kiln/audio.h"
#include "kiln/kiln.h"
#include "kiln/whisper.h"

#define JFK KILN_SOURCE_DIR "/examples/audio/jfk.flac"
#define LONG KILN_SOURCE_DIR "/tests/data/longform.flac"
#define REFS KILN_SOURCE_DIR "/tests/data/decode_refs/"
#define ENGINES "whisper_decode_engines"

static void check_tokens(const cJSON *want, const int32_t *got, int32_t n, const char *what) {
  CHECK_EQ_INT(n, cJSON_GetArraySize(want));
  int i = 0, bad = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, want) {
    if (i < n && got[i] != t->valueint && !bad++) fprintf(stderr, "%s: token %d: %d vs %d\n", what, i, got[i], t->valueint);
    i++;
  }
  CHECK_EQ_INT(bad, 0);
}

static void check_decoding(const cJSON *ref, const kiln_whisper_decoding *d, const char *what) {
  if (!ref || !d) {
    CHECK(0);
    return;
  }
  check_tokens(cJSON_GetObjectItem(ref, "tokens"), d->tokens, d->n_tokens, what);
  CHECK_EQ_STR(d->text, cJSON_GetObjectItem(ref, "text")->valuestring);
  CHECK_NEAR(d->avg_logprob, cJSON_GetObjectItem(ref, "avg_logprob")->valuedouble, 2e-3);
  CHECK_NEAR(d->no_speech_prob, cJSON_GetObjectItem(ref, "no_speech_prob")->valuedouble, 2e-3);
  CHECK_NEAR(d->compression_ratio, cJSON_GetObjectItem(ref, "compression_ratio")->valuedouble, 1e-12);
}

static void check_transcript(const cJSON *ref, const kiln_whisper_transcript *t, const char *what) {
  if (!ref || !t) {
    CHECK(0);
    return;
  }
  const cJSON *segs = cJSON_GetObjectItem(ref, "segments"), *s;
  CHECK_EQ_STR(t->text, cJSON_GetObjectItem(ref, "text")->valuestring);
  CHECK_EQ_INT(t->n_segments, cJSON_GetArraySize(segs));
  int i = 0;
  cJSON_ArrayForEach(s, segs) {
    if (i >= t->n_segments) break;
    const kiln_whisper_segment *g = &t->segments[i++];
    CHECK_EQ_INT(g->seek, cJSON_GetObjectItem(s, "seek")->valueint);
    CHECK(g->start == cJSON_GetObjectItem(s, "start")->valuedouble); /* bit-identical */
    CHECK(g->end == cJSON_GetObjectItem(s, "end")->valuedouble);
    CHECK_EQ_STR(g->text, cJSON_GetObjectItem(s, "text")->valuestring);
    check_tokens(cJSON_GetObjectItem(s, "tokens"), g->tokens, g->n_tokens, what);
    CHECK(g->temperature == cJSON_GetObjectItem(s, "temperature")->valuedouble);
    CHECK_NEAR(g->avg_logprob, cJSON_GetObjectItem(s, "avg_logprob")->valuedouble, 2e-3);
    CHECK_NEAR(g->no_speech_prob, cJSON_GetObjectItem(s, "no_speech_prob")->valuedouble, 2e-3);
  }
}

/* The writers: byte-identical, except the JSON's log-probabilities (compared as numbers). */
static void check_writers(const kiln_whisper_transcript *t) {
  for (int f = 0; f < KILN_WHISPER_FORMAT_COUNT; f++) {
    char path[512], *got = NULL;
    snprintf(path, sizeof path, REFS "longform.%s", kiln_whisper_format_name((kiln_whisper_format)f));
    char *want = read_text(path);
    CHECK(want != NULL);
    CHECK_OK(kiln_whisper_transcript_format(t, (kiln_whisper_format)f, &got));
    if (want && got && f != KILN_WHISPER_FORMAT_JSON) CHECK_EQ_STR(got, want);
    if (want && got && f == KILN_WHISPER_FORMAT_JSON) {
      cJSON *a = cJSON_Parse(got), *b = cJSON_Parse(want);
      CHECK(a && b);
      const cJSON *sa = cJSON_GetObjectItem(a, "segments"), *sb = cJSON_GetObjectItem(b, "segments");
      CHECK_EQ_STR(cJSON_GetObjectItem(a, "text")->valuestring, cJSON_GetObjectItem(b, "text")->valuestring);
      CHECK_EQ_STR(cJSON_GetObjectItem(a, "language")->valuestring, cJSON_GetObjectItem(b, "language")->valuestring);
      CHECK_EQ_INT(cJSON_GetArraySize(sa), cJSON_GetArraySize(sb));
      for (int i = 0; i < cJSON_GetArraySize(sa) && i < cJSON_GetArraySize(sb); i++) {
        cJSON *x = cJSON_GetArrayItem(sa, i), *y = cJSON_GetArrayItem(sb, i);
        static const char *exact[] = {"id", "seek", "start", "end", "text", "tokens", "temperature", "compression_ratio"};
        for (size_t k = 0; k < sizeof exact / sizeof *exact; k++)
          CHECK(cJSON_Compare(cJSON_GetObjectItem(x, exact[k]), cJSON_GetObjectItem(y, exact[k]), 1));
        CHECK_NEAR(cJSON_GetObjectItem(x, "avg_logprob")->valuedouble, cJSON_GetObjectItem(y, "avg_logprob")->valuedouble, 2e-3);
      }
      /* the layout: json.dump's separators and Python's float repr, up to the first avg_logprob */
      const char *cut = strstr(want, "\"avg_logprob\"");
      CHECK(cut && strncmp(got, want, (size_t)(cut - want)) == 0);
      cJSON_Delete(a), cJSON_Delete(b);
    }
    free(got), free(want);
  }
}

static float *mel_window(const float *pcm, int64_t n) {
  float *mel = malloc(80 * 3000 * sizeof *mel);
  if (mel && kiln_mel_compute_window(pcm, n, 80, mel) != KILN_OK) free(mel), mel = NULL;
  return mel;
}

static void window_tests(kiln_whisper *w, const cJSON *refs, const float *mel) {
  kiln_whisper_options o = kiln_whisper_default_options();
  o.language = "en";
  kiln_whisper_decoding *d = NULL;
  CHECK_OK(kiln_whisper_decode_window(w, mel, NULL, 0, 0.0, &o, &d)); /* greedy, timestamps */
  check_decoding(cJSON_GetObjectItem(refs, "jfk_decode_ts"), d, "decode ts");
  kiln_whisper_decoding_free(d), d = NULL;
  o.beam_size = 5;
  CHECK_OK(kiln_whisper_decode_window(w, mel, NULL, 0, 0.0, &o, &d));
  check_decoding(cJSON_GetObjectItem(refs, "jfk_decode_beam5_ts"), d, "beam5 ts");
  kiln_whisper_decoding_free(d), d = NULL;
  o.without_timestamps = 1;
  CHECK_OK(kiln_whisper_decode_window(w, mel, NULL, 0, 0.0, &o, &d));
  check_decoding(cJSON_GetObjectItem(refs, "jfk_decode_beam5"), d, "beam5");
  kiln_whisper_decoding_free(d), d = NULL;
  /* sampled: T = 0.5, best of 3, seeded: a sane transcription, the same twice */
  o = kiln_whisper_default_options();
  o.language = "en", o.best_of = 3, o.seed = 7;
  kiln_whisper_decoding *d2 = NULL;
  CHECK_OK(kiln_whisper_decode_window(w, mel, NULL, 0, 0.5, &o, &d));
  CHECK_OK(kiln_whisper_decode_window(w, mel, NULL, 0, 0.5, &o, &d2));
  if (d && d2) {
    CHECK(strstr(d->text, "ask not what your country can do for you") != NULL);
    CHECK_EQ_STR(d->text, d2->text);
    CHECK(d->temperature == 0.5 && d->avg_logprob < 0 && d->avg_logprob > -1.0);
  }
  kiln_whisper_decoding_free(d), kiln_whisper_decoding_free(d2);
  /* language detection */
  float probs[100];
  const char *code = NULL;
  CHECK_OK(kiln_whisper_detect_language(w, mel, probs, &code));
  CHECK_EQ_STR(code, "en");
  CHECK_NEAR(probs[0], cJSON_GetObjectItem(cJSON_GetObjectItem(refs, "jfk_language"), "en")->valuedouble, 2e-3);
}

static void transcribe_tests(kiln_whisper *w, const cJSON *refs, const float *jfk, int64_t n_jfk) {
  kiln_whisper_options o = kiln_whisper_default_options();
  o.language = "en";
  kiln_whisper_transcript *t = NULL;
  CHECK_OK(kiln_whisper_transcribe_audio(w, jfk, n_jfk, &o, &t));
  check_transcript(cJSON_GetObjectItem(refs, "jfk_transcribe"), t, "transcribe");
  kiln_whisper_transcript_free(t), t = NULL;
  o.beam_size = 5;
  CHECK_OK(kiln_whisper_transcribe_audio(w, jfk, n_jfk, &o, &t));
  check_transcript(cJSON_GetObjectItem(refs, "jfk_transcribe_beam5"), t, "transcribe beam5");
  kiln_whisper_transcript_free(t), t = NULL;
  o.beam_size = 0;
  o.initial_prompt = "President Kennedy's inaugural address.";
  CHECK_OK(kiln_whisper_transcribe_audio(w, jfk, n_jfk, &o, &t));
  check_transcript(cJSON_GetObjectItem(refs, "jfk_transcribe_prompt"), t, "transcribe prompt");
  kiln_whisper_transcript_free(t), t = NULL;
  float *pcm = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_audio_load(LONG, 16000, &pcm, &n));
  const cJSON *lr = cJSON_GetObjectItem(refs, "long_transcribe");
  CHECK_EQ_INT(n, cJSON_GetObjectItem(lr, "n_samples")->valueint);
  o = kiln_whisper_default_options(); /* language: detected */
  if (pcm) CHECK_OK(kiln_whisper_transcribe_audio(w, pcm, n, &o, &t));
  check_transcript(lr, t, "long");
  if (t) CHECK_EQ_STR(t->language, "en");
  if (t) check_writers(t);
  kiln_whisper_transcript_free(t);
  kiln_audio_free(pcm);
}

int main(void) {
  WHISPER_BASE_REQUIRE();
  char *text = read_text(REFS "whisper_base_decode.json");
  cJSON *refs = text ? cJSON_Parse(text) : NULL;
  CHECK(refs != NULL);
  kiln_whisper *w = whisper_base_build_load(ENGINES, 1, 1, KILN_DTYPE_INVALID);
  float *pcm = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_audio_load(JFK, 16000, &pcm, &n));
  float *mel = pcm ? mel_window(pcm, n) : NULL;
  if (w && refs && mel) {
    window_tests(w, refs, mel);
    transcribe_tests(w, refs, pcm, n);
  }
  free(mel);
  kiln_audio_free(pcm);
  kiln_whisper_destroy(w);
  cJSON_Delete(refs);
  free(text);
  return check_report();
}
