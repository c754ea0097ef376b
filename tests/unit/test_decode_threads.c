/* tests/unit/test_decode_threads.c - the host side of a Whisper decoding step on a thread pool
 * (dec_choose_step, models/whisper/decode.c) against the same choices made one task at a time
 * (each live row converted, then dec_task_choose: what dec_step did on one thread), without a
 * model: synthetic fp16 logits (Gaussian, std 3, <|endoftext|> raised now and then so windows end
 * at different steps) for 7 window slots of 5 rows each: greedy windows with timestamps
 * (openai-whisper's timestamp rules, suppressed tokens) and sampled windows (best_of 5 at T 0.7,
 * one generator per sample) in a mix, stepped until every window is done. For pools of 1 (NULL),
 * 2, 3, 4 and 8 threads: every window's tokens, sums of log-probabilities (bit for bit),
 * generators, step counts and end states are the reference's. Beam search needs decoder rows to
 * copy: tests/model/test_whisper_threads.c checks it with the real model. */
#include "check.h"
#include "core/pool.h"
#include "kiln/kiln.h"
#include "models/whisper/decode_internal.h"

#define V 4000
#define N_CTX 96
#define SLOTS 7
#define G 5
#define MAX_STEPS 60

/* A small vocabulary laid out as Whisper's: text, <|endoftext|>, specials, timestamps. */
static void make_ctx(dec_ctx *d, const kiln_whisper_options *o) {
  memset(d, 0, sizeof *d);
  d->o = o;
  d->vocab = V, d->n_ctx = N_CTX, d->eot = 3000, d->sot = 3001, d->no_speech = 3099, d->no_ts = 3100, d->ts_begin = 3200;
  d->blank = 220;
  static const int32_t suppress[] = {1, 2, 7, 8, 9, 10, 14, 25, 359, 503, 1350, 2460, 3001, 3002, 3003, 3099};
  d->n_suppress = (int32_t)(sizeof suppress / sizeof *suppress);
  memcpy(d->suppress, suppress, sizeof suppress);
  d->timestamps = 1;
  d->max_initial = 50;
  d->sample_len = 40;
  d->n_init = 3, d->sot_index = 0, d->sample_begin = 3;
}

typedef struct run {
  dec_task tasks[SLOTS];
  dec_task *ptrs[SLOTS];
  int32_t init[3];
} run;

/* Slot s: greedy (1 row) for even s, best_of 5 at T 0.7 for odd s; rows s x G .. */
static void run_init(run *r, const kiln_whisper_options *o) {
  memset(r, 0, sizeof *r);
  r->init[0] = 3001, r->init[1] = 3004, r->init[2] = 3005;
  for (int32_t s = 0; s < SLOTS; s++) {
    dec_task *t = &r->tasks[s];
    make_ctx(&t->d, o);
    t->d.init = r->init;
    t->n = s % 2 ? G : 1, t->T = s % 2 ? 0.7 : 0.0;
    t->r.first = s * G, t->r.n = t->n, t->r.phys = G;
    size_t n = (size_t)t->n, stride = N_CTX + 2;
    t->next = malloc(n * sizeof *t->next), t->logits = malloc(n * V * sizeof *t->logits);
    t->seq = malloc(n * stride * sizeof *t->seq), t->len = malloc(n * sizeof *t->len);
    t->sum = calloc(n, sizeof *t->sum), t->rng = malloc(n * sizeof *t->rng);
    if (!t->next || !t->logits || !t->seq || !t->len || !t->sum || !t->rng) abort();
    t->rng_after = 1000 + (uint64_t)s;
    for (int32_t j = 0; j < t->n; j++) {
      memcpy(t->seq + (size_t)j * stride, r->init, sizeof r->init);
      t->len[j] = 3, t->next[j] = 0;
      t->rng[j] = t->rng_after + (uint64_t)j * (0x9E3779B97F4A7C15ull << 32);
    }
    r->ptrs[s] = t;
  }
}

static void run_free(run *r) {
  for (int32_t s = 0; s < SLOTS; s++) {
    dec_task *t = &r->tasks[s];
    free(t->next), free(t->logits), free(t->seq), free(t->len), free(t->sum), free(t->rng);
  }
}

/* Step k's logits [SLOTS x G, V] in fp16, the same for every run. */
static void make_logits(uint16_t *h, int step) {
  check_rng g = {0x5DEECE66Dull * (uint64_t)(step + 1) + 11};
  for (int32_t row = 0; row < SLOTS * G; row++) {
    uint16_t *x = h + (size_t)row * V;
    for (int32_t i = 0; i < V; i++) {
      float u = 0, w;
      for (int k = 0; k < 4; k++) u += check_uniform(&g, -1.0f, 1.0f); /* about Gaussian, std 3 */
      w = 3.0f * 0.866f * u;
      x[i] = kiln_fp32_to_fp16(w);
    }
    if (check_uniform(&g, 0, 1) < 0.08f) x[3000] = kiln_fp32_to_fp16(40.0f); /* <|endoftext|> */
  }
}

/* Steps until every window is done: the pool's dec_choose_step, or (reference) each task's live
 * rows converted one by one and dec_task_choose, slot after slot. Returns the steps taken. */
static int decode(run *r, kiln_pool *pool, int32_t rows_per_thread, int reference, uint16_t *h) {
  int step = 0;
  for (; step < MAX_STEPS; step++) {
    int live = 0;
    for (int32_t s = 0; s < SLOTS; s++) live |= !r->tasks[s].done;
    if (!live) break;
    make_logits(h, step);
    if (!reference) {
      CHECK_OK(dec_choose_step(pool, r->ptrs, SLOTS, h, KILN_DTYPE_FP16, rows_per_thread));
      continue;
    }
    for (int32_t s = 0; s < SLOTS; s++) {
      dec_task *t = &r->tasks[s];
      for (int32_t j = 0; !t->done && j < t->n; j++)
        if (t->next[j] >= 0)
          kiln_convert_floats(t->logits + (size_t)j * V, KILN_DTYPE_FP32, h + (size_t)(t->r.first + j) * V, KILN_DTYPE_FP16, V);
      CHECK_OK(dec_task_choose(t));
    }
  }
  return step;
}

/* Every window of a the same as of b; counts the tokens. */
static int64_t same_runs(const run *a, const run *b, const char *what) {
  int64_t tokens = 0;
  int bad = 0;
  for (int32_t s = 0; s < SLOTS; s++) {
    const dec_task *x = &a->tasks[s], *y = &b->tasks[s];
    bad += x->done != y->done || x->step != y->step || x->rng_after != y->rng_after;
    for (int32_t j = 0; j < x->n; j++) {
      bad += x->len[j] != y->len[j] || x->rng[j] != y->rng[j] || memcmp(&x->sum[j], &y->sum[j], sizeof(float)) != 0;
      size_t off = (size_t)j * (N_CTX + 2);
      bad += x->len[j] == y->len[j] && memcmp(x->seq + off, y->seq + off, sizeof(int32_t) * (size_t)x->len[j]) != 0;
      tokens += x->len[j] - 3;
    }
  }
  if (bad) fprintf(stderr, "%s: %d differences from the one-task-at-a-time reference\n", what, bad);
  CHECK_EQ_INT(bad, 0);
  return tokens;
}

int main(void) {
  kiln_whisper_options o = kiln_whisper_default_options();
  uint16_t *h = malloc(sizeof(uint16_t) * SLOTS * G * V);
  if (!h) abort();
  static run ref, got;
  run_init(&ref, &o);
  int steps = decode(&ref, NULL, 0, 1, h);
  CHECK(steps > 3 && steps < MAX_STEPS); /* windows ended, not all at once */
  int ended_early = 0, timestamps = 0;
  for (int32_t s = 0; s < SLOTS; s++) {
    const dec_task *t = &ref.tasks[s];
    CHECK(t->done);
    ended_early += t->step < steps;
    for (int32_t j = 0; j < t->n; j++)
      for (int32_t k = 3; k < t->len[j]; k++) timestamps += t->seq[(size_t)j * (N_CTX + 2) + k] >= 3200;
  }
  CHECK(ended_early > 0); /* steps with finished slots between live ones */
  CHECK(timestamps > 0);  /* the timestamp rules had timestamps to work on */
  static const int32_t pools[] = {1, 2, 3, 4, 8};
  int64_t tokens = 0;
  for (size_t k = 0; k < sizeof pools / sizeof *pools; k++) {
    kiln_pool *pool = NULL;
    if (pools[k] > 1) CHECK_OK(kiln_pool_create(pools[k], &pool));
    char what[64];
    snprintf(what, sizeof what, "pool of %d threads", pools[k]);
    for (int32_t rows_per_thread = 0; rows_per_thread <= 2; rows_per_thread++) { /* 0: dec_step's */
      run_init(&got, &o);
      CHECK_EQ_INT(decode(&got, pool, rows_per_thread, 0, h), steps);
      tokens = same_runs(&got, &ref, what);
      run_free(&got);
    }
    kiln_pool_destroy(pool);
  }
  fprintf(stderr, "test_decode_threads: %d steps, %lld tokens (%d timestamps) over %d windows, pools of 1 to 8 threads\n", steps,
          (long long)tokens, timestamps, SLOTS);
  run_free(&ref);
  free(h);
  int rc = check_report();
  fprintf(stderr, "test_decode_threads: %s\n", rc ? "FAILED" : "all checks passed");
  return rc;
}
