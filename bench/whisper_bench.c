/* bench/whisper_bench.c - times kiln's Whisper engines on random 30 s windows: encoder, then a
 * fixed number of greedy decoding steps (argmax on the host, as a decoding loop would), per
 * window, one window at a time. Prints ms per window, ms per decoding step, the real-time factor
 * (wall time over 30 s of audio per window) and GPU memory (the runtime's planned bytes and, for
 * CUDA engines, the device memory in use measured with cudaMemGetInfo).
 *
 * usage: whisper_bench ENGINE_DIR [--windows N] [--steps N] [--warmup N]
 * Used by bench/whisper_vs_transformers.py; not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "kiln/whisper.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>
#endif

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static size_t device_used(void) {
#ifdef KILN_HAVE_CUDA
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) == cudaSuccess) return total - free_b;
#endif
  return 0;
}

/* One window: encode, the start sequence, then `steps` greedy tokens; adds the encoder's and the
 * decoding loop's wall times to *enc_ms and *dec_ms. */
static kiln_status run_window(kiln_whisper *w, const float *mel, int steps, float *logits, int32_t vocab,
                              const int32_t *sot, int32_t n_sot, double *enc_ms, double *dec_ms) {
  double t0 = now_ms();
  kiln_status s = kiln_whisper_encode(w, mel, NULL);
  double t1 = now_ms();
  if (s == KILN_OK) s = kiln_whisper_decode(w, sot, n_sot, NULL);
  int32_t tok = sot[n_sot - 1];
  for (int i = 0; s == KILN_OK && i < steps; i++) {
    s = kiln_whisper_decode(w, &tok, 1, logits);
    int32_t best = 0;
    for (int32_t v = 1; v < vocab; v++)
      if (logits[v] > logits[best]) best = v;
    tok = best;
  }
  *enc_ms += t1 - t0;
  *dec_ms += now_ms() - t1;
  return s;
}

int main(int argc, char **argv) {
  int windows = 4, steps = 100, warmup = 1;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--windows") && i + 1 < argc) windows = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
    else dir = argv[i];
  }
  if (!dir || windows < 1 || steps < 1) {
    fprintf(stderr, "usage: whisper_bench ENGINE_DIR [--windows N] [--steps N] [--warmup N]\n");
    return 2;
  }
  size_t before = device_used();
  kiln_whisper *w = NULL;
  kiln_status s = kiln_whisper_load(dir, NULL, &w);
  if (s != KILN_OK) {
    fprintf(stderr, "whisper_bench: %s\n", kiln_last_error());
    return 1;
  }
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int32_t vocab = c->vocab_size, n_mel = c->n_mels;
  /* <|startoftranscript|> <|en|>: the timing does not depend on which tokens follow */
  int32_t sot[2] = {c->sot, c->sot + 1};
  int32_t n_sot = 2;
  float *mel = malloc(sizeof(float) * (size_t)n_mel * 3000), *logits = malloc(sizeof(float) * (size_t)vocab);
  uint64_t x = 12345;
  for (int64_t i = 0; i < (int64_t)n_mel * 3000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    mel[i] = (float)((x >> 40) & 0xffff) / 32768.0f - 1.0f;
  }
  size_t peak = 0;
  double enc_ms = 0, dec_ms = 0;
  for (int i = 0; i < warmup && s == KILN_OK; i++) s = run_window(w, mel, steps, logits, vocab, sot, n_sot, &enc_ms, &dec_ms);
  enc_ms = dec_ms = 0;
  for (int i = 0; i < windows && s == KILN_OK; i++) {
    s = run_window(w, mel, steps, logits, vocab, sot, n_sot, &enc_ms, &dec_ms);
    size_t used = device_used();
    if (used > peak) peak = used;
  }
  if (s != KILN_OK) {
    fprintf(stderr, "whisper_bench: %s\n", kiln_last_error());
    return 1;
  }
  double per_window = (enc_ms + dec_ms) / windows;
  printf("kiln windows %d steps %d ms_per_window %.2f encoder_ms %.2f ms_per_step %.3f rtf %.5f planned_bytes %lld "
         "device_used_delta_bytes %lld\n",
         windows, steps, per_window, enc_ms / windows, dec_ms / windows / (steps + 1), per_window / 30000.0,
         (long long)kiln_whisper_device_bytes(w), (long long)(peak > before ? peak - before : 0));
  free(mel), free(logits);
  kiln_whisper_destroy(w);
  return 0;
}
