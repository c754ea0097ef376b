/* tests/unit/test_pool.c - src/core/pool.c, the worker pool of the decoding steps: for pools of
 * 1 to 8 threads and runs of 0 to 1000 indices with every thread limit from 0 to the pool's size
 * plus one, every index is called exactly once per run (a counter per index), over thousands of
 * runs in a row (a lost wake-up or a worker still running after kiln_pool_run returned shows up as
 * a missing or extra call, or a hang under ctest's timeout); a NULL pool and a limit of 1 run the
 * indices in order on the calling thread; a run limited to 2 threads really runs on two (index 0
 * waits, up to 10 s, for index 1 to start on another thread); bad thread counts are refused; a
 * pool destroyed without a run, or right after one, ends its workers (TSan and ASan builds check
 * the rest). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"
#include "core/pool.h"

#define MAX_N 1000

typedef struct counts {
  atomic_int calls[MAX_N];
  atomic_int order_ok;  /* in-order runs: index i saw i calls before it */
  atomic_int seen;
} counts;

static void count_call(void *user, int32_t i) {
  counts *c = user;
  atomic_fetch_add(&c->calls[i], 1);
}

static void count_in_order(void *user, int32_t i) {
  counts *c = user;
  if (atomic_fetch_add(&c->seen, 1) != i) atomic_store(&c->order_ok, 0);
  atomic_fetch_add(&c->calls[i], 1);
}

/* n indices with at most `threads` threads, `runs` times: every index exactly once per run. */
static void exactly_once(kiln_pool *p, int32_t n, int32_t threads, int runs) {
  static counts c;
  for (int32_t i = 0; i < MAX_N; i++) atomic_store(&c.calls[i], 0);
  for (int r = 0; r < runs; r++) kiln_pool_run(p, n, threads, count_call, &c);
  int32_t bad = 0;
  for (int32_t i = 0; i < MAX_N; i++) bad += atomic_load(&c.calls[i]) != (i < n ? runs : 0);
  if (bad) fprintf(stderr, "pool of %d threads, n %d, limit %d: %d indices called wrongly\n", kiln_pool_threads(p), n, threads, bad);
  CHECK_EQ_INT(bad, 0);
}

static void in_order(kiln_pool *p, int32_t threads) {
  static counts c;
  for (int32_t i = 0; i < MAX_N; i++) atomic_store(&c.calls[i], 0);
  atomic_store(&c.order_ok, 1), atomic_store(&c.seen, 0);
  kiln_pool_run(p, 100, threads, count_in_order, &c);
  CHECK_EQ_INT(atomic_load(&c.order_ok), 1);
  CHECK_EQ_INT(atomic_load(&c.seen), 100);
}

/* Index 0 waits for index 1 to start: only another thread can run it. */
typedef struct pair {
  atomic_int started1;
  pthread_t t0, t1;
  int saw;
} pair;

static void pair_call(void *user, int32_t i) {
  pair *q = user;
  if (i == 1) {
    q->t1 = pthread_self();
    atomic_store(&q->started1, 1);
    return;
  }
  q->t0 = pthread_self();
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    if (atomic_load(&q->started1)) {
      q->saw = 1;
      return;
    }
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while ((double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec) < 10.0);
}

static void really_parallel(kiln_pool *p) {
  pair q;
  memset(&q, 0, sizeof q);
  atomic_init(&q.started1, 0);
  kiln_pool_run(p, 2, 2, pair_call, &q);
  CHECK(q.saw);
  CHECK(q.saw && !pthread_equal(q.t0, q.t1));
}

int main(void) {
  kiln_pool *p = NULL;
  CHECK_STATUS(kiln_pool_create(0, &p), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_pool_create(KILN_POOL_MAX_THREADS + 1, &p), KILN_ERR_INVALID_ARG);
  CHECK(p == NULL);
  CHECK_EQ_INT(kiln_pool_threads(NULL), 1);
  exactly_once(NULL, 37, 4, 3);
  in_order(NULL, 8);

  CHECK_OK(kiln_pool_create(4, &p)); /* destroyed without a run */
  kiln_pool_destroy(p);
  kiln_pool_destroy(NULL);

  static const int32_t sizes[] = {0, 1, 2, 3, 5, 16, 17, 1000};
  int runs = 0;
  for (int32_t threads = 1; threads <= 8; threads++) {
    p = NULL;
    CHECK_OK(kiln_pool_create(threads, &p));
    if (!p) continue;
    CHECK_EQ_INT(kiln_pool_threads(p), threads); /* this machine starts 8 threads */
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
      for (int32_t limit = 0; limit <= threads + 1; limit++, runs += 20) exactly_once(p, sizes[k], limit, 20);
    exactly_once(p, 16, threads, 2000); /* many small runs in a row, as decoding steps come */
    runs += 2000;
    in_order(p, 1);
    if (threads >= 2) really_parallel(p);
    kiln_pool_destroy(p); /* right after a run */
  }
  fprintf(stderr, "test_pool: %d runs on pools of 1 to 8 threads\n", runs);
  int rc = check_report();
  fprintf(stderr, "test_pool: %s\n", rc ? "FAILED" : "all checks passed");
  return rc;
}
