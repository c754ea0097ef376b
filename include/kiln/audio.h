/* kiln/audio.h - Whisper's audio front end: audio files -> 16 kHz mono -> log-mel spectrogram.
 *
 * Usage:
 *   float *pcm; int64_t n;
 *   kiln_audio_load("speech.flac", KILN_WHISPER_SAMPLE_RATE, &pcm, &n);   // mono, [-1, 1]
 *   float *mel = malloc(sizeof(float) * 80 * KILN_WHISPER_CHUNK_FRAMES);
 *   kiln_mel_compute_window(pcm, n, 80, mel);       // [80 x 3000]: the first 30 s, padded
 *   kiln_audio_free(pcm); free(mel);
 *
 * Audio files: whatever the linked libsndfile can read (WAV, FLAC, OGG/Vorbis, Opus, and MP3
 * from libsndfile 1.1 on). Any channel count is down-mixed to mono (mean of the channels) and
 * resampled with soxr (high quality) to the target rate. kiln built without libsndfile or soxr
 * answers KILN_ERR_UNSUPPORTED with a hint on how to install them.
 *
 * Log-mel spectrogram: identical to openai-whisper's log_mel_spectrogram() and to transformers'
 * WhisperFeatureExtractor: periodic Hann window of 400 samples, hop 160, n_fft 400, frames centred
 * with reflect padding of 200 samples on each side, the last frame dropped, power spectrum,
 * openai-whisper's mel filterbanks (80 or 128 mel bins, built into kiln), log10(max(x, 1e-10)),
 * floored at (max over the whole input passed in - 8), then (x + 4) / 4. Output layout is
 * [n_mels x n_frames], row-major (one row per mel bin), as Whisper's encoder takes it.
 * The CPU implementation computes the FFT in double precision.
 *
 * On the GPU (kiln built with CUDA): src/models/whisper/mel_cuda.h (internal, used by the
 * Whisper runtime) computes the same spectrogram of a whole file on the device (cuFFT, double
 * precision up to the log) and copies 30 s windows of it, zero-padded, into the encoder's input
 * in fp32/fp16/bf16. tests/gpu/test_mel_gpu.c checks it against kiln_mel_compute() on noise,
 * sines, chirps and a click (201 samples to 95 s, with and without 30 s of padding, 80 and 128
 * bins; max error 1e-4 required, ~1e-7 expected), its windows against CPU slices, fp16/bf16
 * outputs within one rounding, jfk.flac, and prints its speed per 30 s and per 10 minutes.
 *
 * Ownership: sample buffers returned by kiln_audio_* belong to the caller; free them with
 * kiln_audio_free(). Mel output buffers are allocated by the caller (size them with
 * kiln_mel_n_frames()). On error, outputs are left untouched.
 * Thread-safety: every function here is stateless and may be called from any thread.
 */
#ifndef KILN_AUDIO_H
#define KILN_AUDIO_H

#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_WHISPER_SAMPLE_RATE 16000
#define KILN_WHISPER_N_FFT 400
#define KILN_WHISPER_HOP_LENGTH 160
#define KILN_WHISPER_CHUNK_SAMPLES 480000 /* 30 s at 16 kHz: openai-whisper's N_SAMPLES */
#define KILN_WHISPER_CHUNK_FRAMES 3000    /* mel frames in 30 s: N_FRAMES */

/* Decode an audio file to mono float32 at target_rate (16000 for Whisper).
 * *samples ([*n]) is allocated by kiln; free it with kiln_audio_free().
 * Errors: KILN_ERR_IO (missing or unreadable file), KILN_ERR_FORMAT (not an audio format the
 * linked libsndfile reads, or a file with no samples), KILN_ERR_UNSUPPORTED (built without
 * libsndfile/soxr), KILN_ERR_INVALID_ARG, KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_audio_load(const char *path, int32_t target_rate, float **samples, int64_t *n);

/* The same from memory: `in` holds n_frames frames of `channels` interleaved float samples at
 * in_rate. Down-mixes to mono and resamples to target_rate (a copy when the rates match).
 * Needs soxr only when the rates differ. */
kiln_status kiln_audio_from_memory(const float *in, int64_t n_frames, int32_t channels,
                                   int32_t in_rate, int32_t target_rate, float **samples,
                                   int64_t *n);

/* Free a buffer returned by kiln_audio_load() / kiln_audio_from_memory(). NULL is fine. */
void kiln_audio_free(float *samples);

/* Number of mel frames for n_samples input samples: n_samples / 160 (centred frames, the last
 * one dropped), e.g. 3000 for 480000 samples. */
int64_t kiln_mel_n_frames(int64_t n_samples);

/* Log-mel spectrogram of samples[n_samples] followed by pad_zeros zero samples (openai-whisper's
 * `padding` argument; pass 0 for none). n_mels is 80 or 128. The total length must exceed 200
 * samples (reflect padding). out: [n_mels x kiln_mel_n_frames(n_samples + pad_zeros)]. */
kiln_status kiln_mel_compute(const float *samples, int64_t n_samples, int64_t pad_zeros,
                             int32_t n_mels, float *out);

/* Log-mel spectrogram of one 30 s window: samples are zero-padded or trimmed to 480000
 * (openai-whisper's pad_or_trim) first. out: [n_mels x 3000]. */
kiln_status kiln_mel_compute_window(const float *samples, int64_t n_samples, int32_t n_mels,
                                    float *out);

/* The dense mel filterbank kiln uses: out [n_mels x 201] (for other backends and for tests). */
kiln_status kiln_mel_filters(int32_t n_mels, float *out);

#ifdef __cplusplus
}
#endif
#endif /* KILN_AUDIO_H */
