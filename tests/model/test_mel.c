/* tests/model/test_mel.c - kiln's log-mel spectrogram against openai-whisper's.
 *
 * References (tests/data/mel_refs.bin, from tools/make_frontend_refs.py) are openai-whisper's
 * log_mel_spectrogram() of synthetic signals that this file regenerates bit for bit
 * (make_signal() mirrors the tool), in full, padded, and in a 30 s window. A random signal is
 * also checked against a plain O(n^2) DFT written here, so the FFT has an independent oracle.
 * jfk.flac's mel is checked in test_audio.c (it needs the audio decoder).
 */
#include <math.h>

#include "check.h"
#include "kiln/audio.h"
#include "refs.h"

#define MEL_ATOL 1e-4

/* Mirrors make_signal() in tools/make_frontend_refs.py. *n receives the length. */
static float *make_signal(const char *kind, int64_t *n) {
  const double sr = 16000.0, pi = 3.14159265358979323846;
  float *x = NULL;
  if (strcmp(kind, "chirp") == 0) {
    *n = 24000;
    x = malloc(sizeof(float) * (size_t)*n);
    const double dur = (double)*n / sr;
    for (int64_t i = 0; i < *n; i++) {
      double t = (double)i / sr;
      x[i] = (float)(0.5 * sin(2 * pi * (100.0 * t + (7000.0 - 100.0) * t * t / (2 * dur))));
    }
  } else if (strcmp(kind, "noise") == 0) {
    *n = 16000;
    x = malloc(sizeof(float) * (size_t)*n);
    uint64_t s = 12345;
    for (int64_t i = 0; i < *n; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      float u = (float)(((double)(s >> 40) / 16777216.0) * 2.0 - 1.0);
      x[i] = u * 0.3f;
    }
  } else {
    *n = 16000;
    x = calloc((size_t)*n, sizeof(float));
    for (int64_t i = 0; i < *n / 2; i++) x[*n / 2 + i] = (float)(0.25 * sin(2 * pi * 440.0 * (double)i / sr));
  }
  if (!x) abort();
  return x;
}

/* Columns [c0, c0 + cols) of mel [n_mels x n_frames] with stride `step` into out [n_mels x cols]. */
static void take_columns(const float *mel, int32_t n_mels, int64_t n_frames, int64_t c0, int64_t step,
                         int64_t cols, float *out) {
  for (int32_t r = 0; r < n_mels; r++)
    for (int64_t c = 0; c < cols; c++) out[r * cols + c] = mel[r * n_frames + c0 + c * step];
}

static void check_full(const ref_file *rf, const char *kind) {
  char name[64];
  int64_t n;
  float *x = make_signal(kind, &n);
  snprintf(name, sizeof name, "signal_%s_sum", kind);
  const ref_entry *sum = ref_get(rf, name);
  double total = 0;
  for (int64_t i = 0; i < n; i++) total += x[i];
  CHECK(sum != NULL);
  if (sum) CHECK_NEAR(total, ((const double *)sum->data)[0], 1e-6); /* same signal as the tool's */

  snprintf(name, sizeof name, "mel80_%s", kind);
  const ref_entry *e = ref_get(rf, name);
  CHECK(e != NULL);
  const int64_t frames = kiln_mel_n_frames(n);
  float *mel = malloc(sizeof(float) * 80 * (size_t)frames);
  CHECK_OK(kiln_mel_compute(x, n, 0, 80, mel));
  if (e) {
    CHECK_EQ_INT(e->dims[0], 80);
    CHECK_EQ_INT(e->dims[1], frames);
    if (e->dims[1] == frames) check_close(name, mel, e->data, 80 * frames, MEL_ATOL, 0);
  }
  free(mel);
  free(x);
}

static void check_chirp_variants(const ref_file *rf) {
  int64_t n;
  float *x = make_signal("chirp", &n);
  /* 128 mel bins, every 3rd frame */
  const int64_t frames = kiln_mel_n_frames(n);
  float *mel = malloc(sizeof(float) * 128 * (size_t)frames);
  CHECK_OK(kiln_mel_compute(x, n, 0, 128, mel));
  const ref_entry *e = ref_get(rf, "mel128_chirp_every3");
  if (e && e->dims[1] == (frames + 2) / 3) {
    float *cols = malloc(sizeof(float) * (size_t)e->count);
    take_columns(mel, 128, frames, 0, 3, e->dims[1], cols);
    check_close("mel128 chirp", cols, e->data, e->count, MEL_ATOL, 0);
    free(cols);
  } else {
    CHECK(!"mel128_chirp_every3 has the wrong shape");
  }
  free(mel);

  /* 8000 zeros of padding: frames 120..199 */
  const int64_t padded = kiln_mel_n_frames(n + 8000);
  CHECK_EQ_INT(padded, 200);
  mel = malloc(sizeof(float) * 80 * (size_t)padded);
  CHECK_OK(kiln_mel_compute(x, n, 8000, 80, mel));
  e = ref_get(rf, "mel80_chirp_pad8000_last80");
  if (e && e->dims[1] == 80) {
    float *cols = malloc(sizeof(float) * (size_t)e->count);
    take_columns(mel, 80, padded, 120, 1, 80, cols);
    check_close("mel80 chirp padded", cols, e->data, e->count, MEL_ATOL, 0);
    free(cols);
  } else {
    CHECK(!"mel80_chirp_pad8000_last80 has the wrong shape");
  }
  free(mel);
  free(x);
}

static void check_window(const ref_file *rf) {
  int64_t n;
  float *x = make_signal("noise", &n);
  float *mel = malloc(sizeof(float) * 80 * KILN_WHISPER_CHUNK_FRAMES);
  CHECK_OK(kiln_mel_compute_window(x, n, 80, mel));
  const ref_entry *e = ref_get(rf, "win80_noise_80to120");
  const ref_entry *st = ref_get(rf, "win80_noise_stats");
  if (e && st) {
    float cols[80 * 40];
    take_columns(mel, 80, KILN_WHISPER_CHUNK_FRAMES, 80, 1, 40, cols);
    check_close("noise window frames 80..119", cols, e->data, 80 * 40, MEL_ATOL, 0);
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < 80 * KILN_WHISPER_CHUNK_FRAMES; i++) {
      sum += mel[i];
      lo = fmin(lo, mel[i]);
      hi = fmax(hi, mel[i]);
    }
    const double *want = st->data;
    CHECK_NEAR(sum / (80.0 * KILN_WHISPER_CHUNK_FRAMES), want[0] / (80.0 * KILN_WHISPER_CHUNK_FRAMES), 1e-5);
    CHECK_NEAR(lo, want[1], MEL_ATOL);
    CHECK_NEAR(hi, want[2], MEL_ATOL);
  }
  /* trimming: a signal longer than 30 s gives the mel of its first 30 s */
  float *longer = calloc(KILN_WHISPER_CHUNK_SAMPLES + 5000, sizeof(float));
  float *mel2 = malloc(sizeof(float) * 80 * KILN_WHISPER_CHUNK_FRAMES);
  memcpy(longer, x, sizeof(float) * (size_t)n);
  check_rng rng = {7};
  check_fill(&rng, longer + KILN_WHISPER_CHUNK_SAMPLES, 5000, -1.0f, 1.0f);
  CHECK_OK(kiln_mel_compute_window(longer, KILN_WHISPER_CHUNK_SAMPLES + 5000, 80, mel2));
  check_close("trimmed window", mel2, mel, 80 * KILN_WHISPER_CHUNK_FRAMES, 0, 0);
  free(longer);
  free(mel2);
  free(mel);
  free(x);
}

/* Independent oracle: a plain DFT in double with the dense filters, for a random signal. */
static void check_against_dft(void) {
  enum { N = 3200, FRAMES = N / 160, BINS = 201 };
  check_rng rng = {99};
  float x[N];
  check_fill(&rng, x, N, -0.8f, 0.8f);
  static float filters[80 * BINS];
  CHECK_OK(kiln_mel_filters(80, filters));
  static double logmel[80 * FRAMES];
  double global_max = -INFINITY;
  const double pi = 3.14159265358979323846;
  for (int t = 0; t < FRAMES; t++) {
    double power[BINS];
    for (int k = 0; k < BINS; k++) {
      double re = 0, im = 0;
      for (int j = 0; j < 400; j++) {
        int i = t * 160 - 200 + j;
        if (i < 0) i = -i;
        if (i >= N) i = 2 * (N - 1) - i;
        double w = 0.5 - 0.5 * cos(2 * pi * j / 400.0);
        re += w * x[i] * cos(2 * pi * k * j / 400.0);
        im -= w * x[i] * sin(2 * pi * k * j / 400.0);
      }
      power[k] = re * re + im * im;
    }
    for (int m = 0; m < 80; m++) {
      double acc = 0;
      for (int k = 0; k < BINS; k++) acc += filters[m * BINS + k] * power[k];
      logmel[m * FRAMES + t] = log10(fmax(acc, 1e-10));
      global_max = fmax(global_max, logmel[m * FRAMES + t]);
    }
  }
  static float want[80 * FRAMES], got[80 * FRAMES];
  for (int i = 0; i < 80 * FRAMES; i++) want[i] = (float)((fmax(logmel[i], global_max - 8.0) + 4.0) / 4.0);
  CHECK_OK(kiln_mel_compute(x, N, 0, 80, got));
  check_close("mel vs plain DFT", got, want, 80 * FRAMES, 1e-6, 0);
}

static void check_errors(void) {
  float x[300] = {0.1f}, out[2 * 80];
  for (int i = 0; i < 160; i++) out[i] = 42.0f;
  CHECK_STATUS(kiln_mel_compute(x, 300, 0, 64, out), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_mel_compute(x, 150, 0, 80, out), KILN_ERR_INVALID_ARG);
  CHECK(strstr(kiln_last_error(), "pad") != NULL);
  CHECK_STATUS(kiln_mel_compute(NULL, 300, 0, 80, out), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_mel_compute(x, 300, -1, 80, out), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_mel_compute_window(x, 300, 100, out), KILN_ERR_INVALID_ARG);
  int untouched = 1;
  for (int i = 0; i < 160; i++) untouched &= out[i] == 42.0f;
  CHECK(untouched);
  CHECK_EQ_INT(kiln_mel_n_frames(KILN_WHISPER_CHUNK_SAMPLES), KILN_WHISPER_CHUNK_FRAMES);
  CHECK_EQ_INT(kiln_mel_n_frames(159), 0);
  /* 150 samples plus padding is long enough */
  CHECK_OK(kiln_mel_compute(x, 150, 170, 80, out));
}

int main(void) {
  ref_file rf;
  if (ref_file_load(KILN_SOURCE_DIR "/tests/data/mel_refs.bin", &rf) != 0) return 1;
  check_full(&rf, "chirp");
  check_full(&rf, "noise");
  check_full(&rf, "silence_tone");
  check_chirp_variants(&rf);
  check_window(&rf);
  check_against_dft();
  check_errors();
  ref_file_free(&rf);
  return check_report();
}
