/* src/models/whisper/audio.c - audio files and buffers to mono float32 at Whisper's sample rate.
 *
 * What it is: libsndfile decodes (any format it supports), the channels are averaged to mono,
 * and soxr (soxr_oneshot, SOXR_HQ) resamples to the target rate. Samples are float32 in [-1, 1]
 * as libsndfile normalizes them (decoders of lossy formats may overshoot slightly; kiln does
 * not clip).
 * What it is not: a streaming decoder (the whole file is read into memory) or a format sniffer.
 * Without libsndfile (KILN_HAVE_SNDFILE) or soxr (KILN_HAVE_SOXR) the affected calls answer
 * KILN_ERR_UNSUPPORTED.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/audio.h"

#ifdef KILN_HAVE_SNDFILE
#include <sndfile.h>
#endif
#ifdef KILN_HAVE_SOXR
#include <soxr.h>
#endif

void kiln_audio_free(float *samples) { free(samples); }

/* mono[n_frames] = mean over the channels of in[n_frames x channels]. */
static void downmix(const float *in, int64_t n_frames, int32_t channels, float *mono) {
  for (int64_t i = 0; i < n_frames; i++) {
    double acc = 0.0;
    for (int32_t c = 0; c < channels; c++) acc += in[i * channels + c];
    mono[i] = (float)(acc / channels);
  }
}

/* *out[*n_out] = mono[n] resampled from in_rate to out_rate; mono is not freed. */
static kiln_status resample(const float *mono, int64_t n, int32_t in_rate, int32_t out_rate,
                            float **out, int64_t *n_out) {
  if (in_rate == out_rate) {
    float *copy = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!copy) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "audio: out of memory copying %lld samples", (long long)n);
    memcpy(copy, mono, sizeof(float) * (size_t)n);
    *out = copy;
    *n_out = n;
    return KILN_OK;
  }
#ifdef KILN_HAVE_SOXR
  const double ratio = (double)out_rate / (double)in_rate;
  const size_t capacity = (size_t)((double)n * ratio + 1.0) + 1;
  float *buf = malloc(sizeof(float) * capacity);
  if (!buf) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "audio: out of memory resampling %lld samples", (long long)n);
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  size_t done = 0;
  soxr_error_t err = soxr_oneshot((double)in_rate, (double)out_rate, 1, mono, (size_t)n, NULL, buf,
                                  capacity, &done, &io, &quality, NULL);
  if (err) {
    free(buf);
    return kiln_error(KILN_ERR_INTERNAL, "audio: soxr failed resampling %d Hz to %d Hz: %s",
                      (int)in_rate, (int)out_rate, soxr_strerror(err));
  }
  *out = buf;
  *n_out = (int64_t)done;
  return KILN_OK;
#else
  (void)mono;
  (void)out;
  (void)n_out;
  return kiln_error(KILN_ERR_UNSUPPORTED,
                    "audio: resampling %d Hz to %d Hz needs soxr, and kiln was built without it; "
                    "install libsoxr-dev (apt-get install libsoxr-dev) and rebuild kiln, or pass "
                    "audio already at %d Hz",
                    (int)in_rate, (int)out_rate, (int)out_rate);
#endif
}

static kiln_status check_rate(int32_t rate, const char *what) {
  if (rate <= 0 || rate > 1000000)
    return kiln_error(KILN_ERR_INVALID_ARG, "audio: %s must be in 1..1000000 Hz (got %d); Whisper uses 16000",
                      what, (int)rate);
  return KILN_OK;
}

kiln_status kiln_audio_from_memory(const float *in, int64_t n_frames, int32_t channels,
                                   int32_t in_rate, int32_t target_rate, float **samples,
                                   int64_t *n) {
  if (!samples || !n) return kiln_error(KILN_ERR_INVALID_ARG, "audio: samples and n must not be NULL");
  if (channels < 1) return kiln_error(KILN_ERR_INVALID_ARG, "audio: channels must be >= 1 (got %d)", (int)channels);
  if (n_frames <= 0 || !in)
    return kiln_error(KILN_ERR_INVALID_ARG, "audio: the buffer is empty (%lld frames); pass at least one sample",
                      (long long)n_frames);
  KILN_TRY(check_rate(in_rate, "in_rate"));
  KILN_TRY(check_rate(target_rate, "target_rate"));
  float *mono = malloc(sizeof(float) * (size_t)n_frames);
  if (!mono) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "audio: out of memory for %lld samples", (long long)n_frames);
  downmix(in, n_frames, channels, mono);
  kiln_status s = resample(mono, n_frames, in_rate, target_rate, samples, n);
  free(mono);
  return s;
}

#ifdef KILN_HAVE_SNDFILE
/* Open path with libsndfile, telling a missing file from an unreadable one. */
static kiln_status open_sndfile(const char *path, SNDFILE **file, SF_INFO *info) {
  FILE *probe = fopen(path, "rb");
  if (!probe) {
    int e = errno;
    return kiln_error(KILN_ERR_IO, "audio: cannot open '%s': %s; check the path and permissions",
                      path, strerror(e));
  }
  fclose(probe);
  memset(info, 0, sizeof *info);
  *file = sf_open(path, SFM_READ, info);
  if (!*file)
    return kiln_error(KILN_ERR_FORMAT,
                      "audio: cannot decode '%s': %s; use WAV, FLAC, OGG/Vorbis, Opus or MP3 "
                      "(libsndfile %s), or convert it, e.g. ffmpeg -i in -ar 16000 -ac 1 out.wav",
                      path, sf_strerror(NULL), sf_version_string());
  return KILN_OK;
}

/* *pcm[*n_frames x info->channels] = every frame of the open file. */
static kiln_status read_all_frames(const char *path, SNDFILE *file, const SF_INFO *info,
                                   float **pcm, int64_t *n_frames) {
  if (info->frames <= 0 || info->channels <= 0)
    return kiln_error(KILN_ERR_FORMAT, "audio: '%s' holds no samples (0 frames); pass a file with audio in it", path);
  if (info->samplerate <= 0)
    return kiln_error(KILN_ERR_FORMAT, "audio: '%s' declares sample rate %d; the file is damaged", path, info->samplerate);
  const size_t count = (size_t)info->frames * (size_t)info->channels;
  float *buf = malloc(sizeof(float) * count);
  if (!buf) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "audio: out of memory reading '%s' (%zu samples)", path, count);
  sf_count_t got = sf_readf_float(file, buf, info->frames);
  if (got <= 0) {
    free(buf);
    return kiln_error(KILN_ERR_FORMAT, "audio: '%s' could not be decoded (%s); the file may be damaged",
                      path, sf_strerror(file));
  }
  *pcm = buf;
  *n_frames = (int64_t)got;
  return KILN_OK;
}
#endif

kiln_status kiln_audio_load(const char *path, int32_t target_rate, float **samples, int64_t *n) {
  if (!path || !samples || !n) return kiln_error(KILN_ERR_INVALID_ARG, "audio: path, samples and n must not be NULL");
  KILN_TRY(check_rate(target_rate, "target_rate"));
#ifdef KILN_HAVE_SNDFILE
  SNDFILE *file = NULL;
  SF_INFO info;
  KILN_TRY(open_sndfile(path, &file, &info));
  float *pcm = NULL;
  int64_t n_frames = 0;
  kiln_status s = read_all_frames(path, file, &info, &pcm, &n_frames);
  sf_close(file);
  if (s != KILN_OK) return s;
  s = kiln_audio_from_memory(pcm, n_frames, info.channels, info.samplerate, target_rate, samples, n);
  free(pcm);
  if (s != KILN_OK) return kiln_error_context(s, "audio: '%s': ", path);
  return KILN_OK;
#else
  return kiln_error(KILN_ERR_UNSUPPORTED,
                    "audio: cannot read '%s': kiln was built without libsndfile; install "
                    "libsndfile1-dev and libsoxr-dev (apt-get install libsndfile1-dev libsoxr-dev) "
                    "and rebuild kiln, or decode the audio yourself and use kiln_audio_from_memory()",
                    path);
#endif
}
