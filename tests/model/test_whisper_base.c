/* tests/model/test_whisper_base.c - the real Whisper base model (OpenAI's weights, fetched by
 * scripts/fetch_model.sh into models/whisper-base; scripts/test.sh fetches it before the tests)
 * transcribes the bundled recording examples/audio/jfk.flac on the CPU backend in fp32 with
 * exactly transformers' greedy tokens and text (tests/data/jfk_whisper_base.txt, written by
 * tools/whisper_hf_greedy.py). Exits 77 (skipped) when the checkpoint has not been fetched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/test_whisper_base.h"
#include "kiln/audio.h"
#include "kiln/kiln.h"
#include "kiln/whisper.h"

#define AUDIO KILN_SOURCE_DIR "/examples/audio/jfk.flac"
#define REF KILN_SOURCE_DIR "/tests/data/jfk_whisper_base.txt"
#define ENGINES "whisper_base_engines"

/* The reference: text and tokens (the two lines after the comments). */
static int read_ref(char *text, size_t cap, int32_t *tokens, int32_t *n) {
  FILE *f = fopen(REF, "r");
  char line[4096];
  int got = 0;
  *n = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    line[strcspn(line, "\n")] = '\0';
    if (got == 0) snprintf(text, cap, "%s", line);
    else
      for (char *t = strtok(line, " "); t && *n < 256; t = strtok(NULL, " ")) tokens[(*n)++] = atoi(t);
    got++;
  }
  if (f) fclose(f);
  return got == 2 ? 0 : -1;
}

int main(void) {
  WHISPER_BASE_REQUIRE();
  char want_text[4096];
  int32_t want[256], n_want = 0;
  CHECK(read_ref(want_text, sizeof want_text, want, &n_want) == 0);
  kiln_whisper *w = whisper_base_build_load(ENGINES, 1, 1, KILN_DTYPE_INVALID);
  float *pcm = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_audio_load(AUDIO, 16000, &pcm, &n));
  CHECK_EQ_INT(n, 176000);
  float *mel = malloc(80 * 3000 * sizeof *mel);
  kiln_whisper_result *r = NULL;
  if (w && pcm && mel) {
    CHECK_OK(kiln_mel_compute_window(pcm, n, 80, mel));
    CHECK_OK(kiln_whisper_transcribe(w, mel, NULL, &r));
  }
  if (r) {
    CHECK_EQ_INT(r->n_tokens, n_want);
    for (int32_t i = 0; i < r->n_tokens && i < n_want; i++) CHECK_EQ_INT(r->tokens[i], want[i]);
    const char *text = r->text[0] == ' ' ? r->text + 1 : r->text;
    CHECK_EQ_STR(text, want_text);
  }
  kiln_whisper_result_free(r);
  free(mel);
  kiln_audio_free(pcm);
  kiln_whisper_destroy(w);
  return check_report();
}
