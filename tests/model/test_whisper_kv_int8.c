/* tests/model/test_whisper_kv_int8.c - the real Whisper base model with an int8 KV cache
 * (kiln build whisper --kv-cache int8; fp32 engines on the CPU backend, so the cache is the only
 * difference from tests/model/test_whisper_decode.c's engines) against openai-whisper's output
 * on the same weights (tests/data/decode_refs/, which the fp32 cache reproduces exactly):
 * transcribe() of jfk.flac greedy and with beam search (5) must give the same text and tokens;
 * the ~70 s long-form file (three windows, the previous text as prompt) must transcribe, and
 * the number of tokens that differ from the reference is printed, not required to be 0.
 * Exits 77 (skipped) when models/whisper-base has not been fetched. */
#include <cjson/cJSON.h>
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
#define ENGINES "whisper_kv_int8_engines"

/* Tokens of every segment of the reference (JSON) and of the transcript, one after the other;
 * the number of positions where they differ plus the difference in length. */
static int32_t token_diff(const cJSON *ref, const kiln_whisper_transcript *t, int32_t *n_ref, int32_t *n_got) {
  int32_t cap = 8192, n = 0, m = 0, diff = 0;
  int32_t *want = malloc(sizeof(int32_t) * (size_t)cap), *got = malloc(sizeof(int32_t) * (size_t)cap);
  const cJSON *s, *tok;
  cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "segments")) {
    cJSON_ArrayForEach(tok, cJSON_GetObjectItem(s, "tokens")) if (n < cap) want[n++] = tok->valueint;
  }
  for (int32_t i = 0; i < t->n_segments; i++)
    for (int32_t j = 0; j < t->segments[i].n_tokens && m < cap; j++) got[m++] = t->segments[i].tokens[j];
  for (int32_t i = 0; i < n && i < m; i++) diff += want[i] != got[i];
  diff += n > m ? n - m : m - n;
  *n_ref = n, *n_got = m;
  free(want), free(got);
  return diff;
}

static void check_same(const cJSON *ref, const kiln_whisper_transcript *t, const char *what) {
  if (!ref || !t) {
    CHECK(0);
    return;
  }
  int32_t n_ref = 0, n_got = 0, diff = token_diff(ref, t, &n_ref, &n_got);
  printf("int8 KV cache, %s: %d segments, %d tokens (reference %d), %d differ; \"%s\"\n", what, t->n_segments, n_got, n_ref,
         diff, t->text);
  CHECK_EQ_STR(t->text, cJSON_GetObjectItem(ref, "text")->valuestring);
  CHECK_EQ_INT(diff, 0);
}

int main(void) {
  WHISPER_BASE_REQUIRE();
  char *text = read_text(REFS "whisper_base_decode.json");
  cJSON *refs = text ? cJSON_Parse(text) : NULL;
  CHECK(refs != NULL);
  kiln_whisper *w = whisper_base_build_load(ENGINES, 1, 5, KILN_DTYPE_INT8);
  float *pcm = NULL, *lpcm = NULL;
  int64_t n = 0, ln = 0;
  CHECK_OK(kiln_audio_load(JFK, 16000, &pcm, &n));
  CHECK_OK(kiln_audio_load(LONG, 16000, &lpcm, &ln));
  if (w && refs && pcm && lpcm) {
    kiln_whisper_options o = kiln_whisper_default_options();
    o.language = "en";
    kiln_whisper_transcript *t = NULL;
    CHECK_OK(kiln_whisper_transcribe_audio(w, pcm, n, &o, &t));
    check_same(cJSON_GetObjectItem(refs, "jfk_transcribe"), t, "jfk.flac greedy");
    kiln_whisper_transcript_free(t), t = NULL;
    o.beam_size = 5;
    CHECK_OK(kiln_whisper_transcribe_audio(w, pcm, n, &o, &t));
    check_same(cJSON_GetObjectItem(refs, "jfk_transcribe_beam5"), t, "jfk.flac beam 5");
    kiln_whisper_transcript_free(t), t = NULL;
    o = kiln_whisper_default_options(); /* language: detected */
    CHECK_OK(kiln_whisper_transcribe_audio(w, lpcm, ln, &o, &t));
    const cJSON *lr = cJSON_GetObjectItem(refs, "long_transcribe");
    if (t && lr) {
      int32_t n_ref = 0, n_got = 0, diff = token_diff(lr, t, &n_ref, &n_got);
      printf("int8 KV cache, longform.flac greedy: %d segments (reference %d), %d tokens (reference %d), %d differ\n",
             t->n_segments, cJSON_GetArraySize(cJSON_GetObjectItem(lr, "segments")), n_got, n_ref, diff);
      printf("  text:      %s\n  reference: %s\n", t->text, cJSON_GetObjectItem(lr, "text")->valuestring);
      CHECK(t->n_segments > 0 && strlen(t->text) > 100);
      CHECK_EQ_STR(t->language, "en");
    } else {
      CHECK(0);
    }
    kiln_whisper_transcript_free(t);
  }
  kiln_audio_free(pcm);
  kiln_audio_free(lpcm);
  kiln_whisper_destroy(w);
  cJSON_Delete(refs);
  free(text);
  return check_report();
}
