/* tests/fuzz/fuzz_manifest.c - fuzz target for the test-set manifest reader (kiln/manifest.h):
 * any input either gives a manifest or a KILN_ERR_FORMAT error, never a crash, leak or huge
 * allocation. Manifests that parse are walked: every path, text and field is read through. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kiln/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_manifest *m = NULL;
  kiln_log_set_level(KILN_LOG_NONE);
  kiln_status s = kiln_manifest_parse((const char *)data, size, "base", "fuzz", &m);
  if (s == KILN_ERR_OUT_OF_MEMORY) abort();
  if (s != KILN_OK) {
    if (s != KILN_ERR_FORMAT) abort(); /* a malformed manifest is a format error, nothing else */
    return 0;
  }
  size_t sum = 0;
  for (int64_t i = 0; i < kiln_manifest_count(m); i++) {
    const char *audio = kiln_manifest_audio(m, i), *text = kiln_manifest_text(m, i);
    const char *voice = kiln_manifest_field(m, i, "voice");
    if (!audio || !text || !kiln_manifest_audio_raw(m, i) || kiln_manifest_line(m, i) < 1) abort();
    sum += strlen(audio) + strlen(text) + (voice ? strlen(voice) : 0);
  }
  (void)sum;
  kiln_manifest_destroy(m);
  return 0;
}

static void add_text(kiln_fuzz_add_fn add, void *ud, const char *s) { add((const uint8_t *)s, strlen(s), ud); }

void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *ud) {
  add_text(add, ud, "# comment\naudio/a.flac\tHello there.\r\n\n/abs/b.wav\t\nc.flac\tmore \xC3\xA9 text");
  add_text(add, ud,
           "{\"audio\": \"audio/0001.flac\", \"text\": \"A traveler.\", \"synth\": \"flite\","
           " \"voice\": \"slt\", \"rate\": 1.25, \"noise_db\": null, \"tags\": [1, {\"a\": true}]}\n"
           "\n{\"text\": \"\", \"audio\": \"/x.wav\", \"voice\": \"\\u00e9\\\"q\\\\\"}\r\n");
  add_text(add, ud, "\xEF\xBB\xBF  {\"audio\": \"a\", \"text\": \"b\"}");
}
