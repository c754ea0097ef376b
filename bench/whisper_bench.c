/* bench/whisper_bench.c - times kiln's Whisper engines on random 30 s windows decoded as one
 * batch: kiln_whisper_transcribe_batch with exactly --steps greedy tokens per window (EOT
 * suppressed until then, as transformers' min_new_tokens), after a warm-up run that captures the
 * CUDA graphs. The encoder alone is timed separately (kiln_whisper_encode_batch) and the rest
 * divided by the steps gives the decoding step time. Prints ms per batch and per window, RTF
 * (wall time over the audio's 30 s per window), decode tokens/s, GPU memory (planned by the
 * runtime; in use per cudaMemGetInfo) and the memory-bandwidth floor of a step: the bytes a step
 * reads (decoder weights, cross-attention keys/values of every window, the half-full self
 * cache) over the bandwidth of a 1 GiB device-to-device copy.
 *
 * usage: whisper_bench ENGINE_DIR [--batch N] [--steps N] [--reps N]
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

/* Device bandwidth for the floor: a device-to-device copy of 1 GiB reads and writes it once. */
static double device_gbps(void) {
#ifdef KILN_HAVE_CUDA
  size_t bytes = (size_t)1 << 30;
  void *a = NULL, *b = NULL;
  cudaEvent_t e0, e1;
  float ms = 0;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    return 0;
  }
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e0, 0);
  for (int i = 0; i < 5; i++) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1, 0);
  cudaEventSynchronize(e1);
  cudaEventElapsedTime(&ms, e0, e1);
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  cudaFree(a), cudaFree(b);
  return ms > 0 ? 2.0 * 5 * (double)bytes / (ms * 1e-3) / 1e9 : 0;
#else
  return 0;
#endif
}

int main(int argc, char **argv) {
  int batch = 1, steps = 100, reps = 3;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else dir = argv[i];
  }
  if (!dir || batch < 1 || steps < 1 || reps < 1) {
    fprintf(stderr, "usage: whisper_bench ENGINE_DIR [--batch N] [--steps N] [--reps N]\n");
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
  size_t n_mel = (size_t)c->n_mels * 3000;
  float *mel = malloc(sizeof(float) * n_mel * (size_t)batch);
  kiln_whisper_result **res = calloc((size_t)batch, sizeof *res);
  uint64_t x = 12345;
  for (size_t i = 0; i < n_mel * (size_t)batch; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    mel[i] = (float)((x >> 40) & 0xffff) / 32768.0f - 1.0f;
  }
  kiln_whisper_decode_params p = kiln_whisper_default_decode_params();
  p.max_new_tokens = p.min_new_tokens = steps;
  size_t peak = 0;
  double total = 0, enc = 0;
  for (int i = 0; i <= reps && s == KILN_OK; i++) { /* the first run warms up (graph capture) */
    double t0 = now_ms();
    s = kiln_whisper_transcribe_batch(w, mel, batch, &p, res);
    double t1 = now_ms();
    if (s == KILN_OK) {
      for (int b = 0; b < batch; b++)
        if (res[b]->n_tokens != steps) s = KILN_ERR_INTERNAL;
      kiln_whisper_results_free(res, batch);
    }
    if (s == KILN_OK) s = kiln_whisper_encode_batch(w, mel, batch, NULL);
    if (s == KILN_OK) s = kiln_whisper_cache_length(w) == 0 ? KILN_OK : KILN_ERR_INTERNAL;
#ifdef KILN_HAVE_CUDA
    cudaDeviceSynchronize();
#endif
    double t2 = now_ms();
    if (i) total += t1 - t0, enc += t2 - t1;
    size_t used = device_used();
    if (used > peak) peak = used;
  }
  if (s != KILN_OK) {
    fprintf(stderr, "whisper_bench: %s\n", s == KILN_ERR_INTERNAL ? "wrong token count" : kiln_last_error());
    return 1;
  }
  total /= reps, enc /= reps;
  double step = (total - enc) / (steps + 1);
  /* what one step must read: decoder weights, every window's cross-attention keys/values, and
   * the self-attention cache (about half full on average) */
  double esz = 2.0, L = c->decoder_layers, d = c->d_model;
  double bytes = (double)kiln_whisper_decoder_weight_bytes(w) + batch * L * 2 * c->n_audio_ctx * d * esz +
                 batch * L * 2 * (steps / 2.0 + 4) * d * esz;
  double gbps = device_gbps(), floor_ms = gbps > 0 ? bytes / (gbps * 1e9) * 1e3 : 0;
  printf("kiln batch %d steps %d ms_per_batch %.2f ms_per_window %.2f encoder_ms %.2f ms_per_step %.3f rtf %.5f "
         "tokens_per_s %.1f planned_bytes %lld device_used_delta_bytes %lld step_bytes %.0f device_gbps %.0f "
         "floor_ms %.3f step_over_floor %.2f\n",
         batch, steps, total, total / batch, enc, step, total / batch / 30000.0, batch * steps / (total / 1e3),
         (long long)kiln_whisper_device_bytes(w), (long long)(peak > before ? peak - before : 0), bytes, gbps, floor_ms,
         floor_ms > 0 ? step / floor_ms : 0);
  free(mel), free(res);
  kiln_whisper_destroy(w);
  return 0;
}
