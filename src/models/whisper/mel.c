/* src/models/whisper/mel.c - Whisper's log-mel spectrogram on the CPU (the reference backend).
 *
 * What it is: openai-whisper's log_mel_spectrogram() in C: periodic Hann window (400), hop 160,
 * centred frames with reflect padding, |STFT|^2 with the last frame dropped, the built-in mel
 * filterbanks (mel_filters_data.c), log10(max(x, 1e-10)), floor at max - 8, (x + 4) / 4.
 * The FFT is a small mixed-radix (4*4*5*5 = 400) complex FFT in double precision, in the style
 * of kissfft's generic butterfly: plain and exact enough (error ~1e-12), not the fastest.
 * What it is not: a general FFT library, or the GPU version (that one reuses kiln_mel_filters()).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/audio.h"
#include "models/whisper/mel_filters.h"

enum { N_FFT = KILN_WHISPER_N_FFT, HOP = KILN_WHISPER_HOP_LENGTH, N_BINS = N_FFT / 2 + 1 };

typedef struct cpx {
  double re, im;
} cpx;

/* Factors of N_FFT as (radix, remaining length) pairs, as kissfft stores them. */
static const int fft_factors[] = {4, 100, 4, 25, 5, 5, 5, 1};

typedef struct mel_plan {
  cpx twiddle[N_FFT];  /* exp(-2 pi i k / N_FFT) */
  double window[N_FFT]; /* periodic Hann */
} mel_plan;

static void plan_init(mel_plan *p) {
  const double two_pi = 6.283185307179586476925286766559;
  for (int k = 0; k < N_FFT; k++) {
    double phase = -two_pi * k / N_FFT;
    p->twiddle[k].re = cos(phase);
    p->twiddle[k].im = sin(phase);
    p->window[k] = 0.5 - 0.5 * cos(two_pi * k / N_FFT);
  }
}

/* out[k * m + u] for k < p: p DFTs of length m combined into one of length p * m. */
static void fft_butterfly(cpx *out, const mel_plan *plan, int fstride, int m, int p) {
  cpx scratch[5];
  for (int u = 0; u < m; u++) {
    for (int q = 0, k = u; q < p; q++, k += m) scratch[q] = out[k];
    for (int q1 = 0, k = u; q1 < p; q1++, k += m) {
      cpx acc = scratch[0];
      int tw = 0;
      for (int q = 1; q < p; q++) {
        tw += fstride * k;
        if (tw >= N_FFT) tw -= N_FFT;
        const cpx w = plan->twiddle[tw];
        acc.re += scratch[q].re * w.re - scratch[q].im * w.im;
        acc.im += scratch[q].re * w.im + scratch[q].im * w.re;
      }
      out[k] = acc;
    }
  }
}

/* Recursive decimation in time: out[len] = DFT of in[0], in[fstride], in[2 fstride], ... */
static void fft_work(cpx *out, const cpx *in, int fstride, const int *factors,
                     const mel_plan *plan) {
  const int p = factors[0], m = factors[1];
  if (m == 1) {
    for (int j = 0; j < p; j++) out[j] = in[j * fstride];
  } else {
    for (int j = 0; j < p; j++) fft_work(out + j * m, in + j * fstride, fstride * p, factors + 2, plan);
  }
  fft_butterfly(out, plan, fstride, m, p);
}

/* Sample i of the padded signal (x[0..n_avail) then zeros up to total), reflected at the ends
 * as torch.stft(center=True, pad_mode="reflect") does. Needs total > N_FFT / 2. */
static double padded_sample(const float *x, int64_t n_avail, int64_t total, int64_t i) {
  if (i < 0) i = -i;
  if (i >= total) i = 2 * (total - 1) - i;
  return i < n_avail ? (double)x[i] : 0.0;
}

/* power[N_BINS] = |FFT(window * frame t)|^2. */
static void frame_power(const mel_plan *plan, const float *x, int64_t n_avail, int64_t total,
                        int64_t t, double *power) {
  cpx in[N_FFT], out[N_FFT];
  const int64_t first = t * HOP - N_FFT / 2;
  for (int j = 0; j < N_FFT; j++) {
    in[j].re = plan->window[j] * padded_sample(x, n_avail, total, first + j);
    in[j].im = 0.0;
  }
  fft_work(out, in, 1, fft_factors, plan);
  for (int k = 0; k < N_BINS; k++) power[k] = out[k].re * out[k].re + out[k].im * out[k].im;
}

static const kiln_mel_bank *bank_for(int32_t n_mels) {
  if (n_mels == 80) return &kiln_mel_bank_80;
  if (n_mels == 128) return &kiln_mel_bank_128;
  return NULL;
}

/* log10 mel energies of one frame into column t of logmel [n_mels x n_frames]; returns the max. */
static double frame_logmel(const kiln_mel_bank *bank, const double *power, int64_t t,
                           int64_t n_frames, double *logmel) {
  double frame_max = -INFINITY;
  const float *w = bank->values;
  for (int32_t r = 0; r < bank->n_mels; r++) {
    double acc = 0.0;
    for (int16_t j = 0; j < bank->count[r]; j++) acc += (double)w[j] * power[bank->start[r] + j];
    w += bank->count[r];
    double v = log10(acc > 1e-10 ? acc : 1e-10);
    logmel[(int64_t)r * n_frames + t] = v;
    if (v > frame_max) frame_max = v;
  }
  return frame_max;
}

/* The whole pipeline over a padded signal of `total` samples, x[0..n_avail) then zeros. */
static kiln_status mel_run(const float *x, int64_t n_avail, int64_t total, int32_t n_mels,
                           float *out) {
  const kiln_mel_bank *bank = bank_for(n_mels);
  const int64_t n_frames = kiln_mel_n_frames(total);
  double *logmel = malloc(sizeof(double) * (size_t)n_mels * (size_t)n_frames); /* [n_mels x n_frames] */
  mel_plan *plan = malloc(sizeof *plan);
  if (!logmel || !plan) {
    free(logmel);
    free(plan);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "log-mel spectrogram of %lld frames: out of memory",
                      (long long)n_frames);
  }
  plan_init(plan);
  double global_max = -INFINITY, power[N_BINS];
  for (int64_t t = 0; t < n_frames; t++) {
    frame_power(plan, x, n_avail, total, t, power);
    double m = frame_logmel(bank, power, t, n_frames, logmel);
    if (m > global_max) global_max = m;
  }
  const double floor_value = global_max - 8.0;
  const int64_t count = (int64_t)n_mels * n_frames;
  for (int64_t i = 0; i < count; i++) {
    double v = logmel[i] > floor_value ? logmel[i] : floor_value;
    out[i] = (float)((v + 4.0) / 4.0);
  }
  free(plan);
  free(logmel);
  return KILN_OK;
}

int64_t kiln_mel_n_frames(int64_t n_samples) { return n_samples > 0 ? n_samples / HOP : 0; }

static kiln_status check_mel_args(const float *samples, int64_t n_samples, int32_t n_mels,
                                  const float *out) {
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "log-mel: out is NULL; pass a buffer of n_mels x n_frames floats");
  if (n_samples < 0) return kiln_error(KILN_ERR_INVALID_ARG, "log-mel: n_samples must be >= 0 (got %lld)", (long long)n_samples);
  if (n_samples > 0 && !samples) return kiln_error(KILN_ERR_INVALID_ARG, "log-mel: samples is NULL but n_samples is %lld", (long long)n_samples);
  if (!bank_for(n_mels))
    return kiln_error(KILN_ERR_INVALID_ARG, "log-mel: n_mels must be 80 or 128 (got %d); large-v3 models use 128, the others 80", (int)n_mels);
  return KILN_OK;
}

kiln_status kiln_mel_compute(const float *samples, int64_t n_samples, int64_t pad_zeros,
                             int32_t n_mels, float *out) {
  KILN_TRY(check_mel_args(samples, n_samples, n_mels, out));
  if (pad_zeros < 0) return kiln_error(KILN_ERR_INVALID_ARG, "log-mel: pad_zeros must be >= 0 (got %lld)", (long long)pad_zeros);
  const int64_t total = n_samples + pad_zeros;
  if (total <= N_FFT / 2)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "log-mel: the input has %lld samples, but reflect padding needs more than %d; "
                      "pad the audio (pad_zeros) or use kiln_mel_compute_window()",
                      (long long)total, N_FFT / 2);
  return mel_run(samples, n_samples, total, n_mels, out);
}

kiln_status kiln_mel_compute_window(const float *samples, int64_t n_samples, int32_t n_mels,
                                    float *out) {
  KILN_TRY(check_mel_args(samples, n_samples, n_mels, out));
  const int64_t total = KILN_WHISPER_CHUNK_SAMPLES;
  const int64_t n_avail = n_samples < total ? n_samples : total;
  return mel_run(samples, n_avail, total, n_mels, out);
}

kiln_status kiln_mel_filters(int32_t n_mels, float *out) {
  const kiln_mel_bank *bank = bank_for(n_mels);
  if (!bank) return kiln_error(KILN_ERR_INVALID_ARG, "mel filters: n_mels must be 80 or 128 (got %d)", (int)n_mels);
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "mel filters: out is NULL; pass n_mels x 201 floats");
  memset(out, 0, sizeof(float) * (size_t)n_mels * N_BINS);
  const float *w = bank->values;
  for (int32_t r = 0; r < n_mels; r++) {
    for (int16_t j = 0; j < bank->count[r]; j++) out[(int64_t)r * N_BINS + bank->start[r] + j] = w[j];
    w += bank->count[r];
  }
  return KILN_OK;
}
