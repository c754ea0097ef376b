/* tests/model/test_audio.c - audio decoding, down-mixing, resampling, and jfk.flac's log-mel.
 *
 * jfk.flac (24-bit stereo, 44.1 kHz) is decoded by kiln and compared with the reference decode of
 * tools/make_frontend_refs.py (python soundfile + python-soxr HQ, itself checked there against
 * numpy FFT resampling at 66 dB SNR); then kiln's log-mel of kiln's samples is compared with
 * openai-whisper's log-mel of the reference samples. Also: down-mixing and resampling of random
 * and sine buffers, a hand-written 3-channel WAV, and the error paths (missing, not audio, empty).
 * Skips (77) when kiln was built without libsndfile and soxr.
 */
#include <math.h>

#include "check.h"
#include "kiln/audio.h"
#include "refs.h"

#define JFK KILN_SHARED_DATA "/whisper/audio/jfk.flac"

static void check_jfk(const ref_file *rf) {
  float *pcm = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_audio_load(JFK, KILN_WHISPER_SAMPLE_RATE, &pcm, &n));
  if (!pcm) return;
  const ref_entry *want_n = ref_get(rf, "jfk_n"), *every = ref_get(rf, "jfk_every64"), *stats = ref_get(rf, "jfk_stats");
  if (!want_n || !every || !stats) return;
  CHECK_EQ_INT(n, ((const int32_t *)want_n->data)[0]);
  if (n == ((const int32_t *)want_n->data)[0]) {
    float *sub = malloc(sizeof(float) * (size_t)every->count);
    for (int64_t i = 0; i < every->count; i++) sub[i] = pcm[i * 64];
    check_close("jfk samples (every 64th)", sub, every->data, every->count, 1e-5, 0);
    free(sub);
  }
  double sum = 0, sq = 0, peak = 0;
  for (int64_t i = 0; i < n; i++) {
    sum += pcm[i];
    sq += (double)pcm[i] * pcm[i];
    peak = fmax(peak, fabs(pcm[i]));
  }
  const double *st = stats->data;
  CHECK_NEAR(sum, st[0], 1e-3);
  CHECK_NEAR(sq / st[1], 1.0, 1e-5);
  CHECK(peak > 0.1 && peak <= 1.0);

  for (int32_t n_mels = 80; n_mels <= 128; n_mels += 48) {
    char name[64];
    float *mel = malloc(sizeof(float) * (size_t)n_mels * KILN_WHISPER_CHUNK_FRAMES);
    CHECK_OK(kiln_mel_compute_window(pcm, n, n_mels, mel));
    snprintf(name, sizeof name, "jfk_mel%d_every50", (int)n_mels);
    const ref_entry *e = ref_get(rf, name);
    if (e && e->dims[0] == n_mels && e->dims[1] == KILN_WHISPER_CHUNK_FRAMES / 50) {
      float *cols = malloc(sizeof(float) * (size_t)e->count);
      for (int32_t r = 0; r < n_mels; r++)
        for (int64_t c = 0; c < e->dims[1]; c++) cols[r * e->dims[1] + c] = mel[r * KILN_WHISPER_CHUNK_FRAMES + c * 50];
      check_close(name, cols, e->data, e->count, 1e-4, 0);
      free(cols);
    } else {
      CHECK(!"jfk mel reference has the wrong shape");
    }
    snprintf(name, sizeof name, "jfk_mel%d_stats", (int)n_mels);
    const ref_entry *s = ref_get(rf, name);
    if (s) {
      double total = 0;
      for (int64_t i = 0; i < (int64_t)n_mels * KILN_WHISPER_CHUNK_FRAMES; i++) total += mel[i];
      const double *w = s->data;
      CHECK_NEAR(total / ((double)n_mels * KILN_WHISPER_CHUNK_FRAMES), w[0] / ((double)n_mels * KILN_WHISPER_CHUNK_FRAMES), 1e-5);
    }
    free(mel);
  }
  kiln_audio_free(pcm);
}

static void check_downmix(void) {
  enum { FRAMES = 1000, CH = 3 };
  check_rng rng = {11};
  static float in[FRAMES * CH];
  check_fill(&rng, in, FRAMES * CH, -1.0f, 1.0f);
  float *mono = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_audio_from_memory(in, FRAMES, CH, 16000, 16000, &mono, &n));
  CHECK_EQ_INT(n, FRAMES);
  static float want[FRAMES];
  for (int i = 0; i < FRAMES; i++) want[i] = (float)(((double)in[i * CH] + in[i * CH + 1] + in[i * CH + 2]) / 3.0);
  if (mono && n == FRAMES) check_close("downmix", mono, want, FRAMES, 1e-7, 0);
  kiln_audio_free(mono);
}

/* A 440 Hz sine at in_rate comes out as the same sine at 16 kHz (away from the edges). */
static void check_resample(int32_t in_rate) {
  const double pi = 3.14159265358979323846, f = 440.0;
  const int64_t frames = in_rate; /* 1 s */
  float *in = malloc(sizeof(float) * (size_t)frames);
  check_rng rng = {(uint64_t)in_rate};
  const double phase = check_uniform(&rng, 0.0f, 3.0f);
  for (int64_t i = 0; i < frames; i++) in[i] = (float)(0.5 * sin(2 * pi * f * (double)i / in_rate + phase));
  float *out = NULL;
  int64_t n = 0;
  if (kiln_audio_from_memory(in, frames, 1, in_rate, 16000, &out, &n) == KILN_ERR_UNSUPPORTED) SKIP_TEST("built without soxr");
  CHECK(out != NULL);
  CHECK(llabs(n - 16000) <= 1);
  if (out) {
    double worst = 0;
    for (int64_t i = 1000; i < n - 1000; i++) worst = fmax(worst, fabs(out[i] - 0.5 * sin(2 * pi * f * (double)i / 16000.0 + phase)));
    CHECK(worst < 1e-3);
    if (worst >= 1e-3) fprintf(stderr, "resample %d -> 16000: worst error %g\n", (int)in_rate, worst);
  }
  kiln_audio_free(out);
  free(in);
}

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

/* Writes a 16-bit PCM WAV of frames x channels at rate; returns 0 on success. */
static int write_wav(const char *path, const int16_t *pcm, uint32_t frames, uint16_t channels, uint32_t rate) {
  unsigned char h[44];
  const uint32_t data = frames * channels * 2u;
  memcpy(h, "RIFF", 4);
  put_u32(h + 4, 36 + data);
  memcpy(h + 8, "WAVEfmt ", 8);
  put_u32(h + 16, 16);
  put_u16(h + 20, 1);
  put_u16(h + 22, channels);
  put_u32(h + 24, rate);
  put_u32(h + 28, rate * channels * 2u);
  put_u16(h + 32, (uint16_t)(channels * 2));
  put_u16(h + 34, 16);
  memcpy(h + 36, "data", 4);
  put_u32(h + 40, data);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(h, 1, 44, f) == 44 && (data == 0 || fwrite(pcm, 1, data, f) == data);
  return fclose(f) == 0 && ok ? 0 : -1;
}

static void check_wav_file(void) {
  enum { FRAMES = 2205, CH = 3 };
  static int16_t pcm[FRAMES * CH];
  static float as_float[FRAMES * CH];
  check_rng rng = {5};
  for (int i = 0; i < FRAMES * CH; i++) {
    pcm[i] = (int16_t)check_uniform(&rng, -20000.0f, 20000.0f);
    as_float[i] = pcm[i] / 32768.0f;
  }
  const char *path = KILN_BINARY_DIR "/test_audio_3ch.wav";
  CHECK(write_wav(path, pcm, FRAMES, CH, 22050) == 0);
  float *a = NULL, *b = NULL;
  int64_t na = 0, nb = 0;
  CHECK_OK(kiln_audio_load(path, 16000, &a, &na));
  CHECK_OK(kiln_audio_from_memory(as_float, FRAMES, CH, 22050, 16000, &b, &nb));
  CHECK_EQ_INT(na, nb);
  CHECK(llabs(na - 1600) <= 1);
  if (a && b && na == nb) check_close("wav file vs memory", a, b, na, 1e-7, 0);
  kiln_audio_free(a);
  kiln_audio_free(b);

  /* an empty WAV */
  const char *empty = KILN_BINARY_DIR "/test_audio_empty.wav";
  CHECK(write_wav(empty, NULL, 0, 1, 16000) == 0);
  float *untouched = (float *)0x1;
  int64_t n = -5;
  CHECK_STATUS(kiln_audio_load(empty, 16000, &untouched, &n), KILN_ERR_FORMAT);
  CHECK(strstr(kiln_last_error(), "test_audio_empty.wav") != NULL);
  CHECK(strstr(kiln_last_error(), "no samples") != NULL);
  CHECK(untouched == (float *)0x1 && n == -5);
  remove(path);
  remove(empty);
}

static void check_errors(void) {
  float *out = NULL;
  int64_t n = 0;
  CHECK_STATUS(kiln_audio_load(KILN_SHARED_DATA "/whisper/audio/no_such_file.wav", 16000, &out, &n), KILN_ERR_IO);
  CHECK(strstr(kiln_last_error(), "no_such_file.wav") != NULL);
  CHECK_STATUS(kiln_audio_load(KILN_SHARED_DATA "/whisper/tokenizer-hf/config.json", 16000, &out, &n), KILN_ERR_FORMAT);
  CHECK(strstr(kiln_last_error(), "config.json") != NULL);
  CHECK_STATUS(kiln_audio_load(JFK, 0, &out, &n), KILN_ERR_INVALID_ARG);
  float one = 0.5f;
  CHECK_STATUS(kiln_audio_from_memory(&one, 0, 1, 16000, 16000, &out, &n), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_audio_from_memory(&one, 1, 0, 16000, 16000, &out, &n), KILN_ERR_INVALID_ARG);
  CHECK(out == NULL);
}

int main(void) {
  float *probe = NULL;
  int64_t n = 0;
  if (kiln_audio_load(JFK, 16000, &probe, &n) == KILN_ERR_UNSUPPORTED) SKIP_TEST("kiln built without libsndfile/soxr");
  kiln_audio_free(probe);
  ref_file rf;
  if (ref_file_load(KILN_SOURCE_DIR "/tests/data/mel_refs.bin", &rf) != 0) return 1;
  check_jfk(&rf);
  check_downmix();
  check_resample(44100);
  check_resample(8000);
  check_resample(48000);
  check_wav_file();
  check_errors();
  ref_file_free(&rf);
  return check_report();
}
