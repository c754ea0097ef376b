/* bench/whisper_bench.c - times kiln's Whisper engines on random 30 s windows decoded as one
 * batch: kiln_whisper_transcribe_batch with exactly --steps greedy tokens per window (EOT
 * suppressed until then, as transformers' min_new_tokens), after a warm-up run that captures the
 * CUDA graphs. The encoder alone is timed separately (kiln_whisper_encode_batch) and the rest
 * divided by the steps gives the decoding step time. Prints ms per batch and per window, RTF
 * (wall time over the audio's 30 s per window), decode tokens/s, GPU memory (planned by the
 * runtime; in use per cudaMemGetInfo) and the memory-bandwidth floor of a step: the bytes a step
 * reads over the bandwidth of a 1 GiB device-to-device copy. Those bytes come from the engines,
 * not from a formula of the precision: the decoder engine's weights as stored (int8/int4 codes
 * and their scales after --weight-only; the tied embedding table, read whole by the output
 * projection, counted once), plus, from the decoder engine's declared inputs (dtype and dims),
 * every window's cross-attention keys/values and the self-attention caches at their average
 * length over the steps, with their scales when the KV cache is int8.
 *
 * --dump-logits FILE: instead of timing, encodes the first random window and feeds a forced
 * sequence (<|startoftranscript|> then --steps seeded random text tokens, the same for every
 * engine), one token per decoder step through the KV cache, and writes the logits of every
 * step [steps + 1, vocab] as fp32 .npy: bench/whisper_vs_transformers.py compares quantized
 * engines with fp16 on it.
 *
 * --stream-encoder-weights [MiB]: the encoder engine loaded with weight streaming (its weights in
 * pinned host memory, copied through a ring of MiB, default about two encoder layers' weights, as
 * kiln transcribe's flag); planned_bytes then counts the ring instead of the encoder's weights.
 *
 * --max-text-tokens N: self-attention caches of N tokens per row (kiln_whisper_load_params), for
 * memory at a job's decoding length; the run needs N >= steps + the 4 prompt tokens.
 *
 * --chain-trace: where the decoding step's persistent kernel (src/backends/cuda/chain.cu) spends
 * its time, from the last step's kiln_cuda_chain_trace record: per position in a decoder layer
 * (Whisper's 8 decoder phases; 0 is the layernorm + qkv matmul), averaged over the layers, the
 * phase's span (first block past its wait to last block done), the gap before it (the phase
 * before ending to this one starting), and per block the wait, first unit and remaining units.
 *
 * usage: whisper_bench ENGINE_DIR [--batch N] [--steps N] [--reps N] [--dump-logits FILE]
 *                     [--stream-encoder-weights [MiB]] [--max-text-tokens N] [--chain-trace]
 * Used by bench/whisper_vs_transformers.py; not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "kiln/npy.h"
#include "kiln/whisper.h"

#ifdef KILN_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backends/cuda/cuda_ops.h"
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

/* The dense fp16 GEMM rate the encoder is judged against (issue 5: encoder throughput at least
 * 60% of it): cuBLAS fp16 x fp16 -> fp16 with fp32 accumulation at the shape of the encoder's
 * widest matmul at this batch (M = batch x 1500 rows, N = 4 x d_model, K = d_model: the MLP's
 * first layer), best of 20 timed calls after a warm-up, in TFLOP/s. 0 when it cannot be run. */
static double dense_gemm_tflops(int64_t m, int64_t n, int64_t k) {
#ifdef KILN_HAVE_CUDA
  void *a = NULL, *b = NULL, *c = NULL;
  cublasHandle_t h = NULL;
  cudaEvent_t e0 = NULL, e1 = NULL;
  double best = 0;
  if (cudaMalloc(&a, (size_t)(m * k) * 2) != cudaSuccess || cudaMalloc(&b, (size_t)(k * n) * 2) != cudaSuccess ||
      cudaMalloc(&c, (size_t)(m * n) * 2) != cudaSuccess || cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
    goto done;
  cudaMemset(a, 0x3c, (size_t)(m * k) * 2), cudaMemset(b, 0x3c, (size_t)(k * n) * 2); /* 1.0-ish halves */
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  const float one = 1.0f, zero = 0.0f;
  for (int i = 0; i < 21; i++) {
    float ms = 0;
    cudaEventRecord(e0, 0);
    /* column-major C[n x m] = B[n x k] * A[k x m]: the row-major [m, n] = [m, k] x [k, n] */
    if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, b, CUDA_R_16F, (int)n, a, CUDA_R_16F,
                     (int)k, &zero, c, CUDA_R_16F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) !=
        CUBLAS_STATUS_SUCCESS)
      break;
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&ms, e0, e1);
    double tf = ms > 0 ? 2.0 * (double)m * (double)n * (double)k / (ms * 1e-3) / 1e12 : 0;
    if (i && tf > best) best = tf;
  }
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (h) cublasDestroy(h);
  cudaFree(a), cudaFree(b), cudaFree(c);
  return best;
#else
  (void)m, (void)n, (void)k;
  return 0;
#endif
}

/* The encoder's floating-point operations for one 30 s window (multiply-adds count 2): the two
 * convolutions of the stem (3000 and 1500 frames), per layer the q/k/v/out projections, the MLP
 * and attention's two products over 1500 positions, and the cross-attention keys/values of
 * every decoder layer, which the encoder engine computes. */
static double encoder_flops(const kiln_whisper_config *c) {
  double d = c->d_model, t = c->n_audio_ctx;
  double stem = 2.0 * c->n_mels * 3 * d * 2 * t + 2.0 * d * 3 * d * t;
  double layer = 2.0 * 4 * d * d * t + 2.0 * 2 * d * c->encoder_ffn * t + 2.0 * 2 * t * t * d;
  double cross = (double)c->decoder_layers * 2 * 2.0 * d * d * t;
  return stem + c->encoder_layers * layer + cross;
}

/* Bytes one decoding step of `batch` rows reads from the KV tensors of the decoder engine in
 * ENGINE_DIR: every input named cache_* (self-attention caches and their scales, [rows, H,
 * positions(, Dh)], positions dynamic) over `cached` positions, and every cross_* one
 * (cross-attention keys/values and scales, [windows, H, 1500(, Dh)]) whole, in the dtypes the
 * engine declares. The engine is opened for inspection only (no GPU memory). -1 when it cannot
 * be read. */
static double kv_step_bytes(const char *dir, int batch, double cached) {
  char path[4096];
  snprintf(path, sizeof path, "%s/decoder.engine", dir);
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.skip_device_check = 1;
  kiln_engine *e = NULL;
  if (kiln_engine_load(path, &lp, &e) != KILN_OK) return -1;
  double total = 0;
  for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
    kiln_io_info info;
    if (kiln_engine_io(e, i, &info) != KILN_OK) {
      total = -1;
      break;
    }
    int self = strncmp(info.name, "cache_", 6) == 0, cross = strncmp(info.name, "cross_", 6) == 0;
    if (!info.is_input || (!self && !cross)) continue;
    double row = (double)kiln_dtype_bytes(info.dtype, 1); /* int8 codes 1 B; scales and floats their size */
    int ok = info.dims.rank >= 3;
    for (int32_t d = 1; d < info.dims.rank; d++) {
      if (self && d == 2) { /* the caches' positions are dynamic (up to n_text_ctx): the cached ones */
        row *= cached;
        continue;
      }
      ok = ok && info.dims.d[d] > 0; /* otherwise only the rows are dynamic */
      row *= (double)info.dims.d[d];
    }
    if (!ok) {
      total = -1;
      break;
    }
    total += batch * row;
  }
  kiln_engine_destroy(e);
  return total;
}

/* The --dump-logits mode: <|startoftranscript|> and `steps` seeded random text tokens (below
 * <|endoftext|>) decoded one at a time after encoding mel [n_mels x 3000]; logits [steps + 1,
 * vocab] fp32 -> path (.npy). */
static kiln_status dump_logits(kiln_whisper *w, const float *mel, int steps, const char *path) {
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  size_t vocab = (size_t)c->vocab_size, n = (size_t)steps + 1;
  float *logits = malloc(sizeof(float) * n * vocab);
  if (!logits) return KILN_ERR_OUT_OF_MEMORY;
  kiln_status s = kiln_whisper_encode(w, mel, NULL);
  uint64_t x = 0x2545F4914F6CDD1Dull;
  int32_t token = c->sot;
  for (size_t i = 0; i < n && s == KILN_OK; i++) {
    s = kiln_whisper_decode(w, &token, 1, logits + i * vocab);
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    token = (int32_t)((x >> 11) % (uint64_t)c->eot);
  }
  kiln_dims d = {2, {(int64_t)n, (int64_t)vocab}};
  if (s == KILN_OK) s = kiln_npy_write(path, KILN_DTYPE_FP32, &d, logits);
  free(logits);
  return s;
}

#ifdef KILN_HAVE_CUDA
#define TRACE_LAYERS 1024
#define TRACE_WORDS KILN_CUDA_CHAIN_TRACE_WORDS

/* The chain trace (see the top of the file) of the last decoding step, summarized. */
static void print_chain_trace(const uint32_t *dev, int sms, double step_ms) {
  size_t n = (size_t)TRACE_LAYERS * sms * TRACE_WORDS;
  uint32_t *t = malloc(n * sizeof *t);
  if (!t || cudaMemcpy(t, dev, n * sizeof *t, cudaMemcpyDeviceToHost) != cudaSuccess) {
    fprintf(stderr, "whisper_bench: --chain-trace: cannot read the trace\n");
    free(t);
    return;
  }
  double span[8] = {0}, gap[8] = {0}, wait[8] = {0}, first[8] = {0}, rest[8] = {0}, units[8] = {0};
  int count[8] = {0}, kind[8] = {0}, layers = 0;
  uint32_t prev_end = 0, t_begin = 0, t_end = 0, t_last = 0;
  for (size_t i = 0; i < (size_t)TRACE_LAYERS * sms; i++) /* the last step's end */
    if (t[i * TRACE_WORDS + 7] && (!t_last || (int32_t)(t[i * TRACE_WORDS + 3] - t_last) > 0)) t_last = t[i * TRACE_WORDS + 3];
  for (int L = 0; L < TRACE_LAYERS; L++) {
    uint32_t lo = UINT32_MAX, hi = 0, nb = 0, nu = 0, k = 0;
    double w = 0, f = 0, r = 0;
    for (int b = 0; b < sms; b++) {
      const uint32_t *e = t + ((size_t)L * sms + b) * TRACE_WORDS;
      if (!e[7] || (double)(int32_t)(t_last - e[3]) > 1e6 * step_ms) continue; /* an earlier step's */
      if (!nb || (int32_t)(e[1] - lo) < 0) lo = e[1];
      if (!nb || (int32_t)(e[3] - hi) > 0) hi = e[3];
      if (!t_begin || (int32_t)(e[0] - t_begin) < 0) t_begin = e[0];
      nb++, nu += e[7] & 0xffffff, k = e[7] >> 24;
      w += e[1] - e[0], f += e[2] - e[1], r += e[3] - e[2];
    }
    if (!nb) continue;
    layers++;
    t_end = hi;
    if (L >= 3) {
      int pos = (L - 3) % 8;
      span[pos] += hi - lo, gap[pos] += prev_end ? (double)(int32_t)(lo - prev_end) : 0;
      wait[pos] += w / nb, first[pos] += f / nb, rest[pos] += r / nb, units[pos] += nu;
      count[pos]++, kind[pos] = (int)k;
    }
    prev_end = hi;
  }
  printf("chain trace: %d phases, %.1f us from the first phase's entry to the last one's end\n", layers,
         (double)(int32_t)(t_end - t_begin) / 1e3);
  static const char *kinds[] = {"matmul", "self-attention", "cross-attention"};
  double sum = 0;
  for (int i = 0; i < 8; i++) {
    if (!count[i]) continue;
    double c = count[i];
    sum += (span[i] + gap[i]) / c;
    printf("  position %d (%s, %.0f units): span %.2f us, gap before %.2f us; per block: wait %.2f, first unit "
           "%.2f, rest %.2f us\n",
           i, kinds[kind[i] < 3 ? kind[i] : 0], units[i] / c, span[i] / c / 1e3, gap[i] / c / 1e3, wait[i] / c / 1e3,
           first[i] / c / 1e3, rest[i] / c / 1e3);
  }
  printf("  a decoder layer: %.1f us (spans and gaps)\n", sum / 1e3);
  free(t);
}
#endif

int main(int argc, char **argv) {
  int batch = 1, steps = 100, reps = 3, trace = 0;
  const char *dir = NULL, *dump = NULL;
  kiln_whisper_load_params lp = kiln_whisper_default_load_params();
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dump-logits") && i + 1 < argc) dump = argv[++i];
    else if (!strcmp(argv[i], "--max-text-tokens") && i + 1 < argc) lp.max_text_tokens = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--chain-trace")) trace = 1;
    else if (!strcmp(argv[i], "--stream-encoder-weights")) {
      lp.stream_encoder_bytes = KILN_WHISPER_STREAM_AUTO;
      if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') lp.stream_encoder_bytes = atoll(argv[++i]) << 20;
      if (!lp.stream_encoder_bytes) batch = 0; /* 0 MiB: a usage error */
    } else dir = argv[i];
  }
  if (!dir || batch < 1 || steps < 1 || reps < 1) {
    fprintf(stderr, "usage: whisper_bench ENGINE_DIR [--batch N] [--steps N] [--reps N] [--dump-logits FILE] "
                    "[--stream-encoder-weights [MiB]] [--max-text-tokens N] [--chain-trace]\n");
    return 2;
  }
#ifdef KILN_HAVE_CUDA
  void *trace_buf = NULL;
  int sms = 0;
  if (trace) {
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    size_t bytes = (size_t)TRACE_LAYERS * sms * TRACE_WORDS * 4;
    if (cudaMalloc(&trace_buf, bytes) != cudaSuccess || cudaMemset(trace_buf, 0, bytes) != cudaSuccess) {
      fprintf(stderr, "whisper_bench: --chain-trace: cannot allocate its buffer\n");
      return 1;
    }
    kiln_cuda_chain_trace(trace_buf);
  }
#else
  (void)trace;
#endif
  size_t before = device_used();
  kiln_whisper *w = NULL;
  kiln_status s = kiln_whisper_load(dir, &lp, &w);
  if (s != KILN_OK) {
    fprintf(stderr, "whisper_bench: %s\n", kiln_last_error());
    return 1;
  }
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  size_t n_mel = (size_t)c->n_mels * 3000;
  float *mel = malloc(sizeof(float) * n_mel * (size_t)batch);
  kiln_whisper_result **res = calloc((size_t)batch, sizeof *res);
  if (!mel || !res) {
    fprintf(stderr, "whisper_bench: out of memory\n");
    free(mel), free(res);
    kiln_whisper_destroy(w);
    return 1;
  }
  uint64_t x = 12345;
  for (size_t i = 0; i < n_mel * (size_t)batch; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    mel[i] = (float)((x >> 40) & 0xffff) / 32768.0f - 1.0f;
  }
  if (dump) {
    s = steps < c->n_text_ctx ? dump_logits(w, mel, steps, dump) : KILN_ERR_INVALID_ARG;
    if (s != KILN_OK)
      fprintf(stderr, "whisper_bench: --dump-logits: %s\n",
              steps < c->n_text_ctx ? kiln_last_error() : "--steps must be below the text context (448)");
    else
      printf("kiln logits %d x %d written to %s\n", steps + 1, (int)c->vocab_size, dump);
    free(mel), free(res);
    kiln_whisper_destroy(w);
    return s == KILN_OK ? 0 : 1;
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
    free(mel), free(res);
    kiln_whisper_destroy(w);
    return 1;
  }
  total /= reps, enc /= reps;
  double step = (total - enc) / (steps + 1);
  /* what one step must read: the decoder's weights as stored, every window's cross-attention
   * keys/values and the self-attention caches over the start sequence (4 tokens) plus half the
   * steps on average (kv_step_bytes) */
  double weights = (double)kiln_whisper_decoder_weight_bytes(w);
  double kv = kv_step_bytes(dir, batch, steps / 2.0 + 4);
  if (kv < 0) s = KILN_ERR_FORMAT;
  if (s != KILN_OK) {
    fprintf(stderr, "whisper_bench: cannot read the KV cache inputs (cache_*, cross_* [rows, H, positions, ...]) of "
                    "%s/decoder.engine: %s\n", dir, kiln_last_error());
    free(mel), free(res);
    kiln_whisper_destroy(w);
    return 1;
  }
  double bytes = weights + kv;
  double enc_tflops = enc > 0 ? encoder_flops(c) * batch / (enc * 1e-3) / 1e12 : 0;
  double gemm_tflops = dense_gemm_tflops((int64_t)batch * c->n_audio_ctx, 4 * (int64_t)c->d_model, c->d_model);
  double gbps = device_gbps(), floor_ms = gbps > 0 ? bytes / (gbps * 1e9) * 1e3 : 0;
  printf("kiln batch %d steps %d ms_per_batch %.2f ms_per_window %.2f encoder_ms %.2f ms_per_step %.3f rtf %.5f "
         "tokens_per_s %.1f planned_bytes %lld device_used_delta_bytes %lld step_bytes %.0f step_weight_bytes %.0f "
         "step_kv_bytes %.0f device_gbps %.0f floor_ms %.3f step_over_floor %.2f encoder_ring_bytes %lld "
         "encoder_tflops %.1f dense_gemm_tflops %.1f encoder_over_gemm %.2f\n",
         batch, steps, total, total / batch, enc, step, total / batch / 30000.0, batch * steps / (total / 1e3),
         (long long)kiln_whisper_device_bytes(w), (long long)(peak > before ? peak - before : 0), bytes, weights, kv, gbps,
         floor_ms,
         floor_ms > 0 ? step / floor_ms : 0, (long long)kiln_whisper_encoder_ring_bytes(w), enc_tflops, gemm_tflops,
         gemm_tflops > 0 ? enc_tflops / gemm_tflops : 0);
  kiln_whisper_memory mp;
  if (kiln_whisper_memory_plan(w, &mp) == KILN_OK)
    printf("kiln memory_plan encoder_weights %lld encoder_ring %lld decoder_weights %lld context %lld encoder_context %lld "
           "decoder_context %lld cross_kv %lld self_kv %lld buffers %lld total %lld\n",
           (long long)mp.encoder_weights, (long long)mp.encoder_ring, (long long)mp.decoder_weights, (long long)mp.context,
           (long long)mp.encoder_context, (long long)mp.decoder_context, (long long)mp.cross_kv, (long long)mp.self_kv,
           (long long)mp.buffers, (long long)mp.total);
#ifdef KILN_HAVE_CUDA
  if (trace_buf) print_chain_trace(trace_buf, sms, step), kiln_cuda_chain_trace(NULL), cudaFree(trace_buf);
#endif
  free(mel), free(res);
  kiln_whisper_destroy(w);
  return 0;
}
