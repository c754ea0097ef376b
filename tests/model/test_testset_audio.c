/* tests/model/test_testset_audio.c - kiln_audio_load reads every file of the mini test set.
 *
 * What it is: for each utterance of tests/data/testset-mini/manifest.jsonl (tools/make_testset.py:
 * FLAC at 16, 22.05 and 44.1 kHz, mono and stereo, with and without noise and silence) the file
 * loads as 16 kHz mono, lasts the manifest's duration_s within 10 ms, and is not silent (RMS of
 * the speech above -40 dBFS). For clean files the peak level must match the manifest's "peak"
 * (stereo files carry the speech at 1.0x and 0.8x, so a mean down-mix peaks at 0.9x): this
 * catches a down-mix that sums, takes one channel, or scales wrongly.
 * What it is not: a test of the resampler's accuracy (tests/model/test_audio.c does that on jfk).
 * Skips (77) when kiln was built without libsndfile and soxr.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/audio.h"
#include "kiln/manifest.h"

#define MINI_MANIFEST KILN_SOURCE_DIR "/tests/data/testset-mini/manifest.jsonl"

static double field_num(const kiln_manifest *m, int64_t i, const char *key) {
  const char *v = kiln_manifest_field(m, i, key);
  CHECK(v != NULL);
  return v ? strtod(v, NULL) : NAN;
}

static void check_one(const kiln_manifest *m, int64_t i) {
  const char *path = kiln_manifest_audio(m, i);
  float *pcm = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_audio_load(path, KILN_WHISPER_SAMPLE_RATE, &pcm, &n));
  if (!pcm) return;
  double want_s = field_num(m, i, "duration_s"), got_s = (double)n / KILN_WHISPER_SAMPLE_RATE;
  CHECK_NEAR(got_s, want_s, 0.010);
  double sum2 = 0, peak = 0;
  for (int64_t k = 0; k < n; k++) {
    sum2 += (double)pcm[k] * pcm[k];
    if (fabs(pcm[k]) > peak) peak = fabs(pcm[k]);
  }
  double speech_s = want_s - field_num(m, i, "lead_silence_s") - field_num(m, i, "trail_silence_s");
  double rms = sqrt(sum2 / (speech_s * KILN_WHISPER_SAMPLE_RATE));
  CHECK(rms > 0.01);
  CHECK(peak <= 1.0);
  if (!kiln_manifest_field(m, i, "noise_db")) { /* clean: the level is known */
    double want_peak = field_num(m, i, "peak") * (field_num(m, i, "channels") == 2 ? 0.9 : 1.0);
    double tol = field_num(m, i, "sample_rate") == KILN_WHISPER_SAMPLE_RATE ? 1e-3 : 0.05 * want_peak;
    CHECK_NEAR(peak, want_peak, tol);
  }
  if (check_failures_) fprintf(stderr, "  (after %s: %.3f s, rms %.4f, peak %.4f)\n", path, got_s, rms, peak);
  kiln_audio_free(pcm);
}

int main(void) {
  float *probe = NULL;
  int64_t n = 0;
  const float one[4] = {0.1f, 0.2f, 0.3f, 0.4f};
  if (kiln_audio_from_memory(one, 4, 1, 8000, 16000, &probe, &n) == KILN_ERR_UNSUPPORTED)
    SKIP_TEST("kiln built without libsndfile/soxr");
  kiln_audio_free(probe);
  kiln_manifest *m = NULL;
  CHECK_OK(kiln_manifest_load(MINI_MANIFEST, &m));
  if (!m) return check_report();
  CHECK_EQ_INT(kiln_manifest_count(m), 12);
  int stereo = 0, resampled = 0;
  for (int64_t i = 0; i < kiln_manifest_count(m); i++) {
    check_one(m, i);
    stereo += field_num(m, i, "channels") == 2;
    resampled += field_num(m, i, "sample_rate") != KILN_WHISPER_SAMPLE_RATE;
  }
  CHECK(stereo >= 2 && resampled >= 2); /* the set really exercises down-mixing and resampling */
  kiln_manifest_destroy(m);
  return check_report();
}
