/* tests/unit/test_whisper_fallback.c - transcribe()'s temperature fallback decision and
 * compression ratio (kiln_whisper_needs_fallback, kiln_whisper_compression_ratio) on crafted
 * inputs, with openai-whisper's values (whisper.utils.compression_ratio, computed with Python's
 * zlib) and the writers' timestamp and float formatting on a crafted transcript. No model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/whisper.h"

static void compression(void) {
  char rep[256] = "";
  for (int i = 0; i < 30; i++) strcat(rep, "the cat ");
  CHECK_NEAR(kiln_whisper_compression_ratio(
                 "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."),
             1.3544303797468353, 1e-15);
  CHECK_NEAR(kiln_whisper_compression_ratio(rep), 12.631578947368421, 1e-15);
  CHECK_NEAR(kiln_whisper_compression_ratio(""), 0.0, 0);
  CHECK_NEAR(kiln_whisper_compression_ratio("a"), 0.1111111111111111, 1e-15);
}

static void decision(void) {
  kiln_whisper_options o = kiln_whisper_default_options();
  CHECK(!kiln_whisper_needs_fallback(&o, 1.35, -0.3, 0.01));  /* fine */
  CHECK(kiln_whisper_needs_fallback(&o, 2.41, -0.3, 0.01));   /* too repetitive */
  CHECK(!kiln_whisper_needs_fallback(&o, 2.4, -0.3, 0.01));   /* at the threshold: not above */
  CHECK(kiln_whisper_needs_fallback(&o, 1.35, -1.01, 0.01));  /* improbable */
  CHECK(!kiln_whisper_needs_fallback(&o, 1.35, -1.0, 0.01));  /* at the threshold: not below */
  CHECK(!kiln_whisper_needs_fallback(&o, 1.35, -1.5, 0.61));  /* silence: no fallback */
  CHECK(!kiln_whisper_needs_fallback(&o, 3.0, -1.5, 0.61));   /* silence wins over repetition too */
  CHECK(kiln_whisper_needs_fallback(&o, 1.35, -1.5, 0.6));    /* no_speech not above 0.6 */
  CHECK(kiln_whisper_needs_fallback(&o, 3.0, -0.5, 0.9));     /* confident text: not silence */
  o.logprob_threshold = NAN;
  CHECK(!kiln_whisper_needs_fallback(&o, 1.35, -5.0, 0.01));
  CHECK(kiln_whisper_needs_fallback(&o, 3.0, -5.0, 0.99));    /* no silence rule without it */
  o.compression_ratio_threshold = NAN;
  CHECK(!kiln_whisper_needs_fallback(&o, 30.0, -5.0, 0.01));
  o = kiln_whisper_default_options();
  CHECK_EQ_INT(o.n_temperatures, 6);
  CHECK(o.temperatures[1] == 0.2 && o.temperatures[5] == 1.0);
}

/* Rounding half to even of milliseconds, hours in SRT, "-->" in text, Python float repr. */
static void writers(void) {
  int32_t toks[2] = {50364, 50414};
  kiln_whisper_segment seg[2] = {
      {0, 0, 0.0, 3661.0005, (char *)" a --> b\t", toks, 2, 0.2, -0.25, 1.5, 1e-05},
      {1, 3000, 100.0, 123.4565, (char *)" ok", NULL, 0, 1.0, -1.0, 0.0, 0.5}};
  kiln_whisper_transcript t = {(char *)" a --> b ok\xc3\xa9", "en", seg, 2};
  char *s = NULL;
  CHECK_OK(kiln_whisper_transcript_format(&t, KILN_WHISPER_FORMAT_SRT, &s));
  CHECK_EQ_STR(s, "1\n00:00:00,000 --> 01:01:01,000\na -> b\n\n2\n00:01:40,000 --> 00:02:03,456\nok\n\n");
  free(s);
  CHECK_OK(kiln_whisper_transcript_format(&t, KILN_WHISPER_FORMAT_VTT, &s));
  CHECK_EQ_STR(s, "WEBVTT\n\n00:00.000 --> 01:01:01.000\na -> b\n\n01:40.000 --> 02:03.456\nok\n\n");
  free(s);
  CHECK_OK(kiln_whisper_transcript_format(&t, KILN_WHISPER_FORMAT_TSV, &s));
  CHECK_EQ_STR(s, "start\tend\ttext\n0\t3661000\ta --> b\n100000\t123456\tok\n");
  free(s);
  CHECK_OK(kiln_whisper_transcript_format(&t, KILN_WHISPER_FORMAT_JSON, &s));
  CHECK_EQ_STR(s, "{\"text\": \" a --> b ok\\u00e9\", \"segments\": [{\"id\": 0, \"seek\": 0, \"start\": 0.0, \"end\": 3661.0005, "
                  "\"text\": \" a --> b\\t\", \"tokens\": [50364, 50414], \"temperature\": 0.2, \"avg_logprob\": -0.25, "
                  "\"compression_ratio\": 1.5, \"no_speech_prob\": 1e-05}, {\"id\": 1, \"seek\": 3000, \"start\": 100.0, "
                  "\"end\": 123.4565, \"text\": \" ok\", \"tokens\": [], \"temperature\": 1.0, \"avg_logprob\": -1.0, "
                  "\"compression_ratio\": 0.0, \"no_speech_prob\": 0.5}], \"language\": \"en\"}");
  free(s);
  CHECK_STATUS(kiln_whisper_transcript_format(&t, KILN_WHISPER_FORMAT_COUNT, &s), KILN_ERR_INVALID_ARG);
}

int main(void) {
  compression();
  decision();
  writers();
  return check_report();
}
