/* bench/decode_host_bench.c - the host side of one Whisper decoding step, on synthetic logits:
 * what the CPU does per step of `kiln eval` / `kiln transcribe` once the GPU has produced the
 * logits of every row. For --rows greedy windows (one decoder row each, vocabulary 51865 as
 * whisper-base, logits Gaussian with std 3, a fresh set each step out of 8), it times
 *   convert:   the fp16 (and bf16) -> fp32 conversion of all rows' logits (kiln_convert_floats),
 *   choose:    dec_task_choose of every window: the logit filters (suppressed tokens; with
 *              timestamps, openai-whisper's timestamp rules: a logsumexp over the 1501 timestamp
 *              tokens and a max over the text tokens), the argmax and the logsumexp of the row
 *              (the sum of log-probabilities), with timestamps on and off;
 *   step:      both as a decoding step does them: dec_choose_step, the host side of dec_step,
 *              on the fp16 logits of all rows (each row converted, then chosen), with --threads N
 *              on a pool of N threads (core/pool.h: the calling one and N - 1 workers), the pool
 *              a kiln_whisper loaded with decode_threads N uses, with dec_step's rule for how
 *              many of them a step of that many rows takes (a thread per DEC_ROWS_PER_THREAD
 *              rows), or a thread per --rows-per-thread K rows (to find where threads pay).
 * The windows' token histories are reset before each step (a timestamp, then a few text tokens,
 * some ending on a timestamp) so that every step does the same work. Prints ms per step
 * (median and mean over --iterations steps).
 *
 * --portable runs kiln's portable C code instead of its AVX2/F16C code (core/cpu.h).
 *
 * usage: decode_host_bench [--rows N] [--iterations N] [--warmup N] [--threads N] [--rows-per-thread K]
 *                          [--portable]
 * Not a test: the checks are in tests/unit/test_rowmath.c and the model tests. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "decode_host_bench"
#include "bench_util.h"
#include "core/cpu.h"
#include "core/pool.h"
#include "kiln/kiln.h"
#include "models/whisper/decode_internal.h"

#define VOCAB 51865
#define N_CTX 448
#define SETS 8 /* distinct logits sets, one per step in turn */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *ms, int n) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += ms[i];
  qsort(ms, (size_t)n, sizeof *ms, cmp_double);
  printf("  %-34s median %8.3f ms   mean %8.3f ms\n", what, ms[n / 2], sum / n);
}

static float gaussian(void) { /* Box-Muller on bench_util's uniform */
  float u = 0.5f * (uniform() + 1.0f), v = 0.5f * (uniform() + 1.0f);
  if (u < 1e-7f) u = 1e-7f;
  return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* whisper-base's decoding context (dec_ctx_init without the engine): suppress_tokens of its
 * config plus the special tokens decode.c adds; the sot sequence <|startoftranscript|><|en|>
 * <|transcribe|> (sample_begin 3). */
static void make_ctx(dec_ctx *d, const kiln_whisper_options *o, int timestamps) {
  static const int32_t suppress[] = {
      1,     2,     7,     8,     9,     10,    14,    25,    26,    27,    28,    29,    31,    58,    59,
      60,    61,    62,    63,    90,    91,    92,    93,    359,   503,   522,   542,   873,   893,   902,
      918,   922,   931,   1350,  1853,  1982,  2460,  2627,  3246,  3253,  3268,  3536,  3846,  3961,  4183,
      4667,  6585,  6647,  7273,  9061,  9383,  10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635,
      15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161, 26435, 28279, 29464, 31650,
      32302, 32470, 36865, 42863, 47425, 49870, 50254, 50258, 50358, 50359, 50360, 50361, 50362,
      50359, 50358, 50258, 50361, 50360, 50362};
  memset(d, 0, sizeof *d);
  d->o = o;
  d->vocab = VOCAB, d->n_ctx = N_CTX, d->eot = 50257, d->sot = 50258, d->ts_begin = 50364;
  d->no_ts = 50363, d->no_speech = 50362, d->blank = 220;
  d->n_suppress = (int32_t)(sizeof suppress / sizeof *suppress);
  memcpy(d->suppress, suppress, sizeof suppress);
  d->timestamps = timestamps;
  d->max_initial = 50;
  d->sample_len = 224;
  d->sot_index = 0, d->n_init = 3, d->sample_begin = 3;
}

/* Window r's history: <|0.00|> and r % 6 text tokens, ending on a timestamp when r % 3 == 2. */
static void reset_task(dec_task *t, int32_t r) {
  const dec_ctx *d = &t->d;
  int32_t *seq = t->seq, n = 0;
  seq[n++] = d->sot, seq[n++] = d->sot + 1, seq[n++] = d->sot + 101; /* the initial tokens */
  if (d->timestamps) seq[n++] = d->ts_begin;
  for (int32_t k = 0; k < r % 6; k++) seq[n++] = 400 + 37 * k;
  if (d->timestamps && r % 3 == 2) seq[n++] = d->ts_begin + 10;
  t->len[0] = n, t->next[0] = seq[n - 1], t->step = n - d->sample_begin, t->done = 0, t->sum[0] = 0;
}

/* One step's rows (convert + choose) as dec_step does them. */
static double timed_step(kiln_pool *pool, dec_task *const *tasks, int rows, const uint16_t *src, int per_thread) {
  double t0 = now_ms();
  REQUIRE(dec_choose_step(pool, tasks, rows, src, KILN_DTYPE_FP16, per_thread));
  return now_ms() - t0;
}

int main(int argc, char **argv) {
  int rows = 16, iterations = 200, warmup = 10, threads = 1, per_thread = DEC_ROWS_PER_THREAD;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rows-per-thread") && i + 1 < argc) per_thread = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--portable")) kiln_cpu_set_portable(1);
    else {
      fprintf(stderr, "usage: %s [--rows N] [--iterations N] [--warmup N] [--threads N] [--rows-per-thread K] [--portable]\n",
              BENCH_NAME);
      return 2;
    }
  }
  if (rows < 1 || iterations < 1 || warmup < 0) DIE("--rows and --iterations must be >= 1");
  if (threads < 1 || threads > KILN_POOL_MAX_THREADS) DIE("--threads must be 1 to %d", KILN_POOL_MAX_THREADS);
  if (per_thread < 1) DIE("--rows-per-thread must be >= 1");
  size_t per_set = (size_t)rows * VOCAB;
  uint16_t *h16 = malloc(SETS * per_set * 2), *b16 = malloc(SETS * per_set * 2);
  float *f32 = malloc(SETS * per_set * 4), *conv = malloc(per_set * 4);
  double *ms = malloc(sizeof(double) * (size_t)iterations);
  dec_task *tasks = calloc((size_t)rows, sizeof *tasks), **task_ptrs = calloc((size_t)rows, sizeof *task_ptrs);
  if (!h16 || !b16 || !f32 || !conv || !ms || !tasks || !task_ptrs) DIE("out of memory");
  for (size_t i = 0; i < SETS * per_set; i++) {
    f32[i] = 3.0f * gaussian();
    h16[i] = kiln_fp32_to_fp16(f32[i]);
    b16[i] = kiln_fp32_to_bf16(f32[i]);
    f32[i] = kiln_fp16_to_fp32(h16[i]); /* the values the engine's fp16 logits hold */
  }
  kiln_whisper_options o = kiln_whisper_default_options();
  for (int r = 0; r < rows; r++) {
    dec_task *t = &tasks[r];
    t->n = 1, t->T = 0, t->r.first = r; /* window r's row is row r of the step's logits */
    task_ptrs[r] = t;
    t->next = malloc(sizeof *t->next), t->len = malloc(sizeof *t->len), t->sum = malloc(sizeof *t->sum);
    t->rng = calloc(1, sizeof *t->rng);
    t->seq = malloc(sizeof *t->seq * (N_CTX + 2));
    t->logits = malloc(sizeof *t->logits * VOCAB);
    if (!t->next || !t->len || !t->sum || !t->rng || !t->seq || !t->logits) DIE("out of memory");
  }
  kiln_pool *pool = NULL;
  if (threads > 1) REQUIRE(kiln_pool_create(threads, &pool));
  int used = rows / per_thread < kiln_pool_threads(pool) ? rows / per_thread : kiln_pool_threads(pool);
  printf("%s: %d rows x vocabulary %d, logits std 3, %d steps (+%d warm-up), a pool of %d thread(s) (%d for a step of %d rows), "
         "%s code\n", BENCH_NAME, rows, VOCAB, iterations, warmup, kiln_pool_threads(pool), used > 1 ? used : 1, rows,
         kiln_cpu_has_avx2_fma() ? "AVX2/F16C" : "portable");

  /* convert: all rows of a step at once, fp16 and bf16 */
  const char *names[2] = {"convert fp16 -> fp32 (all rows)", "convert bf16 -> fp32 (all rows)"};
  for (int which = 0; which < 2; which++) {
    const uint16_t *src = which ? b16 : h16;
    for (int it = -warmup; it < iterations; it++) {
      const uint16_t *s = src + (size_t)((it + warmup) % SETS) * per_set;
      double t0 = now_ms();
      kiln_convert_floats(conv, KILN_DTYPE_FP32, s, which ? KILN_DTYPE_BF16 : KILN_DTYPE_FP16, (int64_t)per_set);
      if (it >= 0) ms[it] = now_ms() - t0;
    }
    report(names[which], ms, iterations);
  }

  /* choose (the rows restored outside the timer) and step (convert + choose), timestamps on/off */
  double logprobs = 0; /* what the steps chose, to compare builds: the tokens' hash, the log-probabilities' sum */
  uint64_t token_hash = 0;
  for (int timestamps = 1; timestamps >= 0; timestamps--) {
    for (int r = 0; r < rows; r++) make_ctx(&tasks[r].d, &o, timestamps);
    for (int it = -warmup; it < iterations; it++) {
      const float *s = f32 + (size_t)((it + warmup) % SETS) * per_set;
      double total = 0;
      for (int r = 0; r < rows; r++) {
        dec_task *t = &tasks[r];
        memcpy(t->logits, s + (size_t)r * VOCAB, sizeof(float) * VOCAB);
        reset_task(t, r);
        double t0 = now_ms();
        REQUIRE(dec_task_choose(t));
        total += now_ms() - t0;
        logprobs += t->sum[0], token_hash = token_hash * 31 + (uint64_t)t->seq[t->len[0] - 1];
      }
      if (it >= 0) ms[it] = total;
    }
    report(timestamps ? "choose, timestamps (all rows)" : "choose, no timestamps (all rows)", ms, iterations);
    for (int it = -warmup; it < iterations; it++) {
      const uint16_t *src = h16 + (size_t)((it + warmup) % SETS) * per_set;
      for (int r = 0; r < rows; r++) reset_task(&tasks[r], r);
      double t = timed_step(pool, task_ptrs, rows, src, per_thread);
      if (it >= 0) ms[it] = t;
      for (int r = 0; r < rows; r++)
        logprobs += tasks[r].sum[0], token_hash = token_hash * 31 + (uint64_t)tasks[r].seq[tasks[r].len[0] - 1];
    }
    report(timestamps ? "step (fp16), timestamps" : "step (fp16), no timestamps", ms, iterations);
  }
  printf("  chosen tokens' hash %016llx, sum of their log-probabilities %.9g\n", (unsigned long long)token_hash, logprobs);
  kiln_pool_destroy(pool);
  for (int r = 0; r < rows; r++) {
    dec_task *t = &tasks[r];
    free(t->next), free(t->len), free(t->sum), free(t->rng), free(t->seq), free(t->logits);
  }
  free(task_ptrs), free(tasks), free(ms), free(conv), free(f32), free(b16), free(h16);
  return 0;
}
